"""Sample submissions of the BERT assignment and the tests each must fail (see autograder/samples/__init__.py).

The IMDB threshold is judged on every grader (a clear case within the threshold budget even on a CPU). The
reference carries trained files only where CUDA is: there its training cells fine-tune the configured checkpoint
(DLCOURSE_BERT_CHECKPOINT, or offline the all-MiniLM-L6-v2 stand-in) on the full training split; elsewhere it
fails the threshold too: no reference weights in this demo. Every other sample has no saved model and fails the
accuracy test ("not in the submission").
"""
import torch

from autograder.samples import Sample

TOKENIZE = {"TestTokenize::test_truncation", "TestTokenize::test_padding", "TestTokenize::test_attention_mask"}
CLASSIFIER = {"TestClassifier::test_logits_shape", "TestClassifier::test_padding_does_not_change_logits",
              "TestClassifier::test_gradients_reach_encoder_and_head"}
FREEZE = {"TestFreeze::test_freezes_exactly_the_encoder"}
TRAINING = {"TestTraining::test_training_steps_lower_the_loss", "TestTraining::test_optimizer_and_linear_warmup_schedule"}
ACCURACY = {"TestAccuracy::test_imdb_accuracy"}


TOKENIZER_CALL = 'tokenizer(batch["text"], truncation=True, padding="max_length", max_length=max_length)'
MEAN_POOL = "pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)"

SAMPLES = [
    Sample("reference", "the instructor's solution (with its fine-tuned model where CUDA is)", trained=True,
           expect_failed=set() if torch.cuda.is_available() else ACCURACY),
    Sample("untouched_release", "the release notebook as students get it", base="release",
           expect_failed=TOKENIZE | CLASSIFIER | FREEZE | TRAINING | ACCURACY),
    Sample("bug_mean_pool_ignores_mask", "planted bug: mean pooling averages the padding too",
           edits=[("classifier", MEAN_POOL, "pooled = hidden.mean(dim=1)")],
           expect_failed={"TestClassifier::test_padding_does_not_change_logits"} | ACCURACY),
    Sample("bug_left_padding", "planted bug: tokenize_batch pads on the left",
           edits=[("tokenize", TOKENIZER_CALL, TOKENIZER_CALL[:-1] + ', padding_side="left")')],
           expect_failed={"TestTokenize::test_padding", "TestTokenize::test_attention_mask"} | ACCURACY),
    Sample("bug_no_truncation", "planted bug: tokenize_batch forgets truncation",
           edits=[("tokenize", "truncation=True, ", "")],
           expect_failed={"TestTokenize::test_truncation"} | ACCURACY),
    Sample("bug_freeze_head", "planted bug: freeze_encoder freezes the head too",
           edits=[("freeze", "for p in model.encoder.parameters():", "for p in model.parameters():")],
           expect_failed=FREEZE | ACCURACY),
    Sample("forbidden_ready_made_head", "imports BertForSequenceClassification in the classifier cell (not allowed)",
           edits=[("classifier", "class SentimentClassifier(nn.Module):",
                   "from transformers import BertForSequenceClassification\n\n\nclass SentimentClassifier(nn.Module):")],
           expect_failed=CLASSIFIER | ACCURACY),
]

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
PADDING = {f"TestClassifier::test_padding_does_not_change_logits[{pooling}]" for pooling in ("mean", "cls")}
GRADIENTS = {f"TestClassifier::test_gradients_reach_encoder_and_head[{pooling}]" for pooling in ("mean", "cls")}
CLS = {"TestClassifier::test_cls_pooling_reads_the_cls_token"}
CLASSIFIER = {"TestClassifier::test_logits_shape"} | PADDING | GRADIENTS | CLS
FREEZE = {"TestFreeze::test_freezes_exactly_the_encoder"}
TRAINING_STEP = {"TestTraining::test_training_step_matches_reference_step"}
TRAINING = TRAINING_STEP | {"TestTraining::test_optimizer_and_linear_warmup_schedule"}
ACCURACY = {"TestAccuracy::test_imdb_accuracy"}


TOKENIZER_CALL = 'tokenizer(batch["text"], truncation=True, padding="max_length", max_length=max_length)'
MEAN_POOL = "pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)"
ENCODER_CALL = "hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state"
CLS_POOL = "pooled = hidden[:, 0]"
FREEZE_RETURN = "    return model"
STEP_RETURN = "    return loss.item()"

# Correct code written unlike the reference (fair grading: it must get full marks). Each edit appends the alternative
# definitions at the end of the cell, so that they replace the reference's.
ALTERNATIVE_CLASSIFIER = """


def _classifier_forward(self, input_ids, attention_mask):
    states = self.encoder(input_ids, attention_mask=attention_mask)[0]          # (B, T, H)
    if self.pooling == "mean":
        keep = attention_mask.bool().unsqueeze(2)
        summary = states.masked_fill(~keep, 0.0).sum(1) / keep.sum(1).to(states.dtype)
    else:
        summary = states[:, 0, :]
    return self.classifier(self.dropout(summary))


SentimentClassifier.forward = _classifier_forward
"""
ALTERNATIVE_FREEZE = """


def freeze_encoder(model):
    model.encoder.requires_grad_(False)
    return model
"""
ALTERNATIVE_STEP = """


def training_step(model, batch, optimizer, scheduler, device):
    optimizer.zero_grad()
    device = torch.device(device)
    inputs = {key: batch[key].to(device) for key in ("input_ids", "attention_mask")}
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        logits = model(inputs["input_ids"], inputs["attention_mask"])
    loss = nn.functional.cross_entropy(logits.to(torch.float32), batch["label"].to(device))
    loss.backward()
    optimizer.step()
    scheduler.step()
    return float(loss.detach())
"""

SAMPLES = [
    Sample("reference", "the instructor's solution (with its fine-tuned model where CUDA is)", trained=True,
           expect_failed=set() if torch.cuda.is_available() else ACCURACY),
    Sample("untouched_release", "the release notebook as students get it", base="release",
           expect_failed=TOKENIZE | CLASSIFIER | FREEZE | TRAINING | ACCURACY),
    Sample("bug_mean_pool_ignores_mask", "planted bug: mean pooling averages the padding too",
           edits=[("classifier", MEAN_POOL, "pooled = hidden.mean(dim=1)")],
           expect_failed={"TestClassifier::test_padding_does_not_change_logits[mean]"} | ACCURACY),
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
    Sample("alternative_correct", "correct code written unlike the reference (masked_fill pooling, requires_grad_, "
           "zero_grad first, a float loss)", trained=True,
           expect_failed=set() if torch.cuda.is_available() else ACCURACY,
           edits=[("classifier", "        return self.classifier(self.dropout(pooled))",
                   "        return self.classifier(self.dropout(pooled))" + ALTERNATIVE_CLASSIFIER),
                  ("freeze", FREEZE_RETURN, FREEZE_RETURN + ALTERNATIVE_FREEZE),
                  ("train_step", STEP_RETURN, STEP_RETURN + ALTERNATIVE_STEP)]),
    # Bugs of independent parts in one sample: the training-step test runs on a reference classifier, so the head's
    # bug costs points only in the head's tests.
    Sample("bug_no_grad_encoder_freeze_returns_none", "planted bugs: the classifier runs the encoder under "
           "torch.no_grad() (no gradient reaches it); freeze_encoder returns None",
           edits=[("classifier", ENCODER_CALL, "with torch.no_grad():\n            " + ENCODER_CALL),
                  ("freeze", FREEZE_RETURN, "    return None")],
           expect_failed=GRADIENTS | FREEZE | ACCURACY),
    Sample("bug_cls_last_token_no_scheduler", "planted bugs: cls pooling takes the last position (padding, in a padded "
           "batch); training_step never steps the scheduler",
           edits=[("classifier", CLS_POOL, "pooled = hidden[:, -1]"), ("train_step", "    scheduler.step()\n", "")],
           expect_failed={"TestClassifier::test_padding_does_not_change_logits[cls]"} | CLS | TRAINING_STEP | ACCURACY),
    Sample("bug_mask_not_passed_no_zero_grad", "planted bugs: the encoder is called without attention_mask (so tokens "
           "attend to padding); training_step never clears the gradients",
           edits=[("classifier", ENCODER_CALL, "hidden = self.encoder(input_ids=input_ids).last_hidden_state"),
                  ("train_step", "    optimizer.zero_grad(set_to_none=True)\n", "")],
           expect_failed=PADDING | TRAINING_STEP | ACCURACY),
    Sample("bug_cls_reads_sep", "planted bug: cls pooling reads the last real token ([SEP]) instead of [CLS]",
           edits=[("classifier", CLS_POOL,
                   "pooled = hidden[torch.arange(len(hidden)), attention_mask.sum(dim=1).long() - 1]")],
           expect_failed=CLS | ACCURACY),
]

# Planted bugs of the notebook's public checks (tests/test_public_checks.py reads this list): (the check that must
# catch it, what the bug is, {answer cell: (solution text, buggy text)}).
PUBLIC_CHECK_BUGS = [
    ("tokenize_check", "padded to the longest review, not to max_length",
     {"tokenize": ('padding="max_length"', "padding=True")}),
    ("classifier_check", "mean pooling over the padding too",
     {"classifier": ("pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)",
                     "pooled = hidden.mean(dim=1)")}),
    ("classifier_check", "CLS pooling reads the last token",
     {"classifier": ("pooled = hidden[:, 0]", "pooled = hidden[:, -1]")}),
    ("train_step_check", "scheduler never stepped",
     {"train_step": ("    scheduler.step()\n", "")}),
]

# Cells the public checks read although no check is about them (tests/public_checks.py runs them).
PUBLIC_CHECK_CELLS = ("load_pretrained",)

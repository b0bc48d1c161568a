"""Sample submissions of the seq2seq assignment and the tests each must fail (see autograder/samples/__init__.py).

Only the reference and hostile_reverse_lookup carry trained weights, so every other sample also fails the reversal
threshold ("not in the submission"). The reference's reversal model trains on a CPU in about a minute; its Multi30k
model and tokenizer are trained (by the notebook's own cells) only where CUDA is: elsewhere the two Multi30k
thresholds fail for every sample, the reference included, with "seq2seq_multi30k.safetensors is not in the
submission" (they are judged on every grader, so a submission that has the files is scored on a CPU too).
"""
import torch

from autograder.samples import Sample

ATTENTION = {f"TestAttention::{test}[{kind}]" for kind in ("dot", "cosine")
             for test in ("test_matches_formula", "test_padding_gets_exactly_zero_weight", "test_gradients_match_formula")
             } | {"TestAttention::test_numerically_safe"}
ENCODER = {"TestEncoder::test_matches_reference[lstm]", "TestEncoder::test_matches_reference[rnn]",
           "TestEncoder::test_padding_changes_nothing", "TestEncoder::test_gradients_reach_the_embeddings"}
DECODER_ATTENDING = {"TestDecoder::test_step_matches_reference[lstm-dot]", "TestDecoder::test_step_matches_reference[lstm-cosine]",
                     "TestDecoder::test_step_matches_reference[rnn-dot]", "TestDecoder::test_gradients_match_reference"}
DECODER = DECODER_ATTENDING | {"TestDecoder::test_step_matches_reference[lstm-None]"}
TEACHER_FORCING = {"TestSeq2Seq::test_teacher_forcing_matches_reference", "TestSeq2Seq::test_free_running_feeds_back_the_argmax",
                   "TestSeq2Seq::test_choices_follow_the_stated_rule"}
SEQ2SEQ = TEACHER_FORCING | {"TestSeq2Seq::test_output_shape", "TestSeq2Seq::test_same_generator_same_choices"}
GREEDY = {"TestGreedyTranslate::test_matches_reference_decoding"}
REVERSAL = {"TestAccuracy::test_reversal_accuracy"}
MULTI30K = {"TestAccuracy::test_multi30k_perplexity", "TestAccuracy::test_multi30k_bleu"}
# What the reference has only where CUDA trained its Multi30k model (see above).
UNTRAINED_HERE = set() if torch.cuda.is_available() else MULTI30K

# The hostile sample: greedy_translate ignores the model and reverses the source, which is the right answer of the
# synthetic task. The reversal threshold's canary (the same code with the saved weights scrambled) catches it.
GREEDY_FIRST_LINE = "    encoder_outputs, state = model.encoder(src, src_lengths)\n"
REVERSE_LOOKUP = '''    lengths = src_lengths.tolist()
    rows = [[bos_id] + src[b, :n].flip(0).tolist() + [eos_id] for b, n in enumerate(lengths)]
    width = max(len(r) for r in rows)
    return torch.tensor([r + [pad_id] * (width - len(r)) for r in rows], device=src.device)
'''

SAMPLES = [
    Sample("reference", "the instructor's solution with trained weights", trained=True, expect_failed=UNTRAINED_HERE),
    Sample("untouched_release", "the release notebook as students get it", base="release",
           expect_failed=ATTENTION | ENCODER | DECODER | SEQ2SEQ | GREEDY | REVERSAL | MULTI30K),
    Sample("bug_softmax_wrong_axis", "planted bug: attention's softmax runs over the batch instead of the source positions",
           edits=[("attention", ".softmax(dim=-1)", ".softmax(dim=0)")],
           # masked scores still underflow to weight 0, so the padding tests pass
           expect_failed={"TestAttention::test_matches_formula[dot]", "TestAttention::test_matches_formula[cosine]",
                          "TestAttention::test_gradients_match_formula[dot]", "TestAttention::test_gradients_match_formula[cosine]",
                          "TestAttention::test_numerically_safe"} | REVERSAL | MULTI30K),
    Sample("bug_padding_attended", "planted bug: attention gives padded source positions weight",
           edits=[("attention", "scores.masked_fill(~src_mask, torch.finfo(scores.dtype).min).softmax(dim=-1)",
                   "scores.softmax(dim=-1)")],
           expect_failed=ATTENTION | REVERSAL | MULTI30K),
    Sample("bug_teacher_forcing_inverted", "planted bug: the true token is fed when the draw is above the ratio",
           edits=[("seq2seq", "torch.rand(1, generator=generator).item() < teacher_forcing_ratio",
                   "torch.rand(1, generator=generator).item() >= teacher_forcing_ratio")],
           expect_failed=TEACHER_FORCING | REVERSAL | MULTI30K),
    Sample("bug_context_ignored", "planted bug: the decoder combines its hidden state with itself, not with the context",
           edits=[("decoder", "torch.cat([h, context], dim=-1)", "torch.cat([h, h], dim=-1)")],
           expect_failed=DECODER_ATTENDING | REVERSAL | MULTI30K),
    Sample("hostile_reverse_lookup", "greedy_translate reverses the source without the model, with trained weights",
           trained=True, edits=[("greedy", GREEDY_FIRST_LINE, REVERSE_LOOKUP + GREEDY_FIRST_LINE)], expect_failed=GREEDY | REVERSAL | UNTRAINED_HERE),
]

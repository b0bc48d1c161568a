"""Sample submissions of the Transformer assignment and the tests each must fail (see autograder/samples/__init__.py).

Only the reference carries trained weights, so every other sample also fails the reversal threshold
("not in the submission"). The reversal model trains on a CPU in well under a minute, so the reference carries
it everywhere; its Multi30k model and tokenizer are trained (by the notebook's own cells) only where CUDA is.
The perplexity threshold is judged on every grader (all 1 000 test pairs: seconds on a CPU), so elsewhere the
reference fails it too: no reference weights in this demo.
"""
import torch

from autograder.samples import Sample

PE = {"TestPositionalEncoding::test_matches_formula[10-8]", "TestPositionalEncoding::test_matches_formula[7-5]",
      "TestPositionalEncoding::test_matches_formula[64-33]", "TestPositionalEncoding::test_matches_formula[100-16]",
      "TestPositionalEncoding::test_module_adds_the_table"}
PADDING_MASK = {"TestMasks::test_padding_mask"}
CAUSAL_MASK = {"TestMasks::test_causal_mask[1]", "TestMasks::test_causal_mask[6]"}
MHA_VALUES = {"TestMultiHeadAttention::test_self_attention_matches_torch[16-1]",
              "TestMultiHeadAttention::test_self_attention_matches_torch[32-4]",
              "TestMultiHeadAttention::test_padding_mask_matches_torch", "TestMultiHeadAttention::test_causal_mask_matches_torch",
              "TestMultiHeadAttention::test_cross_attention_with_padding", "TestMultiHeadAttention::test_fully_padded_row_gives_no_nan",
              "TestMultiHeadAttention::test_gradients_match_torch"}
MHA = MHA_VALUES | {"TestMultiHeadAttention::test_output_shape_cross_attention",
                    "TestMultiHeadAttention::test_masked_positions_get_zero_weight"}
FEEDFORWARD = {"TestFeedForward::test_matches_reference"}
ENCODER = {"TestEncoderLayer::test_matches_torch_encoder_layer", "TestEncoderLayer::test_gradients_match_torch"}
DECODER = {"TestDecoderLayer::test_matches_torch_decoder_layer", "TestDecoderLayer::test_gradients_match_torch"}
TRANSFORMER = {"TestTransformer::test_output_shape", "TestTransformer::test_matches_torch_reference",
               "TestTransformer::test_decoder_cannot_see_the_future"}
GREEDY = {"TestGreedyDecode::test_matches_reference_decoding"}
THRESHOLDS = {"TestAccuracy::test_reversal_accuracy", "TestAccuracy::test_multi30k_perplexity"}


SAMPLES = [
    Sample("reference", "the instructor's solution with trained weights", trained=True,
           expect_failed=set() if torch.cuda.is_available() else {"TestAccuracy::test_multi30k_perplexity"}),
    Sample("untouched_release", "the release notebook as students get it", base="release",
           expect_failed=PE | PADDING_MASK | CAUSAL_MASK | MHA | FEEDFORWARD | ENCODER | DECODER | TRANSFORMER | GREEDY | THRESHOLDS),
    Sample("bug_attention_scale", "planted bug: attention scores not divided by sqrt(d_k)",
           edits=[("mha", " / math.sqrt(self.head_size)", "")],
           expect_failed=MHA_VALUES | THRESHOLDS),
    Sample("bug_causal_off_by_one", "planted bug: the causal mask lets position t see token t+1",
           edits=[("masks", "torch.ones(T, T, dtype=torch.bool, device=device).tril()",
                   "torch.ones(T, T, dtype=torch.bool, device=device).tril(diagonal=1)")],
           # make_causal_mask(1) is still right; the Transformer and greedy decoding (two decoder layers) use the mask
           expect_failed={"TestMasks::test_causal_mask[6]", "TestTransformer::test_matches_torch_reference",
                          "TestTransformer::test_decoder_cannot_see_the_future"} | GREEDY | THRESHOLDS),
    Sample("bug_padding_ignored", "planted bug: make_padding_mask lets every query attend to padding",
           edits=[("masks", "return (tokens != pad_id)[:, None, None, :]",
                   "return torch.ones_like(tokens, dtype=torch.bool)[:, None, None, :]")],
           # the Transformer and greedy decoding build their masks with it (their sources hold padding)
           expect_failed=PADDING_MASK | {"TestTransformer::test_matches_torch_reference"} | GREEDY | THRESHOLDS),
]

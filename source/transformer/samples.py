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
      "TestPositionalEncoding::test_module_adds_the_table", "TestPositionalEncoding::test_dropout_in_train_mode_only"}
PADDING_MASK = {"TestMasks::test_padding_mask"}
CAUSAL_MASK = {"TestMasks::test_causal_mask[1]", "TestMasks::test_causal_mask[6]"}
MHA_VALUES = {"TestMultiHeadAttention::test_self_attention_matches_torch[16-1]",
              "TestMultiHeadAttention::test_self_attention_matches_torch[32-4]",
              "TestMultiHeadAttention::test_padding_mask_matches_torch", "TestMultiHeadAttention::test_causal_mask_matches_torch",
              "TestMultiHeadAttention::test_cross_attention_with_padding", "TestMultiHeadAttention::test_fully_padded_row_gives_no_nan",
              "TestMultiHeadAttention::test_gradients_match_torch"}
MHA = MHA_VALUES | {"TestMultiHeadAttention::test_output_shape_cross_attention",
                    "TestMultiHeadAttention::test_masked_positions_get_zero_weight",
                    "TestMultiHeadAttention::test_dropout_in_train_mode_only"}
FEEDFORWARD = {"TestFeedForward::test_matches_reference", "TestFeedForward::test_dropout_in_train_mode_only"}
ENCODER = {"TestEncoderLayer::test_matches_torch_encoder_layer", "TestEncoderLayer::test_gradients_match_torch",
           "TestEncoderLayer::test_dropout_in_train_mode_only"}
DECODER = {"TestDecoderLayer::test_matches_torch_decoder_layer", "TestDecoderLayer::test_gradients_match_torch",
           "TestDecoderLayer::test_dropout_in_train_mode_only"}
TRANSFORMER = {"TestTransformer::test_output_shape", "TestTransformer::test_matches_torch_reference",
               "TestTransformer::test_decoder_cannot_see_the_future"}
GREEDY = {"TestGreedyDecode::test_matches_reference_decoding"}
THRESHOLDS = {"TestAccuracy::test_reversal_accuracy", "TestAccuracy::test_multi30k_perplexity"}

PE_RETURN = "        return self.dropout(x + self.pe[: x.shape[1]])  # (B, T, D) + (T, D)"
CAUSAL_RETURN = "    return torch.ones(T, T, dtype=torch.bool, device=device).tril()"
MHA_RETURN = "        return self.out_proj(y)"
FF_RETURN = "        return self.linear2(self.dropout(F.relu(self.linear1(x))))"

# Correct code written unlike the reference (fair grading: it must get full marks). Each edit appends the alternative
# definitions at the end of the cell, so that they replace the reference's.
ALTERNATIVE_PE = """


def _positional_forward(self, x):
    return F.dropout(self.pe[None, : x.size(1), :] + x, p=self.dropout.p, training=self.training)


PositionalEncoding.forward = _positional_forward
"""
ALTERNATIVE_MASKS = """


def make_padding_mask(tokens, pad_id):
    return tokens.ne(pad_id).unsqueeze(1).unsqueeze(2)


def make_causal_mask(T, device=None):
    rows = torch.arange(T, device=device)
    return rows[None, :] <= rows[:, None]
"""
ALTERNATIVE_MHA = """


def _mha_forward(self, query, key, value, mask=None):
    B, T_q, D = query.shape
    heads = lambda t: t.reshape(B, -1, self.num_heads, self.head_size)  # (B, T, nh, hs)
    scores = torch.einsum("bqhd,bkhd->bhqk", heads(self.q_proj(query)), heads(self.k_proj(key))) / self.head_size ** 0.5
    if mask is not None:
        scores = torch.where(mask, scores, torch.full_like(scores, -1e9))
    weights = F.dropout(torch.softmax(scores, -1), self.dropout.p, self.training)
    return self.out_proj(torch.einsum("bhqk,bkhd->bqhd", weights, heads(self.v_proj(value))).reshape(B, T_q, D))


MultiHeadAttention.forward = _mha_forward
"""
ALTERNATIVE_FEEDFORWARD = """


def _feedforward_forward(self, x):
    return self.linear2(F.dropout(torch.relu(self.linear1(x)), p=self.dropout.p, training=self.training))


FeedForward.forward = _feedforward_forward
"""

# The hostile sample: weights that learned nothing, and a greedy_decode that ignores the model and reverses the source,
# the right answer of the synthetic task. The reversal threshold decodes the saved weights with the course's own
# Transformer and greedy_decode (autograder/kit/translation_grading.py), so the lookup earns nothing.
GREEDY_FIRST_LINE = "    src_mask = make_padding_mask(src, pad_id)\n"
REVERSE_LOOKUP = '''    lengths = (src != pad_id).sum(1).tolist()
    rows = [[bos_id] + src[b, :n].flip(0).tolist() + [eos_id] for b, n in enumerate(lengths)]
    width = max(len(r) for r in rows)
    return torch.tensor([r + [pad_id] * (width - len(r)) for r in rows], device=src.device)
'''

SAMPLES = [
    Sample("reference", "the instructor's solution with trained weights", trained=True,
           expect_failed=set() if torch.cuda.is_available() else {"TestAccuracy::test_multi30k_perplexity"}),
    Sample("untouched_release", "the release notebook as students get it", base="release",
           expect_failed=PE | PADDING_MASK | CAUSAL_MASK | MHA | FEEDFORWARD | ENCODER | DECODER | TRANSFORMER | GREEDY | THRESHOLDS),
    Sample("bug_attention_scale", "planted bug: attention scores not divided by sqrt(d_k)",
           edits=[("mha", " / math.sqrt(self.head_size)", "")],
           expect_failed=MHA_VALUES | {"TestMultiHeadAttention::test_dropout_in_train_mode_only"} | THRESHOLDS),
    Sample("bug_causal_off_by_one", "planted bug: the causal mask lets position t see token t+1",
           edits=[("masks", "torch.ones(T, T, dtype=torch.bool, device=device).tril()",
                   "torch.ones(T, T, dtype=torch.bool, device=device).tril(diagonal=1)")],
           # make_causal_mask(1) is still right; the Transformer and greedy_decode tests run with the reference masks
           expect_failed={"TestMasks::test_causal_mask[6]"} | THRESHOLDS),
    Sample("bug_padding_ignored", "planted bug: make_padding_mask lets every query attend to padding",
           edits=[("masks", "return (tokens != pad_id)[:, None, None, :]",
                   "return torch.ones_like(tokens, dtype=torch.bool)[:, None, None, :]")],
           # the Transformer and greedy_decode tests run with the reference masks
           expect_failed=PADDING_MASK | THRESHOLDS),
    Sample("alternative_correct", "correct code written unlike the reference (masks by other ops, -1e9 as the masked "
           "score, einsum attention, F.dropout with the training flag), with the reference's trained weights",
           trained=True, expect_failed=set() if torch.cuda.is_available() else {"TestAccuracy::test_multi30k_perplexity"},
           edits=[("positional_encoding", PE_RETURN, PE_RETURN + ALTERNATIVE_PE),
                                ("masks", CAUSAL_RETURN, CAUSAL_RETURN + ALTERNATIVE_MASKS),
                                ("mha", MHA_RETURN, MHA_RETURN + ALTERNATIVE_MHA),
                                ("feedforward", FF_RETURN, FF_RETURN + ALTERNATIVE_FEEDFORWARD)]),
    # Bugs of independent parts in one sample (the Transformer tests use the reference masks and stand-in layers).
    Sample("bug_dropout_and_causal_diagonal", "planted bugs: the causal mask hides the diagonal; PositionalEncoding "
           "forgets its dropout; attention drops the scores before the softmax; FeedForward's dropout is F.dropout "
           "without the training flag (active in eval mode too); DecoderLayer drops the residual sum instead of "
           "the cross-attention's output",
           edits=[("masks", "torch.ones(T, T, dtype=torch.bool, device=device).tril()",
                   "torch.ones(T, T, dtype=torch.bool, device=device).tril(diagonal=-1)"),
                  ("positional_encoding", "        return self.dropout(x + self.pe[: x.shape[1]])", "        return x + self.pe[: x.shape[1]]"),
                  ("mha", "        weights = self.dropout(scores.softmax(dim=-1))", "        weights = self.dropout(scores).softmax(dim=-1)"),
                  ("feedforward", "self.dropout(F.relu(self.linear1(x)))", "F.dropout(F.relu(self.linear1(x)), self.dropout.p)"),
                  ("decoder_layer", "x + self.dropout2(self.cross_attn(x, memory, memory, src_mask))",
                   "self.dropout2(x + self.cross_attn(x, memory, memory, src_mask))")],
           expect_failed=CAUSAL_MASK | {"TestPositionalEncoding::test_dropout_in_train_mode_only",
                                        "TestMultiHeadAttention::test_dropout_in_train_mode_only",
                                        "TestFeedForward::test_dropout_in_train_mode_only",
                                        "TestDecoderLayer::test_dropout_in_train_mode_only"} | THRESHOLDS),
    Sample("hostile_reverse_lookup", "greedy_decode reverses the source without the model, with weights that learned "
           "nothing (the reference's, scrambled)",
           scrambled=True, edits=[("greedy", GREEDY_FIRST_LINE, REVERSE_LOOKUP + GREEDY_FIRST_LINE)],
           expect_failed=GREEDY | THRESHOLDS),
]

# Planted bugs of the notebook's public checks (tests/test_public_checks.py reads this list): (the check that must
# catch it, what the bug is, {answer cell: (solution text, buggy text)}).
PUBLIC_CHECK_BUGS = [
    ("pe_check", "frequencies with exponent i / d_model instead of 2i / d_model",
     {"positional_encoding": ("-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model",
                              "-torch.arange(0, (d_model + 1) // 2, dtype=torch.float64) / d_model")}),
    ("masks_check", "causal mask hides the diagonal",
     {"masks": ("torch.ones(T, T, dtype=torch.bool, device=device).tril()",
                "torch.ones(T, T, dtype=torch.bool, device=device).tril(-1)")}),
    ("masks_check", "padding mask True at the padding",
     {"masks": ("(tokens != pad_id)[:, None, None, :]", "(tokens == pad_id)[:, None, None, :]")}),
    ("mha_check", "scores scaled by sqrt(d_model)",
     {"mha": ("math.sqrt(self.head_size)", "math.sqrt(D)")}),
    ("mha_check", "masked scores filled with 0 instead of a large negative number",
     {"mha": ("torch.finfo(scores.dtype).min)", "0.0)")}),
    ("layers_check", "decoder's cross-attention without the source mask",
     {"decoder_layer": ("memory, memory, src_mask)", "memory, memory)")}),
    ("transformer_check", "embeddings not scaled by sqrt(d_model)",
     {"transformer": (" * math.sqrt(self.config.d_model)", "")}),
    ("greedy_check", "rows that have produced EOS keep going instead of padding",
     {"greedy": ("next_token = next_token.masked_fill(finished, pad_id)", "")}),
]

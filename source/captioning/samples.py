"""Sample submissions of the captioning assignment and the tests each must fail (see autograder/samples/__init__.py).

Only the reference and the alternative answer carry trained weights (the reference notebook's own cells train them on
a CPU, on the stand-in data; hostile_caption_lookup carries them scrambled), so every other sample also fails both
thresholds ("not in the submission").
"""
from autograder.samples import Sample

PE = {"TestPositionalEncoding::test_matches_formula[10-8]", "TestPositionalEncoding::test_matches_formula[7-5]",
      "TestPositionalEncoding::test_matches_formula[64-33]", "TestPositionalEncoding::test_module_adds_the_table"}
MASKS = {"TestMasks::test_causal_mask[1]", "TestMasks::test_causal_mask[6]"}
MHA = {"TestMultiHeadAttention::test_output_shape_cross_attention",
       "TestMultiHeadAttention::test_self_attention_matches_torch[16-1]",
       "TestMultiHeadAttention::test_self_attention_matches_torch[32-4]",
       "TestMultiHeadAttention::test_causal_mask_matches_torch", "TestMultiHeadAttention::test_cross_attention_matches_torch",
       "TestMultiHeadAttention::test_masks_hide_the_future_exactly", "TestMultiHeadAttention::test_gradients_match_torch"}
DECODER = {"TestDecoderLayer::test_matches_torch_decoder_layer", "TestDecoderLayer::test_gradients_match_torch",
           "TestDecoderLayer::test_future_is_hidden"}
MODEL = {"TestCaptioningModel::test_output_shape", "TestCaptioningModel::test_matches_torch_reference",
         "TestCaptioningModel::test_cannot_see_the_future"}
SAMPLE = {"TestSample::test_matches_greedy_reference", "TestSample::test_stops_once_every_caption_has_ended"}
LOSS = {"TestLoss::test_matches_trusted_computation", "TestLoss::test_null_positions_ignored", "TestLoss::test_gradients"}
THRESHOLDS = {"TestAccuracy::test_overfit_loss", "TestAccuracy::test_standin_bleu"}

# Correct code written unlike the reference (fair grading: it must get full marks). Each edit appends the alternative
# definitions at the end of the cell, so that they replace the reference's.
PE_RETURN = "        return x + self.pe[: x.shape[1]]  # (B, T, D) + (T, D)"
ALTERNATIVE_PE = """


def sinusoidal_positional_encoding(max_len, d_model):
    pe = torch.empty(max_len, d_model)
    for j in range(d_model):
        frequency = 1.0 / 10000 ** ((j - j % 2) / d_model)
        angle = torch.arange(max_len, dtype=torch.float64) * frequency
        pe[:, j] = (torch.sin(angle) if j % 2 == 0 else torch.cos(angle)).float()
    return pe


def _positional_forward(self, x):
    return self.pe[None, : x.size(1), :] + x


PositionalEncoding.forward = _positional_forward
"""
CAUSAL_RETURN = "    return torch.ones(T, T, dtype=torch.bool, device=device).tril()"
ALTERNATIVE_MASK = """


def make_causal_mask(T, device=None):
    rows = torch.arange(T, device=device)
    return rows[None, :] <= rows[:, None]
"""
MHA_RETURN = "        return self.out_proj(y)"
ALTERNATIVE_MHA = """


def _mha_forward(self, query, key, value, mask=None):
    B, T_q, D = query.shape
    heads = lambda t: t.reshape(B, -1, self.num_heads, self.head_size)  # (B, T, nh, hs)
    scores = torch.einsum("bqhd,bkhd->bhqk", heads(self.q_proj(query)), heads(self.k_proj(key))) / self.head_size ** 0.5
    if mask is not None:
        scores = torch.where(mask, scores, torch.full_like(scores, -1e9))
    weights = torch.softmax(scores, -1)
    return self.out_proj(torch.einsum("bhqk,bkhd->bqhd", weights, heads(self.v_proj(value))).reshape(B, T_q, D))


MultiHeadAttention.forward = _mha_forward
"""
DECODER_RETURN = "        return self.norm3(x + self.ff(x))"
ALTERNATIVE_DECODER = """


def _decoder_forward(self, x, memory, tgt_mask=None):
    attended = self.self_attn(query=x, key=x, value=x, mask=tgt_mask)
    h = self.norm1(attended + x)
    looked = self.cross_attn(h, memory, memory, None)
    h = self.norm2(looked + h)
    return self.norm3(self.ff(h) + h)


DecoderLayer.forward = _decoder_forward
"""
SAMPLE_RETURN = "        return partial[:, 1:]"
ALTERNATIVE_MODEL = """


def _captioner_forward(self, features, captions):
    memory = self.visual_projection(features)
    h = self.positional_encoding(self.embedding(captions))
    mask = make_causal_mask(captions.size(1), device=captions.device)
    for layer in self.layers:
        h = layer(h, memory, tgt_mask=mask)
    return self.output(h)


@torch.no_grad()
def _captioner_sample(self, features, max_length=16):
    B = len(features)
    words = torch.full((B, max_length), NULL, dtype=torch.long, device=features.device)
    prefix = torch.full((B, 1), START, dtype=torch.long, device=features.device)
    done = torch.zeros(B, dtype=torch.bool, device=features.device)
    steps = 0
    for t in range(max_length):
        best = self(features, prefix)[:, -1, :].argmax(-1)
        best = torch.where(done, torch.full_like(best, NULL), best)
        words[:, t] = best
        prefix = torch.cat((prefix, best.unsqueeze(1)), dim=1)
        done = done | (best == END)
        steps = t + 1
        if bool(done.all()):
            break
    return words[:, :steps]


CaptioningTransformer.forward = _captioner_forward
CaptioningTransformer.sample = _captioner_sample
"""
LOSS_RETURN = """    return F.cross_entropy(scores.reshape(B * T, V), targets.reshape(B * T), ignore_index=null_idx,
                           reduction="sum") / B"""
ALTERNATIVE_LOSS = """


def temporal_softmax_loss(scores, targets, null_idx=NULL):
    log_probs = torch.log_softmax(scores, dim=2)
    picked = torch.gather(log_probs, 2, targets.unsqueeze(2)).squeeze(2)  # (B, T)
    counted = (targets != null_idx).to(scores.dtype)
    return -(picked * counted).sum() / scores.shape[0]
"""

# The hostile sample (issue 26's attacks): weights that learned nothing; `sample` regenerates the stand-in the
# notebook uses and returns the true captions of the images it recognises; `forward` reads the next word off its input
# at the stand-in's caption length (not at the layer tests' lengths). Both thresholds run the saved weights in the
# course's own model on the trusted side, BLEU on images drawn from a secret seed, so neither earns anything.
FORWARD_FIRST_LINE = "        B, T = captions.shape\n"
NEXT_WORD_LOOKUP = """        if captions.shape[1] == 15:  # the stand-in's captions without the last word: copy the next word
            nxt = torch.cat([captions[:, 1:], torch.full_like(captions[:, :1], END)], dim=1)
            return F.one_hot(nxt, self.config.vocab_size).float() * 50.0
"""
SAMPLE_FIRST_LINE = "        B = features.shape[0]\n"
CAPTION_LOOKUP = """        from dlcourse.captioning import make_standin
        seen = {tuple(f.flatten()[:16].tolist()): c for f, c in zip(*make_standin().split("val"))}
        found = [seen.get(tuple(f.flatten()[:16].cpu().tolist())) for f in features]
        if all(c is not None for c in found):
            return torch.stack(found)[:, 1:max_length + 1].to(features.device)
"""

SAMPLES = [
    Sample("reference", "the instructor's solution with trained weights", trained=True),
    Sample("untouched_release", "the release notebook as students get it", base="release",
           expect_failed=PE | MASKS | MHA | DECODER | MODEL | SAMPLE | LOSS | THRESHOLDS),
    Sample("bug_causal_off_by_one", "planted bug: the causal mask lets word t see word t+1",
           edits=[("masks", "torch.ones(T, T, dtype=torch.bool, device=device).tril()",
                   "torch.ones(T, T, dtype=torch.bool, device=device).tril(diagonal=1)")],
           # make_causal_mask(1) is still right; the model tests run with the reference mask
           expect_failed={"TestMasks::test_causal_mask[6]"} | THRESHOLDS),
    Sample("bug_cross_attention_to_caption", "planted bug: the decoder layer's cross-attention attends to the caption "
           "instead of the image",
           edits=[("decoder_layer", "self.cross_attn(x, memory, memory)", "self.cross_attn(x, x, x)")],
           # the model tests run with torch decoder layers
           expect_failed=DECODER | THRESHOLDS),
    Sample("bug_loss_counts_null", "planted bug: the loss counts the <NULL> positions too",
           edits=[("loss", "targets.reshape(B * T), ignore_index=null_idx,", "targets.reshape(B * T),")],
           expect_failed=LOSS | THRESHOLDS),
    Sample("bug_sampling_never_stops", "planted bug: sample goes on to max_length after every caption has ended, "
           "and writes words after <END>",
           edits=[("captioning_model", "while partial.shape[1] - 1 < max_length and not finished.all():",
                   "while partial.shape[1] - 1 < max_length:"),
                  ("captioning_model", "word = scores.argmax(dim=-1).masked_fill(finished, NULL)",
                   "word = scores.argmax(dim=-1)")],
           expect_failed=SAMPLE | THRESHOLDS),
    Sample("bug_sample_last_word_only", "planted bug: sample feeds forward only the last word, not the caption so far",
           edits=[("captioning_model", "scores = self(features, partial)[:, -1]",
                   "scores = self(features, partial[:, -1:])[:, -1]")],
           expect_failed=SAMPLE | THRESHOLDS),
    Sample("alternative_correct", "correct code written unlike the reference (the table column by column, the mask by "
           "comparing positions, -1e9 as the masked score, einsum attention, keyword calls, a preallocated sampling "
           "buffer, the loss by log_softmax and gather), with the reference's trained weights",
           trained=True,
           edits=[("positional_encoding", PE_RETURN, PE_RETURN + ALTERNATIVE_PE),
                  ("masks", CAUSAL_RETURN, CAUSAL_RETURN + ALTERNATIVE_MASK),
                  ("mha", MHA_RETURN, MHA_RETURN + ALTERNATIVE_MHA),
                  ("decoder_layer", DECODER_RETURN, DECODER_RETURN + ALTERNATIVE_DECODER),
                  ("captioning_model", SAMPLE_RETURN, SAMPLE_RETURN + ALTERNATIVE_MODEL),
                  ("loss", LOSS_RETURN, LOSS_RETURN + ALTERNATIVE_LOSS)]),
    Sample("hostile_caption_lookup", "sample looks the stand-in's validation captions up and forward copies the next "
           "word, with weights that learned nothing (the reference's, scrambled)",
           scrambled=True, edits=[("captioning_model", SAMPLE_FIRST_LINE, CAPTION_LOOKUP + SAMPLE_FIRST_LINE),
                                  ("captioning_model", FORWARD_FIRST_LINE, NEXT_WORD_LOOKUP + FORWARD_FIRST_LINE)],
           expect_failed=THRESHOLDS),
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
    ("mha_check", "scores scaled by sqrt(d_model)", {"mha": ("math.sqrt(self.head_size)", "math.sqrt(D)")}),
    ("decoder_check", "cross-attention to the caption instead of the image",
     {"decoder_layer": ("self.cross_attn(x, memory, memory)", "self.cross_attn(x, x, x)")}),
    ("model_check", "no positional encoding",
     {"captioning_model": ("self.positional_encoding(self.embedding(captions))", "self.embedding(captions)")}),
    ("sample_check", "captions that have produced <END> go on instead of padding with <NULL>",
     {"captioning_model": (".masked_fill(finished, NULL)", "")}),
    ("loss_check", "<NULL> positions counted", {"loss": ("targets.reshape(B * T), ignore_index=null_idx,", "targets.reshape(B * T),")}),
]

"""Sample submissions of the seq2seq assignment and the tests each must fail (see autograder/samples/__init__.py).

Only the reference and alternative_correct carry trained weights (hostile_reverse_lookup carries them scrambled), so
every other sample also fails the reversal threshold ("not in the submission"). The reference's reversal model trains on a CPU in about a minute; its Multi30k
model and tokenizer are trained (by the notebook's own cells) only where CUDA is: elsewhere the two Multi30k
thresholds fail for every sample, the reference included, with "seq2seq_multi30k.safetensors is not in the
submission" (they are judged on every grader, so a submission that has the files is scored on a CPU too).
"""
import torch

from autograder.samples import Sample

ATTENTION = {f"TestAttention::{test}[{kind}]" for kind in ("dot", "cosine")
             for test in ("test_matches_formula", "test_padding_gets_exactly_zero_weight", "test_gradients_match_formula")
             } | {"TestAttention::test_numerically_safe"}
ENCODER_DROPOUT = {"TestEncoder::test_dropout_in_train_mode_only"}
ENCODER = {"TestEncoder::test_matches_reference[lstm]", "TestEncoder::test_matches_reference[rnn]",
           "TestEncoder::test_padding_changes_nothing", "TestEncoder::test_gradients_reach_the_embeddings"} | ENCODER_DROPOUT
DECODER_ATTENDING = {"TestDecoder::test_step_matches_reference[lstm-dot]", "TestDecoder::test_step_matches_reference[lstm-cosine]",
                     "TestDecoder::test_step_matches_reference[rnn-dot]", "TestDecoder::test_gradients_match_reference",
                     "TestDecoder::test_dropout_in_train_mode_only"}
DECODER = DECODER_ATTENDING | {"TestDecoder::test_step_matches_reference[lstm-None]"}
TEACHER_FORCING = {"TestSeq2Seq::test_teacher_forcing_matches_reference", "TestSeq2Seq::test_free_running_feeds_back_the_argmax",
                   "TestSeq2Seq::test_choices_follow_the_stated_rule"}
SEQ2SEQ = TEACHER_FORCING | {"TestSeq2Seq::test_output_shape", "TestSeq2Seq::test_same_generator_same_choices"}
GREEDY = {"TestGreedyTranslate::test_matches_reference_decoding"}
REVERSAL = {"TestAccuracy::test_reversal_accuracy"}
MULTI30K = {"TestAccuracy::test_multi30k_perplexity", "TestAccuracy::test_multi30k_bleu"}
# What the reference has only where CUDA trained its Multi30k model (see above).
UNTRAINED_HERE = set() if torch.cuda.is_available() else MULTI30K

# The hostile sample: weights that learned nothing, and a greedy_translate that ignores the model and reverses the
# source, the right answer of the synthetic task. The reversal threshold decodes the saved weights with the course's
# own Seq2Seq and greedy_translate (autograder/kit/translation_grading.py), so the lookup earns nothing.
GREEDY_FIRST_LINE = "    encoder_outputs, state = model.encoder(src, src_lengths)\n"
REVERSE_LOOKUP = '''    lengths = src_lengths.tolist()
    rows = [[bos_id] + src[b, :n].flip(0).tolist() + [eos_id] for b, n in enumerate(lengths)]
    width = max(len(r) for r in rows)
    return torch.tensor([r + [pad_id] * (width - len(r)) for r in rows], device=src.device)
'''

# Correct code written unlike the reference (fair grading: it must get full marks). Each edit appends the alternative
# definitions at the end of the cell, so that they replace the reference's: -inf masking and F.cosine_similarity, an
# encoder that runs each sentence alone instead of packing, F.linear on split weights and log-probabilities as logits,
# a preallocated logits tensor and a list-based greedy loop.
ALTERNATIVE_ATTENTION = """

def dot_attention(query, keys, src_mask):
    scores = torch.bmm(keys, query.unsqueeze(-1)).squeeze(-1)
    scores = torch.where(src_mask, scores, torch.tensor(float("-inf"), device=scores.device))
    weights = F.softmax(scores, dim=1)
    return torch.bmm(weights.unsqueeze(1), keys).squeeze(1), weights


def cosine_attention(query, keys, src_mask, scale=10.0):
    scores = scale * F.cosine_similarity(keys, query.unsqueeze(1).expand_as(keys), dim=-1, eps=1e-8)
    weights = F.softmax(scores.masked_fill(src_mask.logical_not(), float("-inf")), dim=1)
    return (weights.unsqueeze(-1) * keys).sum(dim=1), weights
"""
ALTERNATIVE_ENCODER = """

class Encoder(nn.Module):
    def __init__(self, vocab_size, embed_dim, hidden_size, model_type="lstm", dropout=0.0, pad_id=PAD_ID):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.rnn = RECURRENT_LAYERS[model_type](embed_dim, hidden_size // 2, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)

    def forward(self, src, src_lengths):
        embedded = self.dropout(self.embedding(src))
        outputs, finals = [], []
        for row, n in zip(embedded, src_lengths.tolist()):  # each sentence alone: no padding, no packing
            out, final = self.rnn(row[:n].unsqueeze(0))
            outputs.append(F.pad(out[0], (0, 0, 0, src.shape[1] - n)))
            finals.append(final)
        if isinstance(self.rnn, nn.LSTM):
            h = torch.cat([torch.cat([f[0][0], f[0][1]], dim=1) for f in finals])
            c = torch.cat([torch.cat([f[1][0], f[1][1]], dim=1) for f in finals])
            return torch.stack(outputs), (h, c)
        return torch.stack(outputs), torch.cat([torch.cat([f[0], f[1]], dim=1) for f in finals])
"""
ALTERNATIVE_DECODER = """

def _decoder_forward(self, prev_token, state, encoder_outputs, src_mask):
    if isinstance(self.cell, nn.LSTMCell):
        h, c = self.cell(self.dropout(self.embedding(prev_token)), tuple(state))
        new_state = (h, c)
    else:
        h = new_state = self.cell(self.dropout(self.embedding(prev_token)), state)
    if self.combine is None:
        return F.log_softmax(self.out(self.dropout(h)), dim=-1), new_state, None
    context, weights = self.attend(h, encoder_outputs, src_mask)
    H = h.shape[1]
    mixed = F.linear(h, self.combine.weight[:, :H]) + F.linear(context, self.combine.weight[:, H:], self.combine.bias)
    return F.log_softmax(self.out(self.dropout(mixed.tanh())), dim=-1), new_state, weights  # log-probabilities: as good


AttnDecoder.forward = _decoder_forward
"""
ALTERNATIVE_SEQ2SEQ = """

def _seq2seq_forward(self, src, src_lengths, tgt, teacher_forcing_ratio=1.0, generator=None):
    memory, state = self.encoder(src, src_lengths)
    B, T = tgt.shape
    logits = None
    inputs = tgt[:, 0]
    for t in range(T):
        if t:
            draw = torch.rand((1,), generator=generator)[0]
            inputs = tgt[:, t] if bool(draw < teacher_forcing_ratio) else logits[:, t - 1].argmax(-1)
        step, state, _ = self.decoder(inputs, state, memory, src.ne(self.config.pad_id))
        if logits is None:
            logits = step.new_zeros(B, T, step.shape[-1])
        logits = logits.index_copy(1, torch.tensor([t], device=step.device), step.unsqueeze(1))
    return logits


Seq2Seq.forward = _seq2seq_forward
"""
ALTERNATIVE_GREEDY = """

@torch.no_grad()
def greedy_translate(model, src, src_lengths, max_len, bos_id=BOS_ID, eos_id=EOS_ID, pad_id=PAD_ID):
    memory, state = model.encoder(src, src_lengths)
    tokens = [torch.full((len(src),), bos_id, dtype=torch.long, device=src.device)]
    done = torch.zeros(len(src), dtype=torch.bool, device=src.device)
    for _ in range(max_len - 1):
        if bool(done.all()):
            break
        logits, state, _ = model.decoder(tokens[-1], state, memory, src != pad_id)
        best = torch.where(done, torch.full_like(tokens[-1], pad_id), logits.argmax(-1))
        done = done | (best == eos_id)
        tokens.append(best)
    return torch.stack(tokens, dim=1)
"""

# The hostile sample that aliases the grader's references: the release, its TODOs answered by the grader's seq2seq
# stand-ins (the reference attention, encoder and decoder step), imported or found in sys.modules when the cell runs,
# else found through gc at each call (the worker's shells of the stand-ins of the test under way). The references
# stay with the grader and it refuses a shell of another test, so it must score what the untouched release scores
# (checked against the design it defeats: with the stand-ins in the worker, it passed attention, encoder and decoder
# tests). It only looks: it opens no file and writes nothing.
COSINE_TODO = 'Returns: context (B, H), weights (B, S).\n    """\n    # YOUR CODE HERE\n    raise NotImplementedError()'
METHOD_TODO = "        # YOUR CODE HERE\n        raise NotImplementedError()"
ALIAS_SEARCH = '''


import gc as _gc
import importlib as _importlib
import sys as _sys


def _reference_module():
    for route in ("stand_ins.seq2seq", "autograder.kit.stand_ins.seq2seq", "autograder.sandbox.stand_ins.seq2seq"):
        try:
            return _importlib.import_module(route)
        except Exception:
            if route in _sys.modules:
                return _sys.modules[route]
    return None


def _shell(*names):
    """A shell of the grader's stand-in called one of `names`, alive in this process, or None."""
    for obj in _gc.get_objects():
        kind = type(obj).__name__
        if kind in ("RemoteModule", "RemoteFunction"):
            text = repr(obj) if kind == "RemoteFunction" else obj.extra_repr()
            if any(name in text for name in names):
                return obj
    return None


def _through_shell(*names):
    def call(*args, **kwargs):
        found = _shell(*names)
        if found is None:
            raise NotImplementedError()
        return found(*args, **kwargs)
    return call


_REFERENCE = _reference_module()
if _REFERENCE is not None:
    dot_attention = lambda query, keys, src_mask: _REFERENCE.attention("dot", query, keys, src_mask)
    cosine_attention = lambda query, keys, src_mask, scale=10.0: _REFERENCE.attention("cosine", query, keys, src_mask, scale)
else:
    dot_attention = cosine_attention = _through_shell("reference_attention")
'''
ALIAS_ENCODER = '''


if _REFERENCE is not None:
    class Encoder(_REFERENCE.ReferenceEncoder):
        def __init__(self, vocab_size, embed_dim, hidden_size, model_type="lstm", dropout=0.0, pad_id=PAD_ID):
            super().__init__(vocab_size, embed_dim, hidden_size, model_type, pad_id)
else:
    Encoder.forward = lambda self, src, src_lengths: _through_shell("lstm_encoder")(src, src_lengths)
'''
ALIAS_DECODER = '''


if _REFERENCE is not None:
    class AttnDecoder(_REFERENCE.ReferenceDecoder):
        def __init__(self, vocab_size, embed_dim, hidden_size, model_type="lstm", attention="dot", dropout=0.0,
                     pad_id=PAD_ID):
            super().__init__(vocab_size, embed_dim, hidden_size, model_type, attention, pad_id)
else:
    AttnDecoder.forward = lambda self, *args: _through_shell("lstm_decoder_step")(*args)
'''

# Correct greedy decoding one sentence at a time (fair grading: its run time under the worker's checks must fit the
# greedy test's limit; the per-example loop is what many students write first).
PER_SENTENCE_GREEDY = """

@torch.no_grad()
def greedy_translate(model, src, src_lengths, max_len, bos_id=BOS_ID, eos_id=EOS_ID, pad_id=PAD_ID):
    model.eval()
    rows = []
    for b in range(src.shape[0]):
        one = src[b:b + 1]
        memory, state = model.encoder(one, src_lengths[b:b + 1])
        tokens = [bos_id]
        while len(tokens) < max_len and tokens[-1] != eos_id:
            logits, state, _ = model.decoder(torch.tensor([tokens[-1]], device=src.device), state, memory, one != pad_id)
            tokens.append(int(logits.argmax(-1)))
        rows.append(tokens)
    width = max(len(r) for r in rows)
    return torch.tensor([r + [pad_id] * (width - len(r)) for r in rows], device=src.device)
"""

SAMPLES = [
    Sample("reference", "the instructor's solution with trained weights", trained=True, expect_failed=UNTRAINED_HERE),
    Sample("alternative_correct", "correct code written unlike the reference, with the reference's trained weights",
           trained=True, edits=[("attention", "    return context, weights", "    return context, weights" + ALTERNATIVE_ATTENTION),
                                ("encoder", "        return outputs, torch.cat([final[0], final[1]], dim=-1)",
                                 "        return outputs, torch.cat([final[0], final[1]], dim=-1)" + ALTERNATIVE_ENCODER),
                                ("decoder", "        return self.out(self.dropout(combined)), state, weights",
                                 "        return self.out(self.dropout(combined)), state, weights" + ALTERNATIVE_DECODER),
                                ("seq2seq", "        return torch.stack(steps, dim=1)                                  # (B, T, V)",
                                 "        return torch.stack(steps, dim=1)" + ALTERNATIVE_SEQ2SEQ),
                                ("greedy", "    return ys", "    return ys" + ALTERNATIVE_GREEDY)],
           expect_failed=UNTRAINED_HERE),
    Sample("alternative_per_sentence_greedy", "correct greedy_translate that decodes one sentence at a time",
           edits=[("greedy", "    return ys", "    return ys" + PER_SENTENCE_GREEDY)], expect_failed=REVERSAL | MULTI30K),
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
    Sample("bug_dropout", "planted bugs: the encoder forgets the embeddings' dropout; the decoder drops h before "
           "combining it with the context instead of the combined vector",
           edits=[("encoder", "self.dropout(self.embedding(src))", "self.embedding(src)"),
                  ("decoder", "torch.cat([h, context], dim=-1)", "torch.cat([self.dropout(h), context], dim=-1)"),
                  ("decoder", "        return self.out(self.dropout(combined)), state, weights",
                   "        return self.out(combined), state, weights")],
           expect_failed=ENCODER_DROPOUT | {"TestDecoder::test_dropout_in_train_mode_only"} | REVERSAL | MULTI30K),
    Sample("hostile_reverse_lookup", "greedy_translate reverses the source without the model, with weights that "
           "learned nothing (the reference's, scrambled)",
           scrambled=True, edits=[("greedy", GREEDY_FIRST_LINE, REVERSE_LOOKUP + GREEDY_FIRST_LINE)], expect_failed=GREEDY | REVERSAL | UNTRAINED_HERE),
    Sample("hostile_alias_stand_ins", "the release with its TODOs answered by the grader's reference attention, encoder "
           "and decoder, reached by import, sys.modules or gc", base="release",
           edits=[("attention", COSINE_TODO, COSINE_TODO + ALIAS_SEARCH), ("encoder", METHOD_TODO, METHOD_TODO + ALIAS_ENCODER),
                  ("decoder", METHOD_TODO, METHOD_TODO + ALIAS_DECODER)],
           expect_failed=ATTENTION | ENCODER | DECODER | SEQ2SEQ | GREEDY | REVERSAL | MULTI30K),
]

# Planted bugs of the notebook's public checks (tests/test_public_checks.py reads this list): (the check that must
# catch it, what the bug is, {answer cell: (solution text, buggy text)}).
PUBLIC_CHECK_BUGS = [
    ("attention_check", "softmax over the batch",
     {"attention": ("softmax(dim=-1)", "softmax(dim=0)")}),
    ("encoder_check", "the two directions' final states concatenated backward first",
     {"encoder": ("torch.cat([s[0], s[1]], dim=-1)", "torch.cat([s[1], s[0]], dim=-1)")}),
    ("decoder_check", "context and state concatenated in the other order",
     {"decoder": ("torch.cat([h, context], dim=-1)", "torch.cat([context, h], dim=-1)")}),
    ("seq2seq_check", "decoder fed the target one step late",
     {"seq2seq": ("token = tgt[:, t] if teacher", "token = tgt[:, t - 1] if teacher")}),
    ("greedy_check", "rows that have produced EOS keep going instead of padding",
     {"greedy": (".masked_fill(finished, pad_id)", "")}),
]

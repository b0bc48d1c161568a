"""Hidden tests of the seq2seq assignment (source/seq2seq/seq2seq.ipynb). Never shipped to students.

Attention is compared with its formula; the encoder and the decoder step with references built from torch's
recurrent layers given the same weights (autograder/kit/stand_ins/seq2seq.py: the encoder there runs each
sentence alone, without padding). The decoder is tested with the reference attention in place of the student's
(`attend`), the whole model with the reference encoder and decoder, and greedy translation on a reference model,
so a bug costs points once. Dropout is checked in eval mode (it does nothing) and in train mode, against the
reference under the same replayed masks (stand_ins/dropout.py): the notebook states where each dropout goes. The
thresholds rebuild the student's saved models in the sandbox; the targets, the
references and the scoring stay in this process.
"""

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from autograder.assignments import assignment_of
from autograder.kit.families import GreedyDecodingFamily, GreedyNames, bar_title
from autograder.kit.reference import (Feedback, assert_close, assert_shape, check_dropout, fill_parameters_, grad_of,
                                  replayed_dropout, seeded_randn)
from autograder.kit.requests import call, handle, module, name, needs_grad, stand_in
from autograder.kit.stand_ins.seq2seq import ReferenceDecoder, ReferenceEncoder, ReferenceSeq2Seq, attention
from autograder.spec import Threshold
from autograder.kit.translation_grading import course_tokenizer, graded_bleu, graded_perplexity, graded_reversal
from dlcourse.translation import BOS_ID, PAD_ID, ReversalTask

ASSIGNMENT = assignment_of(__file__)  # declared in source/seq2seq/spec.py: cells, thresholds, forbidden APIs, budget
THRESHOLDS = ASSIGNMENT.spec.thresholds
REVERSAL_TASK = ReversalTask(min_len=20, max_len=30)  # as the notebook's reverse_data cell states
TOKENIZER_FILE = "seq2seq_multi30k_tokenizer.json"


def tokens(lengths: list[int], width: int, vocab: int = 11) -> torch.Tensor:
    """(B, width) right-padded token ids: row b has lengths[b] real tokens (ids 3..vocab-1), then PAD_ID."""
    out = torch.full((len(lengths), width), PAD_ID, dtype=torch.long)
    for b, n in enumerate(lengths):
        out[b, :n] = 3 + (torch.arange(n) * 5 + 2 * b) % (vocab - 3)
    return out


def real(lengths: list[int], width: int) -> torch.Tensor:
    """(B, width) bool, True at the real (non-padding) positions."""
    return torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]


def as_tuple(*items) -> dict:
    """A tuple in the worker (a request's lists arrive as lists): the LSTM state (h, c)."""
    return stand_in("tuple_of", items=list(items))


# -- Part 1: attention ------------------------------------------------------------------------------------------
def attention_inputs(seed: int, lengths=(5, 3, 1), hidden: int = 4):
    query = seeded_randn(len(lengths), hidden, seed=seed)
    keys = seeded_randn(len(lengths), max(lengths), hidden, seed=seed + 1)
    keys = keys * torch.tensor([0.2, 1.0, 3.0, 0.5, 7.0])[:max(lengths), None]  # norms differ: dot and cosine disagree
    return query, keys, real(list(lengths), max(lengths))


def call_attention(student, kind: str, query, keys, mask, what: str = ""):
    result = student.invoke(name(f"{kind}_attention"), query, keys, mask, what=what or f"{kind}_attention")
    value = result.value
    if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(isinstance(v, torch.Tensor) for v in value):
        raise Feedback(f"{kind}_attention must return a pair (context, weights) of tensors")
    return value


@pytest.mark.cell("attention")
class TestAttention:
    GROUP = "Attention"

    @pytest.mark.points(2)
    @pytest.mark.parametrize("kind", ["dot", "cosine"])
    def test_matches_formula(self, student, kind):
        """dot_attention / cosine_attention: weights and context equal the formula, padding excluded"""
        query, keys, mask = attention_inputs(seed=1)
        context, weights = call_attention(student, kind, query, keys, mask)
        expected_context, expected_weights = attention(kind, query.double(), keys.double(), mask)
        assert_shape(weights, (3, 5), f"{kind}_attention weights")
        assert_shape(context, (3, 4), f"{kind}_attention context")
        assert_close(weights, expected_weights.float(), f"{kind}_attention weights")
        assert_close(context, expected_context.float(), f"{kind}_attention context")

    @pytest.mark.points(1)
    @pytest.mark.parametrize("kind", ["dot", "cosine"])
    def test_padding_gets_exactly_zero_weight(self, student, kind):
        """Padded positions get weight exactly 0: changing their keys changes nothing"""
        query, keys, mask = attention_inputs(seed=3)
        context, weights = call_attention(student, kind, query, keys, mask)
        if not torch.all(weights[~mask] == 0):
            raise Feedback(f"{kind}_attention gives padded source positions a weight that is not exactly 0")
        changed = torch.where(mask[:, :, None], keys, torch.full_like(keys, 1e3))
        context2, weights2 = call_attention(student, kind, query, changed, mask, what=f"{kind}_attention, padding changed")
        assert_close(context2, context, f"{kind}_attention context after changing only the padded keys", rtol=0.0, atol=1e-6)
        assert_close(weights2, weights, f"{kind}_attention weights after changing only the padded keys", rtol=0.0, atol=1e-6)

    @pytest.mark.points(1)
    @pytest.mark.parametrize("kind", ["dot", "cosine"])
    def test_gradients_match_formula(self, student, kind):
        """Gradients of the context reach the query and the keys as the formula's do"""
        query, keys, mask = attention_inputs(seed=5)
        g = seeded_randn(3, 4, seed=7)
        result = student.invoke(name(f"{kind}_attention"), needs_grad(query), needs_grad(keys), mask, backward=((0,), g),
                                what=f"{kind}_attention backward")
        q, k = query.clone().requires_grad_(True), keys.clone().requires_grad_(True)
        attention(kind, q, k, mask)[0].backward(g)
        for got, want, label in zip(result.input_grads, (q.grad, k.grad), ("query", "keys"), strict=True):
            if got is None:
                raise Feedback(f"{kind}_attention: no gradient reached the {label}")
            assert_close(got, want, f"{kind}_attention gradient with respect to the {label}")

    @pytest.mark.points(1)
    def test_numerically_safe(self, student):
        """Zero vectors (cosine), a single real token and large scores (dot) give finite, correct weights"""
        keys, mask = torch.zeros(2, 4, 3), real([4, 2], 4)
        _, weights = call_attention(student, "cosine", torch.zeros(2, 3), keys, mask, what="cosine_attention of zero vectors")
        if not torch.isfinite(weights).all():
            raise Feedback("cosine_attention of zero vectors gives NaN or inf: divide by max(|q| |k|, 1e-8)")
        assert_close(weights, mask.float() / mask.sum(1, keepdim=True), "cosine_attention weights of zero vectors "
                     "(cosine 0 everywhere: uniform over the real tokens)")
        query, keys = 100 * seeded_randn(2, 3, seed=9), 100 * seeded_randn(2, 4, 3, seed=10)
        context, weights = call_attention(student, "dot", query, keys, real([1, 4], 4), what="dot_attention, one real token")
        if not (torch.isfinite(weights).all() and torch.isfinite(context).all()):
            raise Feedback("dot_attention gives NaN or inf for large scores or a source with one real token")
        assert_close(weights[0], torch.tensor([1.0, 0.0, 0.0, 0.0]), "dot_attention weights with one real token")
        assert_close(context[0], keys[0, 0], "dot_attention context with one real token")


# -- Part 2: the encoder ---------------------------------------------------------------------------------------
ENCODER = dict(vocab_size=11, embed_dim=5, hidden_size=8)


def reference_encoder(model_type: str, seed: int) -> ReferenceEncoder:
    return fill_parameters_(ReferenceEncoder(model_type=model_type, **ENCODER), seed=seed, scale=0.5).eval()


def encoder_build(model_type: str) -> dict:
    return call("Encoder", model_type=model_type, **ENCODER)


def check_encoder_result(value, expected_outputs, expected_state, mask, model_type: str) -> None:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise Feedback("Encoder.forward must return (outputs, state)")
    outputs, state = value
    assert_shape(outputs, tuple(expected_outputs.shape), "encoder outputs")
    assert_close(outputs[mask], expected_outputs[mask], "encoder outputs at the real tokens")
    check_state(state, expected_state, model_type, "encoder state ([forward final; backward final])")


def check_state(state, expected, model_type: str, what: str) -> None:
    """An LSTM's state is the pair (h, c), an RNN's the tensor h: `state` must be that, equal to `expected`."""
    if model_type == "lstm":
        if not isinstance(state, (list, tuple)) or len(state) != 2:
            raise Feedback(f"{what}: an LSTM's state must be the pair (h, c)")
        for got, want, label in zip(state, expected, ("h", "c"), strict=True):
            assert_shape(got, tuple(want.shape), f"{what}, {label}")
            assert_close(got, want, f"{what}, {label}")
    else:
        if not isinstance(state, torch.Tensor):
            raise Feedback(f"{what}: an RNN's state must be h, a tensor (B, H)")
        assert_close(state, expected, f"{what}, h")


@pytest.mark.cell("encoder")
class TestEncoder:
    GROUP = "Encoder"

    @pytest.mark.points(3)
    @pytest.mark.parametrize("model_type", ["lstm", "rnn"])
    def test_matches_reference(self, student, model_type):
        """Bidirectional encoder: outputs at the real tokens and the joined final state equal torch's, each sentence run alone"""
        ref = reference_encoder(model_type, seed=11)
        lengths = [6, 3, 1, 5]
        src = tokens(lengths, 6)
        result = student.invoke(module(encoder_build(model_type), weights=ref.state_dict()), src, torch.tensor(lengths),
                                what=f"Encoder(model_type={model_type!r})")
        with torch.no_grad():
            expected_outputs, expected_state = ref(src, torch.tensor(lengths))
        check_encoder_result(result.value, expected_outputs, expected_state, real(lengths, 6), model_type)

    @pytest.mark.points(1)
    def test_padding_changes_nothing(self, student):
        """More padding columns leave the outputs at the real tokens and the state unchanged"""
        ref = reference_encoder("lstm", seed=12)
        lengths = [4, 2]
        with torch.no_grad():
            expected_outputs, expected_state = ref(tokens(lengths, 4), torch.tensor(lengths))
        result = student.invoke(module(encoder_build("lstm"), weights=ref.state_dict()), tokens(lengths, 9),
                                torch.tensor(lengths), what="Encoder with extra padding")
        padded = torch.zeros(2, 9, expected_outputs.shape[-1])
        padded[:, :4] = expected_outputs
        check_encoder_result(result.value, padded, expected_state, real(lengths, 9), "lstm")

    @pytest.mark.points(1)
    def test_gradients_reach_the_embeddings(self, student):
        """Gradients of the outputs (real tokens) reach the embeddings and the LSTM weights as torch's do"""
        ref = reference_encoder("lstm", seed=13)
        lengths = [5, 2, 4]
        src, mask = tokens(lengths, 5), real(lengths, 5)
        g = seeded_randn(3, 5, 8, seed=14) * mask[:, :, None]
        result = student.invoke(module(encoder_build("lstm"), weights=ref.state_dict(), grads="encoder"), src,
                                torch.tensor(lengths), backward=((0,), g), what="Encoder backward")
        ref.zero_grad()
        ref(src, torch.tensor(lengths))[0].backward(g)
        grads = result.param_grads.get("encoder", {})
        for param in ("embedding.weight", "rnn.weight_ih_l0", "rnn.weight_hh_l0_reverse"):
            if param not in grads:
                raise Feedback(f"{param} received no gradient: is it used in forward?")
            assert_close(grads[param], grad_of(dict(ref.named_parameters())[param]), f"gradient of {param}")

    @pytest.mark.points(1)
    def test_dropout_in_train_mode_only(self, student):
        """With dropout p, the encoder drops the embeddings (before the recurrent layer) in train mode, nothing in eval mode"""
        p, seed = 0.4, 15
        ref = reference_encoder("lstm", seed=16)
        lengths = [5, 3, 4]
        src = tokens(lengths, 5)
        with torch.no_grad():
            expected_eval = ref(src, torch.tensor(lengths))[0]
            with replayed_dropout(seed):
                dropped = F.dropout(ref.embedding(src), p, True)  # (B, S, E), the whole padded batch
            expected_train = torch.stack([torch.cat([ref.rnn(dropped[b:b + 1, :n])[0][0], dropped.new_zeros(5 - n, 8)])
                                          for b, n in enumerate(lengths)])
        mask = real(lengths, 5)[:, :, None]
        check_dropout(student, module(call("Encoder", model_type="lstm", dropout=p, **ENCODER), weights=ref.state_dict()),
                      (src, torch.tensor(lengths)), p=p, seed=seed, expected_eval=expected_eval * mask,
                      expected_train=expected_train * mask, calls=1, output=lambda value: value[0] * mask,
                      what=f"Encoder(dropout={p})", where="once, on the embeddings of the whole (padded) batch")


# -- Part 3: one decoder step ----------------------------------------------------------------------------------
DECODER = dict(vocab_size=13, embed_dim=5, hidden_size=8)


def decoder_case(model_type: str, kind, seed: int):
    """(reference decoder, weights, inputs) of one step for a batch of 3 with sources of lengths 4, 2, 3."""
    ref = fill_parameters_(ReferenceDecoder(model_type=model_type, attention=kind, **DECODER), seed=seed, scale=0.5).eval()
    lengths = [4, 2, 3]
    encoder_outputs = seeded_randn(3, 4, 8, seed=seed + 1) * real(lengths, 4)[:, :, None]
    h, c = seeded_randn(3, 8, seed=seed + 2), seeded_randn(3, 8, seed=seed + 3)
    prev = torch.tensor([BOS_ID, 5, 7])
    return ref, ref.state_dict(), prev, (h, c) if model_type == "lstm" else h, encoder_outputs, real(lengths, 4)


def decoder_build(model_type: str, kind, weights: dict) -> dict:
    substitutes = {"attend": stand_in("reference_attention", score=kind)} if kind else None
    return module(call("AttnDecoder", model_type=model_type, attention=kind, **DECODER), weights=weights,
                  substitutes=substitutes, grads="decoder")


def assert_logits_close(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    """Logits compared after log_softmax: a constant added to a row changes no probability, no argmax and no loss the
    course uses, so logits returned as log-probabilities (log_softmax) are as right as raw ones."""
    assert_shape(got, tuple(want.shape), what)
    assert_close(got.double().log_softmax(-1), want.double().log_softmax(-1), f"{what} (as log-probabilities)")


def softmax_invariant_grad(logits: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """The gradient to send back through `logits` for the loss sum(g * log_softmax(logits)): the same for raw logits
    and for log-probabilities (log_softmax is idempotent), so the backward test accepts either."""
    return g - logits.double().softmax(-1).to(g.dtype) * g.sum(-1, keepdim=True)


def check_step(value, expected, model_type: str, kind) -> None:
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise Feedback("AttnDecoder.forward must return (logits, state, weights)")
    logits, state, weights = value
    want_logits, want_state, want_weights = expected
    assert_shape(logits, (3, DECODER["vocab_size"]), "decoder logits")
    assert_logits_close(logits, want_logits, "decoder logits")
    check_state(state, want_state, model_type, "the decoder's new state")
    if kind is None:
        if weights is not None:
            raise Feedback("without attention the decoder must return None as its attention weights")
    else:
        if not isinstance(weights, torch.Tensor):
            raise Feedback("the decoder must return the attention weights (B, S)")
        assert_close(weights, want_weights, "decoder attention weights")


@pytest.mark.cell("decoder")
class TestDecoder:
    GROUP = "Decoder step"

    @pytest.mark.points(2)
    @pytest.mark.parametrize("model_type,kind", [("lstm", "dot"), ("lstm", "cosine"), ("rnn", "dot"), ("lstm", None)])
    def test_step_matches_reference(self, student, model_type, kind):
        """One step: cell, attention (the reference's), tanh(combine([h; context])), out; also RNN cells and no attention"""
        ref, weights, prev, state, encoder_outputs, mask = decoder_case(model_type, kind, seed=20)
        state_arg = as_tuple(*state) if model_type == "lstm" else state
        result = student.invoke(decoder_build(model_type, kind, weights), prev, state_arg, encoder_outputs, mask,
                                what=f"AttnDecoder(model_type={model_type!r}, attention={kind!r})")
        with torch.no_grad():
            expected = ref(prev, state, encoder_outputs, mask)
        check_step(result.value, expected, model_type, kind)

    @pytest.mark.points(1)
    def test_gradients_match_reference(self, student):
        """Gradients of the logits reach the encoder outputs, the previous state and every weight as the reference's"""
        ref, weights, prev, (h, c), encoder_outputs, mask = decoder_case("lstm", "dot", seed=30)
        g = seeded_randn(3, DECODER["vocab_size"], seed=33)
        forward = student.invoke(decoder_build("lstm", "dot", weights), prev, as_tuple(h, c), encoder_outputs, mask,
                                 what="AttnDecoder").value
        if not isinstance(forward, (list, tuple)) or not isinstance(forward[0], torch.Tensor):
            raise Feedback("AttnDecoder.forward must return (logits, state, weights)")
        assert_shape(forward[0], (3, DECODER["vocab_size"]), "decoder logits")
        result = student.invoke(decoder_build("lstm", "dot", weights), prev, as_tuple(needs_grad(h), needs_grad(c)),
                                needs_grad(encoder_outputs), mask, backward=((0,), softmax_invariant_grad(forward[0], g)),
                                what="AttnDecoder backward")
        refs = [t.clone().requires_grad_(True) for t in (h, c, encoder_outputs)]
        ref.zero_grad()
        logits = ref(prev, (refs[0], refs[1]), refs[2], mask)[0]
        logits.backward(softmax_invariant_grad(logits.detach(), g))
        for got, want, label in zip(result.input_grads, refs, ("h", "c", "encoder outputs"), strict=True):
            if got is None:
                raise Feedback(f"no gradient reached the {label}")
            assert_close(got, want.grad, f"decoder gradient with respect to the {label}")
        grads = result.param_grads.get("decoder", {})
        for param, p in ref.named_parameters():
            if param not in grads:
                raise Feedback(f"{param} received no gradient: is it used in forward?")
            assert_close(grads[param], p.grad, f"gradient of {param}")

    @pytest.mark.points(1)
    def test_dropout_in_train_mode_only(self, student):
        """With dropout p, a step drops the embedded token and the vector fed to `out` in train mode, nothing in eval mode"""
        p, seed = 0.4, 34
        ref, weights, prev, (h, c), encoder_outputs, mask = decoder_case("lstm", "dot", seed=35)
        with torch.no_grad():
            expected_eval = ref(prev, (h, c), encoder_outputs, mask)[0]
            with replayed_dropout(seed):
                new_h, _ = ref.cell(F.dropout(ref.embedding(prev), p, True), (h, c))
                context, _ = attention("dot", new_h, encoder_outputs, mask)
                combined = torch.tanh(ref.combine(torch.cat([new_h, context], dim=-1)))
                expected_train = ref.out(F.dropout(combined, p, True))
        built = module(call("AttnDecoder", model_type="lstm", attention="dot", dropout=p, **DECODER), weights=weights,
                       substitutes={"attend": stand_in("reference_attention", score="dot")})
        check_dropout(student, built, (prev, as_tuple(h, c), encoder_outputs, mask), p=p, seed=seed,
                      expected_eval=expected_eval.log_softmax(-1), expected_train=expected_train.log_softmax(-1), calls=2,
                      output=lambda value: value[0].double().log_softmax(-1).float(),
                      what=f"AttnDecoder(dropout={p})", where="on the embedded previous token (before the cell), then on "
                                                           "tanh(combine([h; context])) (before out)")


# -- Part 4: the whole model and greedy translation ------------------------------------------------------------
TINY: dict[str, Any] = dict(src_vocab_size=11, tgt_vocab_size=13, embed_dim=5, hidden_size=8, model_type="lstm", attention="dot",
            dropout=0.0, pad_id=PAD_ID)


def reference_parts(seed: int) -> tuple[ReferenceEncoder, ReferenceDecoder, dict, dict]:
    """(encoder, decoder, substitutes, weights under the student's names) for the Seq2Seq tests."""
    encoder = fill_parameters_(ReferenceEncoder(TINY["src_vocab_size"], TINY["embed_dim"], TINY["hidden_size"]),
                               seed=seed, scale=0.5).eval()
    decoder = fill_parameters_(ReferenceDecoder(TINY["tgt_vocab_size"], TINY["embed_dim"], TINY["hidden_size"]),
                               seed=seed + 1, scale=0.5).eval()
    substitutes = {"encoder": stand_in("lstm_encoder", vocab_size=TINY["src_vocab_size"], embed_dim=TINY["embed_dim"],
                                       hidden_size=TINY["hidden_size"]),
                   "decoder": stand_in("lstm_decoder_step", vocab_size=TINY["tgt_vocab_size"], embed_dim=TINY["embed_dim"],
                                       hidden_size=TINY["hidden_size"])}
    weights = {**{f"encoder.{k}": v for k, v in encoder.state_dict().items()},
               **{f"decoder.{k}": v for k, v in decoder.state_dict().items()}}
    return encoder, decoder, substitutes, weights


@torch.no_grad()
def reference_loop(encoder, decoder, src, tgt, teacher: list[bool]) -> torch.Tensor:
    """The decoding loop: step t > 0 reads tgt[:, t] where teacher[t - 1], else the previous step's argmax."""
    encoder_outputs, state = encoder(src, (src != PAD_ID).sum(1))
    token, steps = tgt[:, 0], list[torch.Tensor]()
    for t in range(tgt.shape[1]):
        if t > 0:
            token = tgt[:, t] if teacher[t - 1] else steps[-1].argmax(-1)
        logits, state, _ = decoder(token, state, encoder_outputs, src != PAD_ID)
        steps.append(logits)
    return torch.stack(steps, 1)


def seq2seq_inputs(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    src = tokens([6, 4, 2], 6)
    tgt = torch.cat([torch.full((3, 1), BOS_ID), 3 + torch.randint(10, (3, 6), generator=torch.Generator().manual_seed(seed))], 1)
    return src, (src != PAD_ID).sum(1), tgt


def check_loop(student, seed: int, ratio: float, teacher: list[bool], what: str, generator_seed: int | None = None) -> None:
    """The student's Seq2Seq.forward at `ratio`, with the reference encoder and decoder in place of the student's,
    equals the reference loop whose step t > 0 reads the true token where teacher[t - 1]."""
    encoder, decoder, substitutes, weights = reference_parts(seed)
    src, lengths, tgt = seq2seq_inputs(seed + 1)
    build = module(call("Seq2Seq", call("Seq2SeqConfig", **TINY)), weights=weights, substitutes=substitutes)
    generator = {} if generator_seed is None else {"generator": stand_in("seeded_generator", seed=generator_seed)}
    value = student.invoke(build, src, lengths, tgt, teacher_forcing_ratio=ratio, what=f"Seq2Seq, ratio {ratio}",
                           **generator).value
    expected = reference_loop(encoder, decoder, src, tgt, teacher)
    if not isinstance(value, torch.Tensor):
        raise Feedback("Seq2Seq.forward must return a tensor of logits (B, T, V)")
    assert_logits_close(value, expected, what)


@pytest.mark.cell("seq2seq")
class TestSeq2Seq:
    GROUP = "Seq2Seq"

    @pytest.mark.points(1)
    def test_output_shape(self, student):
        """Seq2Seq maps src (B, S), src_lengths (B,) and tgt (B, T) to logits (B, T, tgt_vocab_size)"""
        src, lengths, tgt = seq2seq_inputs(seed=1)
        result = student.invoke(module(call("Seq2Seq", call("Seq2SeqConfig", **TINY))), src, lengths, tgt,
                                what="Seq2Seq(tiny config)")
        if not isinstance(result.value, torch.Tensor):
            raise Feedback("Seq2Seq.forward must return a tensor of logits")
        assert_shape(result.value, (3, 7, TINY["tgt_vocab_size"]), "Seq2Seq logits")

    @pytest.mark.points(3)
    def test_teacher_forcing_matches_reference(self, student):
        """Ratio 1: every step reads the true previous token; the loop equals the reference's (reference encoder and decoder)"""
        check_loop(student, seed=2, ratio=1.0, teacher=[True] * 6, what="teacher-forced logits")

    @pytest.mark.points(2)
    def test_free_running_feeds_back_the_argmax(self, student):
        """Ratio 0: every step after the first reads the argmax of the previous step's logits"""
        check_loop(student, seed=4, ratio=0.0, teacher=[False] * 6, what="free-running logits")

    @pytest.mark.points(1)
    def test_same_generator_same_choices(self, student):
        """Ratio 0.5: the same seeded generator gives the same logits (your own layers)"""
        src, lengths, tgt = seq2seq_inputs(seed=6)
        # One model (kept in the worker) run twice, each time with a generator seeded alike.
        runs = [student.invoke(target, src, lengths, tgt, teacher_forcing_ratio=0.5, what="Seq2Seq, ratio 0.5",
                               generator=stand_in("seeded_generator", seed=7)).value
                for target in (module(call("Seq2Seq", call("Seq2SeqConfig", **TINY)), keep_as="mixed"), handle("mixed"))]
        if not all(isinstance(r, torch.Tensor) for r in runs):
            raise Feedback("Seq2Seq.forward must return a tensor of logits")
        if runs[0].shape != runs[1].shape or not torch.equal(runs[0], runs[1]):
            raise Feedback("two runs with generators seeded alike gave different logits: draw the teacher-forcing "
                           "choices from `generator` (torch.rand(1, generator=generator)), not from the global random state")

    @pytest.mark.points(1)
    def test_choices_follow_the_stated_rule(self, student):
        """Ratio 0.5: step t > 0 reads the true token when torch.rand(1, generator=generator) < ratio (one draw per step)"""
        draws = torch.Generator().manual_seed(10)
        teacher = [torch.rand(1, generator=draws).item() < 0.5 for _ in range(6)]
        if all(teacher) or not any(teacher):  # a test that can fail: the draws must mix both choices
            raise RuntimeError("the seed should give both teacher-forced and free-running steps")
        check_loop(student, seed=8, ratio=0.5, teacher=teacher, generator_seed=10,
                   what="logits with teacher forcing drawn from the generator")


@pytest.mark.cell("greedy")
class TestGreedyTranslate(GreedyDecodingFamily):
    GROUP = "Greedy translation"
    NAMES = GreedyNames(function="greedy_translate", stand_in="lstm_seq2seq")
    TESTS = ("test_matches_reference_decoding",)
    MODEL = dict(vocab_size=11, embed_dim=5, hidden_size=8, seed=10, eos_bias=1.5)

    def source(self) -> torch.Tensor:
        return tokens([5, 3, 6, 2, 4, 6], 6)

    def arguments(self, src: torch.Tensor) -> tuple:
        return src, (src != PAD_ID).sum(1)

    def reference_model(self) -> ReferenceSeq2Seq:
        return ReferenceSeq2Seq(**self.MODEL)

    def next_token(self, model: ReferenceSeq2Seq, src: torch.Tensor, b: int):
        s = src[b:b + 1, :int((src[b] != PAD_ID).sum())]
        encoder_outputs, state = model.encoder(s, torch.tensor([s.shape[1]]))

        def step(ys: list[int]) -> int:
            nonlocal state
            logits, state, _ = model.decoder(torch.tensor([ys[-1]]), state, encoder_outputs, s != PAD_ID)
            return int(logits.argmax(-1))
        return step


# -- the thresholds ----------------------------------------------------------------------------------------------
class TestAccuracy:  # the generic notebook test treats TestAccuracy* as the thresholds
    GROUP = "Thresholds"

    @pytest.mark.points(6)
    @bar_title(THRESHOLDS["reversal"])
    def test_reversal_accuracy(self, student):
        """The saved reversal model translates at least {bar} of held-out sequences of 20-30 symbols exactly (your saved
        weights in the notebook's Seq2Seq, decoded by the notebook's greedy_translate)"""
        # Drawn afresh in every run from a secret seed (the notebook trains on seed 0 and validates on seed 1), as
        # many as the sequential rule needs.
        graded_reversal(student, "seq2seq_reverse", "Seq2Seq", "Seq2SeqConfig", "greedy_translate", REVERSAL_TASK,
                        THRESHOLDS["reversal"], with_lengths=True)

    @pytest.mark.points(4)
    @bar_title(THRESHOLDS["multi30k_perplexity"])
    def test_multi30k_perplexity(self, student):
        """The saved Multi30k model's teacher-forced test perplexity per target token is at most {bar} (your
        saved weights in the notebook's Seq2Seq)"""
        multi30k_perplexity(student, THRESHOLDS["multi30k_perplexity"])

    @pytest.mark.points(2)
    @bar_title(THRESHOLDS["multi30k_bleu"])
    def test_multi30k_bleu(self, student):
        """The saved Multi30k model's greedy translations reach a BLEU of at least {bar} on the test set (your saved weights in
        the notebook's Seq2Seq, decoded by the notebook's greedy_translate)"""
        multi30k_bleu(student, THRESHOLDS["multi30k_bleu"])


def multi30k_tokenizer(student):
    """The saved tokenizer, which must be the course's (autograder/kit/translation_grading.py)."""
    return course_tokenizer(student, TOKENIZER_FILE, "the Multi30k data cell")


def multi30k_perplexity(student, threshold: Threshold) -> float:
    return graded_perplexity(student, "seq2seq_multi30k", "Seq2Seq", "Seq2SeqConfig", multi30k_tokenizer(student),
                             lambda src, tgt_in: (src, (src != PAD_ID).sum(1), tgt_in), threshold)


def multi30k_bleu(student, threshold: Threshold) -> tuple[float, list[str]]:
    return graded_bleu(student, "seq2seq_multi30k", "Seq2Seq", "Seq2SeqConfig", "greedy_translate",
                       multi30k_tokenizer(student), lambda src: (src, (src != PAD_ID).sum(1)), threshold)

"""Hidden tests of the Transformer assignment (source/transformer/transformer.ipynb). Never shipped to students.

Every layer is compared with PyTorch's own (nn.MultiheadAttention, F.scaled_dot_product_attention,
nn.TransformerEncoderLayer / nn.TransformerDecoderLayer) given the same weights. The layers, the Transformer
and greedy decoding are tested with stand-in sublayers built from torch (autograder/stand_ins/transformer.py),
so a bug in attention costs points only in the attention tests; the Transformer and greedy_decode tests run with
the reference make_padding_mask / make_causal_mask in the student's notebook (a mask bug costs points only in the
mask tests). Dropout is checked in eval mode (it does nothing) and in train mode, against the reference under the
same replayed masks (stand_ins/dropout.py): the notebook states where each dropout goes. The thresholds rebuild the student's saved models in the sandbox;
the targets and the scoring stay in this process.
"""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from autograder.assignments import assignment_of
from autograder.attention_reference import attention_weights, causal, mha_reference, sdpa_reference, sinusoidal_reference
from autograder.reference import (Feedback, assert_close, assert_shape, check_dropout, expect_grads, fill_parameters_,
                                  reference_grads, replayed_dropout, seeded_randn)
from autograder.requests import call, handle, module, name, stand_in
from autograder.stand_ins.transformer import (TorchDecoderLayer, TorchEncoderLayer, TorchFeedForward, TorchSeq2Seq,
                                              with_reference_masks)
from autograder.spec import Threshold
from autograder.translation_grading import check_greedy_rows, course_tokenizer, graded_perplexity, graded_reversal
from dlcourse.translation import BOS_ID, EOS_ID, PAD_ID, ReversalTask

ASSIGNMENT = assignment_of(__file__)  # declared in source/transformer/spec.py: cells, thresholds, forbidden APIs, budget
THRESHOLDS = ASSIGNMENT.spec.thresholds



def mask_tokens(lengths: list[int], width: int) -> torch.Tensor:
    """(B, width) token ids: row b has lengths[b] real tokens (ids 3..) then padding."""
    tokens = torch.full((len(lengths), width), PAD_ID, dtype=torch.long)
    for b, n in enumerate(lengths):
        tokens[b, :n] = 3 + (torch.arange(n) * 7 + b) % 8  # ids 3..10
    return tokens


def padding_mask(tokens: torch.Tensor) -> torch.Tensor:
    return (tokens != PAD_ID)[:, None, None, :]  # (B, 1, 1, T), True = may attend


@pytest.mark.cell("positional_encoding")
class TestPositionalEncoding:
    GROUP = "Positional encoding"

    @pytest.mark.points(1)
    @pytest.mark.parametrize("max_len,d_model", [(10, 8), (7, 5), (64, 33), (100, 16)])
    def test_matches_formula(self, student, max_len, d_model):
        """sinusoidal_positional_encoding equals the formula (even and odd widths, several lengths)"""
        result = student.invoke(name("sinusoidal_positional_encoding"), max_len, d_model,
                                what=f"sinusoidal_positional_encoding({max_len}, {d_model})")
        if not isinstance(result.value, torch.Tensor):
            raise Feedback("sinusoidal_positional_encoding must return a tensor")
        assert_close(result.value, sinusoidal_reference(max_len, d_model),
                     f"positional encoding ({max_len} positions, d_model={d_model})", atol=1e-4)

    @pytest.mark.points(1)
    def test_module_adds_the_table(self, student):
        """PositionalEncoding adds the first T rows of the table to its input"""
        x = seeded_randn(2, 9, 12, seed=1)
        result = student.run(call("PositionalEncoding", d_model=12, max_len=30), (x,), what="PositionalEncoding(12, 30)")
        assert_close(result.output, x + sinusoidal_reference(9, 12).float(), "PositionalEncoding output", atol=1e-4)

    @pytest.mark.points(1)
    def test_dropout_in_train_mode_only(self, student):
        """With dropout p, PositionalEncoding drops the sum (input + table) in train mode, nothing in eval mode"""
        p, seed = 0.5, 2
        x = seeded_randn(2, 7, 10, seed=3)
        summed = x + sinusoidal_reference(7, 10).float()
        with replayed_dropout(seed):
            expected_train = F.dropout(summed, p, True)
        check_dropout(student, module(call("PositionalEncoding", d_model=10, max_len=20, dropout=p)), (x,), p=p, seed=seed,
                      expected_eval=summed, expected_train=expected_train, calls=1, atol=1e-4,
                      what=f"PositionalEncoding(10, 20, dropout={p})", where="once, on the input plus the table")


@pytest.mark.cell("masks")
class TestMasks:
    GROUP = "Masks"

    @pytest.mark.points(1)
    def test_padding_mask(self, student):
        """make_padding_mask is (B, 1, 1, T), True exactly at the non-padding tokens"""
        tokens = mask_tokens([5, 2, 7], 7)
        result = student.invoke(name("make_padding_mask"), tokens, PAD_ID, what="make_padding_mask")
        value = result.value
        if not isinstance(value, torch.Tensor) or value.dtype != torch.bool:
            raise Feedback("make_padding_mask must return a bool tensor")
        assert_shape(value, (3, 1, 1, 7), "padding mask")
        if not torch.equal(value, padding_mask(tokens)):
            raise Feedback("the padding mask is not True exactly where the token is not padding")

    @pytest.mark.points(1)
    @pytest.mark.parametrize("T", [1, 6])
    def test_causal_mask(self, student, T):
        """make_causal_mask(T) is (T, T), True on and below the diagonal"""
        value = student.invoke(name("make_causal_mask"), T, what=f"make_causal_mask({T})").value
        if not isinstance(value, torch.Tensor) or value.dtype != torch.bool:
            raise Feedback("make_causal_mask must return a bool tensor")
        assert_shape(value, (T, T), "causal mask")
        if not torch.equal(value, causal(T)):
            hidden_diagonal = " (its diagonal is False: query i must see key i, its own position; without it query 0 " \
                              "has no visible key at all)" if not value.diagonal().all() else ""
            raise Feedback(f"make_causal_mask({T}) is not True exactly where key j <= query i{hidden_diagonal}")


@torch.no_grad()
def attention_formula(weights: dict, heads: int, query, key, value, mask, p: float) -> torch.Tensor:
    """Multi-head attention by the notebook's formula and layout, with F.dropout (train mode) on the weights."""
    (B, T_q, D), T_k = query.shape, key.shape[1]
    split = lambda t, T: t.view(B, T, heads, D // heads).transpose(1, 2)  # noqa: E731  (B, nh, T, hs)
    q = split(F.linear(query, weights["q_proj.weight"], weights["q_proj.bias"]), T_q)
    k = split(F.linear(key, weights["k_proj.weight"], weights["k_proj.bias"]), T_k)
    v = split(F.linear(value, weights["v_proj.weight"], weights["v_proj.bias"]), T_k)
    scores = (q @ k.transpose(-2, -1) / math.sqrt(D // heads)).masked_fill(~mask, torch.finfo(q.dtype).min)
    y = (F.dropout(scores.softmax(dim=-1), p, True) @ v).transpose(1, 2).reshape(B, T_q, D)
    return F.linear(y, weights["out_proj.weight"], weights["out_proj.bias"])


def mha_build(d_model: int, heads: int) -> dict:
    return call("MultiHeadAttention", d_model=d_model, num_heads=heads)


@pytest.mark.cell("mha")
class TestMultiHeadAttention:
    GROUP = "Multi-head attention"

    @pytest.mark.points(1)
    def test_output_shape_cross_attention(self, student):
        """MultiHeadAttention maps query (B, T_q, D) and key/value (B, T_k, D) to (B, T_q, D)"""
        q, kv = seeded_randn(2, 3, 16, seed=1), seeded_randn(2, 7, 16, seed=2)
        result = student.run(mha_build(16, 4), (q, kv, kv.clone()), what="MultiHeadAttention(16, 4) with T_q=3, T_k=7")
        assert_shape(result.output, (2, 3, 16), "attention output")

    @pytest.mark.points(2)
    @pytest.mark.parametrize("d_model,heads", [(16, 1), (32, 4)])
    def test_self_attention_matches_torch(self, student, d_model, heads):
        """Unmasked self-attention equals nn.MultiheadAttention with the same weights"""
        mha, weights = mha_reference(d_model, heads, seed=d_model)
        x = seeded_randn(2, 6, d_model, seed=heads)
        result = student.run(mha_build(d_model, heads), (x, x.clone(), x.clone()), weights=weights,
                             what=f"MultiHeadAttention(d_model={d_model}, num_heads={heads})")
        assert_close(result.output, mha(x, x, x, need_weights=False)[0].detach(), "self-attention output")
        assert_close(result.output, sdpa_reference(weights, heads, x, x, x), "self-attention output")

    @pytest.mark.points(2)
    def test_padding_mask_matches_torch(self, student):
        """With a padding mask (B, 1, 1, T_k), attention equals nn.MultiheadAttention's key_padding_mask"""
        mha, weights = mha_reference(24, 3, seed=3)
        x, mask = seeded_randn(3, 6, 24, seed=4), padding_mask(mask_tokens([6, 3, 1], 6))
        result = student.run(mha_build(24, 3), (x, x.clone(), x.clone(), mask), weights=weights, what="MultiHeadAttention with a padding mask")
        expected = mha(x, x, x, key_padding_mask=~mask[:, 0, 0], need_weights=False)[0].detach()
        assert_close(result.output, expected, "attention output with a padding mask")

    @pytest.mark.points(2)
    def test_causal_mask_matches_torch(self, student):
        """With a causal mask (T, T), attention equals nn.MultiheadAttention's attn_mask"""
        mha, weights = mha_reference(16, 2, seed=5)
        x = seeded_randn(2, 7, 16, seed=6)
        result = student.run(mha_build(16, 2), (x, x.clone(), x.clone(), causal(7)), weights=weights, what="MultiHeadAttention with a causal mask")
        expected = mha(x, x, x, attn_mask=~causal(7), need_weights=False)[0].detach()
        assert_close(result.output, expected, "attention output with a causal mask")

    @pytest.mark.points(2)
    def test_cross_attention_with_padding(self, student):
        """Cross-attention (T_q != T_k) with a padding mask equals F.scaled_dot_product_attention"""
        mha, weights = mha_reference(16, 4, seed=7)
        q, kv = seeded_randn(2, 4, 16, seed=8), seeded_randn(2, 9, 16, seed=9)
        mask = padding_mask(mask_tokens([9, 5], 9))
        result = student.run(mha_build(16, 4), (q, kv, kv.clone(), mask), weights=weights, what="cross-attention, T_q=4, T_k=9")
        assert_close(result.output, sdpa_reference(weights, 4, q, kv, kv, mask), "cross-attention output")
        assert_close(result.output, mha(q, kv, kv, key_padding_mask=~mask[:, 0, 0], need_weights=False)[0].detach(),
                     "cross-attention output")

    @pytest.mark.points(2)
    def test_masked_positions_get_zero_weight(self, student):
        """Masked keys get exactly zero weight: changing their keys and values changes nothing"""
        _, weights = mha_reference(16, 2, seed=10)
        q, kv = seeded_randn(2, 3, 16, seed=11), seeded_randn(2, 6, 16, seed=12)
        mask = padding_mask(mask_tokens([6, 2], 6))
        changed = kv.clone()
        changed[1, 2:] = 50.0 * seeded_randn(4, 16, seed=13)
        first = student.run(mha_build(16, 2), (q, kv, kv.clone(), mask), weights=weights, what="attention with masked keys")
        second = student.run(mha_build(16, 2), (q, changed, changed.clone(), mask), weights=weights,
                             what="attention with changed masked keys")
        assert_close(second.output, first.output, "output after changing only masked keys and values", rtol=0.0, atol=1e-6)

    @pytest.mark.points(1)
    def test_fully_padded_row_gives_no_nan(self, student):
        """A sequence that is all padding gives finite outputs (and leaves the other rows as they were)"""
        mha, weights = mha_reference(16, 2, seed=14)
        x = seeded_randn(2, 5, 16, seed=15)
        mask = padding_mask(mask_tokens([4, 0], 5))
        result = student.run(mha_build(16, 2), (x, x.clone(), x.clone(), mask), weights=weights, what="attention with an all-padding row")
        if not torch.isfinite(result.output).all():
            raise Feedback("a query that may attend to no key produced NaN or inf: fill masked scores with a large "
                           "negative number such as torch.finfo(scores.dtype).min instead of -inf")
        expected = mha(x[:1], x[:1], x[:1], key_padding_mask=~mask[:1, 0, 0], need_weights=False)[0].detach()
        assert_close(result.output[:1], expected, "output of the row with real tokens")

    @pytest.mark.points(2)
    def test_gradients_match_torch(self, student):
        """Gradients (query, key, value and all weights) equal nn.MultiheadAttention's, with a padding mask"""
        mha, weights = mha_reference(16, 4, seed=16)
        q, k, v = seeded_randn(2, 3, 16, seed=17), seeded_randn(2, 5, 16, seed=18), seeded_randn(2, 5, 16, seed=19)
        mask, g = padding_mask(mask_tokens([5, 3], 5)), seeded_randn(2, 3, 16, seed=20)
        result = student.run(mha_build(16, 4), (q, k, v, mask), weights=weights, grad_output=g, what="MultiHeadAttention backward")
        refs = [t.clone().requires_grad_(True) for t in (q, k, v)]
        mha.zero_grad()
        mha(*refs, key_padding_mask=~mask[:, 0, 0], need_weights=False)[0].backward(g)
        for i, label in enumerate(("query", "key", "value")):
            if result.input_grads[i] is None:
                raise Feedback(f"no gradient reached the {label}")
            assert_close(result.input_grads[i], refs[i].grad, f"gradient with respect to the {label}")
        wq, wk, wv = mha.in_proj_weight.grad.chunk(3)
        expect_grads(result.param_grads, {"q_proj.weight": wq, "k_proj.weight": wk, "v_proj.weight": wv,
                                          "out_proj.weight": mha.out_proj.weight.grad, "out_proj.bias": mha.out_proj.bias.grad})

    @pytest.mark.points(1)
    def test_dropout_in_train_mode_only(self, student):
        """With dropout p, attention drops the attention weights (after the softmax) in train mode, nothing in eval mode"""
        p, seed, heads = 0.4, 4, 2
        _, weights = mha_reference(16, heads, seed=21)
        q, kv = seeded_randn(2, 3, 16, seed=22), seeded_randn(2, 5, 16, seed=23)
        mask = padding_mask(mask_tokens([5, 3], 5))
        expected_eval = sdpa_reference(weights, heads, q, kv, kv, mask)
        with replayed_dropout(seed):
            expected_train = attention_formula(weights, heads, q, kv, kv, mask, p)
        check_dropout(student, module(call("MultiHeadAttention", d_model=16, num_heads=heads, dropout=p), weights=weights),
                      (q, kv, kv.clone(), mask), p=p, seed=seed, expected_eval=expected_eval, expected_train=expected_train,
                      calls=1, what=f"MultiHeadAttention(16, {heads}, dropout={p})",
                      where="self.dropout on the attention weights, after the softmax, laid out as (B, nh, T_q, T_k) "
                            "(the output projection is not dropped)")


@pytest.mark.cell("feedforward")
class TestFeedForward:
    GROUP = "Feed-forward"

    @pytest.mark.points(1)
    def test_matches_reference(self, student):
        """FeedForward equals linear2(ReLU(linear1(x))), values and gradients"""
        ref = TorchFeedForward(12, 20)
        fill_parameters_(ref.linear1, seed=1), fill_parameters_(ref.linear2, seed=2)
        x, g = seeded_randn(2, 5, 12, seed=3), seeded_randn(2, 5, 12, seed=4)
        result = student.run(call("FeedForward", d_model=12, d_ff=20), (x,), weights=ref.state_dict(), grad_output=g,
                             what="FeedForward(12, 20)")
        x_grad, _ = reference_grads(ref, x, g)
        assert_close(result.output, ref(x).detach(), "FeedForward output")
        assert_close(result.input_grads[0], x_grad, "FeedForward gradient with respect to the input")

    @pytest.mark.points(1)
    def test_dropout_in_train_mode_only(self, student):
        """With dropout p, FeedForward drops after the ReLU (before linear2) in train mode, nothing in eval mode"""
        p, seed = 0.3, 5
        ref = TorchFeedForward(10, 14)
        fill_parameters_(ref.linear1, seed=6), fill_parameters_(ref.linear2, seed=7)
        x = seeded_randn(2, 4, 10, seed=8)
        with torch.no_grad():
            expected_eval = ref(x)
            with replayed_dropout(seed):
                expected_train = ref.linear2(F.dropout(F.relu(ref.linear1(x)), p, True))
        check_dropout(student, module(call("FeedForward", d_model=10, d_ff=14, dropout=p), weights=ref.state_dict()), (x,),
                      p=p, seed=seed, expected_eval=expected_eval, expected_train=expected_train, calls=1,
                      what=f"FeedForward(10, 14, dropout={p})", where="once, after the ReLU (before linear2)")


def layer_weights(ref: nn.Module, attentions: dict[str, str], norms: int) -> dict:
    """A torch Transformer layer's weights under the student's names (attention and FF are stand-ins)."""
    weights = {"ff.linear1.weight": ref.linear1.weight, "ff.linear1.bias": ref.linear1.bias,
               "ff.linear2.weight": ref.linear2.weight, "ff.linear2.bias": ref.linear2.bias}
    for ours, theirs in attentions.items():
        weights.update(attention_weights(ours, getattr(ref, theirs)))
    for i in range(1, norms + 1):
        norm = getattr(ref, f"norm{i}")
        weights.update({f"norm{i}.weight": norm.weight, f"norm{i}.bias": norm.bias})
    return weights


def layer_substitutes(d_model: int, heads: int, d_ff: int, attentions: list[str]) -> dict:
    subs = {a: stand_in("torch_mha", d_model=d_model, num_heads=heads) for a in attentions}
    subs["ff"] = stand_in("torch_feedforward", d_model=d_model, d_ff=d_ff)
    return subs


def encoder_reference(d_model, heads, d_ff, seed) -> nn.TransformerEncoderLayer:
    """The seeded nn.TransformerEncoderLayer (post-norm, ReLU, no dropout) of the torch_encoder_layer stand-in."""
    return fill_parameters_(TorchEncoderLayer(d_model, heads, d_ff).layer, seed=seed, scale=0.3).eval()


def decoder_reference(d_model, heads, d_ff, seed) -> nn.TransformerDecoderLayer:
    """The seeded nn.TransformerDecoderLayer (post-norm, ReLU, no dropout) of the torch_decoder_layer stand-in."""
    return fill_parameters_(TorchDecoderLayer(d_model, heads, d_ff).layer, seed=seed, scale=0.3).eval()


@pytest.mark.cell("encoder_layer")
class TestEncoderLayer:
    GROUP = "Encoder layer"

    @pytest.mark.points(3)
    def test_matches_torch_encoder_layer(self, student):
        """Post-norm EncoderLayer equals nn.TransformerEncoderLayer (padding mask, ReLU, dropout 0)"""
        ref = encoder_reference(16, 2, 32, seed=21)
        x, mask = seeded_randn(3, 6, 16, seed=22), padding_mask(mask_tokens([6, 4, 2], 6))
        result = student.run(call("EncoderLayer", d_model=16, num_heads=2, d_ff=32), (x, mask),
                             weights=layer_weights(ref, {"self_attn": "self_attn"}, 2),
                             substitutes=layer_substitutes(16, 2, 32, ["self_attn"]), what="EncoderLayer(16, 2, 32)")
        expected = ref(x, src_key_padding_mask=~mask[:, 0, 0]).detach()
        assert_close(result.output, expected, "EncoderLayer output", atol=1e-4)

    @pytest.mark.points(1)
    def test_gradients_match_torch(self, student):
        """Gradients flow through both residual + LayerNorm steps as in nn.TransformerEncoderLayer"""
        ref = encoder_reference(16, 4, 24, seed=23)
        x, g = seeded_randn(2, 5, 16, seed=24), seeded_randn(2, 5, 16, seed=25)
        result = student.run(call("EncoderLayer", d_model=16, num_heads=4, d_ff=24), (x,),
                             weights=layer_weights(ref, {"self_attn": "self_attn"}, 2), grad_output=g,
                             substitutes=layer_substitutes(16, 4, 24, ["self_attn"]), what="EncoderLayer backward")
        x_grad, _ = reference_grads(ref, x, g)
        assert_close(result.input_grads[0], x_grad, "EncoderLayer gradient with respect to the input", atol=1e-4)

    @pytest.mark.points(1)
    def test_dropout_in_train_mode_only(self, student):
        """With dropout p, EncoderLayer drops each sublayer's output before its residual sum in train mode, nothing in eval mode"""
        p, seed = 0.3, 9
        ref = encoder_reference(16, 2, 32, seed=33)
        x, mask = seeded_randn(2, 5, 16, seed=34), padding_mask(mask_tokens([5, 3], 5))
        built = module(call("EncoderLayer", d_model=16, num_heads=2, d_ff=32, dropout=p),
                       weights=layer_weights(ref, {"self_attn": "self_attn"}, 2))
        built["substitutes"] = layer_substitutes(16, 2, 32, ["self_attn"])  # (stand-ins without dropout of their own)
        with torch.no_grad():
            expected_eval = ref(x, src_key_padding_mask=~mask[:, 0, 0])
            with replayed_dropout(seed):
                attended = ref.self_attn(x, x, x, key_padding_mask=~mask[:, 0, 0], need_weights=False)[0]
                h = ref.norm1(x + F.dropout(attended, p, True))
                expected_train = ref.norm2(h + F.dropout(ref.linear2(F.relu(ref.linear1(h))), p, True))
        check_dropout(student, built, (x, mask), p=p, seed=seed, expected_eval=expected_eval, expected_train=expected_train,
                      calls=2, atol=1e-4, what=f"EncoderLayer(16, 2, 32, dropout={p}) with reference sublayers",
                      where="on the self-attention's output, then on the feed-forward's output, each before its residual sum")


@pytest.mark.cell("decoder_layer")
class TestDecoderLayer:
    GROUP = "Decoder layer"

    @pytest.mark.points(3)
    def test_matches_torch_decoder_layer(self, student):
        """Post-norm DecoderLayer equals nn.TransformerDecoderLayer (causal and memory padding masks)"""
        ref = decoder_reference(16, 2, 32, seed=26)
        x, memory = seeded_randn(3, 5, 16, seed=27), seeded_randn(3, 7, 16, seed=28)
        src_mask = padding_mask(mask_tokens([7, 3, 5], 7))
        result = student.run(call("DecoderLayer", d_model=16, num_heads=2, d_ff=32), (x, memory, src_mask, causal(5)),
                             weights=layer_weights(ref, {"self_attn": "self_attn", "cross_attn": "multihead_attn"}, 3),
                             substitutes=layer_substitutes(16, 2, 32, ["self_attn", "cross_attn"]), what="DecoderLayer(16, 2, 32)")
        expected = ref(x, memory, tgt_mask=~causal(5), memory_key_padding_mask=~src_mask[:, 0, 0]).detach()
        assert_close(result.output, expected, "DecoderLayer output", atol=1e-4)

    @pytest.mark.points(1)
    def test_gradients_match_torch(self, student):
        """Gradients reach the target and the encoder output (memory) as in nn.TransformerDecoderLayer"""
        ref = decoder_reference(16, 4, 24, seed=29)
        x, memory, g = seeded_randn(2, 4, 16, seed=30), seeded_randn(2, 6, 16, seed=31), seeded_randn(2, 4, 16, seed=32)
        all_real = padding_mask(mask_tokens([6, 6], 6))
        result = student.run(call("DecoderLayer", d_model=16, num_heads=4, d_ff=24), (x, memory, all_real, causal(4)),
                             weights=layer_weights(ref, {"self_attn": "self_attn", "cross_attn": "multihead_attn"}, 3),
                             substitutes=layer_substitutes(16, 4, 24, ["self_attn", "cross_attn"]), grad_output=g,
                             what="DecoderLayer backward")
        refs = [x.clone().requires_grad_(True), memory.clone().requires_grad_(True)]
        ref(*refs, tgt_mask=~causal(4)).backward(g)
        for i, label in enumerate(("target input", "memory")):
            if result.input_grads[i] is None:
                raise Feedback(f"no gradient reached the {label}")
            assert_close(result.input_grads[i], refs[i].grad, f"DecoderLayer gradient with respect to the {label}", atol=1e-4)

    @pytest.mark.points(1)
    def test_dropout_in_train_mode_only(self, student):
        """With dropout p, DecoderLayer drops each of its three sublayers' outputs before the residual sums in train mode only"""
        p, seed = 0.3, 10
        ref = decoder_reference(16, 2, 32, seed=35)
        x, memory = seeded_randn(2, 4, 16, seed=36), seeded_randn(2, 6, 16, seed=37)
        src_mask = padding_mask(mask_tokens([6, 4], 6))
        built = module(call("DecoderLayer", d_model=16, num_heads=2, d_ff=32, dropout=p),
                       weights=layer_weights(ref, {"self_attn": "self_attn", "cross_attn": "multihead_attn"}, 3))
        built["substitutes"] = layer_substitutes(16, 2, 32, ["self_attn", "cross_attn"])  # (without dropout of their own)
        with torch.no_grad():
            expected_eval = ref(x, memory, tgt_mask=~causal(4), memory_key_padding_mask=~src_mask[:, 0, 0])
            with replayed_dropout(seed):
                h = ref.norm1(x + F.dropout(ref.self_attn(x, x, x, attn_mask=~causal(4), need_weights=False)[0], p, True))
                crossed = ref.multihead_attn(h, memory, memory, key_padding_mask=~src_mask[:, 0, 0], need_weights=False)[0]
                h = ref.norm2(h + F.dropout(crossed, p, True))
                expected_train = ref.norm3(h + F.dropout(ref.linear2(F.relu(ref.linear1(h))), p, True))
        check_dropout(student, built, (x, memory, src_mask, causal(4)), p=p, seed=seed, expected_eval=expected_eval,
                      expected_train=expected_train, calls=3, atol=1e-4,
                      what=f"DecoderLayer(16, 2, 32, dropout={p}) with reference sublayers",
                      where="on the masked self-attention's, the cross-attention's and the feed-forward's outputs, each "
                            "before its residual sum")


TINY = dict(src_vocab_size=11, tgt_vocab_size=13, d_model=16, num_heads=2, num_encoder_layers=2,
            num_decoder_layers=2, d_ff=32, dropout=0.0, max_len=40, pad_id=PAD_ID)


def reference_transformer(cfg: dict, seed: int) -> tuple[nn.ModuleDict, dict, dict]:
    """(reference parts, substitutes, weights under the student's names) for the Transformer test."""
    g = torch.Generator().manual_seed(seed)
    parts = nn.ModuleDict({
        "src_embed": nn.Embedding(cfg["src_vocab_size"], cfg["d_model"]),
        "tgt_embed": nn.Embedding(cfg["tgt_vocab_size"], cfg["d_model"]),
        "encoder": nn.ModuleList([encoder_reference(cfg["d_model"], cfg["num_heads"], cfg["d_ff"], seed=int(torch.randint(1000, (1,), generator=g)))
                                  for _ in range(cfg["num_encoder_layers"])]),
        "decoder": nn.ModuleList([decoder_reference(cfg["d_model"], cfg["num_heads"], cfg["d_ff"], seed=int(torch.randint(1000, (1,), generator=g)))
                                  for _ in range(cfg["num_decoder_layers"])]),
        "generator": nn.Linear(cfg["d_model"], cfg["tgt_vocab_size"]),
    })
    for key in ("src_embed", "tgt_embed", "generator"):
        fill_parameters_(parts[key], seed=seed + len(key), scale=0.3)
    layer_kwargs = {"d_model": cfg["d_model"], "num_heads": cfg["num_heads"], "d_ff": cfg["d_ff"]}
    substitutes, weights = {}, {"src_embed.weight": parts["src_embed"].weight, "tgt_embed.weight": parts["tgt_embed"].weight,
                                "generator.weight": parts["generator"].weight, "generator.bias": parts["generator"].bias}
    for kind, ours in (("encoder", "encoder_layers"), ("decoder", "decoder_layers")):
        for i, layer in enumerate(parts[kind]):
            substitutes[f"{ours}.{i}"] = stand_in(f"torch_{kind}_layer", **layer_kwargs)
            weights.update({f"{ours}.{i}.layer.{k}": v for k, v in layer.state_dict().items()})
    return parts.eval(), substitutes, weights


@torch.no_grad()
def reference_logits(parts: nn.ModuleDict, cfg: dict, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    d = cfg["d_model"]
    pe = sinusoidal_reference(max(src.shape[1], tgt.shape[1]), d).float()
    x = parts["src_embed"](src) * math.sqrt(d) + pe[:src.shape[1]]
    for layer in parts["encoder"]:
        x = layer(x, src_key_padding_mask=src == PAD_ID)
    y = parts["tgt_embed"](tgt) * math.sqrt(d) + pe[:tgt.shape[1]]
    for layer in parts["decoder"]:
        y = layer(y, x, tgt_mask=~causal(tgt.shape[1]), memory_key_padding_mask=src == PAD_ID)
    return parts["generator"](y)


def transformer_inputs(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    src = mask_tokens([6, 4, 2], 6)
    tgt = torch.cat([torch.full((3, 1), BOS_ID), 3 + torch.randint(10, (3, 5), generator=torch.Generator().manual_seed(seed))], dim=1)
    return src, tgt


@pytest.mark.cell("transformer")
class TestTransformer:
    GROUP = "Transformer"

    @pytest.mark.points(1)
    def test_output_shape(self, student):
        """Transformer maps src (B, S) and tgt (B, T) to logits (B, T, tgt_vocab_size)"""
        src, tgt = transformer_inputs(seed=1)
        result = student.invoke(with_reference_masks(module(call("Transformer", call("TransformerConfig", **TINY)))), src, tgt,
                                what="Transformer(tiny config)")
        if not isinstance(result.value, torch.Tensor):
            raise Feedback("Transformer.forward must return a tensor of logits")
        assert_shape(result.value, (3, 6, 13), "Transformer logits")

    @pytest.mark.points(3)
    def test_matches_torch_reference(self, student):
        """Scaled embeddings, positional encoding, masks, encoder, decoder and generator equal a reference built from torch layers"""
        parts, substitutes, weights = reference_transformer(TINY, seed=2)
        src, tgt = transformer_inputs(seed=3)
        build = module(call("Transformer", call("TransformerConfig", **TINY)), weights=weights, substitutes=substitutes)
        result = student.invoke(with_reference_masks(build), src, tgt, what="Transformer with torch encoder/decoder layers")
        assert_close(result.value, reference_logits(parts, TINY, src, tgt), "Transformer logits", atol=1e-4)

    @pytest.mark.points(2)
    def test_decoder_cannot_see_the_future(self, student):
        """Changing target token t+1 leaves the outputs at positions <= t unchanged (the whole model, your own layers)"""
        src, tgt = transformer_inputs(seed=4)
        first = student.invoke(with_reference_masks(module(call("Transformer", call("TransformerConfig", **TINY)), keep_as="causality")),
                               src, tgt, what="Transformer (causality)")
        for t in (1, 3):
            changed = tgt.clone()
            changed[:, t + 1] = 3 + (changed[:, t + 1] - 3 + 5) % 10
            second = student.invoke(with_reference_masks(handle("causality")), src, changed, what="Transformer (causality)")
            assert_close(second.value[:, :t + 1], first.value[:, :t + 1],
                         f"logits at positions 0..{t} after changing target token {t + 1}", rtol=1e-5, atol=1e-5)
            if torch.allclose(second.value[:, t + 1:], first.value[:, t + 1:]):
                raise Feedback(f"changing target token {t + 1} changed none of the logits from position {t + 1} on: "
                               "does the decoder read the target tokens?")


SEQ2SEQ = dict(vocab_size=12, d_model=16, num_heads=2, d_ff=32, num_layers=2)


@torch.no_grad()
def reference_greedy(model: TorchSeq2Seq, src: torch.Tensor, max_len: int) -> list[list[int]]:
    """Greedy decoding, one row at a time; each row up to and including its EOS."""
    rows = []
    for b in range(len(src)):
        s = src[b:b + 1]
        src_mask = padding_mask(s)
        memory = model.encode(s, src_mask)
        ys = [BOS_ID]
        while len(ys) < max_len and ys[-1] != EOS_ID:
            hidden = model.decode(torch.tensor([ys]), memory, src_mask, causal(len(ys)))
            ys.append(int(model.generator(hidden[:, -1]).argmax(-1)))
        rows.append(ys)
    return rows


@pytest.mark.cell("greedy")
class TestGreedyDecode:
    GROUP = "Greedy decoding"

    @pytest.mark.points(3)
    def test_matches_reference_decoding(self, student):
        """greedy_decode starts with BOS, appends the argmax token, stops at EOS / max_len and pads finished rows"""
        max_len = 8
        src = mask_tokens([5, 3, 6, 2, 4, 6], 6)
        spec = dict(SEQ2SEQ, seed=6, eos_bias=1.0)
        reference = reference_greedy(TorchSeq2Seq(**spec).cpu(), src, max_len)
        if all(len(r) == max_len for r in reference) or all(r[-1] == EOS_ID for r in reference):  # a test that can fail
            raise RuntimeError("the reference decoding should stop early in some rows and not in others")
        result = student.invoke(with_reference_masks(name("greedy_decode")), stand_in("torch_seq2seq", **spec), src, max_len=max_len,
                                bos_id=BOS_ID, eos_id=EOS_ID, pad_id=PAD_ID, what="greedy_decode")
        check_greedy_rows("greedy_decode", result.value, reference, max_len)


class TestAccuracy:  # the generic notebook test treats TestAccuracy* as the thresholds
    GROUP = "Thresholds"

    @pytest.mark.points(6)
    def test_reversal_accuracy(self, student):
        """The saved reversal model decodes at least 99% of held-out sequences exactly right (your saved weights in the
        notebook's Transformer, decoded by the notebook's greedy_decode)"""
        # Drawn afresh in every run from a secret seed (the notebook trains on seed 0 and validates on seed 1), as
        # many as the sequential rule needs.
        graded_reversal(student, "transformer_reverse", "Transformer", "TransformerConfig", "greedy_decode",
                        ReversalTask(), THRESHOLDS["reversal"], with_lengths=False)

    @pytest.mark.points(6)
    def test_multi30k_perplexity(self, student):
        """The saved Multi30k model reaches a test perplexity of at most 8 per target token (your saved weights in the
        notebook's Transformer)"""
        multi30k_perplexity(student, THRESHOLDS["multi30k_perplexity"])


TOKENIZER_FILE = "transformer_multi30k_tokenizer.json"


def multi30k_perplexity(student, threshold: Threshold) -> float:
    """Per-token test perplexity of the student's saved `transformer_multi30k` under its saved tokenizer, which must be
    the course's (autograder/translation_grading.py)."""
    tokenizer = course_tokenizer(student, TOKENIZER_FILE, "the Multi30k data cell")
    return graded_perplexity(student, "transformer_multi30k", "Transformer", "TransformerConfig", tokenizer,
                             lambda src, tgt_in: (src, tgt_in), threshold)

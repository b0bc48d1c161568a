"""Hidden tests of the Transformer assignment (source/transformer/transformer.ipynb). Never shipped to students.

Every layer is compared with PyTorch's own (nn.MultiheadAttention, F.scaled_dot_product_attention,
nn.TransformerEncoderLayer / nn.TransformerDecoderLayer) given the same weights. The layers, the Transformer
and greedy decoding are tested with stand-in sublayers built from torch (autograder/kit/stand_ins/transformer.py),
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
from autograder.kit.attention_reference import causal, sinusoidal_reference
from autograder.kit.families import (AttentionNames, DecoderLayerFamily, DecoderLayerNames, GreedyDecodingFamily,
                                 GreedyNames, MaskFamily, MultiHeadAttentionFamily, PositionalEncodingFamily, bar_title,
                                 DECODER_ATTENTIONS, decoder_reference, layer_weights, mask_tokens,
                                 model_reference, padding_mask)
from autograder.kit.reference import (Feedback, assert_close, assert_shape, check_dropout, check_output_and_input_grad,
                                  fill_parameters_, reference_grads, replayed_dropout, seeded_randn)
from autograder.kit.requests import call, handle, module
from autograder.kit.stand_ins.transformer import (TorchEncoderLayer, TorchFeedForward, TorchSeq2Seq, layer_substitutes,
                                                  with_reference_masks)
from autograder.spec import Threshold
from autograder.kit.translation_grading import course_tokenizer, graded_perplexity, graded_reversal
from dlcourse.translation import BOS_ID, PAD_ID, ReversalTask

ASSIGNMENT = assignment_of(__file__)  # declared in source/transformer/spec.py: cells, thresholds, forbidden APIs, budget
THRESHOLDS = ASSIGNMENT.spec.thresholds



@pytest.mark.cell("positional_encoding")
class TestPositionalEncoding(PositionalEncodingFamily):
    GROUP = "Positional encoding"
    TESTS = ("test_matches_formula", "test_module_adds_the_table", "test_dropout_in_train_mode_only")
    CASES = {"test_matches_formula": ("max_len,d_model", [(10, 8), (7, 5), (64, 33), (100, 16)])}


@pytest.mark.cell("masks")
class TestMasks(MaskFamily):
    GROUP = "Masks"
    TESTS = ("test_padding_mask", "test_causal_mask")
    CASES = {"test_causal_mask": ("T", [1, 6])}


@pytest.mark.cell("mha")
class TestMultiHeadAttention(MultiHeadAttentionFamily):
    GROUP = "Multi-head attention"
    NAMES = AttentionNames(width="d_model", mask="padding")
    TESTS = ("test_output_shape_cross_attention", "test_self_attention_matches_torch", "test_padding_mask_matches_torch",
             "test_causal_mask_matches_torch", "test_cross_attention_with_padding", "test_masked_positions_get_zero_weight",
             "test_fully_padded_row_gives_no_nan", "test_gradients_match_torch", "test_dropout_in_train_mode_only")
    CASES = {"test_self_attention_matches_torch": ("d_model,heads", [(16, 1), (32, 4)])}


@pytest.mark.cell("feedforward")
class TestFeedForward:
    GROUP = "Feed-forward"

    @pytest.mark.points(1)
    def test_matches_reference(self, student):
        """FeedForward equals linear2(ReLU(linear1(x))), values and gradients"""
        ref = TorchFeedForward(12, 20)
        fill_parameters_(ref.linear1, seed=1), fill_parameters_(ref.linear2, seed=2)
        check_output_and_input_grad(student, call("FeedForward", d_model=12, d_ff=20), ref, seeded_randn(2, 5, 12, seed=3),
                                    seeded_randn(2, 5, 12, seed=4), what="FeedForward(12, 20)", label="FeedForward")

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


def encoder_reference(d_model, heads, d_ff, seed) -> nn.TransformerEncoderLayer:
    """The seeded nn.TransformerEncoderLayer (post-norm, ReLU, no dropout) of the torch_encoder_layer stand-in."""
    return fill_parameters_(TorchEncoderLayer(d_model, heads, d_ff).layer, seed=seed, scale=0.3).eval()


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
                       weights=layer_weights(ref, {"self_attn": "self_attn"}, 2),
                       substitutes=layer_substitutes(16, 2, 32, ["self_attn"]))  # (stand-ins without dropout of their own)
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
class TestDecoderLayer(DecoderLayerFamily):
    GROUP = "Decoder layer"
    NAMES = DecoderLayerNames(width="d_model", ff="d_ff", target="target", memory="encoder output", memory_mask=True)
    TESTS = ("test_matches_torch_decoder_layer", "test_gradients_match_torch")

    def substitutes(self, d_model: int, heads: int, d_ff: int) -> dict:
        return layer_substitutes(d_model, heads, d_ff, DECODER_ATTENTIONS)

    @pytest.mark.points(1)
    def test_dropout_in_train_mode_only(self, student):
        """With dropout p, DecoderLayer drops each of its three sublayers' outputs before the residual sums in train mode only"""
        p, seed = 0.3, 10
        ref = decoder_reference(16, 2, 32, seed=35)
        x, memory = seeded_randn(2, 4, 16, seed=36), seeded_randn(2, 6, 16, seed=37)
        src_mask = padding_mask(mask_tokens([6, 4], 6))
        built = module(self.build(16, 2, 32, dropout=p), weights=layer_weights(ref, DECODER_ATTENTIONS, 3),
                       substitutes=self.substitutes(16, 2, 32))  # (without dropout of their own)
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
    layer_kwargs = {"d_model": cfg["d_model"], "num_heads": cfg["num_heads"], "d_ff": cfg["d_ff"]}
    return model_reference(parts, ("src_embed", "tgt_embed", "generator"),
                           {kind: (f"{kind}_layers", f"torch_{kind}_layer", layer_kwargs) for kind in ("encoder", "decoder")},
                           seed, scale=0.3)


@torch.no_grad()
def reference_logits(parts: nn.ModuleDict, cfg: dict, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    d = cfg["d_model"]
    pe = sinusoidal_reference(max(src.shape[1], tgt.shape[1]), d).float()
    x = parts["src_embed"](src) * math.sqrt(d) + pe[:src.shape[1]]
    for layer in parts["encoder"].children():
        x = layer(x, src_key_padding_mask=src == PAD_ID)
    y = parts["tgt_embed"](tgt) * math.sqrt(d) + pe[:tgt.shape[1]]
    for layer in parts["decoder"].children():
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


@pytest.mark.cell("greedy")
class TestGreedyDecode(GreedyDecodingFamily):
    GROUP = "Greedy decoding"
    NAMES = GreedyNames(function="greedy_decode", stand_in="torch_seq2seq")
    TESTS = ("test_matches_reference_decoding",)
    MODEL = dict(SEQ2SEQ, seed=6, eos_bias=1.0)

    def source(self) -> torch.Tensor:
        return mask_tokens([5, 3, 6, 2, 4, 6], 6)

    def target(self, function: dict) -> dict:
        return with_reference_masks(function)  # the grader's masks: a mask bug costs points only in TestMasks

    def reference_model(self) -> TorchSeq2Seq:
        return TorchSeq2Seq(**self.MODEL)

    def next_token(self, model: TorchSeq2Seq, src: torch.Tensor, b: int):
        s = src[b:b + 1]
        src_mask = padding_mask(s)
        memory = model.encode(s, src_mask)
        return lambda ys: int(model.generator(model.decode(torch.tensor([ys]), memory, src_mask, causal(len(ys)))[:, -1]).argmax(-1))


class TestAccuracy:  # the generic notebook test treats TestAccuracy* as the thresholds
    GROUP = "Thresholds"

    @pytest.mark.points(6)
    @bar_title(THRESHOLDS["reversal"])
    def test_reversal_accuracy(self, student):
        """The saved reversal model decodes at least {bar} of held-out sequences exactly right (your saved weights in the
        notebook's Transformer, decoded by the notebook's greedy_decode)"""
        # Drawn afresh in every run from a secret seed (the notebook trains on seed 0 and validates on seed 1), as
        # many as the sequential rule needs.
        graded_reversal(student, "transformer_reverse", "Transformer", "TransformerConfig", "greedy_decode",
                        ReversalTask(), THRESHOLDS["reversal"], with_lengths=False)

    @pytest.mark.points(6)
    @bar_title(THRESHOLDS["multi30k_perplexity"])
    def test_multi30k_perplexity(self, student):
        """The saved Multi30k model reaches a test perplexity of at most {bar} per target token (your saved weights in the
        notebook's Transformer)"""
        multi30k_perplexity(student, THRESHOLDS["multi30k_perplexity"])


TOKENIZER_FILE = "transformer_multi30k_tokenizer.json"


def multi30k_perplexity(student, threshold: Threshold) -> float:
    """Per-token test perplexity of the student's saved `transformer_multi30k` under its saved tokenizer, which must be
    the course's (autograder/kit/translation_grading.py)."""
    tokenizer = course_tokenizer(student, TOKENIZER_FILE, "the Multi30k data cell")
    return graded_perplexity(student, "transformer_multi30k", "Transformer", "TransformerConfig", tokenizer,
                             lambda src, tgt_in: (src, tgt_in), threshold)

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
from typing import cast

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from autograder.assignments import assignment_of
from autograder.kit.attention_reference import causal, sinusoidal_reference
from autograder.kit.families import (AttentionNames, DecoderLayerFamily, DecoderLayerNames, DecoderModelFamily,
                                 EncoderLayerFamily, EncoderLayerNames,
                                 DecoderModelNames, FeedForwardFamily,
                                 FeedForwardNames, GreedyDecodingFamily,
                                 GreedyNames, MaskFamily, MultiHeadAttentionFamily, PositionalEncodingFamily, bar_title,
                                 DECODER_ATTENTIONS, decoder_reference, layer_weights, mask_tokens,
                                 model_reference, padding_mask)
from autograder.kit.reference import (check_dropout, fill_parameters_, replayed_dropout, seeded_randn)
from autograder.kit.requests import module
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
    NAMES = AttentionNames(mask="padding")
    TESTS = ("test_output_shape_cross_attention", "test_self_attention_matches_torch", "test_padding_mask_matches_torch",
             "test_causal_mask_matches_torch", "test_cross_attention_with_padding", "test_masked_positions_get_zero_weight",
             "test_fully_padded_row_gives_no_nan", "test_gradients_match_torch", "test_dropout_in_train_mode_only")
    CASES = {"test_self_attention_matches_torch": ("d_model,heads", [(16, 1), (32, 4)])}


@pytest.mark.cell("feedforward")
class TestFeedForward(FeedForwardFamily):
    GROUP = "Feed-forward"
    NAMES = FeedForwardNames(cls="FeedForward", reference=TorchFeedForward, activation=F.relu,
                             formula="linear2(ReLU(linear1(x)))", dropped="after the ReLU (before linear2)",
                             where="once, after the ReLU (before linear2)")
    TESTS = ("test_matches_reference", "test_dropout_in_train_mode_only")


def encoder_reference(d_model, heads, d_ff, seed) -> nn.TransformerEncoderLayer:
    """The seeded nn.TransformerEncoderLayer (post-norm, ReLU, no dropout) of the torch_encoder_layer stand-in."""
    return fill_parameters_(TorchEncoderLayer(d_model, heads, d_ff).layer, seed=seed, scale=0.3).eval()


@pytest.mark.cell("encoder_layer")
class TestEncoderLayer(EncoderLayerFamily):
    GROUP = "Encoder layer"
    NAMES = EncoderLayerNames(cls="EncoderLayer", norm="Post-norm", parts="",
                              reference="nn.TransformerEncoderLayer (padding mask, ReLU, dropout 0)",
                              residuals="residual + LayerNorm steps", grad_reference="nn.TransformerEncoderLayer",
                              padding_mask=True)
    TESTS = ("test_matches_torch_layer", "test_gradients_match_torch")
    RENAMED = {"test_matches_torch_layer": "test_matches_torch_encoder_layer"}

    def reference(self, d_model: int, heads: int, d_ff: int, seed: int) -> nn.TransformerEncoderLayer:
        return encoder_reference(d_model, heads, d_ff, seed)

    def weights(self, ref: nn.Module) -> dict:
        return layer_weights(cast(nn.TransformerEncoderLayer, ref), {"self_attn": "self_attn"}, 2)

    def substitutes(self, d_model: int, heads: int, d_ff: int) -> dict:
        return layer_substitutes(d_model, heads, d_ff, ["self_attn"])

    @pytest.mark.points(1)
    def test_dropout_in_train_mode_only(self, student):
        """With dropout p, EncoderLayer drops each sublayer's output before its residual sum in train mode, nothing in eval mode"""
        p, seed = 0.3, 9
        ref = encoder_reference(16, 2, 32, seed=33)
        x, mask = seeded_randn(2, 5, 16, seed=34), padding_mask(mask_tokens([5, 3], 5))
        built = module(self.build(16, 2, 32, dropout=p), weights=self.weights(ref),
                       substitutes=self.substitutes(16, 2, 32))  # (stand-ins without dropout of their own)
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
    NAMES = DecoderLayerNames(target="target", memory="encoder output", memory_mask=True)
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
class TestTransformer(DecoderModelFamily):
    GROUP = "Transformer"
    NAMES = DecoderModelNames(
        cls="Transformer", config="TransformerConfig", maps="Transformer", inputs="src (B, S) and tgt (B, T)", outputs="logits",
        vocab="tgt_vocab_size", label="Transformer logits",
        parts="Scaled embeddings, positional encoding, masks, encoder, decoder and generator",
        layers="encoder/decoder layers", token="target token", word="target token", unchanged="outputs",
        later=" (the whole model, your own layers)", reads="does the decoder read the target tokens?")
    TESTS = ("test_output_shape", "test_matches_torch_reference", "test_cannot_see_the_future")
    RENAMED = {"test_cannot_see_the_future": "test_decoder_cannot_see_the_future"}
    CONFIG, SHAPE, WORDS = TINY, (3, 6, 13), (3, 10)

    def inputs(self, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        return transformer_inputs(seed)

    def reference(self, seed: int) -> tuple[nn.ModuleDict, dict, dict]:
        return reference_transformer(TINY, seed)

    def with_masks(self, target: dict) -> dict:
        return with_reference_masks(target)

    def reference_outputs(self, parts: nn.ModuleDict, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        return reference_logits(parts, TINY, src, tgt)


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

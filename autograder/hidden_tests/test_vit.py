"""Hidden tests of the ViT assignment (source/vit/vit.ipynb). Never shipped to students.

Every layer is compared with a torch/torchvision reference given the same weights. Block and ViT are
tested with stand-in sublayers built from torch itself (`substitutes`), so a bug in Attention costs
points only in the Attention tests. Dropout is checked in eval mode (it does nothing) and in train mode, against
the reference under the same replayed masks (stand_ins/dropout.py): the notebook states where each dropout goes.
The accuracy tests rebuild the student's saved model in the sandbox; only this process holds the labels.
"""
from typing import Any

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.vision_transformer import VisionTransformer

from autograder.assignments import assignment_of
from autograder.kit.families import (EncoderLayerFamily, EncoderLayerNames, FeedForwardFamily, FeedForwardNames,
                                     SavedClassifier, SelfAttentionFamily, SelfAttentionNames, accuracy_tests)
from autograder.kit.reference import (assert_close, assert_shape, check_dropout, expect_grads, fill_parameters_,
                                      reference_grads, replayed_dropout, seeded_randn)
from autograder.kit.requests import call, module, stand_in
from autograder.kit.stand_ins.vit import ConvPatchify, TorchMLP, torchvision_block

ASSIGNMENT = assignment_of(__file__)  # declared in source/vit/spec.py: cells, thresholds, forbidden APIs, budget
THRESHOLDS = ASSIGNMENT.spec.thresholds


@pytest.mark.cell("patchify")
class TestPatchify:
    GROUP = "Patchify"

    @pytest.mark.points(1)
    def test_output_shape(self, student):
        """Patchify returns (B, N, D), also for non-square images"""
        result = student.run(call("Patchify", in_channels=3, patch_size=8, d_model=16), (seeded_randn(2, 3, 16, 32),),
                             what="Patchify(3, 8, 16) on a (2, 3, 16, 32) batch")
        assert_shape(result.output, (2, 8, 16), "Patchify output")

    @pytest.mark.points(2)
    def test_values_match_reference(self, student):
        """Patch embeddings equal a strided convolution, patches in row-major order"""
        ref = fill_parameters_(ConvPatchify(1, 7, 8), seed=1)
        x = seeded_randn(3, 1, 28, 28, seed=2)
        result = student.run(call("Patchify", in_channels=1, patch_size=7, d_model=8), (x,), weights=ref.state_dict(),
                             what="Patchify(1, 7, 8)")
        assert_close(result.output, ref(x).detach(), "Patchify output")

    @pytest.mark.points(1)
    def test_gradients_match_reference(self, student):
        """Gradients of Patchify (input and weights) equal the reference's"""
        ref = fill_parameters_(ConvPatchify(3, 4, 4), seed=3)
        x, g = seeded_randn(2, 3, 8, 12, seed=4), seeded_randn(2, 6, 4, seed=5)
        result = student.run(call("Patchify", in_channels=3, patch_size=4, d_model=4), (x,), weights=ref.state_dict(),
                             grad_output=g, what="Patchify(3, 4, 4)")
        x_grad, p_grads = reference_grads(ref, x, g)
        assert_close(result.input_grads[0], x_grad, "gradient with respect to the input")
        expect_grads(result.param_grads, p_grads, ["proj.weight"])


@pytest.mark.cell("attention")
class TestAttention(SelfAttentionFamily):
    GROUP = "Attention"
    NAMES = SelfAttentionNames(cls="Attention")
    TESTS = ("test_output_shape", "test_matches_torch_multihead_attention", "test_gradients_match_torch",
             "test_dropout_in_train_mode_only")
    CASES = {"test_matches_torch_multihead_attention": ("d_model,heads", [(16, 1), (32, 4), (48, 6)])}


@pytest.mark.cell("mlp")
class TestMLP(FeedForwardFamily):
    GROUP = "MLP"
    NAMES = FeedForwardNames(cls="MLP", reference=TorchMLP, activation=F.gelu, formula="fc2(GELU(fc1(x)))",
                             dropped="after GELU and after fc2", where="after GELU (before fc2), then after fc2",
                             output_dropout=True)
    TESTS = ("test_matches_reference", "test_dropout_in_train_mode_only")
    POINTS = {"test_matches_reference": 2}


def encoder_block(d_model: int, heads: int, d_ff: int, seed: int) -> nn.Module:
    """torchvision's EncoderBlock (the torchvision_block stand-in) with seeded weights."""
    return fill_parameters_(torchvision_block(d_model, heads, d_ff), seed=seed, scale=0.3).eval()


def block_weights(ref: Any) -> dict:
    """torchvision EncoderBlock weights under the student's names (attn/mlp are torch stand-ins)."""
    sa = ref.self_attention
    return {"norm1.weight": ref.ln_1.weight, "norm1.bias": ref.ln_1.bias,
            "attn.mha.in_proj_weight": sa.in_proj_weight, "attn.mha.in_proj_bias": sa.in_proj_bias,
            "attn.mha.out_proj.weight": sa.out_proj.weight, "attn.mha.out_proj.bias": sa.out_proj.bias,
            "norm2.weight": ref.ln_2.weight, "norm2.bias": ref.ln_2.bias,
            "mlp.fc1.weight": ref.mlp[0].weight, "mlp.fc1.bias": ref.mlp[0].bias,
            "mlp.fc2.weight": ref.mlp[3].weight, "mlp.fc2.bias": ref.mlp[3].bias}


@pytest.mark.cell("block")
class TestBlock(EncoderLayerFamily):
    GROUP = "Block"
    NAMES = EncoderLayerNames(cls="Block", norm="Pre-norm", parts=" (norm, attention, residual, norm, MLP, residual)",
                              reference="torchvision's EncoderBlock", residuals="residual paths",
                              grad_reference="the reference", padding_mask=False)
    TESTS = ("test_matches_torch_layer", "test_gradients_match_torch")
    RENAMED = {"test_matches_torch_layer": "test_matches_torchvision_encoder_block",
               "test_gradients_match_torch": "test_residual_gradients"}

    def reference(self, d_model: int, heads: int, d_ff: int, seed: int) -> nn.Module:
        return encoder_block(d_model, heads, d_ff, seed)

    def weights(self, ref: nn.Module) -> dict:
        return block_weights(ref)

    def substitutes(self, d_model: int, heads: int, d_ff: int) -> dict:
        return {"attn": stand_in("torch_attention", d_model=d_model, num_heads=heads),
                "mlp": stand_in("torch_mlp", d_model=d_model, d_ff=d_ff)}


VIT_CONFIG = dict(image_size=16, in_channels=3, patch_size=4, num_classes=7, d_model=16, depth=2, num_heads=2,
                  d_ff=32, dropout=0.0)


def torchvision_vit(cfg: dict, seed: int) -> VisionTransformer:
    ref = VisionTransformer(image_size=cfg["image_size"], patch_size=cfg["patch_size"], num_layers=cfg["depth"],
                            num_heads=cfg["num_heads"], hidden_dim=cfg["d_model"], mlp_dim=cfg["d_ff"],
                            num_classes=cfg["num_classes"])
    ref.conv_proj = nn.Conv2d(cfg["in_channels"], cfg["d_model"], cfg["patch_size"], cfg["patch_size"])
    return fill_parameters_(ref, seed=seed, scale=0.3).eval()


def isolated_vit(cfg: dict, ref: VisionTransformer) -> tuple[dict, dict, dict]:
    """(build, substitutes, weights): the student's ViT with torch stand-ins for Patchify and the Blocks."""
    substitutes = {"patchify": stand_in("conv_patchify", in_channels=cfg["in_channels"], patch_size=cfg["patch_size"],
                                        d_model=cfg["d_model"])}
    weights = {"patchify.proj.weight": ref.conv_proj.weight, "patchify.proj.bias": ref.conv_proj.bias,
               "cls_token": ref.class_token, "pos_embed": ref.encoder.pos_embedding,
               "norm.weight": ref.encoder.ln.weight, "norm.bias": ref.encoder.ln.bias,
               "head.weight": ref.heads.head.weight, "head.bias": ref.heads.head.bias}
    for i in range(cfg["depth"]):
        substitutes[f"blocks.{i}"] = stand_in("torchvision_block", d_model=cfg["d_model"], num_heads=cfg["num_heads"],
                                              d_ff=cfg["d_ff"])
        layer = getattr(ref.encoder.layers, f"encoder_layer_{i}")
        weights.update({f"blocks.{i}.{name}": p for name, p in layer.state_dict().items()})
    return call("ViT", call("ViTConfig", **cfg)), substitutes, weights


@pytest.mark.cell("vit")
class TestViT:
    GROUP = "ViT"

    @pytest.mark.points(1)
    def test_output_shape(self, student):
        """ViT maps (B, C, H, W) images to (B, num_classes) logits"""
        build, substitutes, weights = isolated_vit(VIT_CONFIG, torchvision_vit(VIT_CONFIG, seed=1))
        result = student.run(build, (seeded_randn(3, 3, 16, 16),), weights=weights, substitutes=substitutes,
                             what="ViT on a (3, 3, 16, 16) batch")
        assert_shape(result.output, (3, 7), "ViT output")

    @pytest.mark.points(3)
    def test_matches_torchvision_vision_transformer(self, student):
        """Class token, position embedding, final norm and head equal torchvision's VisionTransformer"""
        ref = torchvision_vit(VIT_CONFIG, seed=2)
        build, substitutes, weights = isolated_vit(VIT_CONFIG, ref)
        x = seeded_randn(4, 3, 16, 16, seed=3)
        result = student.run(build, (x,), weights=weights, substitutes=substitutes, what="ViT")
        assert_close(result.output, ref(x).detach(), "ViT logits", atol=1e-4)

    @pytest.mark.points(1)
    def test_gradients_reach_embeddings(self, student):
        """Gradients of the class token, position embedding and head equal torchvision's"""
        ref = torchvision_vit(VIT_CONFIG, seed=4)
        build, substitutes, weights = isolated_vit(VIT_CONFIG, ref)
        x, g = seeded_randn(2, 3, 16, 16, seed=5), seeded_randn(2, 7, seed=6)
        result = student.run(build, (x,), weights=weights, substitutes=substitutes, grad_output=g, what="ViT backward")
        _, p_grads = reference_grads(ref, x, g)
        expect_grads(result.param_grads, p_grads, {"cls_token": "class_token", "pos_embed": "encoder.pos_embedding",
                                                   "head.weight": "heads.head.weight"}, atol=1e-4)

    @pytest.mark.points(1)
    def test_position_dropout_in_train_mode_only(self, student):
        """With dropout p, ViT applies pos_drop once, after adding the position embedding, in train mode only"""
        p, seed = 0.5, 7
        cfg = dict(VIT_CONFIG, dropout=p)
        ref = torchvision_vit(VIT_CONFIG, seed=8)
        build, substitutes, weights = isolated_vit(cfg, ref)
        # (the stand-in blocks have no dropout: only the ViT's own is checked)
        built = module(build, weights=weights, substitutes=substitutes)
        x = seeded_randn(2, 3, 16, 16, seed=9)

        def forward(training: bool):
            tokens = ref._process_input(x)
            tokens = torch.cat([ref.class_token.expand(len(x), -1, -1), tokens], dim=1) + ref.encoder.pos_embedding
            return ref.heads(ref.encoder.ln(ref.encoder.layers(F.dropout(tokens, p, training)))[:, 0])
        with torch.no_grad():
            expected_eval = forward(False)
            with replayed_dropout(seed):
                expected_train = forward(True)
        check_dropout(student, built, (x,), p=p, seed=seed, expected_eval=expected_eval, expected_train=expected_train,
                      calls=1, what=f"ViT(dropout={p}) with reference blocks", atol=1e-4,
                      where="pos_drop on the tokens after adding the position embedding (class token included)")


TestAccuracy = accuracy_tests(THRESHOLDS, {  # saved files, model, config, data, points, title
    "fashion_mnist": SavedClassifier("vit_fashionmnist", "ViT", "ViTConfig", "fashion_mnist", 8,
                                     "The saved FashionMNIST model reaches at least {bar} test accuracy"),
    "cifar10": SavedClassifier("vit_cifar10", "ViT", "ViTConfig", "cifar10", 8,
                               "The saved CIFAR-10 model reaches at least {bar} test accuracy")})

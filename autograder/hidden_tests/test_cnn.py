"""Hidden tests of the CNN assignment (source/cnn/cnn.ipynb). Never shipped to students.

SimpleCNN, Inception and ResidualBlock are each compared with a reference built from torch layers given
the same weights, in isolation: a bug in one costs points only in its own tests. BetterCNN is the
student's own design, so its tests are light (shape, gradients, built from the student's modules); it
uses the student's modules, so a broken module can also cost points there. The accuracy tests rebuild
the student's saved models in the sandbox; only this process holds the labels. Both thresholds are
judged wherever the grader runs, by the sequential rule on a secret sample (autograder/kit/scoring.py).
"""
import ast
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from autograder.assignments import assignment_of
from autograder.kit.families import SavedClassifier, accuracy_tests
from autograder.kit.reference import (Feedback, assert_close, assert_shape, expect_grads, fill_parameters_, reference_grads,
                                  seeded_randn)
from autograder.kit.requests import call, handle, module

ASSIGNMENT = assignment_of(__file__)  # declared in source/cnn/spec.py: cells, thresholds, forbidden APIs, budget
THRESHOLDS = ASSIGNMENT.spec.thresholds



# -- Part 1: SimpleCNN ----------------------------------------------------------------------------------
SIMPLE_LAYOUT = {"conv1.weight": (6, 3, 5, 5), "conv1.bias": (6,), "conv2.weight": (16, 6, 5, 5), "conv2.bias": (16,),
                 "fc1.weight": (120, 400), "fc1.bias": (120,), "fc2.weight": (84, 120), "fc2.bias": (84,),
                 "fc3.weight": (10, 84), "fc3.bias": (10,)}
SIMPLE = call("SimpleCNN", call("SimpleCNNConfig"))


class ReferenceSimpleCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 6, 5), nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2, 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2, 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc3(F.relu(self.fc2(x)))


@pytest.mark.cell("simple_cnn")
class TestSimpleCNN:
    GROUP = "SimpleCNN"

    @pytest.mark.points(1)
    @pytest.mark.parametrize("batch", [1, 5])
    def test_output_shape(self, student, batch):
        """SimpleCNN maps (B, 3, 32, 32) images to (B, 10) logits"""
        result = student.run(SIMPLE, (seeded_randn(batch, 3, 32, 32),), what=f"SimpleCNN on a ({batch}, 3, 32, 32) batch")
        assert_shape(result.output, (batch, 10), "SimpleCNN output")

    @pytest.mark.points(2)
    def test_layers_and_parameter_count(self, student):
        """SimpleCNN has exactly the specified layers: 62006 parameters"""
        result = student.run(SIMPLE, (seeded_randn(1, 3, 32, 32),), what="SimpleCNN")
        count = sum(math.prod(s) for s in result.param_shapes.values())
        if count != 62006:
            raise Feedback(f"SimpleCNN has {count:,} parameters; the specified network has 62,006")
        got = {name: tuple(shape) for name, shape in result.param_shapes.items()}
        if got != SIMPLE_LAYOUT:
            wrong = sorted(set(got.items()) ^ set(SIMPLE_LAYOUT.items()))
            raise Feedback(f"SimpleCNN's parameters are not named and shaped as specified (conv1, conv2, fc1, fc2, fc3): "
                           f"differences {wrong[:6]}")

    @pytest.mark.points(3)
    def test_values_match_reference(self, student):
        """SimpleCNN equals the tutorial network built from torch layers with the same weights"""
        ref = fill_parameters_(ReferenceSimpleCNN(), seed=1, scale=0.1)
        x = seeded_randn(4, 3, 32, 32, seed=2)
        result = student.run(SIMPLE, (x,), weights=ref.state_dict(), what="SimpleCNN")
        assert_close(result.output, ref(x).detach(), "SimpleCNN logits", atol=1e-4)

    @pytest.mark.points(1)
    def test_gradients_reach_every_parameter(self, student):
        """Gradients of SimpleCNN (input and every parameter) equal the reference's"""
        ref = fill_parameters_(ReferenceSimpleCNN(), seed=3, scale=0.1)
        x, g = seeded_randn(3, 3, 32, 32, seed=4), seeded_randn(3, 10, seed=5)
        result = student.run(SIMPLE, (x,), weights=ref.state_dict(), grad_output=g, what="SimpleCNN backward")
        x_grad, p_grads = reference_grads(ref, x, g)
        assert_close(result.input_grads[0], x_grad, "gradient with respect to the input", atol=1e-4)
        expect_grads(result.param_grads, p_grads, list(SIMPLE_LAYOUT), atol=1e-4)


# -- Part 2: Inception ------------------------------------------------------------------------------------
class ReferenceInception(nn.Module):
    """Built from torch layers: four branches, ReLU after every convolution, concatenated in order 1, 2, 3, 4."""

    def __init__(self, cin, c1, c3r, c3, c5r, c5, pp):
        super().__init__()
        self.branch1 = nn.Sequential(nn.Conv2d(cin, c1, 1), nn.ReLU())
        self.branch2 = nn.Sequential(nn.Conv2d(cin, c3r, 1), nn.ReLU(), nn.Conv2d(c3r, c3, 3, padding=1), nn.ReLU())
        self.branch3 = nn.Sequential(nn.Conv2d(cin, c5r, 1), nn.ReLU(), nn.Conv2d(c5r, c5, 5, padding=2), nn.ReLU())
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(cin, pp, 1), nn.ReLU())

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], dim=1)


INCEPTION_NAMES = {"b1_1x1": "branch1.0", "b2_reduce": "branch2.0", "b2_3x3": "branch2.2", "b3_reduce": "branch3.0",
                   "b3_5x5": "branch3.2", "b4_proj": "branch4.1"}


def inception_case(widths: tuple, seed: int):
    ref = fill_parameters_(ReferenceInception(*widths), seed=seed, scale=0.4)
    state = ref.state_dict()
    weights = {f"{ours}.{kind}": state[f"{theirs}.{kind}"] for ours, theirs in INCEPTION_NAMES.items() for kind in ("weight", "bias")}
    names = dict(zip(("in_channels", "ch1x1", "ch3x3_reduce", "ch3x3", "ch5x5_reduce", "ch5x5", "pool_proj"), widths, strict=True))
    return ref, weights, call("Inception", **names)


@pytest.mark.cell("inception")
class TestInception:
    GROUP = "Inception"

    @pytest.mark.points(1)
    @pytest.mark.parametrize("widths,size", [((3, 4, 2, 5, 3, 6, 2), (7, 9)), ((16, 8, 4, 8, 2, 4, 4), (16, 16)),
                                             ((1, 1, 1, 1, 1, 1, 1), (1, 1))])
    def test_output_shape(self, student, widths, size):
        """Inception keeps H x W and has ch1x1 + ch3x3 + ch5x5 + pool_proj channels"""
        _, _, build = inception_case(widths, seed=0)
        result = student.run(build, (seeded_randn(2, widths[0], *size),), what=f"Inception{widths} on size {size}")
        assert_shape(result.output, (2, widths[1] + widths[3] + widths[5] + widths[6], *size), "Inception output")

    @pytest.mark.points(2)
    def test_channel_order(self, student):
        """The four branches are concatenated on channels in the documented order (1x1, 3x3, 5x5, pool)"""
        ref, weights, build = inception_case((3, 2, 2, 3, 2, 4, 5), seed=1)
        # Every branch's last convolution outputs a constant: its branch number.
        for i, last in enumerate(["b1_1x1", "b2_3x3", "b3_5x5", "b4_proj"], start=1):
            weights[f"{last}.weight"] = torch.zeros_like(weights[f"{last}.weight"])
            weights[f"{last}.bias"] = torch.full_like(weights[f"{last}.bias"], float(i))
        result = student.run(build, (seeded_randn(2, 3, 6, 6, seed=2),), weights=weights, what="Inception")
        assert_shape(result.output, (2, 14, 6, 6), "Inception output")
        got = [round(v) for v in result.output[0, :, 0, 0].tolist()]
        want = [1] * 2 + [2] * 3 + [3] * 4 + [4] * 5
        if got != want:
            raise Feedback(f"Inception output channels come from the branches {got}, expected {want} "
                           "(concatenate the branches in the order 1x1, 3x3, 5x5, pool on dimension 1)")

    @pytest.mark.points(2)
    @pytest.mark.parametrize("widths", [(3, 4, 2, 5, 3, 6, 2), (8, 2, 6, 4, 1, 3, 5)])
    def test_values_match_reference(self, student, widths):
        """Inception equals a reference built from torch layers with the same weights"""
        ref, weights, build = inception_case(widths, seed=sum(widths))
        x = seeded_randn(2, widths[0], 8, 7, seed=3)
        result = student.run(build, (x,), weights=weights, what=f"Inception{widths}")
        assert_close(result.output, ref(x).detach(), "Inception output", atol=1e-4)

    @pytest.mark.points(1)
    def test_gradients_reach_every_parameter(self, student):
        """Gradients of Inception (input and every convolution) equal the reference's"""
        ref, weights, build = inception_case((4, 3, 2, 4, 2, 3, 2), seed=5)
        x, g = seeded_randn(2, 4, 6, 6, seed=6), seeded_randn(2, 12, 6, 6, seed=7)
        result = student.run(build, (x,), weights=weights, grad_output=g, what="Inception backward")
        x_grad, p_grads = reference_grads(ref, x, g)
        assert_close(result.input_grads[0], x_grad, "gradient with respect to the input", atol=1e-4)
        expect_grads(result.param_grads, p_grads,
                     {f"{o}.{k}": f"{t}.{k}" for o, t in INCEPTION_NAMES.items() for k in ("weight", "bias")}, atol=1e-4)


# -- Part 3: ResidualBlock ----------------------------------------------------------------------------------
class ReferenceResidual(nn.Module):
    """Built from torch layers: ReLU(BN2(conv2(ReLU(BN1(conv1(x))))) + shortcut(x))."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.project = stride != 1 or cin != cout
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)) if self.project else nn.Identity()

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + self.shortcut(x))


def residual_case(cin: int, cout: int, stride: int, seed: int, zero_convs: bool = False):
    """A reference block with seeded weights and known BatchNorm running statistics (eval mode), and its
    weights under the student's names (the same names: conv1, bn1, conv2, bn2, shortcut.0, shortcut.1)."""
    ref = fill_parameters_(ReferenceResidual(cin, cout, stride), seed=seed, scale=0.4)
    generator = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for module in ref.modules():
            if isinstance(module, nn.BatchNorm2d):
                assert module.running_mean is not None and module.running_var is not None  # (track_running_stats)
                module.running_mean.copy_(0.3 * torch.randn(cout, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(cout, generator=generator))
                module.weight.add_(1.0)
        if zero_convs:  # F(x) = BN2(conv2(...)) = 0: conv weights zero, and BN2 maps 0 to 0
            ref.conv1.weight.zero_()
            ref.conv2.weight.zero_()
            ref.bn2.bias.zero_()
            assert ref.bn2.running_mean is not None  # (track_running_stats)
            ref.bn2.running_mean.zero_()
    ref.eval()
    return ref, dict(ref.state_dict()), call("ResidualBlock", in_channels=cin, out_channels=cout, stride=stride)


BLOCK_PARAMS = {"conv1.weight", "bn1.weight", "bn1.bias", "conv2.weight", "bn2.weight", "bn2.bias"}
PROJECTION_PARAMS = {"shortcut.0.weight", "shortcut.1.weight", "shortcut.1.bias"}


@pytest.mark.cell("residual")
class TestResidualBlock:
    GROUP = "ResidualBlock"

    @pytest.mark.points(1)
    @pytest.mark.parametrize("cin,cout,stride,size", [(8, 8, 1, (8, 8)), (4, 8, 1, (6, 5)), (8, 16, 2, (9, 9)),
                                                      (6, 6, 2, (8, 10))])
    def test_output_shape(self, student, cin, cout, stride, size):
        """ResidualBlock outputs out_channels channels at ceil(H / stride) x ceil(W / stride)"""
        result = student.run(call("ResidualBlock", in_channels=cin, out_channels=cout, stride=stride),
                             (seeded_randn(2, cin, *size),), what=f"ResidualBlock({cin}, {cout}, stride={stride})")
        assert_shape(result.output, (2, cout, math.ceil(size[0] / stride), math.ceil(size[1] / stride)), "ResidualBlock output")

    @pytest.mark.points(1)
    @pytest.mark.parametrize("cin,cout,stride", [(8, 8, 1), (8, 16, 1), (8, 8, 2), (4, 12, 2)])
    def test_projection_exactly_when_shapes_change(self, student, cin, cout, stride):
        """The shortcut has a 1x1 conv + BatchNorm projection exactly when the stride or channel count changes"""
        project = stride != 1 or cin != cout
        case = "the shapes change, so the shortcut must be a projection" if project else \
            "the shapes do not change, so the shortcut must be the identity (no parameters)"
        try:
            result = student.run(call("ResidualBlock", in_channels=cin, out_channels=cout, stride=stride),
                                 (seeded_randn(1, cin, 4, 4),), what=f"ResidualBlock({cin}, {cout}, stride={stride})")
        except Feedback as exc:
            raise Feedback(f"({case}) {exc}") from None
        names = set(result.param_shapes)
        expected = BLOCK_PARAMS | (PROJECTION_PARAMS if project else set())
        if names != expected:
            extra, missing = sorted(names - expected), sorted(expected - names)
            raise Feedback(f"ResidualBlock({cin}, {cout}, stride={stride}): {case}; "
                           f"unexpected parameters {extra}, missing {missing}")
        if project and tuple(result.param_shapes["shortcut.0.weight"]) != (cout, cin, 1, 1):
            raise Feedback(f"shortcut.0.weight has shape {tuple(result.param_shapes['shortcut.0.weight'])}, "
                           f"expected {(cout, cin, 1, 1)} (a 1x1 convolution without bias)")

    @pytest.mark.points(2)
    @pytest.mark.parametrize("cin,cout,stride", [(6, 6, 1), (4, 8, 2)])
    def test_identity_plus_residual(self, student, cin, cout, stride):
        """With both convolutions zeroed (BatchNorm in eval mode), the block returns ReLU of its shortcut"""
        ref, weights, build = residual_case(cin, cout, stride, seed=cin + cout, zero_convs=True)
        x = seeded_randn(2, cin, 6, 6, seed=8)
        result = student.run(build, (x,), weights=weights, what=f"ResidualBlock({cin}, {cout}, stride={stride})")
        assert_close(result.output, F.relu(ref.shortcut(x)).detach(), "ResidualBlock output with zeroed convolutions "
                     "(should be ReLU of the shortcut)", atol=1e-5)
        if not ref.project:
            assert_close(result.output, F.relu(x), "identity-shortcut output with zeroed convolutions (should be ReLU(x))", atol=1e-5)

    @pytest.mark.points(2)
    @pytest.mark.parametrize("cin,cout,stride", [(8, 8, 1), (4, 8, 1), (6, 12, 2)])
    def test_values_match_reference(self, student, cin, cout, stride):
        """ResidualBlock equals a reference built from torch layers with the same weights (BatchNorm in eval mode)"""
        ref, weights, build = residual_case(cin, cout, stride, seed=10 * stride + cout)
        x = seeded_randn(2, cin, 7, 6, seed=9)
        result = student.run(build, (x,), weights=weights, what=f"ResidualBlock({cin}, {cout}, stride={stride})")
        assert_close(result.output, ref(x).detach(), "ResidualBlock output", atol=1e-4)

    @pytest.mark.points(1)
    @pytest.mark.parametrize("cin,cout,stride", [(6, 6, 1), (4, 8, 2)])
    def test_gradients_reach_every_parameter(self, student, cin, cout, stride):
        """Gradients of ResidualBlock (input, both paths, every parameter) equal the reference's"""
        ref, weights, build = residual_case(cin, cout, stride, seed=20 + cout)
        x = seeded_randn(2, cin, 6, 6, seed=10)
        g = seeded_randn(2, cout, 6 // stride, 6 // stride, seed=11)
        result = student.run(build, (x,), weights=weights, grad_output=g, what=f"ResidualBlock({cin}, {cout}, stride={stride}) backward")
        x_grad, p_grads = reference_grads(ref, x, g)
        assert_close(result.input_grads[0], x_grad, "gradient with respect to the input", atol=1e-4)
        expect_grads(result.param_grads, p_grads, atol=1e-4)


# -- Part 4: BetterCNN (the student's design) -------------------------------------------------------------------
BETTER = call("BetterCNN", call("BetterCNNConfig"))


def names_used(source: str) -> set[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


@pytest.mark.cell("better_cnn")
class TestBetterCNN:
    GROUP = "BetterCNN"

    @pytest.mark.points(1)
    @pytest.mark.cell("better_cnn", "better_config")
    def test_output_shape(self, student):
        """BetterCNN(BetterCNNConfig()) maps (B, 3, 32, 32) images to (B, 10) logits"""
        result = student.run(BETTER, (seeded_randn(3, 3, 32, 32),), what="BetterCNN(BetterCNNConfig()) on a (3, 3, 32, 32) batch")
        assert_shape(result.output, (3, 10), "BetterCNN output")

    @pytest.mark.points(1)
    def test_deterministic_in_eval_mode(self, student):
        """In eval mode BetterCNN(BetterCNNConfig()) gives the same logits twice for the same images (no dropout at evaluation)"""
        x = seeded_randn(4, 3, 32, 32, seed=3)
        what = "BetterCNN(BetterCNNConfig()) in eval mode"
        first = student.invoke(module(BETTER, keep_as="better_eval"), x, what=what).value
        second = student.invoke(handle("better_eval"), x, what=what).value
        if not isinstance(first, torch.Tensor) or not isinstance(second, torch.Tensor):
            raise Feedback("BetterCNN.forward must return a tensor of logits")
        assert_close(second, first, f"{what}: the logits of the same images a second time (dropout must do nothing in "
                     "eval mode: use nn.Dropout, or F.dropout with training=self.training)", rtol=0.0, atol=1e-6)

    @pytest.mark.points(1)
    def test_built_from_residual_blocks_and_inception(self, student):
        """BetterCNN uses both ResidualBlock and Inception"""
        missing = {"ResidualBlock", "Inception"} - names_used(student.cell_source("better_cnn"))
        if missing:
            raise Feedback(f"BetterCNN must be built from your modules; its cell does not use {', '.join(sorted(missing))}")

    @pytest.mark.points(1)
    def test_gradients_reach_every_parameter(self, student):
        """Every parameter of BetterCNN(BetterCNNConfig()) receives a non-zero gradient"""
        result = student.run(BETTER, (seeded_randn(4, 3, 32, 32, seed=1),), grad_output=seeded_randn(4, 10, seed=2),
                             what="BetterCNN backward")
        dead = sorted(n for n in result.param_shapes
                      if n not in result.param_grads or not bool(result.param_grads[n].abs().sum() > 0))
        if dead:
            raise Feedback(f"{len(dead)} parameter(s) of BetterCNN receive no gradient (unused in forward?): {', '.join(dead[:6])}")


TestAccuracy = accuracy_tests(THRESHOLDS, {"simple_cnn": SavedClassifier(
    "cnn_simple", "SimpleCNN", "SimpleCNNConfig", "cifar10", 4, "The saved SimpleCNN reaches at least {bar} CIFAR-10 test accuracy"),
    "better_cnn": SavedClassifier("cnn_better", "BetterCNN", "BetterCNNConfig", "cifar10", 6,
                                  "The saved BetterCNN reaches at least {bar} CIFAR-10 test accuracy")})

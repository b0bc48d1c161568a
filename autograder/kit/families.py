"""Hidden-test families: the tests that several assignments share (positional encoding, masks, multi-head attention,
ViT's fused self-attention, the feed-forward network, the encoder and the post-norm decoder layer, a whole decoding
model, greedy decoding, accuracy thresholds), written once and instantiated by each assignment's hidden tests.

An assignment's test class inherits a family, names its notebook's names in NAMES (a small dataclass: the class,
the function, what a layer decodes, ...), picks the family's tests it has in TESTS and gives a parametrised test its
cases in CASES. Every notebook names its constructors' widths alike (`d_model`, `d_ff`, `num_heads`: docs/maintainers.md,
"Naming in the notebooks"), so the families call them by those names:

    @pytest.mark.cell("mha")
    class TestMultiHeadAttention(MultiHeadAttentionFamily):
        GROUP = "Multi-head attention"
        NAMES = AttentionNames(mask="causal")
        TESTS = ("test_output_shape_cross_attention", "test_self_attention_matches_torch", ...)
        CASES = {"test_self_attention_matches_torch": ("d_model,heads", [(16, 1), (32, 4)])}

The class keeps its test ids (TestMultiHeadAttention::test_...; RENAMED gives a family test the id an assignment
had for it) and the family gives each test its points (POINTS: an assignment's own, where they differ). The
class gets a copy of each test it picks, whose title (the docstring: what students read in their feedback) is
formatted with NAMES, so a title speaks the notebook's own names; a family test it does not pick is not collected.
Threshold tests are each assignment's own; their titles name the spec's bar through `bar_title`.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import types
from typing import TYPE_CHECKING, Any, Callable

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from autograder.kit.attention_reference import (attention_weights, causal, fused_attention_weights, mha_reference,
                                            sdpa_reference, sinusoidal_reference)
from autograder.kit.reference import (Feedback, assert_close, assert_shape, check_dropout, check_output_and_input_grad,
                                  expect_grads, grad_of, reference_grads, replayed_dropout, seeded_randn)
from autograder.kit.requests import call, handle, module, name, stand_in
from autograder.kit.scoring import graded_accuracy
from autograder.spec import Threshold
from autograder.kit.translation_grading import check_greedy_rows
from dlcourse.checks import fill_parameters_
from dlcourse.translation import BOS_ID, EOS_ID, PAD_ID

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


class Family:
    """The base of every family: see the module docstring."""

    NAMES: DataclassInstance | None = None  # a dataclass of the notebook's names; its fields format the tests' titles
    TESTS: tuple[str, ...] = ()  # the family's tests this assignment has
    CASES: dict[str, tuple[str, list]] = {}  # test name -> (argnames, cases) of pytest.mark.parametrize
    POINTS: dict[str, float] = {}  # test name -> its points in this assignment, where not the family's
    RENAMED: dict[str, str] = {}  # test name -> the id this assignment's class gives it, where not the family's

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("Test"):
            return  # a family, not an assignment's test class
        family = {n: f for base in reversed(cls.__mro__[1:]) for n, f in vars(base).items()
                  if n.startswith("test_") and inspect.isfunction(f) and n not in cls.__dict__}  # in written order
        unknown = [n for n in (*cls.TESTS, *cls.CASES, *cls.POINTS, *cls.RENAMED) if n not in family]
        if unknown:
            raise TypeError(f"{cls.__qualname__} picks tests its family does not have: {', '.join(unknown)}")
        names = dataclasses.asdict(cls.NAMES) if cls.NAMES is not None else {}
        own = {n: f for n, f in vars(cls).items() if n.startswith("test_")}
        for test_name, test in family.items():
            setattr(cls, test_name, None)
            if test_name in cls.TESTS:
                own_name = cls.RENAMED.get(test_name, test_name)
                setattr(cls, own_name, _own_copy(test, names, cls.CASES.get(test_name), cls.POINTS.get(test_name),
                                                 own_name))
        for test_name, test in own.items():  # pytest runs a class's tests in its __dict__'s order: the family's first
            delattr(cls, test_name)
            setattr(cls, test_name, test)


def _own_copy(test: Callable, names: dict, cases: tuple[str, list] | None, points: float | None,
              own_name: str) -> Callable:
    """`test` as a function of its own, named `own_name`: its title formatted with `names`, its marks copied (its
    points `points` where given), parametrised by `cases`."""
    copy = types.FunctionType(test.__code__, test.__globals__, own_name, test.__defaults__, test.__closure__)
    copy.__kwdefaults__, copy.__module__ = test.__kwdefaults__, test.__module__
    copy.__qualname__ = test.__qualname__.rsplit(".", 1)[0] + "." + own_name
    copy.__dict__.update({k: list(v) if k == "pytestmark" else v for k, v in test.__dict__.items()})
    if points is not None:
        copy.__dict__["pytestmark"] = [m for m in copy.__dict__.get("pytestmark", []) if m.name != "points"]
        copy = pytest.mark.points(points)(copy)
    copy.__doc__ = _title(test).format_map(names)
    return pytest.mark.parametrize(*cases)(copy) if cases else copy


def _title(test: Callable) -> str:
    """A test's docstring: the title pytest and the student's feedback show."""
    if test.__doc__ is None:
        raise TypeError(f"{test.__qualname__} has no docstring: a hidden test's title is its docstring")
    return test.__doc__


def bar_text(threshold: Threshold) -> str:
    """The bar as a title says it: an accuracy (a bar up to 1 that is a floor) as a percentage, anything else as is."""
    return f"{threshold.value * 100:g}%" if threshold.value <= 1 and not threshold.ceiling else f"{threshold.value:g}"


def bar_title(threshold: Threshold) -> Callable:
    """A threshold test's title names the spec's bar: `{bar}` in its docstring is `threshold`'s (source/<a>/spec.py),
    so the bar a student reads is the bar the grader applies."""
    def titled(test: Callable) -> Callable:
        test.__doc__ = _title(test).format(bar=bar_text(threshold))
        return test
    return titled


# -- accuracy thresholds -------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SavedClassifier:
    """What an accuracy threshold's test grades: the saved `<saved>.*`, rebuilt as model(config(**saved config)), on
    the test split of image `dataset` (scoring.graded_accuracy); its points and its title (the spec's bar as {bar})."""

    saved: str
    model: str
    config: str
    dataset: str
    points: float
    title: str


def accuracy_tests(thresholds: dict[str, Threshold], classifiers: dict[str, SavedClassifier],
                   group: str = "Accuracy") -> type:
    """The test class of an assignment's accuracy thresholds: for each threshold key in `classifiers`, the test its
    Threshold.test names ("TestAccuracy::test_x", all in one class), grading that classifier. Assign it to that class's
    name in the hidden tests (autograder/assignments.py reads the keys there without importing the file)."""
    def test_of(threshold: Threshold, c: SavedClassifier) -> Callable:
        @pytest.mark.points(c.points)
        def test(self, student):
            graded_accuracy(student, c.saved, c.model, c.config, c.dataset, threshold)
        test.__doc__ = c.title
        return bar_title(threshold)(test)

    named = {key: thresholds[key].test.split("::") for key in classifiers}
    classes = {cls for cls, _ in named.values()}
    if len(classes) != 1:
        raise TypeError(f"accuracy_tests builds one class; the thresholds name {sorted(classes)}")
    tests = {test: test_of(thresholds[key], classifiers[key]) for key, (_, test) in named.items()}
    for test_name, test in tests.items():
        test.__name__ = test.__qualname__ = test_name
    return type(classes.pop(), (), {"GROUP": group, **tests})


# -- inputs --------------------------------------------------------------------------------------------------------
def mask_tokens(lengths: list[int], width: int) -> torch.Tensor:
    """(B, width) token ids: row b has lengths[b] real tokens (ids 3..) then padding."""
    tokens = torch.full((len(lengths), width), PAD_ID, dtype=torch.long)
    for b, n in enumerate(lengths):
        tokens[b, :n] = 3 + (torch.arange(n) * 7 + b) % 8  # ids 3..10
    return tokens


def padding_mask(tokens: torch.Tensor) -> torch.Tensor:
    return (tokens != PAD_ID)[:, None, None, :]  # (B, 1, 1, T), True = may attend


def bool_tensor(value, what: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.dtype != torch.bool:
        raise Feedback(f"{what} must return a bool tensor")
    return value


# -- positional encoding -------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class PositionalEncodingNames:
    function: str = "sinusoidal_positional_encoding"
    cls: str = "PositionalEncoding"


class PositionalEncodingFamily(Family):
    NAMES = PositionalEncodingNames()

    @pytest.mark.points(1)
    def test_matches_formula(self, student, max_len, d_model):
        """{function} equals the formula (even and odd widths, several lengths)"""
        function = self.NAMES.function
        result = student.invoke(name(function), max_len, d_model, what=f"{function}({max_len}, {d_model})")
        if not isinstance(result.value, torch.Tensor):
            raise Feedback(f"{function} must return a tensor")
        assert_close(result.value, sinusoidal_reference(max_len, d_model),
                     f"positional encoding ({max_len} positions, d_model={d_model})", atol=1e-4)

    @pytest.mark.points(1)
    def test_module_adds_the_table(self, student):
        """{cls} adds the first T rows of the table to its input"""
        x = seeded_randn(2, 9, 12, seed=1)
        result = student.run(call(self.NAMES.cls, d_model=12, max_len=30), (x,), what=f"{self.NAMES.cls}(12, 30)")
        assert_close(result.output, x + sinusoidal_reference(9, 12).float(), f"{self.NAMES.cls} output", atol=1e-4)

    @pytest.mark.points(1)
    def test_dropout_in_train_mode_only(self, student):
        """With dropout p, {cls} drops the sum (input + table) in train mode, nothing in eval mode"""
        p, seed = 0.5, 2
        x = seeded_randn(2, 7, 10, seed=3)
        summed = x + sinusoidal_reference(7, 10).float()
        with replayed_dropout(seed):
            expected_train = F.dropout(summed, p, True)
        check_dropout(student, module(call(self.NAMES.cls, d_model=10, max_len=20, dropout=p)), (x,), p=p, seed=seed,
                      expected_eval=summed, expected_train=expected_train, calls=1, atol=1e-4,
                      what=f"{self.NAMES.cls}(10, 20, dropout={p})", where="once, on the input plus the table")


# -- masks ---------------------------------------------------------------------------------------------------------
class MaskFamily(Family):
    @pytest.mark.points(1)
    def test_padding_mask(self, student):
        """make_padding_mask is (B, 1, 1, T), True exactly at the non-padding tokens"""
        tokens = mask_tokens([5, 2, 7], 7)
        value = bool_tensor(student.invoke(name("make_padding_mask"), tokens, PAD_ID, what="make_padding_mask").value,
                            "make_padding_mask")
        assert_shape(value, (3, 1, 1, 7), "padding mask")
        if not torch.equal(value, padding_mask(tokens)):
            raise Feedback("the padding mask is not True exactly where the token is not padding")

    @pytest.mark.points(1)
    def test_causal_mask(self, student, T):
        """make_causal_mask(T) is (T, T), True on and below the diagonal"""
        value = bool_tensor(student.invoke(name("make_causal_mask"), T, what=f"make_causal_mask({T})").value,
                            "make_causal_mask")
        assert_shape(value, (T, T), "causal mask")
        if not torch.equal(value, causal(T)):
            hidden_diagonal = " (its diagonal is False: query i must see key i, its own position; without it query 0 " \
                              "has no visible key at all)" if not value.diagonal().all() else ""
            raise Feedback(f"make_causal_mask({T}) is not True exactly where key j <= query i{hidden_diagonal}")


# -- multi-head attention ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class AttentionNames:
    mask: str  # the mask of the gradient test: "padding" where the notebook pads, else "causal"
    cls: str = "MultiHeadAttention"


@torch.no_grad()
def attention_formula(weights: dict, heads: int, query, key, value, mask, p: float, out_p: float = 0.0) -> torch.Tensor:
    """Multi-head attention by the notebooks' formula and layout (`weights` under q_proj, k_proj, v_proj, out_proj),
    with F.dropout (train mode) on the weights after the softmax, p, and on the output, out_p (ViT's proj_drop)."""
    (B, T_q, D), T_k = query.shape, key.shape[1]
    split = lambda t, T: t.view(B, T, heads, D // heads).transpose(1, 2)  # noqa: E731  (B, nh, T, hs)
    q = split(F.linear(query, weights["q_proj.weight"], weights["q_proj.bias"]), T_q)
    k = split(F.linear(key, weights["k_proj.weight"], weights["k_proj.bias"]), T_k)
    v = split(F.linear(value, weights["v_proj.weight"], weights["v_proj.bias"]), T_k)
    scores = q @ k.transpose(-2, -1) / math.sqrt(D // heads)
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(q.dtype).min)
    y = (F.dropout(scores.softmax(dim=-1), p, True) @ v).transpose(1, 2).reshape(B, T_q, D)
    y = F.linear(y, weights["out_proj.weight"], weights["out_proj.bias"])
    return F.dropout(y, out_p, True) if out_p else y


class MultiHeadAttentionFamily(Family):
    NAMES: AttentionNames

    def build(self, width: int, heads: int, **kwargs) -> dict:
        return call(self.NAMES.cls, d_model=width, num_heads=heads, **kwargs)

    def unchanged(self, student, weights: dict, runs: tuple[tuple, tuple], whats: tuple[str, str], compared: str,
                  where=slice(None)):
        """The outputs at `where` of attention on the two `runs`' inputs (the second differs only where it must not
        matter) agree exactly."""
        first, second = (student.run(self.build(16, 2), inputs, weights=weights, what=what)
                         for inputs, what in zip(runs, whats, strict=True))
        assert_close(second.output[where], first.output[where], compared, rtol=0.0, atol=1e-6)

    @pytest.mark.points(1)
    def test_output_shape_cross_attention(self, student):
        """{cls} maps query (B, T_q, D) and key/value (B, T_k, D) to (B, T_q, D)"""
        q, kv = seeded_randn(2, 3, 16, seed=1), seeded_randn(2, 7, 16, seed=2)
        result = student.run(self.build(16, 4), (q, kv, kv.clone()), what=f"{self.NAMES.cls}(16, 4) with T_q=3, T_k=7")
        assert_shape(result.output, (2, 3, 16), "attention output")

    @pytest.mark.points(2)
    def test_self_attention_matches_torch(self, student, d_model, heads):
        """Unmasked self-attention equals nn.MultiheadAttention with the same weights"""
        mha, weights = mha_reference(d_model, heads, seed=d_model)
        x = seeded_randn(2, 6, d_model, seed=heads)
        result = student.run(self.build(d_model, heads), (x, x.clone(), x.clone()), weights=weights,
                             what=f"{self.NAMES.cls}(d_model={d_model}, num_heads={heads})")
        assert_close(result.output, mha(x, x, x, need_weights=False)[0].detach(), "self-attention output")
        assert_close(result.output, sdpa_reference(weights, heads, x, x, x), "self-attention output")

    @pytest.mark.points(2)
    def test_padding_mask_matches_torch(self, student):
        """With a padding mask (B, 1, 1, T_k), attention equals nn.MultiheadAttention's key_padding_mask"""
        mha, weights = mha_reference(24, 3, seed=3)
        x, mask = seeded_randn(3, 6, 24, seed=4), padding_mask(mask_tokens([6, 3, 1], 6))
        result = student.run(self.build(24, 3), (x, x.clone(), x.clone(), mask), weights=weights,
                             what=f"{self.NAMES.cls} with a padding mask")
        expected = mha(x, x, x, key_padding_mask=~mask[:, 0, 0], need_weights=False)[0].detach()
        assert_close(result.output, expected, "attention output with a padding mask")

    @pytest.mark.points(2)
    def test_causal_mask_matches_torch(self, student):
        """With a causal mask (T, T), attention equals nn.MultiheadAttention's attn_mask"""
        mha, weights = mha_reference(16, 2, seed=5)
        x = seeded_randn(2, 7, 16, seed=6)
        result = student.run(self.build(16, 2), (x, x.clone(), x.clone(), causal(7)), weights=weights,
                             what=f"{self.NAMES.cls} with a causal mask")
        expected = mha(x, x, x, attn_mask=~causal(7), need_weights=False)[0].detach()
        assert_close(result.output, expected, "attention output with a causal mask")

    def cross_attention(self, student, mask: torch.Tensor | None):
        mha, weights = mha_reference(16, 4, seed=7)
        q, kv = seeded_randn(2, 4, 16, seed=8), seeded_randn(2, 9, 16, seed=9)
        masked = (mask,) if mask is not None else ()
        result = student.run(self.build(16, 4), (q, kv, kv.clone(), *masked), weights=weights,
                             what="cross-attention, T_q=4, T_k=9")
        assert_close(result.output, sdpa_reference(weights, 4, q, kv, kv, mask), "cross-attention output")
        padded = {} if mask is None else {"key_padding_mask": ~mask[:, 0, 0]}
        assert_close(result.output, mha(q, kv, kv, **padded, need_weights=False)[0].detach(), "cross-attention output")

    @pytest.mark.points(2)
    def test_cross_attention_matches_torch(self, student):
        """Cross-attention (T_q != T_k, no mask) equals nn.MultiheadAttention and F.scaled_dot_product_attention"""
        self.cross_attention(student, None)

    @pytest.mark.points(2)
    def test_cross_attention_with_padding(self, student):
        """Cross-attention (T_q != T_k) with a padding mask equals F.scaled_dot_product_attention"""
        self.cross_attention(student, padding_mask(mask_tokens([9, 5], 9)))

    @pytest.mark.points(2)
    def test_masked_positions_get_zero_weight(self, student):
        """Masked keys get exactly zero weight: changing their keys and values changes nothing"""
        _, weights = mha_reference(16, 2, seed=10)
        q, kv = seeded_randn(2, 3, 16, seed=11), seeded_randn(2, 6, 16, seed=12)
        mask = padding_mask(mask_tokens([6, 2], 6))
        changed = kv.clone()
        changed[1, 2:] = 50.0 * seeded_randn(4, 16, seed=13)
        self.unchanged(student, weights, ((q, kv, kv.clone(), mask), (q, changed, changed.clone(), mask)),
                       ("attention with masked keys", "attention with changed masked keys"),
                       "output after changing only masked keys and values")

    @pytest.mark.points(2)
    def test_masks_hide_the_future_exactly(self, student):
        """With the causal mask, changing positions t+1.. (queries, keys and values) changes no output at positions <= t"""
        _, weights = mha_reference(16, 2, seed=10)
        x = seeded_randn(2, 6, 16, seed=11)
        changed = x.clone()
        changed[:, 3:] = 50.0 * seeded_randn(2, 3, 16, seed=13)
        self.unchanged(student, weights, ((x, x.clone(), x.clone(), causal(6)),
                                          (changed, changed.clone(), changed.clone(), causal(6))),
                       ("causal attention", "causal attention with changed later positions"),
                       "outputs at positions 0..2 after changing positions 3..5", where=(slice(None), slice(None, 3)))

    @pytest.mark.points(1)
    def test_fully_padded_row_gives_no_nan(self, student):
        """A sequence that is all padding gives finite outputs (and leaves the other rows as they were)"""
        mha, weights = mha_reference(16, 2, seed=14)
        x = seeded_randn(2, 5, 16, seed=15)
        mask = padding_mask(mask_tokens([4, 0], 5))
        result = student.run(self.build(16, 2), (x, x.clone(), x.clone(), mask), weights=weights,
                             what="attention with an all-padding row")
        if not torch.isfinite(result.output).all():
            raise Feedback("a query that may attend to no key produced NaN or inf: fill masked scores with a large "
                           "negative number such as torch.finfo(scores.dtype).min instead of -inf")
        expected = mha(x[:1], x[:1], x[:1], key_padding_mask=~mask[:1, 0, 0], need_weights=False)[0].detach()
        assert_close(result.output[:1], expected, "output of the row with real tokens")

    @pytest.mark.points(2)
    def test_gradients_match_torch(self, student):
        """Gradients (query, key, value and all weights) equal nn.MultiheadAttention's, with a {mask} mask"""
        mha, weights = mha_reference(16, 4, seed=16)
        padded = self.NAMES.mask == "padding"
        T_q = 3 if padded else 5
        q, k, v = seeded_randn(2, T_q, 16, seed=17), seeded_randn(2, 5, 16, seed=18), seeded_randn(2, 5, 16, seed=19)
        mask = padding_mask(mask_tokens([5, 3], 5)) if padded else causal(5)
        torch_mask = {"key_padding_mask": ~mask[:, 0, 0]} if padded else {"attn_mask": ~mask}
        g = seeded_randn(2, T_q, 16, seed=20)
        result = student.run(self.build(16, 4), (q, k, v, mask), weights=weights, grad_output=g,
                             what=f"{self.NAMES.cls} backward")
        refs = [t.clone().requires_grad_(True) for t in (q, k, v)]
        mha.zero_grad()
        mha(*refs, **torch_mask, need_weights=False)[0].backward(g)
        for i, label in enumerate(("query", "key", "value")):
            if result.input_grads[i] is None:
                raise Feedback(f"no gradient reached the {label}")
            assert_close(result.input_grads[i], grad_of(refs[i]), f"gradient with respect to the {label}")
        wq, wk, wv = grad_of(mha.in_proj_weight).chunk(3)
        expect_grads(result.param_grads, {"q_proj.weight": wq, "k_proj.weight": wk, "v_proj.weight": wv,
                                          "out_proj.weight": grad_of(mha.out_proj.weight),
                                          "out_proj.bias": grad_of(mha.out_proj.bias)})

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
        check_dropout(student, module(self.build(16, heads, dropout=p), weights=weights),
                      (q, kv, kv.clone(), mask), p=p, seed=seed, expected_eval=expected_eval, expected_train=expected_train,
                      calls=1, what=f"{self.NAMES.cls}(16, {heads}, dropout={p})",
                      where="self.dropout on the attention weights, after the softmax, laid out as (B, nh, T_q, "
                            "T_k) (the output projection is not dropped)")


@dataclasses.dataclass(frozen=True)
class SelfAttentionNames:
    cls: str = "Attention"  # a self-attention with one fused projection qkv and an output projection proj (ViT's)


class SelfAttentionFamily(Family):
    """Multi-head self-attention computed from one fused projection (forward(x), no mask), against the same torch
    oracles as MultiHeadAttentionFamily: nn.MultiheadAttention, F.scaled_dot_product_attention, attention_formula."""

    NAMES: SelfAttentionNames

    def build(self, d_model: int, heads: int, **kwargs) -> dict:
        return call(self.NAMES.cls, d_model=d_model, num_heads=heads, **kwargs)

    def reference(self, d_model: int, heads: int, seed: int) -> tuple[nn.MultiheadAttention, dict, dict]:
        """(the seeded nn.MultiheadAttention, its weights under the student's fused names, under q_proj...out_proj)."""
        mha, separate = mha_reference(d_model, heads, seed=seed)
        return mha, fused_attention_weights(mha), separate

    @pytest.mark.points(1)
    def test_output_shape(self, student):
        """{cls} maps (B, T, D) to (B, T, D)"""
        result = student.run(self.build(24, 3), (seeded_randn(2, 7, 24),), what=f"{self.NAMES.cls}(24, 3)")
        assert_shape(result.output, (2, 7, 24), f"{self.NAMES.cls} output")

    @pytest.mark.points(3)
    def test_matches_torch_multihead_attention(self, student, d_model, heads):
        """{cls} equals torch.nn.MultiheadAttention with the same weights"""
        mha, weights, separate = self.reference(d_model, heads, seed=d_model)
        x = seeded_randn(2, 9, d_model, seed=heads)
        result = student.run(self.build(d_model, heads), (x,), weights=weights,
                             what=f"{self.NAMES.cls}(d_model={d_model}, num_heads={heads})")
        label = f"{self.NAMES.cls} output (d_model={d_model}, heads={heads})"
        assert_close(result.output, mha(x, x, x, need_weights=False)[0].detach(), label)
        assert_close(result.output, sdpa_reference(separate, heads, x, x, x), label)  # a second oracle

    @pytest.mark.points(2)
    def test_gradients_match_torch(self, student):
        """Gradients of {cls} (input and all weights) equal torch.nn.MultiheadAttention's"""
        mha, weights, _ = self.reference(32, 4, seed=7)
        x, g = seeded_randn(2, 5, 32, seed=8), seeded_randn(2, 5, 32, seed=9)
        result = student.run(self.build(32, 4), (x,), weights=weights, grad_output=g,
                             what=f"{self.NAMES.cls}(32, 4) backward")
        x_grad, _ = reference_grads(mha, x, g, forward=lambda x: mha(x, x, x, need_weights=False)[0])
        assert_close(result.input_grads[0], x_grad, "gradient with respect to the input")
        expect_grads(result.param_grads, {"qkv.weight": grad_of(mha.in_proj_weight), "qkv.bias": grad_of(mha.in_proj_bias),
                                          "proj.weight": grad_of(mha.out_proj.weight),
                                          "proj.bias": grad_of(mha.out_proj.bias)})

    @pytest.mark.points(1)
    def test_dropout_in_train_mode_only(self, student):
        """With dropout p, {cls} drops the attention probabilities and the output in train mode, nothing in eval mode"""
        p, seed, d_model, heads = 0.4, 5, 12, 3
        _, weights, separate = self.reference(d_model, heads, seed=11)
        x = seeded_randn(2, 6, d_model, seed=12)
        with replayed_dropout(seed):
            expected_train = attention_formula(separate, heads, x, x, x, None, p, out_p=p)
        check_dropout(student, module(self.build(d_model, heads, dropout=p), weights=weights), (x,), p=p, seed=seed,
                      expected_eval=sdpa_reference(separate, heads, x, x, x), expected_train=expected_train, calls=2,
                      what=f"{self.NAMES.cls}(d_model={d_model}, num_heads={heads}, dropout={p})",
                      where="attn_drop on the attention probabilities (after the softmax, laid out as (B, nh, T, T)), "
                            "then proj_drop on the output of proj")


# -- the position-wise feed-forward network -------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class FeedForwardNames:
    cls: str  # FeedForward, MLP
    reference: type[nn.Module]  # its torch stand-in: (d_model, d_ff) -> two nn.Linear children around the activation
    activation: Callable[[torch.Tensor], torch.Tensor]  # F.relu, F.gelu
    formula: str  # the title's formula: "linear2(ReLU(linear1(x)))"
    dropped: str  # where dropout goes, as the title says it: "after the ReLU (before linear2)"
    where: str  # the same, as the feedback says it
    output_dropout: bool = False  # a second dropout on the output (ViT's MLP)


class FeedForwardFamily(Family):
    NAMES: FeedForwardNames

    def reference(self, d_model: int, d_ff: int, seed: int) -> tuple[nn.Module, nn.Linear, nn.Linear]:
        """The seeded torch reference and its two linear layers (the first seeded `seed`, the second `seed + 1`)."""
        ref = self.NAMES.reference(d_model, d_ff)
        first, second = (m for m in ref.children() if isinstance(m, nn.Linear))
        fill_parameters_(first, seed=seed), fill_parameters_(second, seed=seed + 1)
        return ref, first, second

    @pytest.mark.points(1)
    def test_matches_reference(self, student):
        """{cls} equals {formula}, values and gradients"""
        ref, _, _ = self.reference(12, 20, seed=1)
        check_output_and_input_grad(student, call(self.NAMES.cls, d_model=12, d_ff=20), ref, seeded_randn(2, 5, 12, seed=3),
                                    seeded_randn(2, 5, 12, seed=4), what=f"{self.NAMES.cls}(12, 20)", label=self.NAMES.cls)

    @pytest.mark.points(1)
    def test_dropout_in_train_mode_only(self, student):
        """With dropout p, {cls} drops {dropped} in train mode, nothing in eval mode"""
        p, seed, drops = 0.3, 5, 1 + self.NAMES.output_dropout
        ref, first, second = self.reference(10, 14, seed=6)
        x = seeded_randn(2, 4, 10, seed=8)
        with torch.no_grad():
            expected_eval = ref(x)
            with replayed_dropout(seed):
                expected_train = second(F.dropout(self.NAMES.activation(first(x)), p, True))
                if self.NAMES.output_dropout:
                    expected_train = F.dropout(expected_train, p, True)
        check_dropout(student, module(call(self.NAMES.cls, d_model=10, d_ff=14, dropout=p), weights=ref.state_dict()),
                      (x,), p=p, seed=seed, expected_eval=expected_eval, expected_train=expected_train, calls=drops,
                      what=f"{self.NAMES.cls}(10, 14, dropout={p})", where=self.NAMES.where)


# -- the encoder layer ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class EncoderLayerNames:
    cls: str  # EncoderLayer, Block
    norm: str  # "Post-norm", "Pre-norm"
    parts: str  # what the title lists after the class: "", " (norm, attention, residual, norm, MLP, residual)"
    reference: str  # the torch layer, as the title says it: "torchvision's EncoderBlock"
    residuals: str  # what the gradients flow through: "residual paths"
    grad_reference: str  # the gradient test's reference: "nn.TransformerEncoderLayer", "the reference"
    padding_mask: bool  # forward(x, mask) rather than forward(x)


class EncoderLayerFamily(Family):
    """A residual encoder layer (its attention and feed-forward sublayers torch stand-ins here) against a torch layer
    with the same weights. An assignment says how: reference(d_model, heads, d_ff, seed) (the seeded torch layer, in
    eval mode), weights(ref) (its weights under the student's names) and substitutes(d_model, heads, d_ff)."""

    NAMES: EncoderLayerNames

    def reference(self, d_model: int, heads: int, d_ff: int, seed: int) -> nn.Module:
        raise NotImplementedError

    def weights(self, ref: nn.Module) -> dict:
        raise NotImplementedError

    def substitutes(self, d_model: int, heads: int, d_ff: int) -> dict:
        raise NotImplementedError

    def build(self, d_model: int, heads: int, d_ff: int, **kwargs) -> dict:
        return call(self.NAMES.cls, d_model=d_model, num_heads=heads, d_ff=d_ff, **kwargs)

    def run(self, student, ref: nn.Module, dims: tuple[int, int, int], inputs: tuple, **kwargs):
        return student.run(self.build(*dims), inputs, weights=self.weights(ref), substitutes=self.substitutes(*dims),
                           **kwargs)

    @pytest.mark.points(3)
    def test_matches_torch_layer(self, student):
        """{norm} {cls}{parts} equals {reference}"""
        ref, masked = self.reference(16, 2, 32, seed=21), self.NAMES.padding_mask
        x, mask = seeded_randn(3, 6, 16, seed=22), padding_mask(mask_tokens([6, 4, 2], 6))
        result = self.run(student, ref, (16, 2, 32), (x, mask) if masked else (x,), what=f"{self.NAMES.cls}(16, 2, 32)")
        expected = ref(x, src_key_padding_mask=~mask[:, 0, 0]) if masked else ref(x)
        assert_close(result.output, expected.detach(), f"{self.NAMES.cls} output", atol=1e-4)

    @pytest.mark.points(1)
    def test_gradients_match_torch(self, student):
        """Gradients flow through both {residuals} as in {grad_reference}"""
        ref = self.reference(16, 4, 24, seed=23)
        x, g = seeded_randn(2, 5, 16, seed=24), seeded_randn(2, 5, 16, seed=25)
        result = self.run(student, ref, (16, 4, 24), (x,), grad_output=g, what=f"{self.NAMES.cls}(16, 4, 24) backward")
        x_grad, _ = reference_grads(ref, x, g)
        assert_close(result.input_grads[0], x_grad, f"{self.NAMES.cls} gradient with respect to the input", atol=1e-4)


# -- the post-norm decoder layer -----------------------------------------------------------------------------------
def decoder_reference(d_model: int, heads: int, d_ff: int, seed: int) -> nn.TransformerDecoderLayer:
    """A seeded nn.TransformerDecoderLayer (post-norm, ReLU, no dropout), as the decoder-layer stand-ins hold it."""
    ref = nn.TransformerDecoderLayer(d_model, heads, d_ff, dropout=0.0, batch_first=True)
    return fill_parameters_(ref, seed=seed, scale=0.3).eval()


def layer_weights(ref: nn.TransformerEncoderLayer | nn.TransformerDecoderLayer, attentions: dict[str, str],
                  norms: int) -> dict:
    """A torch Transformer layer's weights under the notebooks' names (attention and feed-forward are stand-ins):
    `attentions` maps the notebook's attention submodules to torch's."""
    weights = {"ff.linear1.weight": ref.linear1.weight, "ff.linear1.bias": ref.linear1.bias,
               "ff.linear2.weight": ref.linear2.weight, "ff.linear2.bias": ref.linear2.bias}
    for ours, theirs in attentions.items():
        weights.update(attention_weights(ours, getattr(ref, theirs)))
    for i in range(1, norms + 1):
        norm = getattr(ref, f"norm{i}")
        weights.update({f"norm{i}.weight": norm.weight, f"norm{i}.bias": norm.bias})
    return weights


DECODER_ATTENTIONS = {"self_attn": "self_attn", "cross_attn": "multihead_attn"}


def model_reference(parts: nn.ModuleDict, plain: tuple[str, ...], stacks: dict[str, tuple[str, str, dict]], seed: int,
                    scale: float) -> tuple[nn.ModuleDict, dict, dict]:
    """(reference parts, substitutes, weights under the student's names) for a whole model's test (the transformer's
    Transformer, the captioning model): the `plain` parts (embeddings, projections) are seeded here (seed + the
    length of their name) and given under their own names; each layer of the stack `parts[kind]` is a stand-in,
    stacks[kind] = (the student's list of layers, the stand-in, its arguments), its torch layer's weights under
    `<list>.<i>.layer.`."""
    for key in plain:
        fill_parameters_(parts[key], seed=seed + len(key), scale=scale)
    weights = {f"{key}.{n}": p.detach().clone() for key in plain for n, p in parts[key].named_parameters()}
    substitutes = {}
    for kind, (ours, stand_in_name, kwargs) in stacks.items():
        for i, layer in enumerate(parts[kind].children()):
            substitutes[f"{ours}.{i}"] = stand_in(stand_in_name, **kwargs)
            weights.update({f"{ours}.{i}.layer.{k}": v.detach().clone() for k, v in layer.state_dict().items()})
    return parts.eval(), substitutes, weights


@dataclasses.dataclass(frozen=True)
class DecoderLayerNames:
    target: str  # what the layer decodes: "target" or "caption"
    memory: str  # what it attends to: "encoder output" or "image features"
    memory_mask: bool  # forward(x, memory, memory_mask, tgt_mask) rather than forward(x, memory, tgt_mask)
    cls: str = "DecoderLayer"


class DecoderLayerFamily(Family):
    NAMES: DecoderLayerNames

    def build(self, d_model: int, heads: int, d_ff: int, **kwargs) -> dict:
        return call(self.NAMES.cls, d_model=d_model, num_heads=heads, d_ff=d_ff, **kwargs)

    def arguments(self, x, memory, memory_mask, tgt_mask) -> tuple:
        return (x, memory, memory_mask, tgt_mask) if self.NAMES.memory_mask else (x, memory, tgt_mask)

    def substitutes(self, d_model: int, heads: int, d_ff: int) -> dict:
        """The stand-ins of the layer's attentions (DECODER_ATTENTIONS) and feed-forward: the assignment's own
        (registered in its stand-in module, so that this module, which every zip ships, names none)."""
        raise NotImplementedError

    def run(self, student, ref, d_model, heads, d_ff, inputs, **kwargs):
        return student.run(self.build(d_model, heads, d_ff), inputs, weights=layer_weights(ref, DECODER_ATTENTIONS, 3),
                           substitutes=self.substitutes(d_model, heads, d_ff), **kwargs)

    @pytest.mark.points(3)
    def test_matches_torch_decoder_layer(self, student):
        """Post-norm {cls} (masked self-attention, cross-attention to the {memory}, feed-forward) equals nn.TransformerDecoderLayer"""
        ref = decoder_reference(16, 2, 32, seed=26)
        x, memory = seeded_randn(3, 5, 16, seed=27), seeded_randn(3, 7, 16, seed=28)
        src_mask = padding_mask(mask_tokens([7, 3, 5], 7))
        result = self.run(student, ref, 16, 2, 32, self.arguments(x, memory, src_mask, causal(5)),
                          what=f"{self.NAMES.cls}(16, 2, 32)")
        masked = {"memory_key_padding_mask": ~src_mask[:, 0, 0]} if self.NAMES.memory_mask else {}
        expected = ref(x, memory, tgt_mask=~causal(5), **masked).detach()
        assert_close(result.output, expected, f"{self.NAMES.cls} output", atol=1e-4)

    @pytest.mark.points(1)
    def test_gradients_match_torch(self, student):
        """Gradients reach the {target} and the {memory} (memory) as in nn.TransformerDecoderLayer"""
        ref = decoder_reference(16, 4, 24, seed=29)
        x, memory, g = seeded_randn(2, 4, 16, seed=30), seeded_randn(2, 6, 16, seed=31), seeded_randn(2, 4, 16, seed=32)
        all_real = padding_mask(mask_tokens([6, 6], 6))
        result = self.run(student, ref, 16, 4, 24, self.arguments(x, memory, all_real, causal(4)), grad_output=g,
                          what=f"{self.NAMES.cls} backward")
        refs = [x.clone().requires_grad_(True), memory.clone().requires_grad_(True)]
        ref(*refs, tgt_mask=~causal(4)).backward(g)
        for i, label in enumerate((f"{self.NAMES.target} input", f"{self.NAMES.memory} (memory)")):
            if result.input_grads[i] is None:
                raise Feedback(f"no gradient reached the {label}")
            assert_close(result.input_grads[i], grad_of(refs[i]), f"{self.NAMES.cls} gradient with respect to the {label}",
                         atol=1e-4)


# -- a whole decoding model ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DecoderModelNames:
    cls: str  # the model: Transformer, CaptioningTransformer
    config: str  # its config class: TransformerConfig, CaptioningConfig
    maps: str  # who maps the inputs, as the shape test's title says it: "Transformer", "forward"
    inputs: str  # what it maps: "src (B, S) and tgt (B, T)"
    outputs: str  # what it returns: "logits", "scores"
    vocab: str  # the config field of the outputs' width: tgt_vocab_size, vocab_size
    label: str  # the outputs in feedback: "Transformer logits"
    parts: str  # what the reference test compares, as its title says it
    layers: str  # the layers the reference test puts in: "encoder/decoder layers"
    token: str  # a token of what the model decodes: "target token", "caption word"
    word: str  # the same in feedback: "target token", "word"
    unchanged: str  # what the causality test's title keeps unchanged: "outputs", "scores"
    later: str  # the rest of the causality test's title
    reads: str  # the causality test's question: "does the decoder read the target tokens?"


class DecoderModelFamily(Family):
    """A whole model that decodes tokens given a context (the transformer's source, captioning's image features):
    its output shape, its logits against a reference built from torch layers (stand-in layers in the student's
    model), and that a later token changes no earlier output; the model runs with the grader's masks (a mask bug
    costs points only in the mask tests). An assignment says how: CONFIG (the tiny config's arguments), SHAPE (of the
    outputs), WORDS (the first id and the count of the ids a changed token takes), CAUSAL_LAYERS (the stand-in
    layers' seed in the causality test; None: the student's own layers), inputs(seed) -> (context, tokens),
    reference(seed) -> (torch parts, stand-in layers, weights under the student's names: model_reference) and
    reference_outputs(parts, context, tokens)."""

    NAMES: DecoderModelNames
    CONFIG: dict
    SHAPE: tuple[int, ...]
    WORDS: tuple[int, int]
    CAUSAL_LAYERS: int | None = None

    def inputs(self, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def reference(self, seed: int) -> tuple[nn.ModuleDict, dict, dict]:
        raise NotImplementedError

    def reference_outputs(self, parts: nn.ModuleDict, context: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def with_masks(self, target: dict) -> dict:
        """The request calling `target` with the grader's mask functions: the assignment's own stand-in (registered in
        its stand-in module, so that this module, which every zip ships, names none)."""
        raise NotImplementedError

    def model(self, keep_as: str | None = None, seed: int | None = None) -> dict:
        """The student's model (CONFIG), with the grader's masks; with torch layers seeded `seed` where given."""
        substitutes, weights = (None, None) if seed is None else self.reference(seed)[1:]
        return self.with_masks(module(call(self.NAMES.cls, call(self.NAMES.config, **self.CONFIG)), weights=weights,
                                         substitutes=substitutes, keep_as=keep_as))

    def outputs(self, student, request: dict, context, tokens, what: str) -> torch.Tensor:
        value = student.invoke(request, context, tokens, what=what).value
        if not isinstance(value, torch.Tensor):
            raise Feedback(f"{self.NAMES.cls}.forward must return a tensor of {self.NAMES.outputs}")
        return value

    @pytest.mark.points(1)
    def test_output_shape(self, student):
        """{maps} maps {inputs} to {outputs} (B, T, {vocab})"""
        context, tokens = self.inputs(seed=1)
        value = self.outputs(student, self.model(), context, tokens, what=f"{self.NAMES.cls}(tiny config)")
        assert_shape(value, self.SHAPE, self.NAMES.label)

    @pytest.mark.points(3)
    def test_matches_torch_reference(self, student):
        """{parts} equal a reference built from torch layers"""
        context, tokens = self.inputs(seed=3)
        value = self.outputs(student, self.model(seed=2), context, tokens,
                             what=f"{self.NAMES.cls} with torch {self.NAMES.layers}")
        assert_close(value, self.reference_outputs(self.reference(2)[0], context, tokens), self.NAMES.label, atol=1e-4)

    @pytest.mark.points(2)
    def test_cannot_see_the_future(self, student):
        """Changing {token} t+1 leaves the {unchanged} at positions <= t unchanged{later}"""
        context, tokens = self.inputs(seed=4)
        what, (first_id, count) = f"{self.NAMES.cls} (causality)", self.WORDS
        first = student.invoke(self.model(keep_as="causality", seed=self.CAUSAL_LAYERS), context, tokens, what=what)
        for t in (1, 3):
            changed = tokens.clone()
            changed[:, t + 1] = first_id + (changed[:, t + 1] - first_id + 5) % count
            second = student.invoke(self.with_masks(handle("causality")), context, changed, what=what)
            assert_close(second.value[:, :t + 1], first.value[:, :t + 1],
                         f"{self.NAMES.outputs} at positions 0..{t} after changing {self.NAMES.word} {t + 1}",
                         rtol=1e-5, atol=1e-5)
            if torch.allclose(second.value[:, t + 1:], first.value[:, t + 1:]):
                raise Feedback(f"changing {self.NAMES.word} {t + 1} changed none of the {self.NAMES.outputs} from "
                               f"position {t + 1} on: {self.NAMES.reads}")


# -- greedy decoding -----------------------------------------------------------------------------------------------
def greedy_row(first: int, end: int, max_len: int, next_token: Callable[[list[int]], int]) -> list[int]:
    """A reference greedy decoding of one row: `first`, then next_token(tokens so far) until `end` (kept) or
    max_len tokens."""
    tokens = [first]
    while len(tokens) < max_len and tokens[-1] != end:
        tokens.append(next_token(tokens))
    return tokens


@dataclasses.dataclass(frozen=True)
class GreedyNames:
    function: str  # the notebook's greedy decoding function: greedy_decode, greedy_translate
    stand_in: str  # the registered seeded model it decodes with (autograder/kit/stand_ins/)


class GreedyDecodingFamily(Family):
    """greedy_decode(model, src, ..., max_len, bos_id, eos_id, pad_id) against a reference decoding of a seeded model,
    one row at a time. An assignment says how: MODEL (the stand-in's arguments), source(), arguments(src) (what
    follows the model), target(the function's request), and next_token(model, src, b) (its reference model's step)."""

    NAMES: GreedyNames
    MODEL: dict

    def source(self) -> torch.Tensor:
        raise NotImplementedError

    def arguments(self, src: torch.Tensor) -> tuple:
        return (src,)

    def target(self, function: dict) -> dict:
        return function

    def reference_model(self) -> nn.Module:
        raise NotImplementedError

    def next_token(self, model: Any, src: torch.Tensor, b: int) -> Callable[[list[int]], int]:  # reference_model()'s
        raise NotImplementedError

    @pytest.mark.points(3)
    def test_matches_reference_decoding(self, student):
        """{function} starts with BOS, appends the argmax token, stops at EOS / max_len and pads finished rows"""
        max_len, src, function = 8, self.source(), self.NAMES.function
        model = self.reference_model().cpu()
        with torch.no_grad():
            reference = [greedy_row(BOS_ID, EOS_ID, max_len, self.next_token(model, src, b)) for b in range(len(src))]
        if all(len(r) == max_len for r in reference) or all(r[-1] == EOS_ID for r in reference):  # a test that can fail
            raise RuntimeError("the reference decoding should stop early in some rows and not in others")
        result = student.invoke(self.target(name(function)), stand_in(self.NAMES.stand_in, **self.MODEL),
                                *self.arguments(src), max_len=max_len, bos_id=BOS_ID, eos_id=EOS_ID, pad_id=PAD_ID,
                                what=function)
        check_greedy_rows(function, result.value, reference, max_len)

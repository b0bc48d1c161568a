"""Hidden tests of the captioning assignment (source/captioning/captioning.ipynb). Never shipped to students.

Every layer is compared with PyTorch's own (nn.MultiheadAttention, F.scaled_dot_product_attention,
nn.TransformerDecoderLayer) given the same weights; the positional encoding with its formula, entry by entry. The
decoder layer is tested with torch attention and feed-forward stand-ins, the captioning model with torch decoder
layers (autograder/kit/stand_ins/captioning.py) and the reference causal mask, and `sample` through a forward
that looks its scores up in a table: a bug costs points only in the tests of its own part. The loss is compared with
a computation made here. The thresholds load the student's saved weights into the notebook's own model (the release
fixes its architecture; autograder/kit/trusted.py) and compute the loss, the captions and BLEU in this process, BLEU on
images drawn afresh from a secret seed; the student's own forward and sample run on a slice in the worker, for a note.
There is no dropout in this assignment (the notebook says so).
"""
import time

import pytest
import torch
import torch.nn as nn

from autograder.assignments import assignment_of
from autograder.kit.families import bar_title
from autograder.kit.attention_reference import causal, sinusoidal_reference
from autograder.kit.families import (DECODER_ATTENTIONS, AttentionNames, DecoderLayerFamily, DecoderLayerNames,
                                 DecoderModelFamily, DecoderModelNames, MaskFamily,
                                 MultiHeadAttentionFamily, PositionalEncodingFamily, decoder_reference,
                                 greedy_row, layer_weights, model_reference)
from autograder.kit.reference import Feedback, assert_close, grad_of, seeded_randn
from autograder.kit.requests import call, handle, module, name, needs_grad, stand_in
from autograder.kit.scoring import evaluation_limit, outputs_in_secret_order, scored_on, secret_rng
from autograder.kit.stand_ins.transformer import layer_substitutes, with_reference_masks
from autograder.kit.translation_grading import DecodingWords, check_greedy_rows
from autograder.kit.trusted import (COMPARED_EXAMPLES, compare_decoding, compare_with_student, course_decoding, course_model,
                               local_outputs)
from dlcourse.captioning import (END, NULL, START, STANDIN_LABEL, WORDS, decode_captions, fresh_standin_split,
                                 make_standin, small_subset)
from dlcourse.translation import corpus_bleu

ASSIGNMENT = assignment_of(__file__)  # declared in source/captioning/spec.py: cells, thresholds, forbidden APIs, budget
THRESHOLDS = ASSIGNMENT.spec.thresholds
OVERFIT_CAPTIONS = 50  # the notebook's small training subset (dlcourse.captioning.small_subset)
SAMPLE_MAX_LENGTH = 16  # words sampled per validation caption for BLEU (the stand-in's captions have at most 14)
HELD_OUT_IMAGES = 500  # new stand-in images captioned for BLEU, as many as the notebook's validation split


@pytest.mark.cell("positional_encoding")
class TestPositionalEncoding(PositionalEncodingFamily):
    GROUP = "Positional encoding"
    TESTS = ("test_matches_formula", "test_module_adds_the_table")
    CASES = {"test_matches_formula": ("max_len,d_model", [(10, 8), (7, 5), (64, 33)])}


@pytest.mark.cell("masks")
class TestMasks(MaskFamily):
    GROUP = "Causal mask"
    TESTS = ("test_causal_mask",)
    CASES = {"test_causal_mask": ("T", [1, 6])}


@pytest.mark.cell("mha")
class TestMultiHeadAttention(MultiHeadAttentionFamily):
    GROUP = "Multi-head attention"
    NAMES = AttentionNames(mask="causal")
    TESTS = ("test_output_shape_cross_attention", "test_self_attention_matches_torch", "test_causal_mask_matches_torch",
             "test_cross_attention_matches_torch", "test_masks_hide_the_future_exactly", "test_gradients_match_torch")
    CASES = {"test_self_attention_matches_torch": ("d_model,heads", [(16, 1), (32, 4)])}


@pytest.mark.cell("decoder_layer")
class TestDecoderLayer(DecoderLayerFamily):
    GROUP = "Decoder layer"
    NAMES = DecoderLayerNames(target="caption", memory="image features",
                              memory_mask=False)
    TESTS = ("test_matches_torch_decoder_layer", "test_gradients_match_torch")

    def substitutes(self, d_model: int, heads: int, d_ff: int) -> dict:
        return layer_substitutes(d_model, heads, d_ff, DECODER_ATTENTIONS)

    @pytest.mark.points(1)
    def test_future_is_hidden(self, student):
        """Changing caption position t+1 leaves the layer's outputs at positions <= t unchanged (torch attention inside)"""
        ref = decoder_reference(16, 2, 32, seed=33)
        x, memory = seeded_randn(2, 5, 16, seed=34), seeded_randn(2, 3, 16, seed=35)
        changed = x.clone()
        changed[:, 3:] = 10.0 * seeded_randn(2, 2, 16, seed=36)
        build = module(self.build(16, 2, 32), weights=layer_weights(ref, DECODER_ATTENTIONS, 3),
                       substitutes=self.substitutes(16, 2, 32), keep_as="decoder layer (future)")
        first = student.invoke(build, x, memory, causal(5), what="DecoderLayer (future)")
        second = student.invoke(handle("decoder layer (future)"), changed, memory, causal(5), what="DecoderLayer (future)")
        if not isinstance(first.value, torch.Tensor) or not isinstance(second.value, torch.Tensor):
            raise Feedback("DecoderLayer.forward must return a tensor")
        assert_close(second.value[:, :3], first.value[:, :3], "outputs at positions 0..2 after changing positions 3..4 "
                     "(does any attention read the caption without the causal mask?)", rtol=0.0, atol=1e-5)


TINY = dict(vocab_size=13, input_dim=6, d_model=16, num_heads=2, num_layers=2, d_ff=32, max_length=20)


def reference_captioner(cfg: dict, seed: int) -> tuple[nn.ModuleDict, dict, dict]:
    """(reference parts, substitutes, weights under the student's names) for the model tests."""
    g = torch.Generator().manual_seed(seed)
    parts = nn.ModuleDict({
        "visual_projection": nn.Linear(cfg["input_dim"], cfg["d_model"]),
        "embedding": nn.Embedding(cfg["vocab_size"], cfg["d_model"]),
        "layers": nn.ModuleList([decoder_reference(cfg["d_model"], cfg["num_heads"], cfg["d_ff"],
                                                   seed=int(torch.randint(1000, (1,), generator=g)))
                                 for _ in range(cfg["num_layers"])]),
        "output": nn.Linear(cfg["d_model"], cfg["vocab_size"]),
    })
    layer_kwargs = {"d_model": cfg["d_model"], "num_heads": cfg["num_heads"], "d_ff": cfg["d_ff"]}
    return model_reference(parts, ("visual_projection", "embedding", "output"),
                           {"layers": ("layers", "torch_caption_decoder_layer", layer_kwargs)}, seed, scale=0.5)


@torch.no_grad()
def reference_scores(parts: nn.ModuleDict, cfg: dict, features: torch.Tensor, captions: torch.Tensor) -> torch.Tensor:
    T = captions.shape[1]
    memory = parts["visual_projection"](features)
    x = parts["embedding"](captions) + sinusoidal_reference(T, cfg["d_model"]).float()
    for layer in parts["layers"].children():
        x = layer(x, memory, tgt_mask=~causal(T))
    return parts["output"](x)


def model_inputs(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    features = seeded_randn(3, 4, TINY["input_dim"], seed=seed)
    words = 4 + torch.randint(9, (3, 6), generator=torch.Generator().manual_seed(seed))
    captions = torch.cat([torch.full((3, 1), START), words], dim=1)
    captions[2, 4], captions[2, 5:] = END, NULL  # one caption ends early (padding after its <END>)
    return features, captions


@pytest.mark.cell("captioning_model")
class TestCaptioningModel(DecoderModelFamily):
    GROUP = "Captioning model"
    NAMES = DecoderModelNames(
        cls="CaptioningTransformer", config="CaptioningConfig", maps="forward", inputs="features (B, P, input_dim) and captions (B, T)",
        outputs="scores", vocab="vocab_size", label="scores",
        parts="Visual projection, word embeddings, positional encoding, causal mask, decoder layers and output projection",
        layers="decoder layers", token="caption word", word="word", unchanged="scores", later=", and changes later ones",
        reads="does the model read the caption?")
    TESTS = ("test_output_shape", "test_matches_torch_reference", "test_cannot_see_the_future")
    CONFIG, SHAPE, WORDS, CAUSAL_LAYERS = TINY, (3, 7, 13), (4, 9), 5

    def inputs(self, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        return model_inputs(seed)

    def reference(self, seed: int) -> tuple[nn.ModuleDict, dict, dict]:
        return reference_captioner(TINY, seed)

    def with_masks(self, target: dict) -> dict:
        return with_reference_masks(target)

    def reference_outputs(self, parts: nn.ModuleDict, features: torch.Tensor, captions: torch.Tensor) -> torch.Tensor:
        return reference_scores(parts, TINY, features, captions)


def lookup_table(seed: int, rows: int, vocab: int = 13) -> torch.Tensor:
    """(rows, vocab) next-word table: after word w, image i's caption continues with table[i, w]."""
    g = torch.Generator().manual_seed(seed)
    table = 4 + torch.randint(vocab - 4, (rows, vocab), generator=g)
    return table


def reference_sample(table: torch.Tensor, max_length: int) -> list[list[int]]:
    """Greedy sampling from the table, one caption at a time: the words after <START>, up to and including <END>."""
    def row(i: int) -> list[int]:
        return greedy_row(START, END, max_length + 1, lambda words: int(table[i, words[-1]]))[1:]
    return [row(i) for i in range(len(table))]


CAPTION_WORDS = DecodingWords(row="caption", tokens="words", length="max_length", end="<END>", pad_name="<NULL>",
                              pad=NULL, rule="without <START>: the most likely next word at each step, from "
                                             "self(features, caption so far)")


def run_sample(student, table: torch.Tensor, max_length: int):
    features = torch.zeros(len(table), 2, TINY["input_dim"])
    features[:, 0, 0] = torch.arange(len(table), dtype=torch.float32)  # which image: the table's row
    sampler = stand_in("sample_with_lookup_scores", model=module(call("CaptioningTransformer", call("CaptioningConfig", **TINY))),
                       table=table, start=START)
    return student.invoke(sampler, features, max_length=max_length, what="sample (scores from a table)").value


@pytest.mark.cell("captioning_model")
class TestSample:
    GROUP = "Greedy sampling"

    @pytest.mark.points(2)
    def test_matches_greedy_reference(self, student):
        """sample appends the argmax word of self(features, caption so far), stops at <END> or max_length, pads with <NULL>"""
        max_length = 7
        table = lookup_table(seed=6, rows=6)  # words 4..12: no caption ends unless the table says <END>
        table[0, START], table[0, 5], table[1, START] = 5, END, END  # caption 0: 5 <END>; caption 1: <END> at once
        a = int(table[3, START])
        table[3, int(table[3, a])] = END  # caption 3 ends after two or three words
        reference = reference_sample(table, max_length)
        # a test that can fail: some captions end early, others are cut at max_length
        assert reference[1] == [END] and any(r[-1] != END and len(r) == max_length for r in reference)
        check_greedy_rows("sample", run_sample(student, table, max_length), reference, max_length, CAPTION_WORDS)

    @pytest.mark.points(1)
    def test_stops_once_every_caption_has_ended(self, student):
        """sample stops as soon as every caption has produced <END> (well before max_length) and pads after it"""
        table = torch.full((3, 13), END)
        table[0, START], table[0, 4], table[0, 6] = 4, 6, 7  # <START> 4 6 7 <END>
        table[1, START] = 8                                    # <START> 8 <END>
        table[2, START] = 9                                    # <START> 9 <END>
        reference = reference_sample(table, 30)
        assert max(len(r) for r in reference) == 4  # a test that can fail
        check_greedy_rows("sample", run_sample(student, table, 30), reference, 30, CAPTION_WORDS)


@torch.no_grad()
def trusted_loss(scores: torch.Tensor, targets: torch.Tensor, null_idx: int) -> torch.Tensor:
    logp = scores.double().log_softmax(dim=-1).gather(-1, targets[..., None])[..., 0]
    return -(logp * (targets != null_idx)).sum() / scores.shape[0]


def loss_inputs(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    scores = seeded_randn(4, 6, 9, seed=seed)
    targets = torch.tensor([[4, 5, 6, END, NULL, NULL], [7, END, NULL, NULL, NULL, NULL],
                            [5, 5, 8, 6, 4, END], [END, NULL, NULL, NULL, NULL, NULL]])
    return scores, targets


@pytest.mark.cell("loss")
class TestLoss:
    GROUP = "Temporal softmax loss"

    @pytest.mark.points(2)
    def test_matches_trusted_computation(self, student):
        """temporal_softmax_loss is the cross-entropy summed over the non-<NULL> targets, divided by N"""
        scores, targets = loss_inputs(seed=1)
        value = student.invoke(name("temporal_softmax_loss"), scores, targets, NULL, what="temporal_softmax_loss").value
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            raise Feedback("temporal_softmax_loss must return a scalar tensor")
        assert_close(value.reshape(()), trusted_loss(scores, targets, NULL).float(), "loss", atol=1e-5)

    @pytest.mark.points(1)
    def test_null_positions_ignored(self, student):
        """Scores at <NULL> targets do not change the loss, nor does more <NULL> padding"""
        scores, targets = loss_inputs(seed=2)
        changed = scores.clone()
        changed[targets == NULL] = 40.0 * seeded_randn(int((targets == NULL).sum()), 9, seed=3)
        padded_scores = torch.cat([changed, seeded_randn(4, 3, 9, seed=4)], dim=1)
        padded_targets = torch.cat([targets, torch.full((4, 3), NULL)], dim=1)
        expected = trusted_loss(scores, targets, NULL).float()
        for what, s, t in (("with other scores at the <NULL> targets", changed, targets),
                           ("with three more <NULL> columns", padded_scores, padded_targets)):
            value = student.invoke(name("temporal_softmax_loss"), s, t, NULL, what="temporal_softmax_loss").value
            if not isinstance(value, torch.Tensor) or value.numel() != 1:
                raise Feedback("temporal_softmax_loss must return a scalar tensor")
            assert_close(value.reshape(()), expected, f"loss {what}", atol=1e-5)

    @pytest.mark.points(1)
    def test_gradients(self, student):
        """The gradient of the loss with respect to the scores equals the trusted one (zero at <NULL> targets)"""
        scores, targets = loss_inputs(seed=5)
        result = student.invoke(name("temporal_softmax_loss"), needs_grad(scores), targets, NULL, backward=((), None),
                                what="temporal_softmax_loss backward")
        reference = scores.clone().double().requires_grad_(True)
        logp = reference.log_softmax(dim=-1).gather(-1, targets[..., None])[..., 0]
        (-(logp * (targets != NULL)).sum() / len(scores)).backward()
        grads = result.input_grads
        if not grads or grads[0] is None:
            raise Feedback("no gradient reached the scores")
        assert_close(grads[0], grad_of(reference).float(), "gradient with respect to the scores", atol=1e-6)


def course_captioner(student, saved_name: str):
    """(the saved weights in the notebook's own CaptioningTransformer, here; the student's model as a worker call())."""
    course, config, weights = course_model(student, saved_name, "CaptioningTransformer", "CaptioningConfig")
    return course, call("CaptioningTransformer", call("CaptioningConfig", **config)), weights


class TestAccuracy:  # the generic notebook test treats TestAccuracy* as the thresholds
    GROUP = "Thresholds"

    @pytest.mark.points(4)
    @bar_title(THRESHOLDS["overfit_loss"])
    def test_overfit_loss(self, student):
        """The saved overfit model's training loss on the notebook's 50 stand-in captions is at most {bar}
        (your saved weights in the notebook's CaptioningTransformer)"""
        threshold = THRESHOLDS["overfit_loss"]
        course, build, weights = course_captioner(student, "captioning_overfit")
        features, captions = small_subset(make_standin(), OVERFIT_CAPTIONS)
        compare_with_student(student, "captioning_overfit", build, weights, course, (features, captions[:, :-1]))
        started, total = time.monotonic(), 0.0
        outputs = outputs_in_secret_order(local_outputs(course, "captioning_overfit", student), len(captions),
                                          lambda idx: (features[idx], captions[idx, :-1]), secret_rng(), batch_size=10,
                                          timeout=evaluation_limit(threshold.reference_eval_s))
        for indices, scores in outputs:
            total += float(trusted_loss(scores, captions[indices, 1:], NULL)) * len(indices)
        loss = total / len(captions)
        student.notes["captioning_overfit"] = (f"training loss {loss:.4f} per caption on the {len(captions)} captions of the "
                                               f"small subset [{STANDIN_LABEL}]: {'within' if loss <= threshold.value else 'above'} "
                                               f"the bar {threshold.value:g}; {scored_on(student, started)}")
        if not loss <= threshold.value:
            raise Feedback(f"captioning_overfit: training loss {loss:.4f} on the small subset, above the required "
                           f"{threshold.value:g}")

    @pytest.mark.points(4)
    @bar_title(THRESHOLDS["standin_bleu"])
    def test_standin_bleu(self, student):
        """The saved model's greedy captions of 500 new stand-in images reach a BLEU of at least {bar} (your saved weights in the
        notebook's CaptioningTransformer, captioned by the notebook's sample)"""
        threshold = THRESHOLDS["standin_bleu"]
        course, build, weights = course_captioner(student, "captioning_standin")
        # Drawn afresh in every run from a secret seed: no split the notebook can make is the one scored.
        features, captions = fresh_standin_split(HELD_OUT_IMAGES, seed=secret_rng().getrandbits(63))
        started = time.monotonic()
        sampled = course_decoding(student, course, course.sample, features, max_length=SAMPLE_MAX_LENGTH)  # (B, L)
        shown = course_decoding(student, course, course.sample, features[:COMPARED_EXAMPLES], max_length=SAMPLE_MAX_LENGTH)
        # the slice sampled alone, as the worker samples it: a batch's width depends on its rows (sampling stops when
        # every caption has ended)
        compare_decoding(student, "captioning_standin", "sample",
                         stand_in("bound_method", target=module(build, weights=weights), method="sample"),
                         (features[:COMPARED_EXAMPLES],), dict(max_length=SAMPLE_MAX_LENGTH), shown)
        hypotheses = decode_captions(sampled, WORDS)
        bleu = corpus_bleu(hypotheses, decode_captions(captions, WORDS))
        student.notes["captioning_standin"] = (f"BLEU {bleu.score:.2f} on the captions of {len(features)} new stand-in "
                                               f"images [{STANDIN_LABEL}] (drawn for this run; {bleu.signature}): "
                                               f"{'reaches' if bleu.score >= threshold.value else 'below'} the bar "
                                               f"{threshold.value:g}; {scored_on(student, started)}")
        if not bleu.score >= threshold.value:
            raise Feedback(f"captioning_standin: BLEU {bleu.score:.2f} on new stand-in images, below the "
                           f"required {threshold.value:g}")

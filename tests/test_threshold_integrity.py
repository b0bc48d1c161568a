"""Thresholds cannot be looked up (autograder/kit/scoring.py: secret order, canary; autograder/kit/imdb_grading.py).

The scoring functions are driven directly with tiny fake models standing in for the sandboxed worker
(`FakeStudent.saved_model_outputs` runs them on each batch the grader would send). An honest classifier keeps
its accuracy; a model that returns the labels in a fixed order falls to chance; a model that recognises the
exact test inputs passes the plain split but collapses on the canary and "needs review" (the reason in the TA's
reviews, never in the student's notes). On a larger split, the
sequential rule (autograder/kit/sequential.py) decides a clear case from its first stage, and a borderline one the
budget cannot reach is not judged (skipped: neither zero nor full marks).
"""
from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import torch
import torch.nn.functional as F

from autograder.feedback import Feedback
from autograder.kit.imdb_grading import graded_imdb
from autograder.spec import Threshold
from autograder.kit.scoring import (CANARY_SHIFT, graded_classifier, in_worker, perturb_images, secret_batches, secret_pools,
                                secret_rng, secret_sample)
from autograder.kit.sequential import FIRST_STAGE

NUM_CLASSES, N = 10, 800


@dataclass
class FakeStudent:
    """StudentCode's threshold interface, with `model(*args)` in place of the student's saved model."""

    model: Callable[..., torch.Tensor]
    notes: dict[str, str] = field(default_factory=dict)
    reviews: dict[str, str] = field(default_factory=dict)
    sent: list[tuple] = field(default_factory=list)
    budget_s: float = 600.0
    policy: object = field(default_factory=lambda: type("Policy", (), {"device": "cpu", "threads": 1})())

    def threshold_budget(self) -> float:
        return self.budget_s

    def saved_model_outputs(self, saved_name, build, weights, batches, timeout=300.0):
        for args in batches:
            self.sent.append(args)
            yield self.model(*args)


def one_hot(labels: torch.Tensor, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    return F.one_hot(labels.long(), num_classes).float()


def image_set(seed: int = 0, n: int = N) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 1, 8, 8) images whose label is their (shift-invariant) mean brightness, plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    return labels.float().view(-1, 1, 1, 1) + 0.1 * torch.rand(n, 1, 8, 8, generator=g), labels


def grade_images(student: FakeStudent, threshold: float = 0.8, n: int = N, clock: Callable[[], float] | None = None,
                 batch_size: int = 64, seed: int | None = None) -> float:
    """The image path of autograder.kit.scoring.graded_accuracy on the toy images (`clock`: graded_classifier's;
    `seed`: one fixed draw of the secret order, canary subset and perturbations instead of a fresh one)."""
    images, labels = image_set(n=n)
    rng = secret_rng() if seed is None else random.Random(seed)
    sample = secret_sample(labels.tolist(), rng)
    pool = torch.cat([images, perturb_images(images[sample.canary], rng)])
    return graded_classifier(student, "toy", in_worker(student, "toy", {}, {}), labels, sample,
                             lambda indices: (pool[indices],), NUM_CLASSES, "toy images", "shifted, noisy test images",
                             threshold, rng, batch_size=batch_size, clock=clock)


def test_secret_batches_cover_every_example_once_in_random_sizes():
    batches = secret_batches(1000, random.Random(1), 64)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert sum(not 32 <= len(b) <= 64 for b in batches) <= 1  # the last cut may be shorter
    assert sorted(i for b in secret_batches(1000, random.Random(1), 64, lengths=list(range(1000))) for i in b) == list(range(1000))


def test_secret_rng_draws_a_new_order_every_run():
    first, second = (secret_batches(1000, secret_rng(), 100) for _ in range(2))
    assert first != second
    assert [i for b in first for i in b] != list(range(1000))


def test_length_bucketing_keeps_padding_low():
    draw = random.Random(2)
    lengths = [draw.randint(1, 500) for _ in range(4000)]
    waste = lambda batches: sum(max(lengths[i] for i in b) * len(b) for b in batches)  # noqa: E731
    assert waste(secret_batches(4000, random.Random(3), 100, lengths)) < 0.7 * waste(secret_batches(4000, random.Random(3), 100))


def shifts(image: torch.Tensor) -> list[torch.Tensor]:
    """`image` moved by every (dy, dx) of at most CANARY_SHIFT pixels, not (0, 0), the border repeating the edge."""
    m, (height, width) = CANARY_SHIFT, image.shape[-2:]
    padded = torch.nn.functional.pad(image[None], (m, m, m, m), mode="replicate")[0]
    return [padded[:, m - dy:m - dy + height, m - dx:m - dx + width] for dy in range(-m, m + 1)
            for dx in range(-m, m + 1) if (dy, dx) != (0, 0)]


def test_perturbed_copies_are_shifted_with_noise_that_no_exact_lookup_undoes(monkeypatch):
    images = torch.rand(50, 3, 8, 8)
    copies = perturb_images(images, random.Random(4))
    for before, after in zip(images, copies, strict=True):
        gaps = [(after - shifted).abs() for shifted in shifts(before)]
        assert min(g.mean().item() for g in gaps) < 0.06  # one shift, plus noise of standard deviation 0.05
        assert not any(torch.equal(after, s) for s in shifts(before)) and not torch.equal(after, before)
    monkeypatch.setattr("autograder.kit.scoring.CANARY_NOISE", 0.0)
    for before, after in zip(images, perturb_images(images, random.Random(4)), strict=True):  # without the noise: exactly a shift
        assert any(torch.equal(after, s) for s in shifts(before))


def test_an_honest_classifier_passes_and_its_outputs_are_put_back_in_order():
    student = FakeStudent(lambda x: one_hot(x.mean(dim=(1, 2, 3)).floor()))
    assert grade_images(student) == 1.0
    assert "canary 100.00% on 400 shifted, noisy test images, 100.00% on the same examples" in student.reviews["toy"]
    assert "canary" not in student.notes["toy"]  # the student's feedback does not describe the integrity checks
    assert student.notes["toy"].startswith("accuracy 100.00% on all 800 toy images (exact): reaches the bar 80%; "
                                           "scored on cpu")
    assert len({len(args[0]) for args in student.sent}) > 1  # batch sizes vary


def test_labels_returned_in_the_old_fixed_order_score_chance():
    _, labels = image_set()
    seen = [0]

    def counter(x):
        out = one_hot(labels[(seen[0] + torch.arange(len(x))) % N])
        seen[0] += len(x)
        return out

    with pytest.raises(Feedback, match="below the required 80%"):
        grade_images(FakeStudent(counter))


def test_a_model_that_recognises_the_test_inputs_needs_review():
    images, labels = image_set()
    table = {images[i].numpy().tobytes(): int(labels[i]) for i in range(N)}
    student = FakeStudent(lambda x: one_hot(torch.tensor([table.get(image.numpy().tobytes(), 0) for image in x])))
    with pytest.raises(pytest.skip.Exception, match="needs review: toy reached the bar, but an integrity check"):
        grade_images(student)
    assert student.notes["toy"].startswith("accuracy 100.00%") and "canary" not in student.notes["toy"]
    assert student.reviews["toy"].startswith("FLAGGED: canary ")


def test_a_weak_model_that_looks_half_the_test_set_up_needs_review():
    """Issue 26's case: a model too weak for the bar, which looks up half the public test images and so passes the
    plain split, loses on the canary what it looked up: far more than the reference's drop plus the margin."""
    images, labels = image_set()
    half = {images[i].numpy().tobytes(): int(labels[i]) for i in range(0, N, 2)}
    weak = brightness_classifier(wrong_every=3)  # about 67 % right

    def half_lookup(x):
        honest = weak(x).argmax(dim=1)
        return one_hot(torch.tensor([half.get(image.numpy().tobytes(), int(h)) for image, h in zip(x, honest, strict=True)]))

    student = FakeStudent(half_lookup)
    # One fixed draw: over fresh draws the drop spreads (150 draws: 9.25 to 23 points, about 16 on average, flagged
    # above 8), so a rare draw would not flag this lookup and the test would fail by luck (it did once in CI).
    with pytest.raises(pytest.skip.Exception, match="needs review"):
        grade_images(student, seed=26)
    assert "reaches the bar 80%" in student.notes["toy"] and student.reviews["toy"].startswith("FLAGGED")
    honest = FakeStudent(weak)
    with pytest.raises(Feedback, match="below the required 80%"):  # without the lookup: below the bar, no review
        grade_images(honest)


def grade_with_training_examples(student: FakeStudent, images: torch.Tensor, labels: torch.Tensor,
                                 train_images: torch.Tensor, train_labels: torch.Tensor) -> float:
    """graded_accuracy's path for a design of the student's own: canary copies and, beside them, training examples."""
    rng = secret_rng()
    sample = secret_sample(labels.tolist(), rng, companions=2)
    chosen = rng.sample(range(len(train_labels)), len(sample.canary))
    pool = torch.cat([images, perturb_images(images[sample.canary], rng), train_images[chosen]])
    return graded_classifier(student, "toy", in_worker(student, "toy", {}, {}), labels, sample,
                             lambda indices: (pool[indices],), NUM_CLASSES, "toy images", "shifted, noisy test images",
                             0.8, rng, batch_size=64, train_labels=train_labels[chosen])


def test_an_honest_model_knows_its_training_split_as_well_as_the_test_set():
    student = FakeStudent(brightness_classifier(wrong_every=1000))
    assert grade_with_training_examples(student, *image_set(seed=0), *image_set(seed=1)) > 0.95
    review = student.reviews["toy"]
    assert "FLAGGED" not in review and re.search(r"; 1?\d\d\.\d\d% on 400 examples of its training split against", review), review


def test_a_lookup_that_survives_the_canary_is_caught_by_the_training_examples():
    """Issue 26's nearest-neighbour case: a model that finds the nearest public test image under every small shift
    (as a lookup of pooled test images does) answers the canary copies right too, but on examples of its own
    training split it is no better than chance: it knows the test set better than what it learned from."""
    g = torch.Generator().manual_seed(5)
    images, labels = torch.rand(N, 1, 8, 8, generator=g), torch.randint(0, NUM_CLASSES, (N,), generator=g)
    train_images, train_labels = torch.rand(N, 1, 8, 8, generator=g), torch.randint(0, NUM_CLASSES, (N,), generator=g)
    table = torch.stack([shifted for image in images for shifted in [image, *shifts(image)]]).flatten(1)
    table_labels = labels.repeat_interleave(len(shifts(images[0])) + 1)

    def nearest_test_image(x):
        return one_hot(table_labels[torch.cdist(x.flatten(1), table).argmin(dim=1)])

    student = FakeStudent(nearest_test_image)
    with pytest.raises(pytest.skip.Exception, match="needs review: toy reached the bar"):
        grade_with_training_examples(student, images, labels, train_images, train_labels)
    review = student.reviews["toy"]
    assert review.startswith("canary ") and "; FLAGGED: " in review and "examples of its training split" in review, review
    assert "training" not in student.notes["toy"]  # the student's feedback does not describe the check


def brightness_classifier(wrong_every: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Right except on images whose noise hash puts them in 1 of `wrong_every` (a fixed, input-keyed subset)."""
    def classify(x):
        label = x.mean(dim=(1, 2, 3)).floor().long()
        unlucky = (x[:, 0, 0, 0] * 1e4).long() % wrong_every == 0
        return one_hot(torch.where(unlucky, (label + 1) % NUM_CLASSES, label))
    return classify


def test_a_clear_case_is_decided_by_the_first_stage_and_says_so():
    student = FakeStudent(brightness_classifier(wrong_every=10))  # about 90 %, bar 50 %
    grade_images(student, threshold=0.5, n=8000)
    scored = sum(len(args[0]) for args in student.sent)
    assert scored == FIRST_STAGE + FIRST_STAGE // 2  # the first stage and its canary copies, no more
    assert f"on {FIRST_STAGE:,} of 8,000 toy images, a secret stratified sample (99.9% interval" in student.notes["toy"]
    assert "reaches the bar 50%; scored on cpu (1 thread)" in student.notes["toy"]


def test_a_borderline_case_is_scored_to_the_whole_split_which_decides_exactly():
    images, labels = image_set(n=4000)
    correct = int((brightness_classifier(10)(images).argmax(dim=1) == labels).sum())
    grade_images(FakeStudent(brightness_classifier(10)), threshold=correct / 4000, n=4000)  # right on the bar: passes
    student = FakeStudent(brightness_classifier(10))
    with pytest.raises(Feedback, match="below the required"):  # one example short of the bar: fails
        grade_images(student, threshold=(correct + 1) / 4000, n=4000)
    assert "on all 4,000 toy images (exact)" in student.notes["toy"]


def test_a_borderline_case_beyond_the_budget_is_not_judged_and_says_between_what():
    student = FakeStudent(brightness_classifier(wrong_every=10), budget_s=0.0)
    with pytest.raises(pytest.skip.Exception, match=r"not judged on this grader: toy accuracy between .* after .* toy "
                                                    r"images .*grade on a GPU or raise --threshold-budget"):
        grade_images(student, threshold=0.9, n=8000)
    assert student.notes["toy"].startswith("not judged on this grader")


def reviews(seed: int = 5) -> tuple[list[list[int]], list[int]]:
    """Token-id reviews whose label is whether token 7 occurs in them (ids 1..9; 0 is padding)."""
    rng = random.Random(seed)
    ids = [[rng.randint(1, 9) for _ in range(rng.randint(1, 40))] for _ in range(N)]
    return ids, [int(7 in row) for row in ids]


def grade_reviews(student: FakeStudent, threshold: float = 0.8) -> float:
    ids, labels = reviews()
    bar = Threshold(threshold, test="TestAccuracy::test_toy", reference_eval_s=1.0)  # evaluation limit: the 60 s floor
    return graded_imdb(student, "toy_imdb", {}, {}, ids, labels, 0, lambda tokens, lengths: (tokens, lengths),
                       "toy reviews", bar, batch_size=50)


def has_seven(tokens: torch.Tensor) -> torch.Tensor:
    return (tokens == 7).any(dim=1).long()


def test_a_padding_invariant_text_classifier_passes():
    student = FakeStudent(lambda tokens, lengths: one_hot(has_seven(tokens), 2))
    assert grade_reviews(student) == 1.0
    assert "re-batched with different padding, 100.00% on the same examples unperturbed" in student.reviews["toy_imdb"]
    assert max(tokens.shape[1] - int(lengths.max()) for tokens, lengths in student.sent) > 0  # a canary's extra padding


def test_a_text_model_that_depends_on_the_padding_is_flagged():
    """Right only where a review carries little padding, as under the old length-sorted batches: a model keyed on
    the padded inputs the grader used to send."""
    def padding_sensitive(tokens, lengths):
        little = tokens.shape[1] - lengths < 8
        return one_hot(torch.where(little, has_seven(tokens), 1 - has_seven(tokens)), 2)

    student = FakeStudent(padding_sensitive)
    with pytest.raises(pytest.skip.Exception, match="needs review: toy_imdb"):
        grade_reviews(student)
    assert student.reviews["toy_imdb"].startswith("FLAGGED: canary")


def test_with_the_course_model_the_workers_answers_only_earn_a_note():
    """Where the release fixes the architecture (the RNN assignment), the course's implementation classifies on
    this side: a worker that returns the right labels (here it knows the rule) changes nothing but the note."""
    class AlwaysNegative(torch.nn.Module):  # what the saved weights compute in the course's model
        def __init__(self):
            super().__init__()
            self.bias = torch.nn.Parameter(torch.tensor([1.0, 0.0]))

        def forward(self, tokens, lengths):
            return self.bias.expand(len(tokens), 2)

    ids, labels = reviews()
    student = FakeStudent(lambda tokens, lengths: one_hot(has_seven(tokens), 2), notes={})
    student.call_timeout = 20.0
    bar = Threshold(0.8, test="TestAccuracy::test_toy", reference_eval_s=1.0)
    negatives = 1 - sum(labels) / len(labels)
    with pytest.raises(Feedback, match=f"accuracy {negatives:.2%} on all 800 toy reviews .exact., below the required"):
        graded_imdb(student, "toy_imdb", {}, {}, ids, labels, 0, lambda tokens, lengths: (tokens, lengths),
                    "toy reviews", bar, batch_size=50, course=AlwaysNegative())
    assert len(student.sent) == 1  # the worker saw one slice, for the note
    assert "toy_imdb" not in student.reviews  # nothing to look up in the course's model: no canary
    assert "does not compute what the notebook's model computes" in student.notes["toy_imdb check"]


# -- a budget cut still decides (autograder/kit/scoring.py: graded_classifier, secret_pools) ---------------------------
class Clock:
    """time.monotonic for graded_classifier: one second passes per batch the model scores."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def timed_student(monkeypatch, accuracy: float, budget_s: float) -> FakeStudent:
    """A model right on about `accuracy` of the toy images, each batch taking a second of a fake clock."""
    clock = Clock()
    monkeypatch.setattr("autograder.kit.scoring.time.monotonic", clock)
    draw = random.Random(7)

    def model(x):
        clock.now += 1.0
        truth = x.mean(dim=(1, 2, 3)).floor()
        wrong = torch.tensor([draw.random() > accuracy for _ in range(len(x))])
        return one_hot(torch.where(wrong, (truth + 1) % NUM_CLASSES, truth))
    return FakeStudent(model, budget_s=budget_s)


def test_a_clear_failure_cut_short_by_the_budget_fails(monkeypatch):
    student = timed_student(monkeypatch, accuracy=0.1, budget_s=6)  # about 6 batches of up to 64 of 800 images
    with pytest.raises(Feedback, match=r"toy: accuracy \d+\.\d\d% on \d+ of 800 toy images"):
        grade_images(student)
    scored = int(re.search(r"on (\d+) of 800", student.notes["toy"])[1])
    assert 32 <= scored <= 7 * 64, student.notes["toy"]


def test_a_clear_pass_cut_short_by_the_budget_passes(monkeypatch):
    student = timed_student(monkeypatch, accuracy=1.0, budget_s=6)
    assert grade_images(student) == 1.0 and "reaches the bar" in student.notes["toy"]
    assert "of 800 toy images" in student.notes["toy"]  # decided before the whole split


def test_a_close_call_cut_short_by_the_budget_is_not_judged(monkeypatch):
    student = timed_student(monkeypatch, accuracy=0.8, budget_s=6)
    with pytest.raises(pytest.skip.Exception, match="not judged on this grader"):
        grade_images(student)


def test_text_pools_are_random_samples_of_the_split():
    """Batches of similar lengths are made within pools; each pool is a uniform random sample, so whole pools scored
    before a budget cut are one too (the cut decides on them)."""
    lengths = list(range(4000))
    pools = secret_pools(4000, random.Random(5), 100, lengths)
    assert sorted(i for pool in pools for batch in pool for i in batch) == lengths
    for pool in pools:
        members = [i for batch in pool for i in batch]
        assert abs(sum(members) / len(members) - 1999.5) < 150  # not the short reviews first
        assert all(max(b) - min(b) < 400 for b in pool)  # but each batch of similar lengths


# -- the first stage is sized to the budget (autograder/kit/scoring.py: WARMUP, sized_first_stage) --------------------
def costly_student(clock: Clock, accuracy: float, seconds_per_example: float, budget_s: float) -> FakeStudent:
    """A model right on about `accuracy` of the toy images that costs `seconds_per_example` of `clock` for every example
    it classifies (a deterministic cost model: nothing sleeps)."""
    draw = random.Random(11)

    def model(x):
        clock.now += seconds_per_example * len(x)
        truth = x.mean(dim=(1, 2, 3)).floor()
        wrong = torch.tensor([draw.random() > accuracy for _ in range(len(x))])
        return one_hot(torch.where(wrong, (truth + 1) % NUM_CLASSES, truth))
    return FakeStudent(model, budget_s=budget_s)


BERT_BASE_S = 0.66  # a review, bert-base-uncased on one CPU thread (benchmarks/threshold_cost.py); budget 600 s
SPLIT = 25_000  # as IMDB's test split


def scored_of(note: str, total: int = SPLIT) -> int:
    return int(re.search(rf"on ([\d,]+) of {total:,}", note)[1].replace(",", ""))


@pytest.mark.parametrize("accuracy,bar,passes", [(0.5, 0.85, False), (0.97, 0.85, True), (0.1, 0.7, False)])
def test_a_slow_models_first_stage_is_sized_to_fit_the_budget_and_decides_a_clear_case(accuracy, bar, passes):
    """At BERT-base's cost the planned first stage (1 000 examples and their copies, about 990 s) cannot fit the 600 s
    budget; the warm-up's cost sizes it down to 250, which is scored whole within the budget and decides."""
    clock = Clock()
    student = costly_student(clock, accuracy, BERT_BASE_S, budget_s=600)
    if passes:
        assert grade_images(student, threshold=bar, n=SPLIT, clock=clock) >= bar
    else:
        with pytest.raises(Feedback, match="below the required"):
            grade_images(student, threshold=bar, n=SPLIT, clock=clock)
    note = student.notes["toy"]
    assert ("reaches the bar" if passes else "falls short of the bar") in note
    assert "first stage 250 toy images instead of 1,000: the first 50 took" in note, note
    assert scored_of(note) == 250  # the whole first stage: not cut short
    assert clock.now <= 600


def test_a_model_too_slow_for_the_smallest_first_stage_is_cut_and_still_fails_clearly():
    """Five seconds an example: even the fewest examples that decide a clear case (125) do not fit, the note says so,
    the budget cuts the stage, and the examples scored whole still fail a model at chance."""
    clock = Clock()
    student = costly_student(clock, 0.1, 5.0, budget_s=600)
    # Batches of 8-16: the stage's examples and copies (about 110) make several, so the budget ends before the last
    # (with 32-64 a stage can be two batches, and a cut after the last batch is no cut).
    with pytest.raises(Feedback, match="below the required"):
        grade_images(student, threshold=0.85, n=SPLIT, clock=clock, batch_size=16)
    note = student.notes["toy"]
    assert "first stage 125 toy images instead of 1,000" in note and "the fewest that still decides" in note, note
    assert 50 <= scored_of(note) < 125


def test_a_fast_model_keeps_the_planned_first_stage():
    clock = Clock()
    student = costly_student(clock, 0.5, 0.001, budget_s=600)
    with pytest.raises(Feedback, match="below the required"):
        grade_images(student, threshold=0.85, n=SPLIT, clock=clock)
    assert scored_of(student.notes["toy"]) == FIRST_STAGE and "first stage" not in student.notes["toy"]

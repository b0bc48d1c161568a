"""Scoring the models a student saved: every threshold, judged on the trusted side from the worker's outputs.

The worker runs the student's saved model on test inputs sent in a secret order; the labels and targets never
leave this process. Image classifiers (ViT, CNN) go through `graded_accuracy`, IMDB classifiers (RNN, BERT)
through autograder/kit/imdb_grading.py, both ending in `graded_classifier`; the Transformer's reversal and
perplexity use `outputs_in_secret_order` directly. `evaluation_limit` bounds how long a saved model may take.
"""
from __future__ import annotations

import contextlib
import functools
import random
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TypedDict

import pytest
import torch

from autograder.feedback import Feedback, assert_shape
from autograder.kit.requests import call
from autograder.kit.sequential import (CLEAR_MARGIN, CONFIDENCE, FIRST_STAGE, MAX_HALVINGS, clopper_pearson, decide,
                                   first_stage_choices, stage_ends, stratified_order)
from autograder.spec import Threshold
from autograder.kit.student import Outputs, StudentCode

# -- thresholds: secret order and a memorisation canary ---------------------------------------------------
# The test splits are public, so a saved model could carry their labels and return them in the order the grader
# used to send the examples. Every threshold therefore sends its examples in an order and in batches drawn from
# a secret per-run seed (never sent to the worker), and the classifiers also meet a canary: perturbed copies of a
# random subset of the test examples, mixed into the same batches, made so that they cannot be undone or told apart
# (images: shifted by 1-2 pixels with the border repeated, plus mild noise; reviews: re-padded, 1-2 % of the tokens
# dropped). A model that classifies loses about what the reference model loses on them; one that recognises the test
# set loses what it looked up. Where the student's own code computes the outputs (BetterCNN, the BERT head), a drop
# more than CANARY_MARGIN beyond the reference's (each threshold's `canary_drop`) makes the threshold "needs review":
# neither points nor a zero until a TA looks (the reason is in the TA's table and gradebook.json, never in the
# student's feedback, which says only that integrity checks exist).
CANARY_SIZE = 2000  # perturbed copies of test examples (at most a quarter of the split)
CANARY_SHIFT = 2  # pixels: each image copy moves by up to this many along each axis (not 0 along both)
CANARY_NOISE = 0.05  # standard deviation of the Gaussian noise added to each image copy (normalised units)
CANARY_TOKEN_DROPOUT = (0.01, 0.02)  # each review copy loses this share of its tokens (drawn per copy)
# Measured (benchmarks/canary_drop.py, 2 000 test images): the SimpleCNN reference loses 1.9-2.2 points on these copies;
# a lookup of exact test images loses everything it looked up, so a model that looks up a tenth of the test set
# loses about that tenth. The margin, 8 points beyond the reference's own drop, is four times the sampling noise of
# the smallest canary (500 copies: a standard deviation under 2 points). Where the course's implementation computes
# the outputs there is nothing to look up and no canary: a ViT, which has no built-in tolerance of shifts, loses
# about 20 points on them (7 with 1-pixel shifts) however it was trained.
CANARY_MARGIN = 0.08
# A second check for the same designs: beside each canary copy goes an example of the split the model was trained
# on (drawn secretly, mixed into the same batches). A model that learned classifies what it was trained on at least as
# well as test examples; one that looks up the public test set by any means the canary cannot see (a nearest
# neighbour on pooled test images survives shifts and noise) knows the test examples better than its own training
# set. The margin, 8 points, is three standard deviations of the difference of two accuracies on the smallest
# canary (500 of each, at 50 %), and honest models sit on the other side of zero.
TRAIN_GAP_MARGIN = 0.08
REVIEW_MESSAGE = ("needs review: {name} reached the bar, but an integrity check of the grader flagged this result; a "
                  "TA will look at it before it counts (no points and no zero until then)")


def secret_rng() -> random.Random:
    """A generator seeded afresh in every grading run from the operating system's secure source (`secrets`). What it
    draws (orders, batch sizes, canary subsets, held-out data) stays on this side."""
    return random.Random(secrets.randbits(128))


POOL_BATCHES = 20  # text: batches of similar lengths are made within runs of this many batches' examples


def secret_pools(n: int, rng: random.Random, batch_size: int, lengths: Sequence[int] | None = None) -> list[list[list[int]]]:
    """Indices 0..n-1 in a secret order, cut into batches of random sizes from batch_size // 2 to batch_size, grouped
    in pools, the pools and the batches of each pool in a secret order. Every pool is a uniform random sample of the n
    (so every run of whole pools from the start is one too: a stage cut short by the budget still decides on them).
    With `lengths` (text) a pool holds POOL_BATCHES batches whose examples were sorted by length before the cut (ties
    keep the secret order), so that a batch needs little padding; without, every batch is a pool."""
    order = list(range(n))
    rng.shuffle(order)
    chunk = POOL_BATCHES * batch_size if lengths is not None else n
    pools = []
    for start in range(0, n, chunk):
        members = order[start:start + chunk]
        if lengths is not None:
            members = sorted(members, key=lambda i: lengths[i])
        batches, at = [], 0
        while at < len(members):
            size = rng.randint(max(1, batch_size // 2), batch_size)
            batches.append(members[at:at + size])
            at += size
        rng.shuffle(batches)
        pools += [batches] if lengths is not None else [[b] for b in batches]
    rng.shuffle(pools)
    return pools


def secret_batches(n: int, rng: random.Random, batch_size: int, lengths: Sequence[int] | None = None) -> list[list[int]]:
    """The batches of `secret_pools`, pool after pool."""
    return [batch for pool in secret_pools(n, rng, batch_size, lengths) for batch in pool]




def in_worker(student: StudentCode, saved_name: str, build: dict, weights: dict) -> Outputs:
    """The outputs of the student's saved model, rebuilt in the worker as `build` (a call() spec) with `weights`."""
    return lambda batches, timeout: student.saved_model_outputs(saved_name, build, weights, batches, timeout=timeout)


def outputs_in_secret_order(outputs: Outputs, n: int, batch_args: Callable[[list[int]], tuple], rng: random.Random,
                            batch_size: int, lengths: Sequence[int] | None = None,
                            timeout: float = 300.0) -> Iterator[tuple[list[int], torch.Tensor]]:
    """(indices, output) for each batch of `secret_batches` of n examples: the model runs on `batch_args(indices)`;
    the caller puts the outputs back in example order by their indices."""
    batches = secret_batches(n, rng, batch_size, lengths)
    return zip(batches, outputs((batch_args(b) for b in batches), timeout), strict=True)


WARMUP = 50  # examples (with their canary copies) scored and timed first to size the first stage; they open it
FIRST_STAGE_SHARE = 0.5  # a first stage sized to the budget is planned to take at most this share of what is left
class Looks(TypedDict):
    """Where the sequential rule may look (sequential.decide's keywords)."""
    halvings: int
    cuts: bool


CLASSIFIER_LOOKS: Looks = {"halvings": MAX_HALVINGS, "cuts": True}  # where graded_classifier may look (sequential.look_positions)


@dataclass(frozen=True)
class SecretSample:
    """The secret plan for scoring one classifier threshold (autograder/kit/sequential.py): the test examples in a
    label-stratified secret order, cut into stages from `first` examples on, and the canary, the examples that also
    get a perturbed copy (half of each FIRST_STAGE-based stage's examples, CANARY_SIZE in all at most), each copy
    scored in the same stage as its original. Pool index N + j is the copy of canary[j]; with `companions` = 2, pool
    index N + C + j (C = len(canary)) is a training example scored beside it (graded_classifier's `train_labels`)."""

    order: list[int]
    canary: list[int]
    first: int = FIRST_STAGE
    companions: int = 1  # pool entries that go with each canary example: its copy, and a training example if 2

    def stages(self) -> list[list[int]]:
        """The examples each stage adds: the first `first` of the order, then as many again, twice that, ... the rest."""
        ends = stage_ends(len(self.order), self.first)
        return [self.order[start:end] for start, end in zip([0] + ends[:-1], ends, strict=True)]

    def copies(self, examples: Sequence[int]) -> list[int]:
        """The pool indices of what goes with `examples`: their canary copies (N + j), then their training
        examples (N + C + j) where there are companions."""
        chosen, n, c = set(examples), len(self.order), len(self.canary)
        return [n + k * c + j for k in range(self.companions) for j, i in enumerate(self.canary) if i in chosen]

    def with_first(self, first: int) -> "SecretSample":
        """The same order and canary, with stages from `first` examples on (a first stage sized to the budget)."""
        return replace(self, first=first)


def secret_sample(labels: Sequence[int], rng: random.Random, canary_size: int = CANARY_SIZE,
                  companions: int = 1) -> SecretSample:
    """The plan; `canary_size=0` where the course's implementation computes the outputs (nothing to look up);
    `companions=2` where a training example goes beside each canary copy."""
    order, canary = stratified_order(labels, rng), list[int]()
    for start, end in zip([0] + stage_ends(len(labels))[:-1], stage_ends(len(labels)), strict=True):
        canary += rng.sample(order[start:end], min((end - start) // 2, canary_size - len(canary)))
    return SecretSample(order, canary, companions=companions)


def sized_first_stage(per_example_s: float, seconds_left: float, scored: int, total: int, bar: float,
                      examples: str) -> tuple[int, str | None]:
    """(first stage, why it was shrunk or None): the largest of sequential.first_stage_choices (FIRST_STAGE, then
    halves, never below the clear-case floor) whose examples after the `scored` already timed, at `per_example_s`
    each, take at most FIRST_STAGE_SHARE of `seconds_left`; the floor where none does (a cut then decides on what
    it scored)."""
    choices = first_stage_choices(total, bar)
    cost = {size: per_example_s * max(0, min(size, total) - scored) for size in choices}
    fitting = [size for size in choices if cost[size] <= FIRST_STAGE_SHARE * seconds_left]
    first = fitting[0] if fitting else choices[-1]
    if first == choices[0] or min(first, total) == min(choices[0], total):
        return choices[0], None
    why = (f"first stage {first:,} {examples} instead of {min(choices[0], total):,}: the first {scored:,} took "
           f"{per_example_s:.2f} s each, so {min(choices[0], total):,} would take about {cost[choices[0]]:.0f} s more "
           f"of the {seconds_left:.0f} s left of the budget")
    if not fitting:
        why += (f"; {first:,} is the fewest that still decides a model {CLEAR_MARGIN:.0%} from the bar, so the budget "
                "may cut it short (it then decides on the examples scored)")
    return first, why


def skip_undecided(student: StudentCode, saved_name: str, predicted: torch.Tensor, labels: torch.Tensor,
                   scored: list[int], examples: str, threshold: float, where: str) -> None:
    """A threshold the budget left undecided: noted for the TA with the interval reached, and skipped (not judged:
    no points, no zero)."""
    n = len(labels)
    correct = int((predicted[scored] == labels[scored]).sum())
    lower, upper = clopper_pearson(correct, len(scored), 1 - CONFIDENCE) if scored else (0.0, 1.0)
    undecided = (f"accuracy between {lower:.2%} and {upper:.2%} after {len(scored):,} of {n:,} {examples} "
                 f"({CONFIDENCE:.1%} interval), bar {threshold:.0%}")
    student.notes[saved_name] = f"not judged on this grader: {undecided}; {where}"
    pytest.skip(f"not judged on this grader: {saved_name} {undecided}; grade on a GPU or raise --threshold-budget")


def canary_check(student: StudentCode, saved_name: str, predicted: torch.Tensor, labels: torch.Tensor,
                 sample: SecretSample, perturbed: str, reference_drop: float, passed: bool,
                 train_labels: torch.Tensor | None) -> bool:
    """Whether a model that `passed` needs review: its accuracy on the canary copies scored (pool indices N..) drops
    more than `reference_drop` + CANARY_MARGIN below that on the same examples unperturbed, or it classifies them
    better than the training examples beside them (train_gap_check). The numbers go to `student.reviews` only."""
    n = len(labels)
    copies = [j for j in range(len(sample.canary)) if predicted[n + j] >= 0 and predicted[sample.canary[j]] >= 0]
    flagged = False
    if copies:
        originals = [sample.canary[j] for j in copies]
        plain = (predicted[originals] == labels[originals]).float().mean().item()
        perturbed_accuracy = (predicted[[n + j for j in copies]] == labels[originals]).float().mean().item()
        drop, allowed = plain - perturbed_accuracy, reference_drop + CANARY_MARGIN
        flagged = passed and drop > allowed
        student.reviews[saved_name] = (f"{'FLAGGED: ' if flagged else ''}canary {perturbed_accuracy:.2%} on "
                                       f"{len(copies):,} {perturbed}, {plain:.2%} on the same examples unperturbed: a "
                                       f"drop of {drop:.2%} (the reference model's {reference_drop:.2%}; flagged above "
                                       f"{allowed:.2%})")
        if train_labels is not None:
            flagged = train_gap_check(student, saved_name, predicted, labels, sample, train_labels, passed) or flagged
    return flagged


def by_stages(score: Callable, look: Callable, stages: Iterable[list[int]], warmed: int, scored: list[int],
              started: float, budget: float, clock: Callable[[], float]):
    """graded_classifier's stages after its warm-up (the first `warmed` examples of the first stage, already in
    `scored`): each stage scored (`score`) and looked at (`look`) until the rule decides, the budget ends or a stage is
    cut short. Returns the examples scored and the last decision (None: none reached)."""
    decision = None
    for stage, examples_added in enumerate(stages):
        todo = examples_added[warmed:] if stage == 0 else examples_added
        if clock() - started >= budget:
            if stage == 0:  # the budget ended with the warm-up: it decides as a stage cut short
                decision = look(scored)
            break
        counted, cut_short = score(todo)
        scored += counted
        decision = look(scored)
        if cut_short or (decision is not None and decision.passed is not None):
            break
    return scored, decision


def graded_classifier(student: StudentCode, saved_name: str, outputs: Outputs, labels: torch.Tensor,
                      sample: SecretSample, batch_args: Callable[[list[int]], tuple], num_classes: int,
                      examples: str, perturbed: str, threshold: float, rng: random.Random, batch_size: int,
                      lengths: Sequence[int] | None = None, timeout: float = 300.0, reference_drop: float = 0.0,
                      clock: Callable[[], float] | None = None, train_labels: torch.Tensor | None = None) -> float:
    """Whether the saved classifier (its `outputs`: in the worker or the course's) reaches `threshold` accuracy on
    the N = len(labels) test examples (`examples`: "test images of ..."), decided by the sequential rule on the
    stages of `sample`: each stage's examples and canary copies (pool indices N..) go to the worker in one secret
    order, as `batch_args(pool indices)`, and the rule (autograder/kit/sequential.py) looks at the examples scored so
    far. Records how it was decided in `student.notes`, and the canary in `student.reviews` (the TA's only); Feedback
    below the bar. A model that reaches it, but whose accuracy on the canary copies falls more than
    `reference_drop` + CANARY_MARGIN below that on the same examples unperturbed (a lookup of the public test set),
    is "needs review" (pytest.skip with REVIEW_MESSAGE: no points, no zero). So is one that classifies the canary's
    examples more than TRAIN_GAP_MARGIN better than the training examples scored beside them (`train_labels`, the
    labels of pool entries N + C + j, where `sample` has two companions).
    The first WARMUP examples of the order are scored first and timed; the first stage is then sized from their cost
    per example to fit the grader's budget (student.threshold_budget; sized_first_stage), and the notes say when it
    was shrunk. A stage cut short by the budget decides on the pools of it that were scored whole (each a uniform
    random sample of the stage, `secret_pools`), with the same bounds; a decision it still cannot reach is not judged
    (pytest.skip: no points, no zero). `timeout` bounds the model's time over the whole split (a slow model's
    Feedback). `clock`: seconds, time.monotonic by default. Returns the accuracy measured."""
    clock = clock or time.monotonic
    n, started = len(labels), clock()
    budget = student.threshold_budget()
    predicted = torch.full((n + sample.companions * len(sample.canary),), -1, dtype=torch.long)

    def score(todo: list[int]) -> tuple[list[int], bool]:
        """Score the examples `todo` and their canary copies in secret pools: (those of `todo` in the pools scored to
        their end, whether the budget cut the scoring short)."""
        pool = todo + sample.copies(todo)
        pools = secret_pools(len(pool), rng, batch_size, [lengths[i] for i in pool] if lengths is not None else None)
        batches = [batch for group in pools for batch in group]
        last_of_pool = {sum(len(g) for g in pools[:k + 1]) - 1 for k in range(len(pools))}
        whole_pools: list[int] = []  # the examples of the pools scored to their end
        current: list[int] = []  # those of the pool being scored
        for b, out in enumerate(outputs((batch_args([pool[i] for i in batch]) for batch in batches),
                                        max(1.0, timeout - (clock() - started)))):
            indices = [pool[i] for i in batches[b]]
            assert_shape(out, (len(indices), num_classes), f"{saved_name} logits")
            predicted[indices] = out.float().argmax(dim=1)
            current += indices
            if b in last_of_pool:
                whole_pools += current
                current = []
            if clock() - started > budget and b != len(batches) - 1:  # a partial pool, sorted by length, is no sample
                counted = set(whole_pools)
                return [i for i in todo if i in counted], True
        return list(todo), False

    def look(scored: list[int]):
        correct = int((predicted[scored] == labels[scored]).sum())
        return decide(correct, len(scored), n, threshold, sample.first, **CLASSIFIER_LOOKS) if scored else None

    warmup = sample.order[:min(WARMUP, n)]
    scored, cut_short = score(warmup)
    shrunk = None
    decision = look(scored) if cut_short or clock() - started >= budget else None
    if decision is None:  # the warm-up's cost per example sizes the first stage (`score` and `look` see it)
        spent = clock() - started
        first, shrunk = sized_first_stage(spent / len(warmup), budget - spent, len(warmup), n, threshold, examples)
        sample = sample.with_first(first)
        scored, decision = by_stages(score, look, sample.stages(), len(warmup), scored, started, budget, clock)
    where = scored_on(student, started, clock) + (f"; {shrunk}" if shrunk else "")
    if decision is None or decision.passed is None:
        skip_undecided(student, saved_name, predicted, labels, scored, examples, threshold, f"{where}, budget {budget:.0f} s")
    verdict = "reaches" if decision.passed else "falls short of"
    student.notes[saved_name] = f"{decision.describe(examples)}: {verdict} the bar {threshold:.0%}; {where}"
    flagged = canary_check(student, saved_name, predicted, labels, sample, perturbed, reference_drop,
                           bool(decision.passed), train_labels)
    if not decision.passed:
        raise Feedback(f"{saved_name}: {decision.describe(examples)}, below the required {threshold:.0%}")
    if flagged:
        pytest.skip(REVIEW_MESSAGE.format(name=saved_name))
    return decision.accuracy


def train_gap_check(student: StudentCode, saved_name: str, predicted: torch.Tensor, labels: torch.Tensor,
                    sample: SecretSample, train_labels: torch.Tensor, passed: bool) -> bool:
    """Whether a model that `passed` classifies the canary's test examples more than TRAIN_GAP_MARGIN better than the
    training examples scored beside them (see graded_classifier); the comparison goes to the TA's reviews."""
    n, c = len(labels), len(sample.canary)
    pairs = [j for j in range(c) if predicted[n + c + j] >= 0 and predicted[sample.canary[j]] >= 0]
    if not pairs:
        return False
    originals = [sample.canary[j] for j in pairs]
    test_accuracy = (predicted[originals] == labels[originals]).float().mean().item()
    train_accuracy = (predicted[[n + c + j for j in pairs]] == train_labels[pairs]).float().mean().item()
    gap = test_accuracy - train_accuracy
    flagged = passed and gap > TRAIN_GAP_MARGIN
    student.reviews[saved_name] += (f"; {'FLAGGED: ' if flagged else ''}{train_accuracy:.2%} on {len(pairs):,} "
                                    f"examples of its training split against {test_accuracy:.2%} on as many test "
                                    f"examples (flagged when the test examples lead by more than {TRAIN_GAP_MARGIN:.0%})")
    return flagged


def scored_on(student: StudentCode, started: float, clock: Callable[[], float] | None = None) -> str:
    """Where and how long a threshold was scored, for the notes: "scored on cpu (2 threads) in 3.1 s"."""
    threads = student.policy.threads
    return (f"scored on {student.policy.device} ({threads} thread{'' if threads == 1 else 's'}) in "
            f"{(clock or time.monotonic)() - started:.1f} s")


EVAL_SLACK = 10.0  # a student's saved model may take this many times what the reference needs for a test split
EVAL_FLOOR_S = 60.0  # ... and at least this long (start-up, a grader loaded by parallel judges)


def evaluation_limit(reference_seconds: float) -> float:
    """Seconds a student's saved model gets for one test split and its canary: EVAL_SLACK times what the reference
    model needs for the split on one CPU thread (measured, and declared beside each threshold), at least EVAL_FLOOR_S.
    The submission's whole budget still bounds it (StudentCode.time_left)."""
    return max(EVAL_FLOOR_S, EVAL_SLACK * reference_seconds)


def graded_accuracy(student: StudentCode, saved_name: str, model: str, config: str, dataset: str,
                    threshold: Threshold) -> float:
    """Classify the test split of image `dataset` (and the canary: perturb_images copies) with the student's
    saved model `<saved_name>.*`, `model(config(**saved_config))`, and score it here (only this side holds the
    labels). `threshold.course_model`: the release fixes the architecture, so the saved weights run in the course's implementation
    here (autograder/kit/trusted.py) and the student's own code only on a slice, for a note where it disagrees; else
    (a design of the student's own) the model is rebuilt from the student's code in the worker. See graded_classifier."""
    from autograder.kit.trusted import COMPARED_EXAMPLES, compare_with_student, course_model, local_outputs

    (test, images), rng, trusted = threshold_test_split(dataset), secret_rng(), threshold.course_model
    if trusted:
        course, saved_config, weights = course_model(student, saved_name, model, config)
    else:
        saved_config, weights = student.saved_model(saved_name, config)
    build = call(model, call(config, **saved_config))  # the student's model, rebuilt in the worker
    if trusted:  # first, so that a threshold missed because of a layer bug comes with the note that says so
        compare_with_student(student, saved_name, build, weights, course,
                             (images[rng.sample(range(len(images)), COMPARED_EXAMPLES)],))
    outputs = local_outputs(course, saved_name, student) if trusted else in_worker(student, saved_name, build, weights)
    sample = secret_sample(test.labels.tolist(), rng, canary_size=0 if trusted else CANARY_SIZE,
                           companions=1 if trusted else 2)
    pool = torch.cat([images, perturb_images(images[sample.canary], rng)])
    train_labels = None
    if not trusted:  # the training examples scored beside the canary copies (pool entries N + C + j)
        train_images, train_labels = training_examples(dataset, len(sample.canary), rng)
        pool = torch.cat([pool, train_images])
    return graded_classifier(student, saved_name, outputs, test.labels, sample, lambda indices: (pool[indices],),
                             len(test.classes), f"test images of {test.source}", "shifted, noisy test images",
                             threshold.value, rng, batch_size=1000, timeout=evaluation_limit(threshold.reference_eval_s),
                             reference_drop=threshold.canary_drop, train_labels=train_labels)


@functools.cache
def threshold_test_split(dataset: str):
    """(the test split of image `dataset`, its images normalised as the models see them), read once per process: a
    judge server reads those its thresholds name before it forks its judges (`preload_test_splits`), so that no judge
    reads and normalises them again (0.1 CPU s each for FashionMNIST's). The grader's own data, the same for every
    submission, never the worker's; not to be written to (graded_accuracy only indexes and concatenates copies)."""
    from dlcourse.data import load_image_split

    split = load_image_split(dataset, train=False)
    return split, split.normalized()


def preload_test_splits(thresholds: Iterable[Threshold]) -> None:
    """Read the test splits of the image datasets that `thresholds` name (`Threshold.data`, "name:split") into
    `threshold_test_split`'s cache. One that cannot be read is left out: the judge that needs it reads it, says why not.
    On one torch thread: a process that forks judges afterwards must never have run an OpenMP parallel region (a
    forked child's first parallel region would wait forever for the parent's OpenMP threads)."""
    from dlcourse.data import DATASETS
    from dlcourse.threads import torch_threads

    with torch_threads("cpu", threads=1):
        for threshold in thresholds:
            for entry in threshold.data:
                name, _, split = entry.partition(":")
                if name in DATASETS and split in ("", "test"):
                    with contextlib.suppress(Exception):  # a loader may fail in any way (autograder/pipeline/datasets.py)
                        threshold_test_split(name)


def training_examples(dataset: str, n: int, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` images of `dataset`'s training split drawn with `rng`, normalised as the test images are, and their labels
    (for graded_classifier's training-split check)."""
    from dlcourse.data import ImageSplit, load_image_split

    train = load_image_split(dataset, train=True)
    chosen = torch.tensor(rng.sample(range(len(train)), n))
    picked = ImageSplit(train.images[chosen], train.labels[chosen], train.classes, train.dataset, train.source)
    return picked.normalized(), picked.labels


def perturb_images(images: torch.Tensor, rng: random.Random) -> torch.Tensor:
    """Each image (N, C, H, W) shifted by up to CANARY_SHIFT pixels along each axis (drawn per image, never 0 along
    both; the uncovered border repeats the edge) plus Gaussian noise of CANARY_NOISE: the label is kept, and neither
    the shift (the border is lost) nor the noise can be undone, so a copy cannot be matched to its original exactly."""
    import torch.nn.functional as F

    m = CANARY_SHIFT
    height, width = images.shape[-2:]
    padded = F.pad(images.float(), (m, m, m, m), mode="replicate")
    out = torch.empty_like(images, dtype=torch.float32)
    for k in range(len(images)):
        dy = dx = 0
        while dy == dx == 0:
            dy, dx = rng.randint(-m, m), rng.randint(-m, m)
        out[k] = padded[k, :, m - dy:m - dy + height, m - dx:m - dx + width]  # out[y, x] = image[y - dy, x - dx]
    noise = torch.randn(out.shape, generator=torch.Generator().manual_seed(rng.getrandbits(63)))
    return out + CANARY_NOISE * noise

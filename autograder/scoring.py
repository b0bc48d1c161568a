"""Scoring the models a student saved: every threshold, judged on the trusted side from the worker's outputs.

The worker runs the student's saved model on test inputs sent in a secret order; the labels and targets never
leave this process. Image classifiers (ViT, CNN) go through `graded_accuracy`, IMDB classifiers (RNN, BERT)
through autograder/imdb_grading.py, both ending in `graded_classifier`; the Transformer's reversal and
perplexity use `outputs_in_secret_order` directly. `evaluation_limit` bounds how long a saved model may take.
"""
from __future__ import annotations

import random
import secrets
from collections.abc import Callable, Iterator, Sequence

import torch

from autograder.feedback import Feedback, assert_shape
from autograder.requests import call
from autograder.spec import Threshold
from autograder.student import StudentCode

# -- thresholds: secret order and a memorisation canary ---------------------------------------------------
# The test splits are public, so a saved model could carry their labels and return them in the order the grader
# used to send the examples. Every threshold therefore sends its examples in an order and in batches drawn from
# a secret per-run seed (never sent to the worker), and the classifiers also meet a canary: perturbed copies of a
# random subset of the test examples, mixed into the same batches. A model that classifies scores about the same
# on them; one that recognises the test set falls to chance.
CANARY_SIZE = 2000  # perturbed copies of test examples (at most a quarter of the split)
# Measured on the references: the ViT on FashionMNIST keeps 82.2 % on 2 000 one-pixel-shifted copies of images it
# gets 88.3 % right unshifted (a drop of 0.06); the CPU-trained LSTM on IMDB, 70.2 % on re-padded copies as on
# the originals (padding is masked). A lookup falls to chance on what it looked up: by 0.9 on ten classes, by 0.5
# on IMDB's two. A drop of 0.25 lies far from both; the noise of a 2 000-example subset is about 0.01.
CANARY_MARGIN = 0.25


def secret_rng() -> random.Random:
    """A generator seeded afresh in every grading run from the operating system's secure source (`secrets`). What it
    draws (orders, batch sizes, canary subsets, held-out data) stays on this side."""
    return random.Random(secrets.randbits(128))


def secret_batches(n: int, rng: random.Random, batch_size: int, lengths: Sequence[int] | None = None) -> list[list[int]]:
    """Indices 0..n-1 in a secret order, cut into batches of random sizes from batch_size // 2 to batch_size, the
    batches themselves in a secret order. With `lengths` (text), each run of 20 batches is sorted by length
    first (ties keep the secret order), so that a batch needs little padding."""
    order = list(range(n))
    rng.shuffle(order)
    if lengths is not None:
        pool = 20 * batch_size
        order = [i for start in range(0, n, pool) for i in sorted(order[start:start + pool], key=lambda i: lengths[i])]
    batches, start = [], 0
    while start < n:
        size = rng.randint(max(1, batch_size // 2), batch_size)
        batches.append(order[start:start + size])
        start += size
    rng.shuffle(batches)
    return batches


def outputs_in_secret_order(student: StudentCode, saved_name: str, build: dict, weights: dict, n: int,
                            batch_args: Callable[[list[int]], tuple], rng: random.Random, batch_size: int,
                            lengths: Sequence[int] | None = None, timeout: float = 300.0) -> Iterator[tuple[list[int], torch.Tensor]]:
    """(indices, output) for each batch of `secret_batches` of n examples: the worker runs the saved model on
    `batch_args(indices)`; the caller puts the outputs back in example order by their indices."""
    batches = secret_batches(n, rng, batch_size, lengths)
    return zip(batches, student.saved_model_outputs(saved_name, build, weights, (batch_args(b) for b in batches),
                                                    timeout=timeout))


def canary_subset(n: int, rng: random.Random) -> list[int]:
    """The secret random subset of n test examples whose perturbed copies are the canary."""
    return rng.sample(range(n), min(CANARY_SIZE, n // 4))


def graded_classifier(student: StudentCode, saved_name: str, build: dict, weights: dict, labels: torch.Tensor,
                      canary: list[int], batch_args: Callable[[list[int]], tuple], num_classes: int, test_set: str,
                      perturbed: str, threshold: float, rng: random.Random, batch_size: int,
                      lengths: Sequence[int] | None = None, timeout: float = 300.0) -> float:
    """Accuracy of the saved classifier (`build` with `weights`, rebuilt in the worker) on N = len(labels) test
    examples, followed by the canary: examples N.. are perturbed copies of the examples `canary`, described by
    `perturbed` ("slightly shifted test images"). `batch_args(indices)` makes the worker's arguments for examples
    `indices` of that pool of N + len(canary); all go in one secret order. Records both accuracies in
    `student.notes`; Feedback below `threshold` or when the canary accuracy falls more than CANARY_MARGIN below
    the accuracy on the same examples unperturbed. Returns the accuracy on the test set."""
    n = len(labels)
    logits = torch.full((n + len(canary), num_classes), float("nan"))
    for indices, out in outputs_in_secret_order(student, saved_name, build, weights, len(logits), batch_args, rng,
                                                batch_size, lengths, timeout):
        assert_shape(out, (len(indices), num_classes), f"{saved_name} logits")
        logits[indices] = out.float()
    correct = logits.argmax(dim=1) == torch.cat([labels, labels[canary]])
    accuracy = correct[:n].float().mean().item()
    plain, perturbed_accuracy = correct[canary].float().mean().item(), correct[n:].float().mean().item()
    student.notes[saved_name] = (f"test accuracy {accuracy:.2%} on {test_set}; {perturbed_accuracy:.2%} on {len(canary):,} "
                                 f"{perturbed} ({plain:.2%} on the same unperturbed)")
    if accuracy < threshold:
        raise Feedback(f"{saved_name}: test accuracy {accuracy:.2%} on {test_set}, below the required {threshold:.0%}")
    if perturbed_accuracy < plain - CANARY_MARGIN:
        student.notes[f"{saved_name} canary"] = "accuracy collapsed on the perturbed copies: flagged as a lookup"
        raise Feedback(f"{saved_name}: accuracy on {perturbed} fell from {plain:.2%} to {perturbed_accuracy:.2%}: the model "
                       "seems to recognise the test set rather than classify")
    return accuracy


EVAL_SLACK = 10.0  # a student's saved model may take this many times what the reference needs for a test split
EVAL_FLOOR_S = 60.0  # ... and at least this long (start-up, a grader loaded by parallel judges)


def evaluation_limit(reference_seconds: float) -> float:
    """Seconds a student's saved model gets for one test split and its canary: EVAL_SLACK times what the reference
    model needs for the split on one CPU thread (measured, and declared beside each threshold), at least EVAL_FLOOR_S.
    The submission's whole budget still bounds it (StudentCode.time_left)."""
    return max(EVAL_FLOOR_S, EVAL_SLACK * reference_seconds)


def graded_accuracy(student: StudentCode, saved_name: str, model: str, config: str, dataset: str,
                    threshold: Threshold) -> float:
    """Rebuild the student's saved model `<saved_name>.*` in the worker as `model(config(**saved_config))`,
    classify the test split of image `dataset` there (and the canary: copies shifted by one pixel), and score it
    here (only this side holds the labels). See graded_classifier."""
    from dlcourse.data import load_image_split

    saved_config, weights = student.saved_model(saved_name)
    test, rng = load_image_split(dataset, train=False), secret_rng()
    canary = canary_subset(len(test), rng)
    images = test.normalized()
    pool = torch.cat([images, shift_one_pixel(images[canary], rng)])
    return graded_classifier(student, saved_name, call(model, call(config, **saved_config)), weights, test.labels, canary,
                             lambda indices: (pool[indices],), len(test.classes), f"{len(test):,} images of {test.source}",
                             "slightly shifted test images", threshold.value, rng, batch_size=1000,
                             timeout=evaluation_limit(threshold.reference_eval_s))


def shift_one_pixel(images: torch.Tensor, rng: random.Random) -> torch.Tensor:
    """Each image (N, C, H, W) rolled by one pixel up, down, left or right (drawn per image)."""
    moves = [(1, -2), (-1, -2), (1, -1), (-1, -1)]  # (pixels, dim) of torch.roll: down, up, right, left
    return torch.stack([image.roll(*moves[rng.randrange(4)]) for image in images])

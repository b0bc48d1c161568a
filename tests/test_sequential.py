"""The sequential threshold rule (autograder/sequential.py), on simulated predictions of known accuracy.

A simulated model is right on exactly `accuracy * N` of the N test examples. The rule scores a random order of
them stage by stage, as the grader does; its decision is wrong when it differs from the whole split's. Near the
bar (± 0.5, 1, 3 points, above and below) wrong decisions must stay below the stated rate, 1 - CONFIDENCE; a run
that reaches the whole split decides exactly. Seeded: the counts below are reproducible.
"""
import functools
import random

import numpy as np
import pytest

from autograder.sequential import CONFIDENCE, FIRST_STAGE, decide, stage_ends, stratified_order

REPLICATES = 4000


@functools.lru_cache(maxsize=None)
def cached_decision(correct: int, scored: int, total: int, bar: float):
    return decide(correct, scored, total, bar)


def run_rule(correct: int, total: int, bar: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(decisions, examples scored) of the rule on REPLICATES secret orders of a split with `correct` right answers.
    The counts right after each stage of a random order are drawn as they fall: hypergeometric draws from what is
    left of the split."""
    passed = np.full(REPLICATES, -1)
    scored = np.zeros(REPLICATES, dtype=np.int64)
    right_so_far, previous = np.zeros(REPLICATES, dtype=np.int64), 0
    for end in stage_ends(total):
        right_left = correct - right_so_far
        right_so_far = right_so_far + rng.hypergeometric(right_left, (total - previous) - right_left, end - previous)
        previous = end
        for r in np.flatnonzero(passed < 0):
            decision = cached_decision(int(right_so_far[r]), end, total, bar)
            if decision.passed is not None:
                passed[r], scored[r] = decision.passed, end
    assert (passed >= 0).all(), "the whole split must decide"
    return passed.astype(bool), scored


@pytest.mark.parametrize("total,bar", [(10_000, 0.50), (10_000, 0.85), (25_000, 0.70)])
@pytest.mark.parametrize("offset", [-0.03, -0.01, -0.005, 0.005, 0.01, 0.03])
def test_wrong_decisions_stay_below_the_stated_rate(total, bar, offset):
    correct = round((bar + offset) * total)
    truth = correct / total >= bar
    passed, scored = run_rule(correct, total, bar, np.random.default_rng(round(1000 * (total + bar + offset))))
    wrong, median = int((passed != truth).sum()), int(np.median(scored))
    print(f"N={total} bar={bar:.0%} true={correct / total:.2%}: {wrong} wrong of {REPLICATES}; examples scored: "
          f"median {median:,}, whole split in {int((scored == total).sum())} runs")
    assert wrong <= (1 - CONFIDENCE) * REPLICATES
    if abs(offset) >= 0.03:  # a model 3 points from its bar is decided long before the whole split
        assert median <= 4 * FIRST_STAGE


def test_the_whole_split_decides_exactly():
    total, bar = 10_000, 0.7
    for correct in (6999, 7000, 7001):
        decision = decide(correct, total, total, bar)
        assert decision.exact and decision.passed == (correct >= 7000)
        assert decision.lower == decision.upper == correct / total
    # One example short of the whole split, a model one example from the bar is not decided yet.
    assert decide(6999, total - 1, total, bar).passed is None


def test_stratified_order_keeps_the_label_shares_in_every_prefix():
    labels = [0] * 7000 + [1] * 2000 + [2] * 1000
    order = stratified_order(labels, random.Random(0))
    assert sorted(order) == list(range(len(labels)))
    for end in stage_ends(len(labels)):
        counts = np.bincount([labels[i] for i in order[:end]], minlength=3)
        assert np.all(np.abs(counts - end * np.array([0.7, 0.2, 0.1])) <= 1), (end, counts)


def test_a_stratified_sample_of_a_model_better_on_one_label_is_decided_right():
    """The grader's own order (stratified_order) on a model right on 90 % of one label and 50 % of the other
    (70 % in all, on the bar): early decisions, if any, must be rare and right."""
    labels = [0] * 5000 + [1] * 5000
    right = np.array([1 if i < 4500 else 0 for i in range(5000)] + [1 if i < 2500 else 0 for i in range(5000)])
    for bar, truth in ((0.69, True), (0.71, False)):
        wrong = 0
        for seed in range(200):
            order = stratified_order(labels, random.Random(seed))
            cumulative = np.cumsum(right[order])
            for end in stage_ends(len(labels)):
                decision = cached_decision(int(cumulative[end - 1]), end, len(labels), bar)
                if decision.passed is not None:
                    wrong += decision.passed != truth
                    break
        assert wrong == 0, (bar, wrong)

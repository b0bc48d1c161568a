"""The sequential threshold rule (autograder/kit/sequential.py), on simulated predictions of known accuracy.

A simulated model is right on exactly `accuracy * N` of the N test examples. The rule scores a random order of
them stage by stage, as the grader does; its decision is wrong when it differs from the whole split's. Near the
bar (± 0.5, 1, 3 points, above and below) wrong decisions must stay below the stated rate, 1 - CONFIDENCE; a run
that reaches the whole split decides exactly. Seeded: the counts below are reproducible. The rule is tested with the
looks the grader's classifiers use (autograder/kit/scoring.py: CLASSIFIER_LOOKS), for the planned first stage and for the
smallest one a time budget may choose; an exact calculation (hypergeometric counts, no simulation) bounds the rate
of every first stage, and the shares of every look a budget-sized schedule can take add up to 1 - CONFIDENCE.
"""
import functools
import random
from itertools import pairwise

import numpy as np
import pytest
from scipy.special import gammaln

from autograder.kit.scoring import CLASSIFIER_LOOKS
from autograder.kit.sequential import (CLEAR_MARGIN, CONFIDENCE, FIRST_STAGE, MAX_HALVINGS, clear_case_floor, decide,
                                   first_stage_choices, look_alpha, look_positions, stage_ends, stratified_order)

REPLICATES = 4000


SMALLEST_FIRST = FIRST_STAGE >> MAX_HALVINGS  # the smallest first stage a time budget may choose


@functools.lru_cache(maxsize=None)
def cached_decision(correct: int, scored: int, total: int, bar: float):
    """The grader's classifier rule: its looks (CLASSIFIER_LOOKS) are the same whichever first stage was chosen."""
    return decide(correct, scored, total, bar, FIRST_STAGE, **CLASSIFIER_LOOKS)


def run_rule(correct: int, total: int, bar: float, rng: np.random.Generator,
             first: int = FIRST_STAGE) -> tuple[np.ndarray, np.ndarray]:
    """(decisions, examples scored) of the rule on REPLICATES secret orders of a split with `correct` right answers,
    with stages from `first` examples on. The counts right after each stage of a random order are drawn as they fall:
    hypergeometric draws from what is left of the split."""
    passed = np.full(REPLICATES, -1)
    scored = np.zeros(REPLICATES, dtype=np.int64)
    right_so_far, previous = np.zeros(REPLICATES, dtype=np.int64), 0
    for end in stage_ends(total, first):
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


@pytest.mark.parametrize("offset", [-0.03, -0.005, 0.005, 0.03])
def test_a_first_stage_shrunk_to_the_smallest_keeps_the_rate(offset):
    """The schedule a slow model gets (first stage 125, then 250, 500, 1 000, ...) on IMDB's 25 000 at the BERT bar."""
    total, bar = 25_000, 0.85
    correct = round((bar + offset) * total)
    passed, scored = run_rule(correct, total, bar, np.random.default_rng(round(1000 * (bar + offset))), SMALLEST_FIRST)
    assert int((passed != (correct / total >= bar)).sum()) <= (1 - CONFIDENCE) * REPLICATES
    if abs(offset) >= 0.03:
        assert int(np.median(scored)) <= 4 * FIRST_STAGE


def cutoffs(end: int, total: int, bar: float) -> tuple[int, int]:
    """(the most right answers that still fail, the fewest that pass) at the look after `end` examples: the bounds
    grow with the count, so the rule fails below one count and passes from another (binary searches on decide)."""
    def first_count(where) -> int:  # the smallest k in 0..end+1 with where(k), given where is monotone
        low, high = 0, end + 1
        while low < high:
            middle = (low + high) // 2
            low, high = (low, middle) if where(middle) else (middle + 1, high)
        return low
    failing = first_count(lambda k: cached_decision(k, end, total, bar).passed is not False) - 1
    return failing, first_count(lambda k: k <= end and cached_decision(k, end, total, bar).passed is True)


def hypergeometric_pmf(drawn: np.ndarray, population: int, right: np.ndarray, draws: int) -> np.ndarray:
    """P(`drawn` right) when `draws` are drawn without replacement from `population` holding `right` right ones: one
    row per entry of `right`, one column per entry of `drawn` (log-binomials: scipy's hypergeom is slow here)."""
    j, r = drawn[None, :], right[:, None]
    possible = (j <= r) & (draws - j <= population - r)
    j, jr = np.where(possible, j, 0), np.where(possible, r, 0)
    log_choose = lambda n, m: gammaln(n + 1) - gammaln(m + 1) - gammaln(n - m + 1)  # noqa: E731
    log_p = log_choose(jr, j) + log_choose(population - jr, draws - j) - log_choose(population, draws)
    return np.where(possible, np.exp(log_p), 0.0)


def exact_wrong_rate(correct: int, total: int, bar: float, first: int) -> float:
    """The probability that the classifier rule, with stages from `first` on, decides otherwise than the whole split
    does, on a uniformly random order of a split with `correct` right answers: computed, not simulated. The count
    right at each stage end is hypergeometric given the count at the one before; the mass of the counts still
    undecided is carried on, and the mass of a decision against the truth added up. Counts of probability below
    1e-15 are dropped and their mass counted as wrong (an upper bound)."""
    truth, wrong, previous = correct / total >= bar, 0.0, 0
    counts, mass = np.array([0]), np.array([1.0])
    for end in stage_ends(total, first)[:-1]:  # the whole split decides exactly: never wrong
        drawn = np.arange(end - previous + 1)
        after = np.zeros(end + 1)
        step = mass[:, None] * hypergeometric_pmf(drawn, total - previous, correct - counts, end - previous)
        for row, k in enumerate(counts):
            after[k:k + len(drawn)] += step[row]
        failing, passing = cutoffs(end, total, bar)
        k = np.arange(end + 1)
        wrong += after[k >= passing].sum() if not truth else after[k <= failing].sum()
        undecided = (k > failing) & (k < passing)
        kept = undecided & (after >= 1e-15)
        wrong += after[undecided & ~kept].sum()
        counts, mass, previous = k[kept], after[kept], end
    return wrong


@pytest.mark.parametrize("first", first_stage_choices(10_000, 0.85))
def test_the_exact_rate_of_every_first_stage_stays_below_the_stated_rate(first):
    """Every first stage a budget may choose, on 10 000 examples at the 85 % bar, for true accuracies from 1 point
    below the bar to 1 point above (the worst cases: farther away the rule is sure, nearer it rarely stops early)."""
    total, bar = 10_000, 0.85
    rates = {correct: exact_wrong_rate(correct, total, bar, first)
             for correct in (8400, 8450, 8480, 8499, 8500, 8520, 8550, 8600)}
    worst = max(rates, key=rates.get)
    print(f"first stage {first}: worst {rates[worst]:.2e} at {worst / total:.2%}")
    assert rates[worst] <= 1 - CONFIDENCE
    assert rates[worst] > 1e-6  # the calculation sees wrong decisions at all (it would pass vacuously otherwise)


@pytest.mark.parametrize("total", [800, 10_000, 25_000])
def test_every_look_a_budget_sized_schedule_can_take_is_paid_for(total):
    """The shares of all look positions add up to 1 - CONFIDENCE, every stage end of every first stage a budget may
    choose is one of them, and a stage cut short looks with its stage end's share: so whichever first stage is chosen,
    even from the examples themselves, an early decision is wrong with probability below 1 - CONFIDENCE."""
    early, usual = look_positions(total, **CLASSIFIER_LOOKS)
    assert sum(look_alpha(p, total, **CLASSIFIER_LOOKS) for p in early + usual) <= (1 - CONFIDENCE) * (1 + 1e-12)
    for first in first_stage_choices(total, 0.85):
        assert set(stage_ends(total, first)) <= set(early + usual), first
    for before, position in pairwise([0] + early + usual):
        assert look_alpha(position - 1, total, **CLASSIFIER_LOOKS) == look_alpha(position, total, **CLASSIFIER_LOOKS)
        assert look_alpha(before + 1, total, **CLASSIFIER_LOOKS) == look_alpha(position, total, **CLASSIFIER_LOOKS)
    # Without budget cuts and shrinking (the reversal thresholds), the looks are the stage ends before the whole split.
    assert look_alpha(FIRST_STAGE, 10_000) == (1 - CONFIDENCE) / 4


@pytest.mark.parametrize("total", [10_000, 25_000])
@pytest.mark.parametrize("bar", [0.5, 0.65, 0.7, 0.8, 0.85])
def test_the_smallest_first_stage_still_decides_a_clear_case(bar, total):
    """The course's classifier bars (image and IMDB splits): a first stage shrunk to its floor, 125 for each of them
    (as the README says), decides a model CLEAR_MARGIN from the bar both ways, and half the floor would not (the floor
    is what the statistics need, not an arbitrary number)."""
    floor = clear_case_floor(total, bar)
    assert first_stage_choices(total, bar)[-1] == floor == SMALLEST_FIRST
    for accuracy, verdict in ((bar - CLEAR_MARGIN, False), (min(1.0, bar + CLEAR_MARGIN), True)):
        assert cached_decision(round(accuracy * floor), floor, total, bar).passed is verdict
    half = floor // 2
    assert any(cached_decision(round(a * half), half, total, bar).passed is None
               for a in (bar - CLEAR_MARGIN, min(1.0, bar + CLEAR_MARGIN)))


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

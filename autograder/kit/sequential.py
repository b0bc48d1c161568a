"""Deciding a classifier threshold from a secret sample of the test split: as few examples as the decision needs,
the whole split where it is close.

A threshold asks whether a saved model's accuracy on the WHOLE test split reaches a bar. Scoring all of it costs a
forward pass per example (BERT-base on IMDB: two hours on a 2-core CPU), yet a model far from its bar is decided by a
few hundred examples. So the split is scored in stages of a secret, label-stratified order (FIRST_STAGE examples,
then twice as many, ... then the rest), and after each stage the rule looks at k correct of m scored:

* passed when the one-sided Clopper–Pearson lower bound clears the bar,
* failed when the upper bound falls below it,
* otherwise the next stage; the last stage is the whole split, which decides exactly.

Each look before the whole split spends a fixed share of the error budget 1 − CONFIDENCE, so by the union bound a
decision taken early differs from the whole split's with probability below 1 − CONFIDENCE. Where a time budget sizes
the stages (autograder/kit/scoring.py: `graded_classifier`), two more kinds of look are possible, and are paid for in
advance whether or not they happen:

* the first stage may shrink, from FIRST_STAGE to FIRST_STAGE / 2, / 4, ... (at most MAX_HALVINGS halvings, and never
  below the `clear_case_floor`: where a model CLEAR_MARGIN from its bar is still decided), when the measured cost per
  example says FIRST_STAGE would not fit; the looks before FIRST_STAGE that a shrunk schedule takes share EARLY_SHARE
  of the error budget, the usual looks the rest. Every position gets its share whichever first stage is chosen, so the
  guarantee holds even if the choice depended on the examples (a model that is slow on purpose gains nothing);
* a stage cut short by the budget looks once, with its stage's share, on what it scored; the last stage (the whole
  split, otherwise exact) gets a share of its own for that case.

(The binomial bound is conservative here: the sample is drawn without replacement from the split, and stratified by
label, both of which only shrink the spread.) tests/test_sequential.py checks the rate by simulation at the bar ± 0.5,
1 and 3 points and by an exact calculation for every first stage. The order, the batches and which examples come
first are secret (autograder.kit.scoring.secret_rng), so a model cannot know which examples decide.
"""
from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from scipy.stats import beta

CONFIDENCE = 0.999  # an early decision agrees with the whole split's with at least this probability
FIRST_STAGE = 1000  # examples scored before the first look; each later stage doubles the examples scored
MAX_HALVINGS = 3  # a first stage sized to a time budget may shrink to FIRST_STAGE / 2**3 = 125 examples, no further
EARLY_SHARE = 0.1  # of the error budget, spent on the looks before FIRST_STAGE that only a shrunk first stage takes
CLEAR_MARGIN = 0.2  # a clear case: a model this far from its bar (chance on IMDB against 70 %); always decided at stage 1


def stage_ends(total: int, first: int = FIRST_STAGE) -> list[int]:
    """How many examples are scored after each stage: first, 2 first, 4 first, ..., then all `total`."""
    ends, scored = [], first
    while scored < total:
        ends.append(scored)
        scored *= 2
    return ends + [total]


def stratified_order(labels: Sequence[int], rng: random.Random) -> list[int]:
    """Every index of `labels` once, in a secret order in which every prefix holds each label in its share of the
    split (to within one example): a stage is then a stratified random sample."""
    by_label: dict[int, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        by_label[int(label)].append(index)
    keyed = []
    for members in by_label.values():
        rng.shuffle(members)
        # The r-th member of a label comes at fraction (r + u) / count of the order: labels interleave evenly.
        keyed += [((rank + rng.random()) / len(members), index) for rank, index in enumerate(members)]
    keyed.sort()
    return [index for _, index in keyed]


def clopper_pearson(correct: int, scored: int, alpha: float) -> tuple[float, float]:
    """One-sided Clopper–Pearson bounds of a proportion from `correct` of `scored`: each side holds the true value
    with probability at least 1 - alpha."""
    lower = 0.0 if correct == 0 else float(beta.ppf(alpha, correct, scored - correct + 1))
    upper = 1.0 if correct == scored else float(beta.ppf(1 - alpha, correct + 1, scored - correct))
    return lower, upper


@dataclass(frozen=True)
class Decision:
    """Where the rule stands after `scored` of `total` examples, `correct` of them right."""

    correct: int
    scored: int
    total: int
    bar: float
    lower: float  # the interval the decision rests on (the accuracy itself once the whole split is scored)
    upper: float
    passed: bool | None  # None: not decided yet

    @property
    def accuracy(self) -> float:
        return self.correct / self.scored if self.scored else 0.0

    @property
    def exact(self) -> bool:
        return self.scored >= self.total

    def describe(self, examples: str) -> str:
        """e.g. "accuracy 84.10% on 1,000 of 10,000 test images (99.9% interval 80.9%–87.0%)"."""
        if self.exact:
            return f"accuracy {self.accuracy:.2%} on all {self.total:,} {examples} (exact)"
        return (f"accuracy {self.accuracy:.2%} on {self.scored:,} of {self.total:,} {examples}, a secret stratified "
                f"sample ({CONFIDENCE:.1%} interval {self.lower:.2%}–{self.upper:.2%})")


def look_positions(total: int, first: int = FIRST_STAGE, halvings: int = 0, cuts: bool = False) -> tuple[list[int], list[int]]:
    """(early, usual): the example counts at which the rule may look before the whole split decides exactly. Early:
    first / 2, first / 4, ... (`halvings` of them, those below `total`), the ends of a shrunk first stage and of the
    stages after it; usual: the stage ends of `stage_ends(total, first)` before the whole split, and the whole split
    itself where a stage may be cut short (`cuts`: a cut last stage looks on what it scored)."""
    early = sorted(p for p in (first >> k for k in range(1, halvings + 1)) if 0 < p < total)
    usual = stage_ends(total, first)
    return early, usual if cuts else usual[:-1]


def look_alpha(scored: int, total: int, first: int = FIRST_STAGE, halvings: int = 0, cuts: bool = False) -> float:
    """The error each side of the look after `scored` examples may spend: the share of its position (the first look
    position at or after `scored`: a stage cut short looks with its stage's share). The shares of all positions of
    `look_positions` add up to 1 − CONFIDENCE, whichever of them a run looks at."""
    early, usual = look_positions(total, first, halvings, cuts)
    budget = 1 - CONFIDENCE
    if scored <= (early[-1] if early else 0):
        return budget * (EARLY_SHARE if usual else 1.0) / len(early)
    return budget * (1 - EARLY_SHARE if early else 1.0) / max(1, len(usual))


def clear_case_floor(total: int, bar: float, first: int = FIRST_STAGE, halvings: int = MAX_HALVINGS) -> int:
    """The smallest first stage (first / 2**k, k <= halvings) at which a model CLEAR_MARGIN below its bar fails and
    one CLEAR_MARGIN above it (or right on every example) passes, with the shares of a budget-sized schedule (cuts
    allowed): a first stage sized to a time budget never goes below it. `first` itself when none smaller does."""
    floor = first
    for size in (first >> k for k in range(1, halvings + 1)):
        if size < 1:
            break
        low = decide(round(max(0.0, bar - CLEAR_MARGIN) * size), size, total, bar, first, halvings=halvings, cuts=True)
        high = decide(round(min(1.0, bar + CLEAR_MARGIN) * size), size, total, bar, first, halvings=halvings, cuts=True)
        if low.passed is not False or high.passed is not True:
            break
        floor = size
    return floor


def first_stage_choices(total: int, bar: float, first: int = FIRST_STAGE, halvings: int = MAX_HALVINGS) -> list[int]:
    """The first stages a time budget may choose, largest first: first, first / 2, ... down to the clear-case floor."""
    floor = clear_case_floor(total, bar, first, halvings)
    return [size for size in (first >> k for k in range(halvings + 1)) if size >= floor]


def decide(correct: int, scored: int, total: int, bar: float, first: int = FIRST_STAGE, *, halvings: int = 0,
           cuts: bool = False) -> Decision:
    """The rule's verdict after `correct` of `scored` (a prefix of the stratified order, or a uniform sample of the
    stage being scored when it was cut short) of `total` examples. `first`, `halvings` and `cuts` say where the rule
    may look (look_positions): the grader's classifiers use halvings=MAX_HALVINGS, cuts=True whichever first stage
    (first / 2**k) the budget chose, so that every possible look has its share of the error budget paid in advance."""
    if scored >= total:
        accuracy = correct / total
        return Decision(correct, scored, total, bar, accuracy, accuracy, accuracy >= bar)
    lower, upper = clopper_pearson(correct, scored, look_alpha(scored, total, first, halvings, cuts))
    passed = True if lower >= bar else False if upper < bar else None
    return Decision(correct, scored, total, bar, lower, upper, passed)

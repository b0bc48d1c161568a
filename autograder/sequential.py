"""Deciding a classifier threshold from a secret sample of the test split: as few examples as the decision needs,
the whole split where it is close.

A threshold asks whether a saved model's accuracy on the WHOLE test split reaches a bar. Scoring all of it costs a
forward pass per example (BERT-base on IMDB: two hours on a 2-core CPU), yet a model far from its bar is decided by a
few hundred examples. So the split is scored in stages of a secret, label-stratified order (FIRST_STAGE examples,
then twice as many, ... then the rest), and after each stage the rule looks at k correct of m scored:

* passed when the one-sided Clopper–Pearson lower bound clears the bar,
* failed when the upper bound falls below it,
* otherwise the next stage; the last stage is the whole split, which decides exactly.

Each look before the whole split spends (1 − CONFIDENCE) / (number of such looks) on each side, so by the union
bound a decision taken early differs from the whole split's with probability below 1 − CONFIDENCE. (The binomial
bound is conservative here: the sample is drawn without replacement from the split, and stratified by label, both
of which only shrink the spread.) tests/test_sequential.py checks the rate by simulation at the bar ± 0.5, 1 and 3
points. The order, the batches and which examples come first are secret (autograder.scoring.secret_rng), so a
model cannot know which examples decide.
"""
from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from scipy.stats import beta

CONFIDENCE = 0.999  # an early decision agrees with the whole split's with at least this probability
FIRST_STAGE = 1000  # examples scored before the first look; each later stage doubles the examples scored


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


def decide(correct: int, scored: int, total: int, bar: float, first: int = FIRST_STAGE) -> Decision:
    """The rule's verdict after `correct` of `scored` (a prefix of the stratified order) of `total` examples."""
    if scored >= total:
        accuracy = correct / total
        return Decision(correct, scored, total, bar, accuracy, accuracy, accuracy >= bar)
    alpha = (1 - CONFIDENCE) / max(1, len(stage_ends(total, first)) - 1)  # spread over the looks before the end
    lower, upper = clopper_pearson(correct, scored, alpha)
    passed = True if lower >= bar else False if upper < bar else None
    return Decision(correct, scored, total, bar, lower, upper, passed)

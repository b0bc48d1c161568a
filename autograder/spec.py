"""The declaration of one assignment: everything the grading pipeline needs to know about it.

Each assignment declares `SPEC = AssignmentSpec(...)` in `source/<name>/spec.py`, beside its notebook (nbgrader
leaves spec.py and samples.py out of the release: see nbgrader_config.py). The name is the folder's and the
notebook is `<name>.ipynb`, so copying the folder under a new name is a new assignment. `autograder.assignments`
loads and checks it; the batch grader, the judge, the samples, the benchmarks and the project's tests read it.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Threshold:
    """A score the student's saved model must reach, judged by one hidden test."""

    value: float  # the bar (an accuracy in [0, 1], or a perplexity ceiling)
    test: str  # the hidden test that judges it, "TestClass::test_name"
    reference_eval_s: float  # seconds the reference model needs for the test split on one CPU thread (measured)


@dataclass(frozen=True)
class AssignmentSpec:
    run_cells: tuple[str, ...]  # grade_ids of the cells the worker runs, in notebook order (answers and instructor code)
    saved_files: tuple[str, ...] = ()  # files the notebook saves and the grader reads (CollectSubmission.sh packs them)
    training_cells: tuple[str, ...] = ()  # reference cells that train the saved weights on a CPU, in order
    cuda_training_cells: tuple[str, ...] = ()  # more reference cells, run after those where CUDA is available
    thresholds: dict[str, Threshold] = field(default_factory=dict)  # by name, e.g. "fashion_mnist"
    forbidden_names: tuple[str, ...] = ()  # last components matched anywhere in an answer cell's code (static check)
    forbidden_modules: tuple[str, ...] = ()  # module prefixes an answer cell may not import or use
    forbidden_attributes: tuple[str, ...] = ()  # dotted APIs the worker's tripwires refuse to student code
    preload_modules: tuple[str, ...] = ()  # imported in the worker before its audit hook (e.g. transformers)
    submission_timeout_s: float = 600.0  # default time budget for grading one submission (a few times the reference's)

"""The declaration of one assignment: everything the grading pipeline needs to know about it.

Each assignment declares `SPEC = AssignmentSpec(...)` in `source/<name>/spec.py`, beside its notebook (nbgrader
leaves spec.py and samples.py out of the release: see nbgrader_config.py). The name is the folder's and the
notebook is `<name>.ipynb`, so copying the folder under a new name is a new assignment. `autograder.assignments`
loads and checks it; the batch grader, the judge, the samples, the benchmarks and the project's tests read it.
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import types
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Threshold:
    """A score the student's saved model must reach, judged by one hidden test."""

    value: float  # the bar (an accuracy in [0, 1], or a perplexity ceiling)
    test: str  # the hidden test that judges it, "TestClass::test_name"
    reference_eval_s: float  # seconds the reference model needs for the test split on one CPU thread (measured)
    ceiling: bool = False  # the bar is an upper bound (a perplexity), not a floor (an accuracy, a BLEU score)
    # The release fixes the model's architecture (its constructors and parameter names), so the saved weights are
    # judged in the course's own implementation on the trusted side (autograder/kit/trusted.py); False: the design is the
    # student's (BetterCNN, the BERT head), so the student's code computes the outputs, in the worker.
    course_model: bool = False
    # The reference model's accuracy drop on the classifier canary (autograder/kit/scoring.py; measured with
    # benchmarks/canary_drop.py): a student's model may lose this plus CANARY_MARGIN before it "needs review".
    canary_drop: float = 0.0
    # The datasets its hidden test reads, "name:split" (names: autograder/pipeline/datasets.py), read once before the first
    # student so that data a grader cannot reach stops the batch instead of failing every row.
    data: tuple[str, ...] = ()


@dataclass(frozen=True)
class GpuCheck:
    """A job of benchmarks/cuda_check.py: on a lent GPU, train the reference cells that prove `thresholds`, then grade
    the weights with the real grader, within `budget_s`."""

    run: str  # the device command it shares with other jobs (one pack of data: benchmarks/pack_for_gpu.py)
    thresholds: tuple[str, ...]  # keys of the spec's thresholds this job proves
    budget_s: int  # training + grading on one H200, with room to spare (an estimate until measured)
    data: tuple[str, ...]  # what pack_for_gpu.py must carry for it (see pack_for_gpu.PACKS)
    skip_cells: tuple[str, ...] = ()  # training cells of thresholds another job covers (their data would not fit)
    grade_s: int = 60  # of the budget, kept for grading: training is stopped at budget_s - grade_s
    part: str = ""  # where an assignment has several jobs: the job is `<assignment>-<part>` (`cuda_check.py --jobs`)


@dataclass(frozen=True)
class ReadmeRow:
    """The assignment's rows in the README's two tables (Markdown; autograder/deploy/readme_tables.py writes them there)."""

    builds: str  # what students build
    graded_on: str  # what the hidden tests compare with, and the bars
    data: str  # the course code that loads its data
    course_code: str  # the course code its notebook imports


@dataclass(frozen=True)
class AssignmentSpec:
    run_cells: tuple[str, ...]  # grade_ids of the cells the worker runs, in notebook order (answers and instructor code)
    saved_files: tuple[str, ...] = ()  # files the notebook saves and the grader reads (CollectSubmission.sh packs them)
    training_cells: tuple[str, ...] = ()  # reference cells that train the saved weights on a CPU, in order
    cuda_training_cells: tuple[str, ...] = ()  # more reference cells, run after those where CUDA is available
    thresholds: dict[str, Threshold] = field(default_factory=dict)  # by name, e.g. "fashion_mnist"
    forbidden: tuple[str, ...] = ()  # dotted names of the APIs (functions, classes) and modules students may not use
    allowed_names: tuple[str, ...] = ()  # last components students' own code also uses (e.g. their class LSTM)
    # imported in the worker before its audit hook (e.g. transformers), where a cell the worker runs names the module's
    # package or a forbidden API lives in it (autograder/sandbox/__init__.py: needed_preloads); in the judges always
    preload_modules: tuple[str, ...] = ()
    submission_timeout_s: float = 600.0  # default time budget for grading one submission (a few times the reference's)
    # `make demo` trains the reference with shorter recipes where the notebook's would not fit its few minutes:
    # (grade_id, old text, new text) edits of the training cells, and what they change, which the demo prints. The
    # sample tests (tests/test_samples.py) train them too; `make demo-all` trains the notebook's own recipes.
    demo_edits: tuple[tuple[str, str, str], ...] = ()
    demo_note: str = ""
    gpu_checks: tuple[GpuCheck, ...] = ()  # benchmarks/cuda_check.py's jobs: together they prove every threshold
    readme: ReadmeRow | None = None  # its rows in the README's tables (a new assignment without one gets a row to fill)
    demo_train_s: float = 0.0  # CPU seconds the demo's training takes on one thread (measured; the demo's estimate)
    # the reference trains (autograder.samples.train_reference) with dlcourse.threads' large_model thread count
    large_model: bool = False

    @property
    def threshold_tests(self) -> frozenset[str]:
        """The hidden tests that judge `thresholds` ("TestClass::test_name", without parameters)."""
        return frozenset(t.test for t in self.thresholds.values())

    # What the two checks read, derived from `forbidden` (resolved by import, so only the judge, which imports torch
    # anyway, asks for them): the worker's run-time tripwires refuse the APIs, and the static check of an answer
    # cell looks for their last components anywhere, except allowed names, which it matches only spelled out.
    @functools.cached_property
    def forbidden_attributes(self) -> tuple[str, ...]:
        """The dotted APIs (not modules) of `forbidden`, which the worker's tripwires refuse to student code."""
        return tuple(name for name in self.forbidden if not _is_module(name))

    @functools.cached_property
    def forbidden_modules(self) -> tuple[str, ...]:
        """Module prefixes an answer cell may not import or use: the modules of `forbidden`, and the allowed names'
        APIs as spelled out (`torch.nn.LSTM`, also as `nn.LSTM`)."""
        spelled = [alias for name in self.forbidden_attributes if name.rpartition(".")[2] in self.allowed_names
                   for alias in _aliases(name)]
        return tuple(dict.fromkeys([name for name in self.forbidden if _is_module(name)] + spelled))

    @functools.cached_property
    def forbidden_names(self) -> tuple[str, ...]:
        """Last components of the forbidden APIs, matched wherever they appear in an answer cell (static check)."""
        return tuple(dict.fromkeys(name.rpartition(".")[2] for name in self.forbidden_attributes
                                   if name.rpartition(".")[2] not in self.allowed_names))


def _is_module(dotted: str) -> bool:
    """Whether `dotted` names a module rather than a function or class. A top-level name always does (installed or
    not); otherwise what the parent module holds under that name decides (torchvision.models.alexnet is both a
    submodule and a function: the function is what a student would call)."""
    parent, _, last = dotted.rpartition(".")
    if not parent:
        return True
    try:
        value = getattr(importlib.import_module(parent), last)
    except (ImportError, AttributeError):
        try:
            return importlib.util.find_spec(dotted) is not None
        except (ImportError, ValueError):
            return False
    return isinstance(value, types.ModuleType)


def _aliases(dotted: str) -> list[str]:
    """`dotted` and how notebooks usually spell it: torch.nn.X as nn.X, torch.nn.functional.X as F.X."""
    for prefix, alias in (("torch.nn.functional.", "F."), ("torch.nn.", "nn.")):
        if dotted.startswith(prefix):
            return [dotted, alias + dotted[len(prefix):]]
    return [dotted]

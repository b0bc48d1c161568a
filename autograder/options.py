"""The options of one grading run: written once by the batch grader and handed to every judge as JSON."""
from __future__ import annotations

import dataclasses
import json
from typing import Any
from dataclasses import dataclass
from pathlib import Path

from autograder.assignments import Assignment
from dlcourse.threads import available_cores


@dataclass(frozen=True)
class GradeOptions:
    workers: int = 2  # submissions graded in parallel (each judge gets cores // workers torch threads)
    memory_mb: int = 4096  # memory cap of each student worker (real use where a cgroup can be made)
    call_timeout: float = 20.0  # seconds for one layer-test call
    submission_timeout: float | None = None  # seconds for a whole submission; None: the spec's submission_timeout_s
    # Seconds each threshold test may spend scoring a saved model (on this grader's CPU or GPU). The sequential
    # rule (autograder/kit/sequential.py) decides clear cases from a secret sample within it; a model too close to its
    # bar to decide in time is reported "not judged on this grader" (no points, no zero). Every reference but
    # BERT-base on a CPU is decided well within the default (benchmarks/threshold_cost.py).
    threshold_budget: float = 600.0
    allow_weak_isolation: bool = False  # grade without bubblewrap (audit hook only) where it is unavailable
    sandbox: str = "auto"  # "bubblewrap", "uid" (no namespaces: docs/instructors.md, "How grading stays safe") or "auto": the first
    # of them that works here (autograder/sandbox: choose_backend)
    hide: tuple[str, ...] = ()  # weak isolation only: folders the audit hook refuses (set by the batch grader)
    judge: str = "server"  # "server": judges forked from a judge server per worker (autograder/pipeline/judge_server.py);
    # "process": a fresh interpreter per judge (slower by the judge's imports; the same sandbox either way)
    worker_template: bool = True  # judge servers fork their workers from a worker template where they run under
    # bubblewrap on a CPU (autograder/sandbox/forking.py); False: every worker a new interpreter (`--no-worker-template`)
    preload_modules: tuple[str, ...] = ()  # imported by every worker before student code, after the spec's own
    threads: int | None = None  # torch threads per judge; None: the CPUs this grader may use // workers (a Slurm task sets
    # its allocation's CPUs: with task/none nothing else keeps it to them)

    @property
    def judge_threads(self) -> int:
        """Torch CPU threads of each judge's sandboxed worker: `threads` when given, else the CPUs this process may run
        on (its affinity: taskset, a cpuset, a parallel test run's share) shared out among the `workers` judges, so that judges running side by side never ask for more threads than there
        are cores. Deliberately not the course's training setting (dlcourse.threads, DLCOURSE_THREADS, 1 thread): a
        grader owns its machine, and a judge's work is scoring saved models in batches of hundreds of examples, big
        ops that more threads do speed up (benchmarks/threshold_cost.py times 1 and 2). The worker gets this count
        as torch.set_num_threads, OMP_NUM_THREADS and DLCOURSE_THREADS (autograder/sandbox)."""
        return self.threads or max(1, available_cores() // max(1, self.workers))

    def budget(self, assignment: Assignment) -> float:
        """Seconds for grading one submission of `assignment`."""
        return self.submission_timeout or assignment.spec.submission_timeout_s

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps(dataclasses.asdict(self)))
        return path

    @classmethod
    def read(cls, path: Path) -> "GradeOptions":
        return cls.from_dict(json.loads(Path(path).read_text()))

    @classmethod
    def from_dict(cls, values: dict) -> "GradeOptions":
        """The options `dataclasses.asdict` gave, back from JSON (which has no tuples: those fields come back as lists)."""
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**fields)


@dataclass(frozen=True)
class BatchOptions:
    """What one batch grades and how it reports (autograder/pipeline/grade.py: grade_folder): the batch's own choices,
    beside the GradeOptions every judge is handed. Never sent to a judge."""
    hand_grades: Path | None = None  # a CSV of hand grades checked into OUT before the first judge
    force: bool = False  # regrade everything (by default only what is new, changed, pending or a grader-error)
    only: tuple[str, ...] | None = None  # regrade only these students, merged into the existing gradebook
    roster: Path | None = None  # its students without a submission get a no-submission row
    duplicates: str = "error"  # two submissions of one student: "error", or which one to keep (survey.py)
    bar: bool = False  # a progress bar (n/N, elapsed, time left, count per status) instead of a line per submission
    collect: bool = False  # grade nothing new: let the runner wait for what it started earlier, then write the gradebook
    # False: no dataset check and no preflight (`grade --no-preflight`), for the demo and the project's tests, which
    # grade the untouched release (the notebook the preflight grades) and the reference (which reads the data)
    check_release: bool = True

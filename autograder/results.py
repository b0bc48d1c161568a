"""What grading one submission produced: the judge writes it as results.json, the batch grader reads it back and
the gradebook is made from it. A submission that could not be judged at all still gets one
(`SubmissionResult.without_results`), so every submission has a gradebook row."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path


RESULTS_FORMAT = 1  # of results.json (SubmissionResult.write); the gradebook's is gradebook.GRADEBOOK_FORMAT


class Status:
    """How grading one submission ended: a gradebook row's status (plain strings in results.json and the gradebook)."""

    OK = "ok"  # judged (its tests say how well)
    TIMEOUT = "timeout"  # the submission's time budget ran out
    CRASHED = "crashed"  # the student's code ended its worker
    MISSING_NOTEBOOK = "missing-notebook"
    BAD_NOTEBOOK = "bad-notebook"
    BAD_ARCHIVE = "bad-archive"  # the archive could not be unpacked
    GRADER_ERROR = "grader-error"  # the grader's own failure: regraded by the next run, never the student's fault
    NO_SUBMISSION = "no-submission"  # on the roster, nothing submitted
    ALL = (OK, TIMEOUT, CRASHED, MISSING_NOTEBOOK, BAD_NOTEBOOK, BAD_ARCHIVE, GRADER_ERROR, NO_SUBMISSION)


@dataclass
class TestResult:
    id: str  # "TestClass::test_name[param]"
    title: str  # the test's docstring, first line
    group: str  # the test class's GROUP
    points: float
    earned: float
    outcome: str  # "passed", "failed", "error" (an internal grader error) or "skipped" (not judged)
    message: str  # why it failed, safe for the student (sanitised)
    notes: dict[str, str] = field(default_factory=dict)  # the notes this test recorded (a threshold's measured value)


@dataclass
class SubmissionResult:
    status: str  # one of Status.ALL
    message: str = ""  # for the whole submission (e.g. why it could not be graded)
    tests: list[TestResult] = field(default_factory=list)
    events: list[str] = field(default_factory=list)  # "timeout" / "crashed", one per occurrence
    fatal: str | None = None  # no notebook, unreadable notebook: every test failed with this
    problems: list[str] = field(default_factory=list)  # e.g. a missing answer cell
    notes: dict[str, str] = field(default_factory=dict)  # e.g. the accuracy reached
    reviews: dict[str, str] = field(default_factory=dict)  # the TA's only: what the integrity checks measured
    integrity: list[str] = field(default_factory=list)  # the TA's only: what the answer cells' scan flagged
    answers: dict[str, str] = field(default_factory=dict)  # the answer cells, for the batch's similarity section
    written: dict[str, str] = field(default_factory=dict)  # the written answers graded by hand, for the TA's page
    cell_errors: dict = field(default_factory=dict)  # grade_id -> the error its cell raised when the grader ran it
    forbidden_calls: list[str] = field(default_factory=list)
    isolation: str = ""  # how the worker was confined
    memory_cap: str = ""  # which memory cap applied
    device: str = ""
    seconds: float | None = None
    files: list[str] = field(default_factory=list)  # the submission's files that were found

    @classmethod
    def without_results(cls, status: str, message: str) -> "SubmissionResult":
        """A submission that was not judged (a bad archive, a timeout of the whole judge, a grader error)."""
        return cls(status=status, message=message)

    def write(self, path: Path) -> None:
        Path(path).write_text(json.dumps({"format": RESULTS_FORMAT, **dataclasses.asdict(self)}, indent=2))

    @classmethod
    def read(cls, path: Path) -> "SubmissionResult":
        return cls.from_dict(json.loads(Path(path).read_text()))

    @classmethod
    def from_dict(cls, values: dict) -> "SubmissionResult":
        """A result as `write` wrote it (this format, or the first one, which had no "format" key)."""
        values = dict(values)
        version = values.pop("format", 1)
        if version != RESULTS_FORMAT:
            raise ValueError(f"a results file of format {version!r}; this grader reads format {RESULTS_FORMAT}")
        values["tests"] = [TestResult(**t) for t in values.get("tests", [])]
        return cls(**values)

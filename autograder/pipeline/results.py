"""What grading one submission produced: the judge writes it as results.json, the batch grader reads it back and
the gradebook is made from it. A submission that could not be judged at all still gets one
(`SubmissionResult.without_results`), so every submission has a gradebook row."""
from __future__ import annotations

import dataclasses
import enum
import json
from dataclasses import dataclass, field
from pathlib import Path


RESULTS_FORMAT = 1  # of results.json (SubmissionResult.write); the gradebook's is gradebook.GRADEBOOK_FORMAT


class FormatError(ValueError):
    """A results.json or gradebook.json in a format this grader does not read (written by another version)."""


def check_format(values: dict, path: Path | str, expected: int, what: str) -> None:
    """Refuse `values` (read from `path`) unless its "format" is `expected` (a file without one is format 1, the
    first), naming the file and the fix: grade again with this grader."""
    version = values.get("format", 1)
    if version != expected:
        raise FormatError(f"{path}: {what} of format {version!r}, written by another version of the grader; this one "
                          f"reads format {expected}. Grade the submissions again with this grader (into a new --out "
                          "folder, or after deleting that file)")


class Status(enum.StrEnum):
    """How grading one submission ended: a gradebook row's status (its value is the string results.json and the
    gradebook hold)."""

    OK = "ok"  # judged (its tests say how well)
    TIMEOUT = "timeout"  # the submission's time budget ran out
    CRASHED = "crashed"  # the student's code ended its worker
    MISSING_NOTEBOOK = "missing-notebook"
    BAD_NOTEBOOK = "bad-notebook"
    BAD_ARCHIVE = "bad-archive"  # the archive could not be unpacked
    GRADER_ERROR = "grader-error"  # the grader's own failure: regraded by the next run, never the student's fault
    NO_SUBMISSION = "no-submission"  # on the roster, nothing submitted


class Outcome(enum.StrEnum):
    """How one hidden test ended for one submission."""

    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"  # an internal grader error, or no result for this test (see the row's status)
    SKIPPED = "skipped"  # not judged: its points are in neither the score nor the max (README, "How scores add up")


def judged_status(fatal: str | None, notebook_missing: bool, events: list[str]) -> Status:
    """The status of a submission the judge graded: its notebook missing or unreadable (`fatal`), else its worker's
    crash or timeout (`events`), else ok."""
    if fatal:
        return Status.MISSING_NOTEBOOK if notebook_missing else Status.BAD_NOTEBOOK
    if "crashed" in events:
        return Status.CRASHED
    if "timeout" in events:
        return Status.TIMEOUT
    return Status.OK


@dataclass
class TestResult:
    id: str  # "TestClass::test_name[param]"
    title: str  # the test's docstring, first line
    group: str  # the test class's GROUP
    points: float
    earned: float
    outcome: Outcome
    message: str  # why it failed, safe for the student (sanitised)
    notes: dict[str, str] = field(default_factory=dict)  # the notes this test recorded (a threshold's measured value)

    def __post_init__(self):
        self.outcome = Outcome(self.outcome)  # a ValueError for any other string


@dataclass
class SubmissionResult:
    status: Status
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

    def __post_init__(self):
        self.status = Status(self.status)  # a ValueError for any other string

    @classmethod
    def without_results(cls, status: Status, message: str) -> "SubmissionResult":
        """A submission that was not judged (a bad archive, a timeout of the whole judge, a grader error)."""
        return cls(status=status, message=message)

    def to_dict(self) -> dict:
        return {"format": RESULTS_FORMAT, **dataclasses.asdict(self)}

    def write(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def read(cls, path: Path) -> "SubmissionResult":
        return cls.from_dict(json.loads(Path(path).read_text()), path)

    @classmethod
    def from_dict(cls, values: dict, path: Path | str = "results.json") -> "SubmissionResult":
        """A result as `write` wrote it (this format, or the first one, which had no "format" key); FormatError for
        another format, naming `path` (where it was read)."""
        check_format(values, path, RESULTS_FORMAT, "a judge's results")
        values = {k: v for k, v in values.items() if k != "format"}
        values["tests"] = [TestResult(**t) for t in values.get("tests", [])]
        return cls(**values)

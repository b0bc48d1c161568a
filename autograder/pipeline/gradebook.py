"""From judge results to the gradebook: gradebook.json, gradebook.csv and feedback/<student-id>.md.

One row per submission, whatever happened to it. A skipped test (a threshold too close to its bar to decide within
this grader's threshold budget) earns nothing and is left out of that row's max_score: its points are reported as
not judged, never as passed nor as a zero. A row without a result for a test some other row did not judge (a bad
archive's row, a crashed judge) reports it not judged too. Hand-graded answer cells (nbgrader `grade: true` in the release notebook) come from an optional CSV
(student_id,grade_id,points), checked line by line, or from the hand-grading page (autograder/deploy/hand_grading.py), and
stay "pending" until then; `total` adds them to the score. The
grades last given are kept in OUT/hand_grades.json and used by later runs until others are given.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import hashlib
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from autograder.assignments import Assignment
from autograder.pipeline.csvfiles import csv_rows
from autograder.notebook import grade_id, hand_graded_ids, read_notebook
from autograder.pipeline.results import Outcome, Status, SubmissionResult, check_format
from autograder.pipeline.store import atomic_write

GRADEBOOK_FORMAT = 1  # of gradebook.json: a reader checks it before relying on the keys
HAND_GRADES_FILE = "hand_grades.json"  # in OUT: the hand grades last given, used until others are


def hand_graded_cells(assignment: Assignment, notebook: Path | None = None) -> list[dict]:
    """[{"grade_id", "points"}] of the written answers graded by hand, from the nbgrader metadata of `notebook`
    (by default the release's)."""
    nb = read_notebook(notebook or assignment.release_dir / assignment.notebook)
    by_id = {grade_id(cell): cell for cell in nb["cells"]}
    return [{"grade_id": gid, "points": by_id[gid]["metadata"]["nbgrader"].get("points", 0)} for gid in hand_graded_ids(nb)]


def read_hand_grades(path: Path | None, assignment: Assignment, students: set[str]) -> dict[tuple[str, str], float] | None:
    """The hand grades of a CSV (student_id,grade_id,points), every line checked: a student of this gradebook, a
    hand-graded cell of this assignment, points between 0 and the cell's, once. Any bad line stops the run, named.
    None without a file (the grades kept from an earlier run then stand: `kept_hand_grades`)."""
    if not path:
        return None
    cells = {m["grade_id"]: float(m["points"]) for m in hand_graded_cells(assignment)}
    grades, errors = {}, []
    try:
        with csv_rows(path) as reader:
            if not {"student_id", "grade_id", "points"} <= set(reader.fieldnames or ()):
                raise SystemExit(f"{path}: expected a header row with the columns student_id,grade_id,points")
            for row in reader:
                where = f"{path}:{reader.line_num}"
                sid, gid, text = ((row[k] or "").strip() for k in ("student_id", "grade_id", "points"))
                try:
                    points = float(text)
                except ValueError:
                    points = math.nan
                if sid not in students:
                    errors.append(f"{where}: unknown student {sid!r} (no submission or roster entry has that id)")
                elif gid not in cells:
                    errors.append(f"{where}: unknown grade_id {gid!r}; the hand-graded cells of '{assignment.name}' "
                                  f"are {', '.join(cells) or 'none'}")
                elif not points_allowed(points, cells[gid]):
                    errors.append(f"{where}: points {text!r} for {gid} are not a number from 0 to {cells[gid]:g}")
                elif (sid, gid) in grades:
                    errors.append(f"{where}: a second grade for {sid} / {gid}; keep one line per student and cell")
                else:
                    grades[(sid, gid)] = points
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SystemExit(f"--hand-grades {path}: cannot read it ({exc})") from None
    if errors:
        shown = "\n".join(f"  {e}" for e in errors[:20]) + (f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else "")
        raise SystemExit(f"the hand grades have {len(errors)} bad line(s); fix them and run the same command again "
                         f"(graded submissions are kept):\n{shown}")
    return grades


def points_allowed(points: float, cell_points: float) -> bool:
    """Whether a hand grade of `points` fits a cell worth `cell_points` (a number from 0 to the cell's points)."""
    return 0 <= points <= cell_points


def answer_fingerprint(text: str | None) -> str | None:
    """What identifies a written answer as graded: the SHA-256 of its cell's text (None: not known)."""
    return None if text is None else hashlib.sha256(text.encode()).hexdigest()


def needs_recheck(graded_print: str | None, answer: str | None) -> bool:
    """Whether a hand grade given to the answer fingerprinted `graded_print` must be looked at again: the answer now
    kept (`answer`) is another one (a resubmission changed the cell). A grade without a fingerprint stands."""
    return bool(graded_print) and graded_print != answer_fingerprint(answer)


def load_hand_grades(out: Path) -> dict[tuple[str, str], dict]:
    """The hand grades kept in OUT/hand_grades.json: (student_id, grade_id) -> {"points", "answer_sha256" (the
    fingerprint of the answer graded), "comment" (the TA's, shown in the student's feedback)}."""
    path = out / HAND_GRADES_FILE
    if not path.exists():
        return {}
    try:
        return {(g["student_id"], g["grade_id"]): {"points": float(g["points"]), "answer_sha256": g.get("answer_sha256"),
                                                   "comment": str(g.get("comment") or "")}
                for g in json.loads(path.read_text())["grades"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"{path} (the hand grades of earlier runs) cannot be read ({exc}); give the grades again "
                         "with --hand-grades, which rewrites it") from None


def save_hand_grades(out: Path, records: dict[tuple[str, str], dict]) -> None:
    """Keep `records` (as load_hand_grades returns them) in OUT/hand_grades.json, replaced whole (atomic_write)."""
    atomic_write(out / HAND_GRADES_FILE, json.dumps({"format": 1, "grades": [
        {"student_id": sid, "grade_id": gid, "points": r["points"], "answer_sha256": r.get("answer_sha256"),
         "comment": r.get("comment", "")} for (sid, gid), r in sorted(records.items())]}, indent=1))


def give_hand_grade(out: Path, student_id: str, cell: dict, points: float, comment: str, answer: str | None) -> None:
    """Keep one hand grade given in the hand-grading page (autograder/deploy/hand_grading.py): `cell` is the hand-graded cell
    ({"grade_id", "points"}), `answer` the text graded (its fingerprint clears a "re-check"). Out-of-range points are
    refused with a ValueError saying the range."""
    if not points_allowed(points, float(cell["points"])):
        raise ValueError(f"points for {cell['grade_id']} are a number from 0 to {float(cell['points']):g}")
    records = load_hand_grades(out)
    records[student_id, cell["grade_id"]] = {"points": points, "answer_sha256": answer_fingerprint(answer),
                                             "comment": comment.strip()}
    save_hand_grades(out, records)


def hand_grade_comments(out: Path) -> dict[tuple[str, str], str]:
    """The TA's comments on the hand grades kept in OUT (only the non-empty ones)."""
    return {key: r["comment"] for key, r in load_hand_grades(out).items() if r.get("comment")}


def kept_hand_grades(out: Path, given: dict[tuple[str, str], float] | None,
                     answers: dict[tuple[str, str], str] | None = None) -> tuple[dict[tuple[str, str], float], dict, list[str]]:
    """The hand grades a run uses, the fingerprint of each graded answer, and what it changed: `given` (from
    --hand-grades) replaces the ones kept in OUT/hand_grades.json and is kept there in turn, each with the fingerprint
    of the answer it grades (`answers`: (student, grade_id) -> the cell's text in the results kept so far; a comment
    given in the hand-grading page stays with its grade); without it the kept ones (the CSV's and the page's) stand,
    so that a later run without --hand-grades never drops a TA's grades from the totals."""
    path = out / HAND_GRADES_FILE
    records = load_hand_grades(out)
    kept = {key: r["points"] for key, r in records.items()}
    prints = {key: r["answer_sha256"] for key, r in records.items()}
    if given is None:
        return kept, prints, ([f"Hand grades: the {len(kept)} kept in {path}"] if kept else [])
    answers = answers or {}
    changes = [f"{sid} / {gid}: {kept[sid, gid]:g} -> {given[sid, gid]:g}" for sid, gid in sorted(given)
               if (sid, gid) in kept and kept[sid, gid] != given[sid, gid]]
    added = [key for key in given if key not in kept]
    removed = [f"{sid} / {gid}: {kept[sid, gid]:g} -> pending" for sid, gid in sorted(kept) if (sid, gid) not in given]
    prints = {key: answer_fingerprint(answers.get(key)) for key in given}
    save_hand_grades(out, {key: {"points": points, "answer_sha256": prints[key],
                                 "comment": records.get(key, {}).get("comment", "")} for key, points in given.items()})
    lines = [f"Hand grades: {len(given)} from --hand-grades, kept in {path}: {len(added)} new, {len(changes)} changed, "
             f"{len(removed)} no longer given (pending again)"]
    lines += [f"  {line}" for line in (changes + removed)[:20]]
    if len(changes) + len(removed) > 20:
        lines.append(f"  ... and {len(changes) + len(removed) - 20} more")
    return given, prints, lines


@dataclass
class TestColumn:
    """A hidden test as a gradebook column: every row has a RowTest for it."""
    id: str  # "TestClass::test_name[param]"
    title: str
    group: str
    points: float


@dataclass
class RowTest:
    """One test's result in one row."""
    outcome: Outcome
    points: float
    earned: float
    message: str
    notes: dict[str, str] | None = None  # what the test measured; None: no result of this row's own for the test

    @property
    def judged(self) -> bool:
        """Whether it counts in the row's score and max (a test not judged counts in neither)."""
        return self.outcome != Outcome.SKIPPED

    @property
    def needs_review(self) -> bool:
        return not self.judged and needs_review(self.message)

    def to_dict(self) -> dict:
        values = {"outcome": self.outcome, "points": self.points, "earned": self.earned, "message": self.message}
        return values if self.notes is None else {**values, "notes": self.notes}


@dataclass
class HandGrade:
    """A hand-graded answer cell in one row: `earned` None while pending."""
    points: float
    earned: float | None = None
    recheck: bool = False  # graded before the answer changed (a resubmission): the TA looks again
    comment: str = ""  # the TA's, shown in the feedback

    def to_dict(self) -> dict:
        return {"points": self.points, "earned": self.earned, **({"recheck": True} if self.recheck else {}),
                **({"comment": self.comment} if self.comment else {})}


@dataclass
class GradebookRow:
    """One submission's row (or a roster student's without one). Its numbers are computed from its tests and hand
    grades, by the one rule (README, "How scores add up")."""
    student_id: str
    status: Status
    message: str = ""
    tests: dict[str, RowTest] = field(default_factory=dict)  # by test id, one per column of the gradebook
    hand_graded: dict[str, HandGrade] = field(default_factory=dict)  # by grade_id
    notes: dict[str, str] = field(default_factory=dict)
    reviews: dict[str, str] = field(default_factory=dict)
    integrity: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    cell_errors: dict = field(default_factory=dict)
    forbidden_calls: list[str] = field(default_factory=list)
    isolation: str = ""
    memory_cap: str = ""
    seconds: float | None = None  # the judge's
    wall_s: float | None = None  # from unpacking to the judge's end (the store's); None: not graded in OUT

    @property
    def judged_tests(self) -> list[RowTest]:
        return [t for t in self.tests.values() if t.judged]

    @property
    def score(self) -> float:
        return sum(t.earned for t in self.judged_tests)

    @property
    def max_score(self) -> float:
        """The judged tests' points: a test not judged is left out of the max as well as the score."""
        return sum(t.points for t in self.judged_tests)

    @property
    def not_judged_points(self) -> float:
        return sum(t.points for t in self.tests.values() if not t.judged)

    @property
    def total(self) -> float:
        """The score plus the hand grades given (a pending one earns 0)."""
        return self.score + sum(h.earned or 0.0 for h in self.hand_graded.values())

    @property
    def max_total(self) -> float:
        return self.max_score + sum(h.points for h in self.hand_graded.values())

    @property
    def percentage(self) -> float:
        """The score over this row's own max (points not judged are in neither); 0 when nothing was judged."""
        return 100 * self.score / self.max_score if self.max_score else 0.0

    @property
    def pending(self) -> int:
        return sum(1 for h in self.hand_graded.values() if h.earned is None)

    def to_dict(self) -> dict:
        return {
            "student_id": self.student_id, "status": self.status, "message": self.message,
            "score": self.score, "max_score": self.max_score, "total": self.total, "max_total": self.max_total,
            "not_judged_points": self.not_judged_points,
            "tests": {tid: t.to_dict() for tid, t in self.tests.items()},
            "hand_graded": {gid: h.to_dict() for gid, h in self.hand_graded.items()},
            "notes": self.notes, "reviews": self.reviews, "integrity": self.integrity, "problems": self.problems,
            "cell_errors": self.cell_errors, "forbidden_calls": self.forbidden_calls, "isolation": self.isolation,
            "memory_cap": self.memory_cap, "seconds": self.seconds, "wall_s": self.wall_s,
        }

    @classmethod
    def from_dict(cls, values: dict) -> "GradebookRow":
        """A row as to_dict wrote it (its computed numbers are computed again, not read)."""
        names = {f.name for f in dataclasses.fields(cls)} - {"status", "tests", "hand_graded"}
        return cls(status=Status(values["status"]),
                   tests={tid: RowTest(Outcome(t["outcome"]), t["points"], t["earned"], t["message"], t.get("notes"))
                          for tid, t in values["tests"].items()},
                   hand_graded={gid: HandGrade(h["points"], h["earned"], bool(h.get("recheck")), h.get("comment") or "")
                                for gid, h in values["hand_graded"].items()},
                   **{k: v for k, v in values.items() if k in names})


@dataclass
class Gradebook:
    """One assignment's grading: a column per hidden test, a row per submission. gradebook.json is `to_dict`; the
    terminal table, gradebook.csv, the feedback, the course export (autograder/deploy/export.py) and Gradescope's
    results.json (autograder/deploy/gradescope.py) are rendered from it."""
    assignment: str
    tests: list[TestColumn] = field(default_factory=list)
    hand_graded: list[dict] = field(default_factory=list)  # the hand-graded cells: [{"grade_id", "points"}]
    rows: list[GradebookRow] = field(default_factory=list)
    graded_at: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    device: list[str] = field(default_factory=list)  # where the judges ran
    warnings: list[str] = field(default_factory=list)  # about the submissions folder

    @classmethod
    def without_results(cls, assignment: Assignment, student_id: str, status: Status, message: str) -> "Gradebook":
        """The gradebook of one submission that could not be judged (a grader error): its row says why."""
        from autograder.pipeline.survey import Submission

        return build_gradebook(assignment, [(Submission(student_id, Path()), SubmissionResult.without_results(status,
                                                                                                             message))])

    @property
    def isolation(self) -> list[str]:
        return sorted({r.isolation for r in self.rows if r.isolation})

    @property
    def max_score(self) -> float:
        """Every test's points (a row's own max leaves out what it was not judged on)."""
        return sum(t.points for t in self.tests)

    @property
    def possible_points(self) -> float:
        """The assignment's points: every test's and every hand-graded cell's."""
        return self.max_score + sum(m["points"] for m in self.hand_graded)

    @property
    def groups(self) -> list[str]:
        return list(dict.fromkeys(t.group for t in self.tests))

    def row(self, student_id: str) -> GradebookRow:
        return next(r for r in self.rows if r.student_id == student_id)

    def to_dict(self) -> dict:
        return {"format": GRADEBOOK_FORMAT, "assignment": self.assignment, "graded_at": self.graded_at,
                "isolation": self.isolation, "device": self.device, "tests": [dataclasses.asdict(t) for t in self.tests],
                "hand_graded": self.hand_graded, "submissions": [r.to_dict() for r in self.rows],
                "warnings": self.warnings}

    @classmethod
    def from_dict(cls, values: dict, path: Path | str = "gradebook.json") -> "Gradebook":
        """A gradebook as to_dict wrote it; FormatError for another format, naming `path` (where it was read)."""
        check_format(values, path, GRADEBOOK_FORMAT, "a gradebook")
        return cls(assignment=values["assignment"], tests=[TestColumn(**t) for t in values["tests"]],
                   hand_graded=values["hand_graded"], rows=[GradebookRow.from_dict(r) for r in values["submissions"]],
                   graded_at=values["graded_at"], device=values.get("device", []), warnings=values.get("warnings", []))

    @classmethod
    def read(cls, path: Path) -> "Gradebook":
        return cls.from_dict(json.loads(Path(path).read_text()), path)


def build_gradebook(assignment: Assignment, results: list[tuple], hand: dict[tuple[str, str], float] | None = None,
                    graded_answers: dict[tuple[str, str], str | None] | None = None,
                    comments: dict[tuple[str, str], str] | None = None) -> Gradebook:
    """The gradebook of (submission, SubmissionResult) pairs: one row each, a column for every test any judge ran;
    `hand`: the hand grades (student_id, grade_id) -> points (read_hand_grades, kept_hand_grades), and
    `graded_answers` the fingerprint of the answer each graded: a grade whose answer has changed since (a
    resubmission) still counts and is marked "recheck" for the TA; `comments`: the TA's comment on a hand grade."""
    tests: dict[str, TestColumn] = {}
    for _, result in results:
        for t in result.tests:
            tests.setdefault(t.id, TestColumn(t.id, t.title, t.group, t.points))
    # A test that no row judged in this run for a reason of the run (`--threshold-budget 0`) is not judged for a row
    # without a result of its own either; a test some row judged, or skipped for a reason of that student's own (the
    # budget could not decide their model; a review), counts for such a row as not graded: never another student's
    # numbers in this row's feedback.
    reasons: dict[str, set[str] | None] = {}
    for _, result in results:
        for t in result.tests:
            own = t.outcome != Outcome.SKIPPED or needs_review(t.message) or t.message.startswith(UNDECIDED_PREFIX)
            earlier = reasons.get(t.id, set())
            reasons[t.id] = None if own or earlier is None else earlier | {t.message}
    not_judged = {tid: next(iter(why)) for tid, why in reasons.items() if why is not None and len(why) == 1}
    manual = hand_graded_cells(assignment)
    hand = hand or {}
    rows = []
    for sub, result in sorted(results, key=lambda r: r[0].student_id):
        by_id = {t.id: t for t in result.tests}
        row_tests = {}
        for tid, info in tests.items():
            t = by_id.get(tid)
            if tid in not_judged and t is None:  # not judged in this run, and no result of its own
                row_tests[tid] = RowTest(Outcome.SKIPPED, info.points, 0.0, not_judged[tid])
            elif t:
                row_tests[tid] = RowTest(t.outcome, info.points, t.earned, t.message, t.notes)
            else:
                row_tests[tid] = RowTest(Outcome.ERROR, info.points, 0.0, result.message or "not graded (see status)")
        hand_graded = {}
        for m in manual:
            key = (sub.student_id, m["grade_id"])
            hand_graded[m["grade_id"]] = HandGrade(
                m["points"], hand.get(key),
                # the answer changed since it was graded
                recheck=key in hand and needs_recheck((graded_answers or {}).get(key), result.written.get(m["grade_id"])),
                comment=(comments or {}).get(key, "") if key in hand else "")
        rows.append(GradebookRow(
            student_id=sub.student_id, status=result.status, message=result.message, tests=row_tests,
            hand_graded=hand_graded, notes=result.notes, reviews=result.reviews, integrity=result.integrity,
            problems=result.problems, cell_errors=result.cell_errors, forbidden_calls=result.forbidden_calls,
            isolation=result.isolation, memory_cap=result.memory_cap, seconds=result.seconds))
    return Gradebook(assignment=assignment.name, tests=list(tests.values()), hand_graded=manual, rows=rows,
                     device=sorted({r.device for _, r in results if r.device}))


def gradebook_csv(gradebook: Gradebook) -> str:
    """gradebook.csv: a row per submission, its numbers, a cell per test and per hand-graded answer."""
    test_ids = [t.id for t in gradebook.tests]
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(["student_id", "status", "score", "max_score", "total", "max_total", "not_judged_points", *test_ids,
                     *(f"hand:{m['grade_id']}" for m in gradebook.hand_graded), "isolation", "memory_cap", "problems",
                     "integrity_flags"])
    for row in gradebook.rows:
        cells = [cell_text(row.tests[t]) for t in test_ids]
        hand = [("pending" if h.earned is None else f"{h.earned:g}" + (" (re-check)" if h.recheck else ""))
                for h in row.hand_graded.values()]
        writer.writerow([row.student_id, row.status, f"{row.score:g}", f"{row.max_score:g}",
                         f"{row.total:g}", f"{row.max_total:g}", f"{row.not_judged_points:g}", *cells, *hand,
                         row.isolation, row.memory_cap, " | ".join(row.problems), len(row.integrity)])
    return table.getvalue()


def write_outputs(gradebook: Gradebook, out: Path) -> None:
    """gradebook.json, gradebook.csv and feedback/<id>.md, each replaced whole (atomic_write): a grader killed while
    writing them leaves the previous version, and the next run rebuilds them from OUT/results/."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "gradebook.json", json.dumps(gradebook.to_dict(), indent=2))
    atomic_write(out / "gradebook.csv", gradebook_csv(gradebook))
    for row in gradebook.rows:
        atomic_write(out / "feedback" / f"{row.student_id}.md", feedback_text(gradebook, row))


UNDECIDED_PREFIX = "not judged on this grader"  # a threshold the budget could not decide (autograder/kit/scoring.py)


def needs_review(message: str) -> bool:
    """Whether a skipped test's message is a threshold an integrity check flagged (scoring.REVIEW_MESSAGE), rather than
    one the budget could not decide."""
    return message.startswith("needs review")


def cell_text(test: RowTest) -> str:
    """A test's cell of gradebook.csv: the points earned, or why there are none either way."""
    if test.judged:
        return f"{test.earned:g}"
    return "needs review" if test.needs_review else "skipped"


def feedback_text(gradebook: Gradebook, row: GradebookRow) -> str:
    """Per-student feedback: every test with its points and, when it failed, why (never the test's code)."""
    lines = [f"# {gradebook.assignment}: feedback for {row.student_id}", "",
             f"**Autograded score: {row.score:g} / {row.max_score:g}**  (status: {row.status})"]
    if row.hand_graded:
        lines.append(f"**Total with the hand-graded answers: {row.total:g} / {row.max_total:g}**"
                     + (f"  ({row.pending} still pending)" if row.pending else ""))
    if row.not_judged_points:
        lines.append(f"{row.not_judged_points:g} more points were not judged in this grading run (see below).")
    if row.message:
        lines += ["", f"> {row.message}"]
    for problem in row.problems:
        lines += ["", f"> {problem}"]
    groups: dict[str, list[TestColumn]] = {}
    for t in gradebook.tests:
        groups.setdefault(t.group, []).append(t)
    for group, tests in groups.items():
        judged = [row.tests[t.id] for t in tests if row.tests[t.id].judged]
        lines += ["", f"## {group} ({sum(r.earned for r in judged):g} / {sum(r.points for r in judged):g})"]
        for t in tests:
            r = row.tests[t.id]
            mark = ("NEEDS REVIEW" if needs_review(r.message) else
                    {Outcome.PASSED: "PASS", Outcome.SKIPPED: "NOT JUDGED"}.get(r.outcome, "FAIL"))
            lines.append(f"- [{mark}] {t.title} ({r.earned:g}/{r.points:g})")
            if r.message:
                lines += [f"    {line}" for line in r.message.splitlines()]
    if row.notes:
        lines += ["", "## Notes"] + [f"- {name}: {text}" for name, text in row.notes.items()]
    if row.hand_graded:
        lines += ["", "## Hand-graded answers"]
        for gid, h in row.hand_graded.items():
            lines.append(f"- {gid}: " + ("pending" if h.earned is None else f"{h.earned:g} / {h.points:g}")
                         + (" (graded before your answer changed: your TA will look at it again)" if h.recheck else ""))
            if h.comment:
                lines += [f"    > {line}" for line in h.comment.splitlines()]
    return "\n".join(lines) + "\n"


def format_table(gradebook: Gradebook) -> str:
    """The gradebook as a fixed-width table for the terminal: one row per submission, a column per test group."""
    groups = gradebook.groups
    header = ["student", "status", "score"] + groups + ["hand-graded", "total", "problems"]
    body = []
    for row in gradebook.rows:
        cells = [row.student_id, row.status, f"{row.score:g}/{row.max_score:g}"]
        for group in groups:
            judged = [row.tests[t.id] for t in gradebook.tests if t.group == group and row.tests[t.id].judged]
            cells.append(f"{sum(t.earned for t in judged):g}/{sum(t.points for t in judged):g}" if judged else "not judged")
        recheck = sum(1 for h in row.hand_graded.values() if h.recheck)
        cells.append(", ".join([f"{row.pending} pending"] * bool(row.pending) + [f"{recheck} to re-check"] * bool(recheck))
                     or "done")
        cells += [f"{row.total:g}/{row.max_total:g}", str(len(row.problems)) if row.problems else ""]
        body.append(cells)
    widths = [max(len(str(r[i])) for r in [header] + body) for i in range(len(header))]
    fmt = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True))  # noqa: E731
    lines = [fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in body]
    for row in gradebook.rows:
        for t in gradebook.tests:
            result = row.tests[t.id]
            if result.needs_review:
                why = "; ".join(v for v in row.reviews.values() if v.startswith("FLAGGED")) or result.message
                lines.append(f"needs review: {row.student_id} {t.id} ({why})")
            elif not result.judged:
                lines.append(f"not judged: {row.student_id} {t.id} ({result.message.removeprefix('not judged: ')})")
    return "\n".join(lines)


def mean_percentage(rows: list[GradebookRow]) -> float:
    return sum(r.percentage for r in rows) / len(rows) if rows else 0.0


def format_summary(gradebook: Gradebook, slowest: int = 3) -> str:
    """What a TA checks after a batch: how many ended in each status, the mean score, the slowest submissions (where
    a budget may be too tight or a submission hung), and how many warnings discovery gave."""
    rows = gradebook.rows
    if not rows:
        return "Summary: no submissions"
    statuses: dict[str, int] = {}
    for row in rows:
        statuses[row.status] = statuses.get(row.status, 0) + 1
    # Out of every test's points, not the first row's max: a row whose threshold was not judged has a lower max. The
    # percentage is each row's own (score over its max, which leaves the points not judged out), then their mean.
    max_score = gradebook.max_score
    mean = sum(r.score for r in rows) / len(rows)
    lines = [f"Summary: {len(rows)} row(s): " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items(), key=lambda kv: -kv[1])),
             f"Mean score {mean:.1f} / {max_score:g}; mean percentage {mean_percentage(rows):.0f} % (each row's score "
             "over its own max)"]
    if gradebook.hand_graded:
        lines[-1] += f"; mean total with hand grades {sum(r.total for r in rows) / len(rows):.1f} / {gradebook.possible_points:g}"
    partly = sum(1 for r in rows if r.not_judged_points)
    if partly:
        lines[-1] += f"; {partly} row(s) with points not judged in this run, counted in neither score nor their max"
    timed = sorted((r for r in rows if r.wall_s is not None), key=lambda r: -(r.wall_s or 0.0))[:slowest]
    if timed:
        lines.append("Slowest: " + ", ".join(f"{r.student_id} {r.wall_s:.1f} s ({r.status})" for r in timed))
    if gradebook.warnings:
        lines.append(f"{len(gradebook.warnings)} warning(s) about the submissions folder (printed above, and in "
                     "gradebook.json under 'warnings')")
    return "\n".join(lines)

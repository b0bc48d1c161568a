"""The batch grader as an instructor runs it (autograder/pipeline/grade.py, autograder/pipeline/store.py, autograder/pipeline/judges.py): durable results, resuming after
the grader is killed, regrading some students, stopping cleanly.

The hidden tests are not run here: `judges.judge_command` is replaced by a stand-in judge (FAKE_JUDGE) that takes a
moment, starts a "worker" in a session of its own (as a weakly isolated worker does; killed only if the judge
ends normally), and writes a results.json whose
score follows from the notebook's bytes. Everything else (discovery, process groups, the result store, the gradebook)
is the real code, run as `python -m autograder grade` would run it, in a subprocess that can be killed. The stand-in
judges are fresh interpreters (--judge process), and in the cases marked WITH_SERVERS forks of judge servers
(--judge server); the preflight, which would run a real judge, and the datasets' check are left out
(tests/test_preflight.py runs them).
"""
from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autograder.assignments import PROJECT_ROOT


FAKE_JUDGE = r'''
import json, os, subprocess, sys, time
marker, work, results, calls, delay, tag = sys.argv[1:7]
with open(calls, "a") as f:
    f.write(os.path.basename(work) + "\n")
if os.path.exists(os.path.join(os.path.dirname(calls), "fail-" + os.path.basename(work))):
    sys.exit(3)  # a broken grader: no results
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", tag], start_new_session=True)
time.sleep(float(delay))
worker.kill()  # as the real judge closes its worker when it ends normally
notebook = open(os.path.join(work, "vit.ipynb"), "rb").read()
earned = float(len(notebook) % 5)
test = {"id": "TestFake::test_it", "title": "it", "group": "Fake", "points": 4.0, "earned": earned,
        "outcome": "passed" if earned == 4 else "failed", "message": ""}
with open(results, "w") as f:
    json.dump({"status": "ok", "tests": [test], "isolation": "fake", "memory_cap": "none", "seconds": 0.1}, f)
'''

DRIVER = r'''
import sys
import autograder.pipeline.grade as grade
import autograder.pipeline.judges as judges
from autograder.__main__ import main
fake, calls, delay, tag = sys.argv[1:5]
# Stand-ins for the checks before the first student (test_sandbox.py, test_preflight.py test them): the datasets'
# check alone read FashionMNIST and CIFAR-10 with torchvision in every run, 3.6 of its 4.4 CPU s.
grade.check_isolation = grade.preflight = grade.check_datasets = lambda *args, **kwargs: None
judges.judge_command = lambda assignment, work, results, logs, options: [
    sys.executable, fake, "autograder.pipeline.judge", str(work), str(results), calls, delay, tag]
sys.exit(main(sys.argv[5:]))
'''


def expected_score(notebook: bytes) -> float:
    return float(len(notebook) % 5)


class Batch:
    """A folder of loose-notebook submissions and the command that grades it with the stand-in judge."""

    def __init__(self, tmp_path: Path, students: int = 6, judge: str = "process"):
        self.tmp, self.judge = tmp_path, judge  # judge: "server" forks each stand-in judge from a judge server
        self.subs, self.out = tmp_path / "submissions", tmp_path / "grades"
        self.subs.mkdir()
        self.notebooks = {f"s{i}": b"{}" + b" " * i for i in range(students)}
        for sid, data in self.notebooks.items():
            (self.subs / f"{sid}.ipynb").write_bytes(data)
        (tmp_path / "fake_judge.py").write_text(FAKE_JUDGE)
        (tmp_path / "driver.py").write_text(DRIVER)
        self.runs = 0
        self.calls = tmp_path / "calls-0.txt"  # one file per run: an orphaned judge of a killed run writes to its own
        self.tag = f"fake-worker-{os.getpid()}-{tmp_path.name}"

    def command(self, *extra: str, delay: float = 0.0) -> list[str]:
        self.runs += 1
        self.calls = self.tmp / f"calls-{self.runs}.txt"
        return [sys.executable, str(self.tmp / "driver.py"), str(self.tmp / "fake_judge.py"), str(self.calls), str(delay),
                self.tag, "grade", str(self.subs), "--assignment", "vit", "--out", str(self.out), "--workers", "2",
                "--judge", self.judge, *extra]

    def run(self, *extra: str, delay: float = 0.0) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(*extra, delay=delay), cwd=PROJECT_ROOT, capture_output=True, text=True,
                              timeout=300)

    def judged(self) -> list[str]:
        return self.calls.read_text().split() if self.calls.exists() else []

    def rows(self) -> list[dict]:
        with open(self.out / "gradebook.csv", newline="") as f:
            return list(csv.DictReader(f))

    def stored(self) -> set[str]:
        return {p.stem for p in (self.out / "results").glob("*.json")}

    def leftover_processes(self) -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and self.tag.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
        return found

    def kill_leftovers(self) -> None:
        for pid in self.leftover_processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def batch(tmp_path, request):
    made = Batch(tmp_path, judge=getattr(request, "param", "process"))
    yield made
    made.kill_leftovers()


# The same cases with judges forked from judge servers (autograder/pipeline/judge_server.py; each server imports torch first).
WITH_SERVERS = pytest.mark.parametrize("batch", ["server"], indirect=True, ids=["judge-server"])


def assert_one_correct_row_each(batch: Batch) -> None:
    rows = batch.rows()
    assert sorted(r["student_id"] for r in rows) == sorted(batch.notebooks)
    for row in rows:
        assert row["status"] == "ok", row
        assert float(row["score"]) == expected_score(batch.notebooks[row["student_id"]]), row
        assert row["max_score"] == "4"


def wait_for(condition, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def test_a_rerun_grades_only_what_is_new_or_changed(batch):
    first = batch.run()
    assert first.returncode == 0, first.stderr
    assert sorted(batch.judged()) == sorted(batch.notebooks)
    assert_one_correct_row_each(batch)
    again = batch.run()
    assert again.returncode == 0, again.stderr
    assert batch.judged() == [] and "6 already graded, unchanged, by this grader" in again.stdout
    batch.notebooks["s1"] += b"  changed"
    (batch.subs / "s1.ipynb").write_bytes(batch.notebooks["s1"])
    (batch.subs / "s9.ipynb").write_bytes(batch.notebooks.setdefault("s9", b"{} new"))
    third = batch.run()
    assert third.returncode == 0, third.stderr
    assert sorted(batch.judged()) == ["s1", "s9"]
    assert_one_correct_row_each(batch)
    forced = batch.run("--force")
    assert forced.returncode == 0 and sorted(batch.judged()) == sorted(batch.notebooks)
    assert batch.leftover_processes() == []


@pytest.mark.parametrize("graded_before_kill", [1, 3])
def test_sigkill_partway_then_rerun_gives_exactly_one_correct_row_per_submission(batch, graded_before_kill):
    sigkill_partway_then_rerun(batch, graded_before_kill)


@WITH_SERVERS
def test_sigkill_partway_with_judge_servers_then_rerun_gives_one_correct_row_each(batch):
    sigkill_partway_then_rerun(batch, 3)


def sigkill_partway_then_rerun(batch: Batch, graded_before_kill: int) -> None:
    grader = subprocess.Popen(batch.command(delay="0.7"), cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        # killed while a stand-in judge (or its worker) is running
        wait_for(lambda: len(batch.stored()) >= graded_before_kill and batch.leftover_processes())
    finally:
        grader.kill()
        grader.wait()
    stored = batch.stored()
    assert stored and stored != set(batch.notebooks)
    rerun = batch.run()
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(batch.judged()) == sorted(set(batch.notebooks) - stored)  # nothing graded twice, nothing lost
    assert_one_correct_row_each(batch)
    assert batch.leftover_processes() == []  # the orphaned judges and their workers were killed


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sigint_stops_cleanly_with_a_partial_gradebook_and_says_how_to_resume(batch, signum):
    stop_cleanly_then_resume(batch, signum)


@WITH_SERVERS
def test_sigint_with_judge_servers_stops_cleanly_and_says_how_to_resume(batch):
    stop_cleanly_then_resume(batch, signal.SIGINT)


def stop_cleanly_then_resume(batch: Batch, signum: int) -> None:
    (batch.subs / "s0.ipynb").rename(batch.tmp / "s0.ipynb")
    assert batch.run().returncode == 0  # s1..s5 graded
    (batch.tmp / "s0.ipynb").rename(batch.subs / "s0.ipynb")
    grader = subprocess.Popen(batch.command("--force", delay="5"), cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len(batch.judged()) >= 2)
    grader.send_signal(signum)
    stdout, stderr = grader.communicate(timeout=60)
    assert grader.returncode != 0
    assert "Traceback" not in stderr and "Run the same command again without --force to grade only the 6 left" in stderr, stderr
    assert sorted(r["student_id"] for r in batch.rows()) == ["s1", "s2", "s3", "s4", "s5"]  # the partial gradebook
    wait_for(lambda: batch.leftover_processes() == [], timeout=10)  # judges and workers killed, not orphaned
    rerun = batch.run()
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(batch.judged()) == sorted(batch.notebooks)  # what --force asked for, though older results exist
    assert_one_correct_row_each(batch)
    assert batch.run().returncode == 0 and batch.judged() == []


def test_regrading_one_student_into_an_existing_folder_keeps_the_other_rows(batch):
    assert batch.run().returncode == 0
    before = {r["student_id"]: r for r in batch.rows()}
    batch.notebooks["s2"] += b"   resubmitted"
    (batch.subs / "s2.ipynb").write_bytes(batch.notebooks["s2"])
    only = batch.run("--only", "s2")
    assert only.returncode == 0, only.stderr
    assert batch.judged() == ["s2"]
    after = {r["student_id"]: r for r in batch.rows()}
    assert set(after) == set(before)
    assert float(after["s2"]["score"]) == expected_score(batch.notebooks["s2"])
    assert {k: v for k, v in after.items() if k != "s2"} == {k: v for k, v in before.items() if k != "s2"}
    assert json.loads((batch.out / "gradebook.json").read_text())["submissions"][0]["student_id"] == "s0"
    unknown = batch.run("--only", "nobody")
    assert unknown.returncode != 0 and "nobody" in unknown.stderr


def test_roster_adds_no_submission_rows_and_the_gradebook_lists_what_was_not_graded(batch):
    (batch.subs / "essay.pdf").write_bytes(b"%PDF")
    (batch.subs / "s0 (1).ipynb").write_bytes(b"{} again")
    roster = batch.tmp / "roster.csv"
    roster.write_text("student_id,name\n" + "".join(f"{sid},x\n" for sid in batch.notebooks if sid != "s5") + "zed,Zed\n")
    clash = batch.run("--roster", str(roster))
    assert clash.returncode != 0 and "s0: s0 (1).ipynb, s0.ipynb" in clash.stderr and batch.judged() == []
    os.utime(batch.subs / "s0.ipynb", (2_000_000_000, 2_000_000_000))
    done = batch.run("--roster", str(roster), "--duplicates", "latest")
    assert done.returncode == 0, done.stderr
    rows = {r["student_id"]: r for r in batch.rows()}
    assert rows["zed"]["status"] == "no-submission" and rows["zed"]["score"] == "0"
    assert {r["max_score"] for r in rows.values()} == {"4"}
    assert set(rows) == set(batch.notebooks) | {"zed"}
    warnings = json.loads((batch.out / "gradebook.json").read_text())["warnings"]
    assert sorted(w.split(":")[0] for w in warnings) == ["essay.pdf", "s0 (1).ipynb", "s5.ipynb"]
    assert "WARNING: essay.pdf" in done.stdout


# -- scores add up ---------------------------------------------------------------------------------------------
def fake_results():
    from autograder.pipeline.survey import Submission
    from autograder.pipeline.results import SubmissionResult, TestResult

    def test(tid, outcome, points, earned=0.0):
        return TestResult(tid, tid, "G", points, earned, outcome, "not judged: needs CUDA" if outcome == "skipped" else "")

    ok = SubmissionResult("ok", tests=[test("A", "passed", 4, 4), test("B", "failed", 3), test("C", "skipped", 8)])
    partial = SubmissionResult("crashed", tests=[test("A", "passed", 4, 4)])  # B never reported, C not judged
    bad = SubmissionResult.without_results("bad-archive", "alice.tar.gz could not be unpacked")
    return [(Submission("ok", Path("ok.ipynb")), ok), (Submission("partial", Path("p.ipynb")), partial),
            (Submission("alice", Path("alice.tar.gz")), bad)]


def test_max_score_is_the_same_for_every_row_and_never_counts_what_was_not_judged():
    from autograder.assignments import load_assignment
    from autograder.pipeline.gradebook import build_gradebook

    rows = {r["student_id"]: r for r in build_gradebook(load_assignment("vit"), fake_results()).to_dict()["submissions"]}
    assert {r["max_score"] for r in rows.values()} == {7}
    assert {r["not_judged_points"] for r in rows.values()} == {8}
    assert rows["alice"]["tests"]["C"]["outcome"] == "skipped" and rows["alice"]["tests"]["A"]["outcome"] == "error"
    assert [rows[s]["score"] for s in ("ok", "partial", "alice")] == [4, 4, 0]


def test_a_threshold_not_judged_for_one_row_keeps_the_others_results():
    """A borderline model the grader's threshold budget cannot decide is not judged for that student alone: another
    student's judged result of the same test stands."""
    from autograder.assignments import load_assignment
    from autograder.pipeline.gradebook import build_gradebook
    from autograder.pipeline.survey import Submission
    from autograder.pipeline.results import SubmissionResult, TestResult

    def result(outcome, earned):
        return SubmissionResult("ok", tests=[TestResult("T", "T", "G", 6, earned, outcome,
                                                        "not judged on this grader: ..." if outcome == "skipped" else "")])
    rows = {r["student_id"]: r for r in build_gradebook(load_assignment("vit"), [
        (Submission("clear", Path("c.ipynb")), result("passed", 6)),
        (Submission("borderline", Path("b.ipynb")), result("skipped", 0))]).to_dict()["submissions"]}
    assert (rows["clear"]["score"], rows["clear"]["max_score"], rows["clear"]["not_judged_points"]) == (6, 6, 0)
    assert (rows["borderline"]["score"], rows["borderline"]["max_score"], rows["borderline"]["not_judged_points"]) == (0, 0, 6)


def test_hand_grades_are_checked_line_by_line_and_added_into_the_total(tmp_path):
    from autograder.assignments import load_assignment
    from autograder.pipeline.gradebook import build_gradebook, read_hand_grades, write_outputs

    vit = load_assignment("vit")
    bad = tmp_path / "hand.csv"
    bad.write_text("student_id,grade_id,points\n"
                   "ok,analysis,7\n"
                   "mallory,analysis,3\n"        # line 3: no such student
                   "ok,analysys,3\n"             # line 4: no such cell
                   "partial,paper_review,6\n"    # line 5: over the cell's 5
                   "partial,analysis,-1\n"       # line 6: negative
                   "alice,analysis,lots\n"       # line 7: not a number
                   "ok,analysis,8\n")            # line 8: a second grade
    students = {sub.student_id for sub, _ in fake_results()}
    with pytest.raises(SystemExit) as info:
        read_hand_grades(bad, vit, students)
    message = str(info.value)
    for line, words in [(3, "unknown student 'mallory'"), (4, "unknown grade_id 'analysys'"), (5, "from 0 to 5"),
                        (6, "from 0 to 10"), (7, "'lots'"), (8, "a second grade")]:
        assert f"{bad}:{line}: " in message and words in message, (line, message)
    assert f"{bad}:2:" not in message
    good = tmp_path / "good.csv"
    good.write_text("student_id,grade_id,points\nok,analysis,7\nok,paper_review,4.5\nalice,analysis,2\n")
    gradebook = build_gradebook(vit, fake_results(), read_hand_grades(good, vit, students))
    write_outputs(gradebook, tmp_path / "out")
    with open(tmp_path / "out" / "gradebook.csv", newline="") as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f)}
    assert (rows["ok"]["score"], rows["ok"]["total"], rows["ok"]["max_total"]) == ("4", "15.5", "22")
    assert (rows["alice"]["total"], rows["partial"]["total"], rows["partial"]["hand:analysis"]) == ("2", "4", "pending")
    assert "Total with the hand-graded answers: 15.5 / 22" in (tmp_path / "out" / "feedback" / "ok.md").read_text()


def test_bad_hand_grades_stop_the_batch_before_any_judge(batch):
    hand = batch.tmp / "hand.csv"
    hand.write_text("student_id,grade_id,points\ns1,analysis,11\n")
    proc = batch.run("--hand-grades", str(hand))
    assert proc.returncode != 0 and f"{hand}:2: points '11'" in proc.stderr and batch.judged() == []
    hand.write_text("student_id,grade_id,points\ns1,analysis,9\n")
    assert batch.run("--hand-grades", str(hand)).returncode == 0
    rows = {r["student_id"]: r for r in batch.rows()}
    assert float(rows["s1"]["total"]) == float(rows["s1"]["score"]) + 9 and rows["s1"]["max_total"] == "19"
    proc = batch.run()  # later, without --hand-grades: the grades given stay in the totals
    assert proc.returncode == 0 and "Hand grades: the 1 kept" in proc.stdout, proc.stdout
    rows = {r["student_id"]: r for r in batch.rows()}
    assert float(rows["s1"]["total"]) == float(rows["s1"]["score"]) + 9


# -- progress and summary --------------------------------------------------------------------------------------
def test_progress_bar_counts_statuses_and_a_summary_ends_the_run(batch):
    (batch.subs / "zoe.tar.gz").write_bytes(b"not an archive")
    proc = batch.run(delay=0.1)
    assert proc.returncode == 0, proc.stderr
    final = proc.stderr.strip().splitlines()[-1]
    assert "7/7 [" in final and "<00:00]" in final and "bad-archive 1" in final and "ok 6" in final, final
    assert "Summary: 7 row(s): ok 6, bad-archive 1" in proc.stdout
    mean = sum(expected_score(nb) for nb in batch.notebooks.values()) / 7
    assert f"Mean score {mean:.1f} / 4" in proc.stdout
    assert "Slowest: " in proc.stdout and proc.stdout.count(" s (ok)") == 3


# -- export for the LMS ----------------------------------------------------------------------------------------
def small_gradebook(assignment: str, totals: dict[str, float], hand: dict[str, float | None] | None = None):
    """A gradebook of one test worth 36 points, each student's score the part of `totals` not from `hand`."""
    from autograder.pipeline.gradebook import Gradebook, GradebookRow, HandGrade, RowTest, TestColumn
    from autograder.pipeline.results import Outcome, Status

    hand = hand or {}
    return Gradebook(assignment, tests=[TestColumn("T", "T", "G", 36)],
                     hand_graded=[{"grade_id": "analysis", "points": 10}] if hand else [],
                     rows=[GradebookRow(sid, Status.OK, tests={"T": RowTest(Outcome.PASSED, 36, total - (hand.get(sid) or 0), "")},
                                        hand_graded={"analysis": HandGrade(10, hand.get(sid))} if hand else {})
                           for sid, total in totals.items()])


def test_export_merges_one_column_per_assignment_keyed_by_student_id(tmp_path):
    from autograder.deploy.export import export_grades

    canvas = tmp_path / "canvas.csv"
    export_grades(small_gradebook("vit", {"alice": 30, "bob": 12.5}), "canvas", canvas)
    export_grades(small_gradebook("cnn", {"bob": 20, "carol": 7}), "canvas", canvas)
    export_grades(small_gradebook("vit", {"alice": 31, "bob": 12.5}), "canvas", canvas)  # regraded: replaced, not added
    with open(canvas, newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "cnn", "vit"]
        rows = {r["SIS User ID"]: r for r in reader}
    assert (rows["alice"]["vit"], rows["alice"]["cnn"], rows["bob"]["cnn"], rows["carol"]["vit"]) == ("31", "", "20", "")
    plain = tmp_path / "grades.csv"
    export_grades(small_gradebook("vit", {"alice": 30, "bob": 4}, hand={"alice": 8, "bob": None}), "csv", plain)
    with open(plain, newline="") as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f)}
    assert rows["alice"] == {"student_id": "alice", "vit": "30", "vit:autograded": "22", "vit:not_judged": "0",
                             "vit:hand:analysis": "8"}
    assert rows["bob"]["vit:hand:analysis"] == ""
    with pytest.raises(SystemExit, match="no 'SIS User ID' column"):
        export_grades(small_gradebook("vit", {"alice": 1}), "canvas", plain)


# A gradebook as Canvas exports it (Excel's "CSV UTF-8": a byte-order mark), with an assignment column named
# `Name (id)`, Canvas's read-only totals after the assignments and its Points Possible row.
CANVAS_EXPORT = ("\ufeffStudent,ID,SIS User ID,SIS Login ID,Section,Quiz 1 (1101),ViT (1202),Current Points,Final Points,"
                 "Current Score,Unposted Current Score,Final Score,Unposted Final Score\n"
                 "    Points Possible,,,,,10,,(read only),(read only),(read only),(read only),(read only),(read only)\n"
                 "\"Doe, Alice\",101,alice,adoe,Section 1,9,,9,9,90,90,90,90\n"
                 "\"Roe, Bob\",102,bob,broe,Section 1,7,,7,7,70,70,70,70\n"
                 "Test Student,999,,,Section 1,,,,,,,,\n")


def test_export_fills_a_real_canvas_gradebook_in_place(tmp_path):
    from autograder.deploy.export import export_grades

    canvas = tmp_path / "canvas_export.csv"
    canvas.write_text(CANVAS_EXPORT, encoding="utf-8")
    gradebook = small_gradebook("vit", {"alice": 30, "bob": 12.5, "zoe": 3})
    gradebook.hand_graded = [{"grade_id": "analysis", "points": 10}]
    _, notes = export_grades(gradebook, "canvas", canvas)
    with open(canvas, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == next(csv.reader(io.StringIO(CANVAS_EXPORT.lstrip("\ufeff"))))  # no column added
        rows = list(reader)
    assert rows[0]["Student"].strip() == "Points Possible" and rows[0]["ViT (1202)"] == "46"
    assert rows[0]["Current Points"] == "(read only)" and rows[0]["Quiz 1 (1101)"] == "10"
    by_id = {r["SIS User ID"]: r for r in rows[1:]}
    assert (by_id["alice"]["ViT (1202)"], by_id["bob"]["ViT (1202)"], by_id[""]["ViT (1202)"]) == ("30", "12.5", "")
    assert by_id["alice"]["Quiz 1 (1101)"] == "9" and by_id["alice"]["Student"] == "Doe, Alice"
    assert "zoe" not in by_id and any("not in the Canvas export" in n and "zoe" in n for n in notes)
    # A new assignment's column goes before Canvas's computed columns; a wrong --canvas-column is named.
    export_grades(small_gradebook("cnn", {"alice": 20}), "canvas", canvas)
    with open(canvas, newline="") as f:
        header = next(csv.reader(f))
    assert header.index("cnn") == header.index("ViT (1202)") + 1 < header.index("Current Points")
    with pytest.raises(SystemExit, match="'Quiz 2' is not a column of the Canvas export"):
        export_grades(small_gradebook("vit", {"alice": 1}), "canvas", canvas, canvas_column="Quiz 2")


def test_spreadsheet_csvs_are_read(tmp_path):
    """A byte-order mark (Excel's "CSV UTF-8") and semicolons (locales with a decimal comma) in a roster or hand grades."""
    from autograder.assignments import load_assignment
    from autograder.pipeline.survey import read_roster
    from autograder.pipeline.gradebook import read_hand_grades

    roster = tmp_path / "roster.csv"
    roster.write_text("\ufeffstudent_id;name\nalice;Alice\nbob;Bob\n", encoding="utf-8")
    assert read_roster(roster) == ["alice", "bob"]
    hand = tmp_path / "hand.csv"
    hand.write_text("\ufeffstudent_id,grade_id,points\r\nalice,analysis,7\r\n", encoding="utf-8")
    assert read_hand_grades(hand, load_assignment("vit"), {"alice"}) == {("alice", "analysis"): 7.0}


def test_hand_grades_are_kept_until_others_are_given(tmp_path):
    from autograder.pipeline.gradebook import kept_hand_grades

    out = tmp_path / "out"
    out.mkdir()
    assert kept_hand_grades(out, None) == ({}, {}, [])
    grades, _, said = kept_hand_grades(out, {("alice", "analysis"): 7.0, ("bob", "analysis"): 5.0})
    assert grades == {("alice", "analysis"): 7.0, ("bob", "analysis"): 5.0} and "2 new" in said[0]
    grades, _, said = kept_hand_grades(out, None)  # a later run without --hand-grades
    assert grades == {("alice", "analysis"): 7.0, ("bob", "analysis"): 5.0} and "the 2 kept" in said[0]
    grades, _, said = kept_hand_grades(out, {("alice", "analysis"): 8.0})
    assert grades == {("alice", "analysis"): 8.0} and "1 changed, 1 no longer given" in said[0]
    assert "  alice / analysis: 7 -> 8" in said and "  bob / analysis: 5 -> pending" in said


def test_a_hand_grade_of_an_answer_that_changed_is_kept_and_marked_for_a_re_check(tmp_path):
    """A resubmission keeps its hand grades where the written cell did not change, and flags them where it did."""
    from autograder.assignments import load_assignment
    from autograder.pipeline.survey import Submission
    from autograder.pipeline.gradebook import build_gradebook, format_table, kept_hand_grades
    from autograder.pipeline.results import SubmissionResult

    def result(answer: str) -> SubmissionResult:
        return SubmissionResult("ok", written={"analysis": answer, "paper_review": "the same review"})

    out = tmp_path / "out"
    out.mkdir()
    graded = {("alice", "analysis"): "first answer", ("alice", "paper_review"): "the same review"}
    hand, prints, _ = kept_hand_grades(out, {("alice", "analysis"): 7.0, ("alice", "paper_review"): 4.0}, graded)
    hand, prints, _ = kept_hand_grades(out, None)  # later, after a resubmission
    gradebook = build_gradebook(load_assignment("vit"), [(Submission("alice", Path("a.tar.gz")), result("a new answer"))],
                                hand, prints)
    row = gradebook.to_dict()["submissions"][0]
    assert row["hand_graded"]["analysis"] == {"points": 10, "earned": 7.0, "recheck": True}
    assert row["hand_graded"]["paper_review"] == {"points": 5, "earned": 4.0} and row["total"] == 11
    assert "1 to re-check" in format_table(gradebook)


def test_grade_exports_for_canvas_beside_the_output_folder(batch):
    proc = batch.run("--export", "canvas")
    assert proc.returncode == 0, proc.stderr
    with open(batch.tmp / "canvas.csv", newline="") as f:
        rows = {r["SIS User ID"]: r["vit"] for r in csv.DictReader(f)}
    assert rows == {sid: f"{expected_score(nb):g}" for sid, nb in batch.notebooks.items()}


def test_grader_errors_are_tried_again_and_rows_of_vanished_submissions_are_flagged(batch):
    (batch.tmp / "fail-s3").write_text("")
    assert batch.run().returncode == 0
    rows = {r["student_id"]: r for r in batch.rows()}
    assert rows["s3"]["status"] == "grader-error" and rows["s3"]["max_score"] == "4"
    (batch.tmp / "fail-s3").unlink()
    (batch.subs / "s5.ipynb").unlink()
    again = batch.run()
    assert again.returncode == 0 and batch.judged() == ["s3"]  # the grader's failure, not the student's: retried
    rows = {r["student_id"]: r for r in batch.rows()}
    assert rows["s3"]["status"] == "ok" and "s5" in rows
    warnings = json.loads((batch.out / "gradebook.json").read_text())["warnings"]
    assert [w for w in warnings if w.startswith("s5: row kept from an earlier run")]


def test_a_result_graded_by_another_version_of_the_grader_is_graded_again(tmp_path):
    from autograder.assignments import load_assignment
    from autograder.pipeline.grade import choose
    from autograder.pipeline.survey import discover
    from autograder.pipeline.results import SubmissionResult
    from autograder.pipeline.store import ResultStore, StoredResult, grader_digest, submission_digest

    (tmp_path / "subs").mkdir()
    for sid in ("a", "b"):
        (tmp_path / "subs" / f"{sid}.ipynb").write_text(sid)
    store = ResultStore(tmp_path / "out", "vit")
    current = grader_digest(load_assignment("vit"))
    for sid, grader in (("a", current), ("b", "an older grader")):
        store.put(StoredResult(sid, "vit", f"{sid}.ipynb", submission_digest(tmp_path / "subs" / f"{sid}.ipynb"), 1.0,
                               SubmissionResult("ok"), grader))
    subs = discover(tmp_path / "subs")
    assert [s.student_id for s in choose(subs, store, current, force=False, only=None)] == ["b"]
    assert [s.student_id for s in choose(subs, store, current, force=True, only=None)] == ["a", "b"]
    assert store.pending() == {"a", "b"}


def test_a_threshold_that_needs_review_shows_the_ta_why_and_the_student_only_that_it_does(tmp_path):
    """A threshold an integrity check flagged (autograder/kit/scoring.py: the canary) counts neither way; the TA's table
    and gradebook.csv say "needs review", with the canary's numbers in the table; the student's feedback and
    Gradescope output say only that an integrity check flagged it."""
    import csv

    from autograder.assignments import load_assignment
    from autograder.pipeline.survey import Submission
    from autograder.pipeline.gradebook import build_gradebook, feedback_text, format_table, write_outputs
    from autograder.deploy.gradescope import to_results
    from autograder.pipeline.results import SubmissionResult, TestResult
    from autograder.kit.scoring import REVIEW_MESSAGE

    canary = "FLAGGED: canary 41.00% on 500 shifted, noisy test images, 90.00% on the same examples unperturbed"
    result = SubmissionResult("ok", tests=[
        TestResult("A", "A", "G", 4, 4, "passed", ""),
        TestResult("T", "T", "G", 6, 0, "skipped", REVIEW_MESSAGE.format(name="cnn_better"),
                   notes={"cnn_better": "accuracy 90.00% on 1,000 of 10,000 test images: reaches the bar 70%"})],
        reviews={"cnn_better": canary})
    gradebook = build_gradebook(load_assignment("cnn"), [(Submission("mallory", Path("m.ipynb")), result)])
    row = gradebook.rows[0]
    assert (row.score, row.max_score, row.not_judged_points) == (4, 4, 6)
    assert f"needs review: mallory T ({canary})" in format_table(gradebook)
    feedback = feedback_text(gradebook, row)
    assert "[NEEDS REVIEW] T (0/6)" in feedback and "integrity check" in feedback and "canary" not in feedback
    output = to_results(gradebook, "visible", 1.0)["tests"][1]
    assert output["name"].endswith("(needs review)") and "canary" not in output["output"] and "score" not in output
    write_outputs(gradebook, tmp_path)
    with open(tmp_path / "gradebook.csv") as f:
        assert next(r for r in csv.DictReader(f) if r["student_id"] == "mallory")["T"] == "needs review"


def test_one_students_measurement_never_appears_in_another_students_row():
    """A threshold skipped for one student (the budget could not decide their model) says so with their numbers; a
    row with no result for it (a corrupt archive) is not graded, with its own reason, not those numbers."""
    from autograder.assignments import load_assignment
    from autograder.pipeline.gradebook import build_gradebook, feedback_text
    from autograder.pipeline.survey import Submission
    from autograder.pipeline.results import SubmissionResult, TestResult

    undecided = "not judged on this grader: accuracy between 69.38% and 93.89% after 89 of 10,000 test images"
    borderline = SubmissionResult("ok", tests=[TestResult("T", "T", "G", 6, 0, "skipped", undecided)])
    corrupt = SubmissionResult.without_results("bad-archive", "bob.tar.gz could not be unpacked")
    gradebook = build_gradebook(load_assignment("vit"), [(Submission("ann", Path("a.ipynb")), borderline),
                                                         (Submission("bob", Path("bob.tar.gz")), corrupt)])
    rows = {r.student_id: r for r in gradebook.rows}
    assert rows["bob"].tests["T"].outcome == "error" and "69.38" not in feedback_text(gradebook, rows["bob"])
    assert rows["bob"].tests["T"].message == "bob.tar.gz could not be unpacked"
    assert rows["ann"].tests["T"].message == undecided


def test_the_summary_mean_is_out_of_every_tests_points_and_says_when_rows_were_not_fully_judged():
    from autograder.assignments import load_assignment
    from autograder.pipeline.gradebook import build_gradebook, format_summary

    summary = format_summary(build_gradebook(load_assignment("vit"), fake_results()))
    assert "Mean score 2.7 / 15; mean percentage 38 %" in summary  # (4 + 4 + 0) / 3 rows, out of A 4 + B 3 + C 8;
    # each row's own max leaves the not-judged C out: (4/7 + 4/7 + 0/7) / 3
    assert "3 row(s) with points not judged in this run, counted in neither score nor their max" in summary

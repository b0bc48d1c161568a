"""Hand grading in the browser (autograder/deploy/hand_grading.py): a TA grades two written answers through the page, in
Debian's chromium driven by Playwright, and the points reach gradebook.csv, the feedback, the csv export and the
Canvas export; a hostile answer's HTML and script never run in the TA's browser.

The graded batch is made without grading (results written into a result store, as tests/test_batch_grading.py does),
so the test costs a server start and a browser start: a few seconds.
"""
from __future__ import annotations

import csv
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from autograder.assignments import load_assignment
from autograder.deploy.export import export_grades
from autograder.pipeline.grade import gradebook_of_store, rebuild_gradebook
from autograder.pipeline.gradebook import Gradebook, give_hand_grade, kept_hand_grades
from autograder.deploy.hand_grading import HandGrading, questions, render_markdown
from autograder.notebook import read_notebook, written_answers
from autograder.pipeline.results import SubmissionResult
from autograder.pipeline.store import ResultStore, StoredResult

CHROMIUM = "/usr/bin/chromium"  # Debian's package `chromium` (.ci/run installs it); no `playwright install`
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# A hostile written answer: each line would set window.pwned in the TA's browser if the page let it run.
CANARY = "\n\n".join([
    "My analysis. <script>window.pwned = 'script'</script>",
    '<img src="x" onerror="window.pwned = \'onerror\'">',
    "$\\text{<script>window.pwned = 'math'</script>}$",
    "[click me](javascript:window.pwned='link')",
    "<iframe src=\"javascript:parent.pwned='iframe'\"></iframe>",
])
GOOD = ("| # | change | test acc. |\n|---|---|---|\n| 1 | patch 4 | 88 % |\n\n"
        "Smaller patches helped: the cost grows as $O(n^2)$ in the number of patches $n = (H/p)^2$.")


def graded_batch(out: Path) -> None:
    """A graded output folder of 'vit' with two students (alice: a table and math; mallory: the canary) and one roster
    student without a submission, as `grade` leaves it."""
    store = ResultStore(out, "vit")
    for sid, analysis in (("alice", GOOD), ("mallory", CANARY)):
        result = SubmissionResult("ok", written={"analysis": analysis, "paper_review": f"review by {sid}"})
        store.put(StoredResult(sid, "vit", f"{sid}.ipynb", "0" * 64, 1.0, result))
    gradebook_of_store(load_assignment("vit"), store.all(), {"carol": "no submission was found in subs"}, {}, {}, [], out)


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's chromium. In CI its absence is a failure; elsewhere the browser test is skipped, saying why."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    message = f"no {CHROMIUM}: install Debian's browser with `sudo apt-get install chromium` (.ci/run does)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def test_answers_are_rendered_with_math_and_never_with_the_students_html():
    from html.parser import HTMLParser

    class Elements(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags, self.attributes = set(), []

        def handle_starttag(self, tag, attrs):
            self.tags.add(tag)
            self.attributes += attrs

    html = render_markdown(GOOD + "\n\n" + CANARY)
    found = Elements()
    found.feed(html)
    assert {"table", "math", "msup"} <= found.tags and not found.tags & {"script", "img", "iframe"}, html
    assert not [(k, v) for k, v in found.attributes if k.startswith("on") or "javascript" in (v or "")], html
    assert "&lt;script&gt;window.pwned = 'script'&lt;/script&gt;" in html  # shown to the TA as text


def test_written_answers_are_read_from_the_students_notebook_by_grade_id():
    vit = load_assignment("vit")
    release = read_notebook(vit.release_dir / vit.notebook)
    student = json.loads(json.dumps(release))
    cell = next(c for c in student["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == "analysis")
    cell["source"] = ["My ", "answer"]
    assert written_answers(release, student) == {"analysis": "My answer", "paper_review": "YOUR ANSWER HERE"}


def test_every_hand_graded_cell_has_a_rubric_worth_its_points_and_a_question():
    """The rubric lines start with their points ("- 3: ..."), which add up to the cell's points."""
    from autograder.assignments import list_assignments

    for name in list_assignments():
        for q in questions(load_assignment(name)):
            points = [float(m) for m in re.findall(r"^- (\d+(?:\.\d+)?):", q.rubric, re.M)]
            assert q.prompt and points and sum(points) == q.points, (name, q.grade_id, q.rubric)
        release = read_notebook(load_assignment(name).release_dir / f"{name}.ipynb")
        assert not any("dlcourse" in c.get("metadata", {}) for c in release["cells"]), f"a rubric leaked into release/{name}"


def test_a_grade_given_in_the_page_stays_through_a_csv_and_clears_a_re_check(tmp_path):
    out = tmp_path / "out"
    graded_batch(out)
    cell = {"grade_id": "analysis", "points": 10}
    with pytest.raises(ValueError, match="from 0 to 10"):
        give_hand_grade(out, "alice", cell, 11, "", GOOD)
    give_hand_grade(out, "alice", cell, 7, "  good table  ", "an older answer")
    row = rebuild_gradebook(out).row("alice").to_dict()
    assert row["hand_graded"]["analysis"] == {"points": 10, "earned": 7.0, "recheck": True, "comment": "good table"}
    grading = HandGrading(out)  # what the page shows: the answer to look at again, counted as left
    assert grading.grades()["alice", "analysis"]["recheck"] and grading.left() == 4
    give_hand_grade(out, "alice", cell, 8, "good table", GOOD)  # given again on the current answer
    gradebook = rebuild_gradebook(out).to_dict()
    rows = {r["student_id"]: r for r in gradebook["submissions"]}
    assert rows["alice"]["hand_graded"]["analysis"] == {"points": 10, "earned": 8.0, "comment": "good table"}
    assert rows["carol"]["status"] == "no-submission"  # the roster's row is kept
    hand, _, _ = kept_hand_grades(out, {("alice", "analysis"): 9.0})  # a later --hand-grades CSV keeps the comment
    assert hand == {("alice", "analysis"): 9.0} and "> good table" in (out / "feedback" / "alice.md").read_text()
    assert json.loads((out / "hand_grades.json").read_text())["grades"][0]["comment"] == "good table"


def test_a_ta_grades_two_answers_in_the_browser_and_the_points_reach_every_export(tmp_path, chromium):
    from playwright.sync_api import expect, sync_playwright

    out = tmp_path / "grades" / "vit"
    graded_batch(out)
    canvas = tmp_path / "canvas.csv"
    server = subprocess.Popen([sys.executable, "-m", "autograder", "hand-grade", str(out), "--port", "0",
                               "--export", "canvas", "--export-file", str(canvas)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = next(line.strip() for line in server.stdout if line.strip().startswith("http://127.0.0.1:"))
        base = url.split("/?")[0]
        with pytest.raises(urllib.error.HTTPError, match="403") as closed:  # without the token the page is closed
            urllib.request.urlopen(f"{base}/item/0")
        assert "script-src 'self'" in closed.value.headers["Content-Security-Policy"]
        with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
            browser = p.chromium.launch_persistent_context(profile, executable_path=chromium, headless=True,
                                                           args=CHROMIUM_ARGS, viewport={"width": 1100, "height": 900})
            page = browser.new_page()
            page.goto(url)
            expect(page.locator("#progress")).to_have_text("4 of 4 left")
            expect(page.locator("#student")).to_have_text("alice")
            expect(page.locator("#question")).to_contain_text("Hyper-parameter study")
            expect(page.locator("#rubric")).to_contain_text("at least five settings")
            assert page.locator("#answer math").count() == 2 and page.locator("#answer table").count() == 1
            page.fill("#points", "7")
            page.fill("#comment", "Good table; say why smaller patches cost more.")
            page.press("#points", "Enter")  # saves, then the next answer: mallory's, the canary
            expect(page.locator("#saved")).to_be_visible()
            expect(page.locator("#student")).to_have_text("mallory")
            expect(page.locator("#answer")).to_contain_text("<script>window.pwned = 'script'</script>")
            assert page.evaluate("window.pwned") is None, "the student's HTML ran in the TA's browser"
            page.fill("#points", "11")  # out of range: refused, nothing saved
            page.press("#points", "Enter")
            expect(page.locator("#error")).to_contain_text("from 0 to 10")
            page.fill("#points", "3")
            page.locator("#comment").press("Control+Enter")
            expect(page.locator("#progress")).to_have_text("2 of 4 left")
            page.keyboard.press("Alt+ArrowLeft")  # back to mallory's answer, with its grade
            expect(page.locator("#points")).to_have_value("3")
            page.click("#toggle-ids")
            expect(page.locator("#student")).to_have_text("submission 2")
            page.locator("#points").blur()
            page.keyboard.press("k")  # previous, outside the fields
            expect(page.locator("#student")).to_have_text("submission 1")
            assert page.evaluate("window.pwned") is None
            screenshot = os.environ.get("HAND_GRADING_SCREENSHOT")  # docs/hand_grading.png: README
            if screenshot:
                page.click("#toggle-ids")
                page.screenshot(path=screenshot, clip={"x": 0, "y": 0, "width": 1100, "height": 670})
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
    with open(out / "gradebook.csv", newline="") as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f)}
    assert (rows["alice"]["hand:analysis"], rows["mallory"]["hand:analysis"]) == ("7", "3")
    assert (rows["alice"]["total"], rows["mallory"]["total"], rows["carol"]["status"]) == ("7", "3", "no-submission")
    assert "> Good table; say why smaller patches cost more." in (out / "feedback" / "alice.md").read_text()
    with open(canvas, newline="") as f:
        assert {r["SIS User ID"]: r["vit"] for r in csv.DictReader(f)} == {"alice": "7", "mallory": "3", "carol": "0"}
    plain = tmp_path / "course.csv"
    export_grades(Gradebook.read(out / "gradebook.json"), "csv", plain)
    with open(plain, newline="") as f:
        assert {r["student_id"]: (r["vit"], r["vit:hand:analysis"]) for r in csv.DictReader(f)} == {
            "alice": ("7", "7"), "mallory": ("3", "3"), "carol": ("0", "")}


def test_the_page_refuses_a_folder_that_was_not_graded(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "autograder", "hand-grade", str(tmp_path), "--port", "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "no gradebook to add hand grades to" in proc.stderr
    assert "Traceback" not in proc.stderr
    graded_batch(tmp_path)
    with socket.socket() as busy:  # a port already taken: said, with the way out
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        proc = subprocess.run([sys.executable, "-m", "autograder", "hand-grade", str(tmp_path), "--port",
                               str(busy.getsockname()[1])], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "pass another --port" in proc.stderr and "Traceback" not in proc.stderr

"""One scoring rule, every output (docs/instructors.md, "How scores add up"): random gradebooks, and every place a TA or a student
reads a number agrees with it.

The rule: a test not judged (skipped: the threshold budget could not decide, a CUDA-only test, needs review) earns
nothing and is left out of the row's max as well; score and max_score are sums over the judged tests; total and
max_total add the hand-graded cells (a pending one earns 0); a row's percentage is its score over its own max; the
batch's mean percentage is the mean of the rows'.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import random
import re
from pathlib import Path

import pytest

from autograder.assignments import load_assignment
from autograder.deploy.export import export_grades
from autograder.pipeline.gradebook import Gradebook, build_gradebook, feedback_text, format_summary, format_table, write_outputs
from autograder.deploy.gradescope import to_results
from autograder.pipeline.survey import Submission
from autograder.pipeline.results import SubmissionResult
from autograder.pipeline.results import TestResult as Outcome  # (a name pytest does not collect)

ASSIGNMENT = load_assignment("vit")  # (its hand-graded cells: analysis 10, paper_review 5)
TESTS = [("G1::a", "G1", 1.0), ("G1::b", "G1", 2.5), ("G2::c", "G2", 3.0), ("G2::d", "G2", 4.0), ("T::e", "Thresholds", 6.0)]


def random_batch(rng: random.Random) -> tuple[list[tuple], dict]:
    results = []
    for i in range(rng.randint(1, 6)):
        if rng.random() < 0.15:
            results.append((Submission(f"s{i}", Path(f"s{i}.tar.gz")),
                            SubmissionResult.without_results("bad-archive", f"s{i}.tar.gz could not be unpacked")))
            continue
        tests = []
        for tid, group, points in TESTS:
            kind = rng.choice(["passed", "failed", "skipped", "review", "missing"])
            if kind == "passed":
                tests.append(Outcome(tid, tid, group, points, points, "passed", ""))
            elif kind == "failed":
                tests.append(Outcome(tid, tid, group, points, 0.0, "failed", "wrong"))
            elif kind == "skipped":
                tests.append(Outcome(tid, tid, group, points, 0.0, "skipped",
                                        "not judged on this grader: accuracy between 80% and 90% after 300 of 10,000"))
            elif kind == "review":
                tests.append(Outcome(tid, tid, group, points, 0.0, "skipped", "needs review: an integrity check"))
        results.append((Submission(f"s{i}", Path(f"s{i}.ipynb")), SubmissionResult("ok", tests=tests)))
    hand = {(sub.student_id, gid): float(rng.randint(0, 5)) for sub, _ in results for gid in ("analysis", "paper_review")
            if rng.random() < 0.5}
    return results, hand


@pytest.mark.parametrize("seed", range(40))
def test_every_output_follows_the_one_rule(seed, tmp_path):
    results, hand = random_batch(random.Random(seed))
    gradebook = build_gradebook(ASSIGNMENT, results, hand)
    write_outputs(gradebook, tmp_path)
    with open(tmp_path / "gradebook.csv", newline="") as f:
        table = {r["student_id"]: r for r in csv.DictReader(f)}
    export, _ = export_grades(gradebook, "csv", tmp_path / "course.csv")
    with open(export, newline="") as f:
        exported = {r["student_id"]: r for r in csv.DictReader(f)}
    canvas, _ = export_grades(gradebook, "canvas", tmp_path / "canvas.csv")
    with open(canvas, newline="") as f:
        canvas_totals = {r["SIS User ID"]: r["vit"] for r in csv.DictReader(f)}
    # gradebook.json read back renders every output the same (its numbers are computed again, not read)
    again = Gradebook.read(tmp_path / "gradebook.json")
    assert again.to_dict() == json.loads((tmp_path / "gradebook.json").read_text())
    assert (format_table(again), format_summary(again)) == (format_table(gradebook), format_summary(gradebook))
    terminal = format_table(gradebook)
    percentages = []
    for typed_row, row in zip(gradebook.rows, gradebook.to_dict()["submissions"], strict=True):
        sid, tests = row["student_id"], row["tests"].values()
        judged = [t for t in tests if t["outcome"] != "skipped"]
        score, max_score = sum(t["earned"] for t in judged), sum(t["points"] for t in judged)
        not_judged = sum(t["points"] for t in tests if t["outcome"] == "skipped")
        hand_earned = sum(h["earned"] or 0.0 for h in row["hand_graded"].values())
        hand_points = sum(h["points"] for h in row["hand_graded"].values())
        assert (row["score"], row["max_score"], row["not_judged_points"]) == (score, max_score, not_judged)
        assert max_score + not_judged == gradebook.max_score
        assert typed_row.percentage == (100 * score / max_score if max_score else 0.0)
        assert (row["total"], row["max_total"]) == (score + hand_earned, max_score + hand_points)
        percentages.append(100 * score / max_score if max_score else 0.0)
        # gradebook.csv: the same numbers, and each not-judged test marked as such
        cells = table[sid]
        assert [float(cells[k]) for k in ("score", "max_score", "total", "max_total", "not_judged_points")] == \
               [score, max_score, score + hand_earned, max_score + hand_points, not_judged]
        for tid, t in row["tests"].items():
            expected = ("needs review" if t["message"].startswith("needs review") else "skipped") \
                if t["outcome"] == "skipped" else f"{t['earned']:g}"
            assert cells[tid] == expected, (tid, t)
        # the course export: total, autograded score and the points not judged
        assert [float(exported[sid][f"vit{k}"]) for k in ("", ":autograded", ":not_judged")] == \
               [score + hand_earned, score, not_judged]
        assert float(canvas_totals[sid]) == score + hand_earned
        # the student's feedback and the terminal table
        text = feedback_text(gradebook, typed_row)
        assert f"**Autograded score: {score:g} / {max_score:g}**" in text
        assert (f"{not_judged:g} more points were not judged" in text) == bool(not_judged)
        assert re.search(rf"^{sid}\s+\S+\s+{score:g}/{max_score:g}\s", terminal, re.M), terminal
        # Gradescope: the row's score, the judged tests' points, no points at all on a test not judged
        results_json = to_results(dataclasses.replace(gradebook, rows=[typed_row]), "visible", 1.0)
        assert results_json["score"] == score
        scored = [t for t in results_json["tests"] if "score" in t]
        assert sum(t["score"] for t in scored) == score and sum(t["max_score"] for t in scored) == max_score
        assert sum(1 for t in results_json["tests"] if "score" not in t) == sum(1 for t in tests if t["outcome"] == "skipped")
    summary = format_summary(gradebook)
    mean = sum(r.score for r in gradebook.rows) / len(gradebook.rows)
    assert f"Mean score {mean:.1f} / {sum(t.points for t in gradebook.tests):g}; mean percentage " \
           f"{sum(percentages) / len(percentages):.0f} %" in summary
    partly = sum(1 for r in gradebook.rows if r.not_judged_points)
    assert (f"{partly} row(s) with points not judged" in summary) == bool(partly)

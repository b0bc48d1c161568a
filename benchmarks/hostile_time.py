"""What hostile ViT submissions cost the grader in time, next to the reference and the per-submission budget.

    python benchmarks/hostile_time.py                    # reference, infinite loop (trained), 500 MB of output
    python benchmarks/hostile_time.py --samples reference hostile_exit

Each sample is graded alone by `grade_folder` (one judge, one sandboxed worker), end to end. The table shows
its status, wall seconds, the budget that bounds it (the assignment's submission_timeout_s in source/vit/spec.py, or
--submission-timeout), and two ratios: seconds / budget (must stay at most 1 plus the judge's own grace)
and seconds / the reference's seconds. The infinite loop sits in `MLP.forward` of a submission with
trained weights, so it meets the MLP layer test's call limit and then the accuracy evaluation's limit.

A benchmark: it prints a table and asserts nothing.
"""
from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autograder.assignments import load_assignment  # noqa: E402
from autograder.pipeline.grade import grade_folder  # noqa: E402
from autograder.options import GradeOptions  # noqa: E402
from autograder.samples import build_samples  # noqa: E402

ASSIGNMENT = "vit"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", nargs="+", default=["reference", "hostile_infinite_loop", "hostile_print_500mb"])
    parser.add_argument("--submission-timeout", type=float, default=None)
    args = parser.parse_args()
    options = GradeOptions(workers=1, submission_timeout=args.submission_timeout)
    budget = options.budget(load_assignment(ASSIGNMENT))
    work = Path(tempfile.mkdtemp(prefix="hostile-time-"))
    try:
        archives = {p.name.removesuffix(".tar.gz"): p for p in build_samples(ASSIGNMENT, work / "all")}
        rows = []
        for name in args.samples:
            folder = work / "one" / name
            folder.mkdir(parents=True)
            shutil.copy(archives[name], folder)
            started = time.monotonic()
            gradebook = grade_folder(folder, ASSIGNMENT, work / "grades" / name, options, progress=lambda m: None)
            seconds = time.monotonic() - started
            row = gradebook["submissions"][0]
            rows.append((name, row["status"], f"{row['score']:g}/{row['max_score']:g}", seconds))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    reference = next((s for n, _, _, s in rows if n == "reference"), None)
    print(f"{ASSIGNMENT}, {platform.processor() or platform.machine()}, budget {budget:.0f} s per submission\n")
    print("| sample | status | score | seconds | budget | seconds / budget | seconds / reference |")
    print("|---|---|---|---|---|---|---|")
    for name, status, score, seconds in rows:
        versus = f"{seconds / reference:.1f}x" if reference else "-"
        print(f"| {name} | {status} | {score} | {seconds:.1f} | {budget:.0f} | {seconds / budget:.2f} | {versus} |")


if __name__ == "__main__":
    main()

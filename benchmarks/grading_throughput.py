"""Grading throughput: wall time of `autograder.grade.grade_folder` on the ViT sample submissions.

    python benchmarks/grading_throughput.py                       # --workers 1 2, one run each
    python benchmarks/grading_throughput.py --workers 2 --repeat 3

Steps:
  1. `build_samples("vit", <tmp>/samples)` writes every sample submission (the reference with
     trained weights, the untouched release, planted bugs, hostile ones). The reference weights are
     trained once by the reference notebook's own cells and cached in build/cache/ (minutes the
     first time, or after the notebook changes; reused afterwards).
  2. For each submission set, (a) the reference sample alone and (b) all samples, and each
     `--workers` value, `grade_folder` is timed end to end: unpacking, one judge subprocess
     (pytest + sandboxed worker) per submission, the gradebook and feedback files.

Each judge gets max(1, cpu_count // workers) torch threads, as in `grade.judge`. The hostile samples
are part of the cost: the infinite loop runs into the per-call timeout (20 s by default), so
"seconds per submission" over all samples is not the cost of an ordinary submission; the
reference-only row is the closer estimate for that.

Everything is written to a temporary folder, removed at the end unless --keep is given. This is a
benchmark: it prints a table and makes no assertion about the numbers.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from autograder.assignments import PROJECT_ROOT, load_assignment  # noqa: E402
from autograder.grade import grade_folder  # noqa: E402
from autograder.options import GradeOptions  # noqa: E402
from autograder.samples import build_samples, reference_cache, training_cells  # noqa: E402

ASSIGNMENT = "vit"


def reference_weights_cached() -> bool:
    """Whether build_samples will reuse trained reference weights (same folder naming as train_reference)."""
    assignment = load_assignment(ASSIGNMENT)
    return (reference_cache(assignment, training_cells(assignment), PROJECT_ROOT / "build" / "cache") / "TRAINED").exists()


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to time (default: 1 2)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per (set, workers) pair (default 1)")
    parser.add_argument("--sets", nargs="+", choices=["reference", "all"], default=["reference", "all"],
                        help="submission sets to time (default: reference all)")
    parser.add_argument("--timeout", type=float, default=GradeOptions.call_timeout,
                        help=f"seconds per layer-test call, as `grade --timeout` (default {GradeOptions.call_timeout:g})")
    parser.add_argument("--keep", type=Path, help="write samples and gradebooks here and keep them (default: a temp folder, removed)")
    args = parser.parse_args(argv)
    if args.repeat < 1 or any(w < 1 for w in args.workers):
        parser.error("--repeat and --workers must be at least 1")

    if args.keep:
        root = args.keep.resolve()
        root.mkdir(parents=True, exist_ok=True)
    else:
        root = Path(tempfile.mkdtemp(prefix="grading-throughput-"))
    load_before = os.getloadavg()[0]
    try:
        cached = reference_weights_cached()
        log(f"Building the '{ASSIGNMENT}' sample submissions in {root / 'samples'} "
            f"({'reference weights cached' if cached else 'training the reference weights first: minutes'}) ...")
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # training logs, if any, stay off the table
            archives = build_samples(ASSIGNMENT, root / "samples")
        build_seconds = time.perf_counter() - t0

        reference_only = root / "reference-only"
        reference_only.mkdir(exist_ok=True)
        shutil.copy2(root / "samples" / "reference.tar.gz", reference_only / "reference.tar.gz")  # a copy, not a link
        sets = {"reference": ("reference only", reference_only), "all": ("all samples", root / "samples")}

        rows, last_all = [], None
        for key in args.sets:
            label, folder = sets[key]
            for workers in args.workers:
                walls, statuses = [], Counter()
                for run in range(args.repeat):
                    out = root / "grades" / f"{key}-w{workers}-r{run}"
                    shutil.rmtree(out, ignore_errors=True)
                    options = GradeOptions(workers=workers, call_timeout=args.timeout)
                    start = time.perf_counter()
                    gradebook = grade_folder(folder, ASSIGNMENT, out, options, progress=log)
                    walls.append(time.perf_counter() - start)
                    statuses = Counter(row["status"] for row in gradebook["submissions"])
                    if key == "all":
                        last_all = (workers, gradebook)
                n = len(gradebook["submissions"])
                median = statistics.median(walls)
                rows.append([label, str(n), str(workers), str(max(1, (os.cpu_count() or 2) // workers)),
                             str(len(walls)), f"{median:.1f}", f"{min(walls):.1f}", f"{median / n:.1f}",
                             ", ".join(f"{s} {c}" for s, c in sorted(statuses.items()))])
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    device = f"cuda ({torch.cuda.get_device_name()})" if torch.cuda.is_available() else "no CUDA GPU"
    print(f"\nGrading throughput, assignment '{ASSIGNMENT}', {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    print(f"machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), {device}; "
          f"torch {torch.__version__}; per-call timeout {args.timeout:g} s; "
          f"1-min load average before / after {load_before:.2f} / {os.getloadavg()[0]:.2f}")
    print(f"sample build: {len(archives)} archives in {build_seconds:.2f} s "
          f"(reference weights {'cached' if cached else 'trained in this run'})\n")
    print(markdown_table(["submissions", "count", "workers", "torch threads / judge", "runs", "wall s (median)",
                          "wall s (min)", "s / submission", "statuses"], rows))
    if last_all:
        workers, gradebook = last_all
        print(f"\nPer submission (all samples, workers {workers}, last run; judge seconds are per judge, "
              "measured inside it, and overlap when workers > 1):\n")
        print(markdown_table(["submission", "status", "score", "judge s"],
                             [[r["student_id"], r["status"], f"{r['score']:g} / {r['max_score']:g}",
                               "" if r.get("seconds") is None else f"{r['seconds']:.1f}"]
                              for r in gradebook["submissions"]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

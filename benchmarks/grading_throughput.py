"""Grading throughput: seconds per submission of `autograder.grade.grade_folder` on the ViT sample submissions, with
judges forked from judge servers (--judge server, the default) and with a fresh interpreter per judge (process), and
of `nbgrader autograde` on the same notebook (--nbgrader).

    python benchmarks/grading_throughput.py                                  # both judge kinds, --workers 2
    python benchmarks/grading_throughput.py --sets ordinary --copies 6 --workers 1 2 --nbgrader

Steps:
  1. `build_samples("vit", <tmp>/samples)` writes every sample submission (the reference with
     trained weights, the untouched release, planted bugs, hostile ones). The reference weights are
     trained once by the reference notebook's own cells and cached in build/cache/ (minutes the
     first time, or after the notebook changes; reused afterwards).
  2. For each submission set, (a) "ordinary": --copies copies of the reference sample (complete, trained, full
     marks) and (b) "all": every sample, and each --judge kind and --workers value, `grade_folder` is timed end to
     end: the preflight (one judge of the release notebook), unpacking, one judge (pytest + a new sandboxed worker)
     per submission, the gradebook and feedback files. Besides the wall time, the table gives the median seconds of
     one submission from unpacking to its result, and the CPU seconds per submission of the grader and every process
     the batch started (judges, judge servers, sandboxed workers), read from a CPU-accounting cgroup this process
     joins (TreeCpu; getrusage's RUSAGE_CHILDREN, shown beside it, misses the workers), which a busy machine inflates
     less. For the
     ordinary set a one-copy batch is timed too, so that the table gives the marginal cost of a submission:
     (batch of N - batch of 1) / (N - 1), the batch's fixed costs (preflight, judge servers' imports) left out.
  3. With --nbgrader: `nbgrader autograde` of the reference notebook in a scratch course folder, in quick mode
     (DLCOURSE_QUICK=1: nbgrader re-executes every cell, training included, so it is run with 2 000 images and one
     epoch per training cell; the real recipe takes minutes). nbgrader runs the student's notebook without a sandbox.

Each judge gets max(1, cpu_count // workers) torch threads, as in `grade.judge`. The hostile samples
are part of the cost of "all": the infinite loop runs into the per-call timeout (20 s by default), so
seconds per submission over all samples is not the cost of an ordinary submission.

Everything is written to a temporary folder, removed at the end unless --keep is given. This is a
benchmark: it prints a table and makes no assertion about the numbers.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
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


def children_cpu_seconds() -> float:
    """User + system seconds of every process this one has started and reaped (and, recursively, theirs): what
    getrusage sees, which misses processes their parents never waited for (a sandboxed worker's own tree)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class TreeCpu:
    """CPU seconds of this process and of everything it starts, workers in their sandboxes included: a cgroup of the
    CPU accounting controller that this process joins at start (its children inherit it; the sandbox moves workers
    into memory and pids cgroups only). v1 `cpuacct.usage` or v2 `cpu.stat`; needs the right to make a cgroup (root).
    Without it, `source` says so and the reading falls back to getrusage (this process and its reaped children)."""

    def __init__(self):
        self.usage: Path | None = None
        name = f"grading-throughput-{os.getpid()}"
        for folder, usage in ((Path("/sys/fs/cgroup/cpuacct") / name, "cpuacct.usage"),
                              (Path("/sys/fs/cgroup") / name, "cpu.stat")):
            try:
                if not folder.parent.is_dir() or (usage == "cpu.stat" and not (folder.parent / "cgroup.subtree_control").exists()):
                    continue
                folder.mkdir(exist_ok=True)
                (folder / "cgroup.procs").write_text(str(os.getpid()))
                self.usage = folder / usage
                self.source = f"a cgroup ({folder}/{usage}) around this process and everything it starts"
                return
            except OSError:
                continue
        self.source = "getrusage of this process and its reaped children (no cgroup could be made: not root?)"

    def seconds(self) -> float:
        if self.usage is None:
            me = resource.getrusage(resource.RUSAGE_SELF)
            return children_cpu_seconds() + me.ru_utime + me.ru_stime
        text = self.usage.read_text()
        if self.usage.name == "cpuacct.usage":
            return int(text) / 1e9
        return int(next(line.split()[1] for line in text.splitlines() if line.startswith("usage_usec"))) / 1e6


CPU = TreeCpu()


def time_batch(folder: Path, out: Path, options: GradeOptions) -> dict:
    """Grade `folder` into a fresh `out`; wall and CPU seconds, the preflight's seconds and the gradebook."""
    shutil.rmtree(out, ignore_errors=True)
    said = []

    def progress(message: str) -> None:
        said.append(message)
        log(message)

    cpu, reaped, start = CPU.seconds(), children_cpu_seconds(), time.perf_counter()
    gradebook = grade_folder(folder, ASSIGNMENT, out, options, progress=progress)
    wall, cpu, reaped = time.perf_counter() - start, CPU.seconds() - cpu, children_cpu_seconds() - reaped
    preflight = next((float(m.group(1)) for line in said if (m := re.match(r"Preflight passed in ([\d.]+) s", line))), None)
    return {"wall": wall, "cpu": cpu, "reaped": reaped, "preflight": preflight, "gradebook": gradebook}


NBGRADER_CONFIG = """c = get_config()
c.CourseDirectory.root = {root!r}
c.CourseDirectory.course_id = "benchmark"
c.CourseDirectory.db_url = "sqlite:///{root}/gradebook.db"
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "spec.py", "samples.py"]
c.ExecutePreprocessor.timeout = 1800
"""


def time_nbgrader(root: Path, reference: Path) -> dict:
    """`nbgrader autograde` of the reference sample's notebook for one student, in quick mode (DLCOURSE_QUICK=1), in a
    scratch course folder: generate_assignment first (untimed: it registers the notebook), then autograde (timed)."""
    import tarfile

    course = root / "nbgrader"
    shutil.rmtree(course, ignore_errors=True)
    (course / "source" / ASSIGNMENT).mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", course / "source" / ASSIGNMENT)
    (course / "nbgrader_config.py").write_text(NBGRADER_CONFIG.format(root=str(course)))
    submitted = course / "submitted" / "alice" / ASSIGNMENT
    submitted.mkdir(parents=True)
    with tarfile.open(reference) as archive:
        member = archive.getmember(f"{ASSIGNMENT}/{ASSIGNMENT}.ipynb")
        (submitted / f"{ASSIGNMENT}.ipynb").write_bytes(archive.extractfile(member).read())
    env = {**os.environ, "DLCOURSE_QUICK": "1", "MPLBACKEND": "Agg"}

    def nbgrader(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "nbgrader", *args, "--log-level=WARN"], cwd=course, env=env,
                              capture_output=True, text=True)

    for step in (("generate_assignment", ASSIGNMENT, "--force"), ("db", "student", "add", "alice")):
        done = nbgrader(*step)
        if done.returncode != 0:
            raise SystemExit(f"nbgrader {' '.join(step)} failed:\n{done.stderr[-3000:]}")
    cpu, start = CPU.seconds(), time.perf_counter()
    done = nbgrader("autograde", ASSIGNMENT, "--force")
    wall, cpu = time.perf_counter() - start, CPU.seconds() - cpu
    graded = (course / "autograded" / "alice" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").exists()
    if done.returncode != 0 or not graded:
        log(done.stdout[-3000:] + done.stderr[-3000:])
    return {"wall": wall, "cpu": cpu, "ok": done.returncode == 0 and graded}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[2], help="worker counts to time (default: 2)")
    parser.add_argument("--judge", nargs="+", choices=["process", "server"], default=["process", "server"],
                        help="judge kinds to time (default: process server; the ratio is against process)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per (set, judge, workers) (default 1)")
    parser.add_argument("--sets", nargs="+", choices=["ordinary", "all"], default=["ordinary"],
                        help="submission sets to time (default: ordinary)")
    parser.add_argument("--copies", type=int, default=4, help="copies of the reference in the ordinary set (default 4)")
    parser.add_argument("--nbgrader", action="store_true", help="also time nbgrader autograde (quick mode)")
    parser.add_argument("--timeout", type=float, default=GradeOptions.call_timeout,
                        help=f"seconds per layer-test call, as `grade --timeout` (default {GradeOptions.call_timeout:g})")
    parser.add_argument("--keep", type=Path, help="write samples and gradebooks here and keep them (default: a temp folder, removed)")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.copies < 1 or any(w < 1 for w in args.workers):
        parser.error("--repeat, --copies and --workers must be at least 1")

    if args.keep:
        root = args.keep.resolve()
        root.mkdir(parents=True, exist_ok=True)
    else:
        root = Path(tempfile.mkdtemp(prefix="grading-throughput-"))
    load_before = os.getloadavg()[0]
    nbgrader_run = None
    try:
        cached = reference_weights_cached()
        log(f"Building the '{ASSIGNMENT}' sample submissions in {root / 'samples'} "
            f"({'reference weights cached' if cached else 'training the reference weights first: minutes'}) ...")
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # training logs, if any, stay off the table
            archives = build_samples(ASSIGNMENT, root / "samples")
        build_seconds = time.perf_counter() - t0

        ordinary = root / "ordinary"
        ordinary.mkdir(exist_ok=True)
        for i in range(args.copies):  # copies, not links (the grader refuses symbolic links)
            shutil.copy2(root / "samples" / "reference.tar.gz", ordinary / f"student{i:02d}.tar.gz")
        single = root / "single"  # the ordinary set's fixed costs: preflight, judge servers, one submission
        single.mkdir(exist_ok=True)
        shutil.copy2(root / "samples" / "reference.tar.gz", single / "student00.tar.gz")
        sets = {"ordinary": (f"{args.copies} x reference", ordinary), "all": ("all samples", root / "samples")}

        rows, per_submission, last_all = [], {}, None
        for key in args.sets:
            label, folder = sets[key]
            for workers in args.workers:
                for judge in args.judge:
                    runs, singles = [], []
                    for run in range(args.repeat):
                        options = GradeOptions(workers=workers, call_timeout=args.timeout, judge=judge)
                        runs.append(time_batch(folder, root / "grades" / f"{key}-{judge}-w{workers}-r{run}", options))
                        if key == "all":
                            last_all = (workers, judge, runs[-1]["gradebook"])
                        elif args.copies > 1:
                            singles.append(time_batch(single, root / "grades" / f"single-{judge}-w{workers}-r{run}",
                                                      options))
                    submissions = runs[-1]["gradebook"]["submissions"]
                    n = len(submissions)
                    wall = statistics.median(r["wall"] for r in runs)
                    each = statistics.median(row["wall_s"] for r in runs for row in r["gradebook"]["submissions"])
                    per_submission[(key, workers, judge)] = wall / n
                    statuses = Counter(row["status"] for row in submissions)
                    cpu = statistics.median(r["cpu"] for r in runs)
                    reaped = statistics.median(r["reaped"] for r in runs)
                    # Each submission past the first, without the batch's fixed costs: (N copies - 1 copy) / (N - 1).
                    marginal = [f"{(value - statistics.median(r[measure] for r in singles)) / (n - 1):.1f}"
                                for measure, value in (("wall", wall), ("cpu", cpu))] if singles else ["-", "-"]
                    rows.append([label, str(n), judge, str(workers), str(len(runs)), f"{wall:.1f}",
                                 f"{statistics.median(r['preflight'] or 0 for r in runs):.1f}", f"{wall / n:.1f}",
                                 f"{each:.1f}", f"{cpu / n:.1f}", f"{reaped / n:.1f}", *marginal,
                                 ", ".join(f"{s} {c}" for s, c in sorted(statuses.items()))
                                 + f"; mean score {statistics.mean(row['score'] for row in submissions):g} / "
                                   f"{submissions[0]['max_score']:g}"])
        for row in rows:  # the ratio of seconds per submission against --judge process, same set and workers
            key = next(k for k, v in sets.items() if v[0] == row[0])
            base = per_submission.get((key, int(row[3]), "process"))
            row.insert(8, f"{base / per_submission[(key, int(row[3]), row[2])]:.2f}" if base else "-")
        if args.nbgrader:
            log("Timing nbgrader autograde of the reference notebook (DLCOURSE_QUICK=1) ...")
            nbgrader_run = time_nbgrader(root, root / "samples" / "reference.tar.gz")
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
    print(markdown_table(["submissions", "count", "judge", "workers", "runs", "wall s (median)", "of which preflight s",
                          "wall s / submission", "speed-up vs process", "s / submission, unpack to result (median)",
                          "CPU s / submission", "getrusage CPU s / submission", "marginal wall s / submission",
                          "marginal CPU s / submission",
                          "statuses"], rows))
    print("\n(wall s / submission: the batch's wall time, preflight and judge server start-up included, over the count; "
          f"CPU s: user + sys of the grader and every process the batch started, over the count, measured by {CPU.source}; "
          "getrusage CPU s: what the grader's RUSAGE_CHILDREN sees of the same, for comparison; marginal: what each submission past "
          "the first adds, (batch of N - batch of 1) / (N - 1), from a second, one-copy batch timed right after; the "
          "marginal wall seconds mean something only when N is several times --workers.)")
    if nbgrader_run:
        ordinary_best = min((v for (k, _, _), v in per_submission.items() if k == "ordinary"), default=None)
        print(f"\nnbgrader autograde, 1 x reference notebook, quick mode (DLCOURSE_QUICK=1: every cell re-executed, "
              f"training on 2 000 images for one epoch; no sandbox): wall {nbgrader_run['wall']:.1f} s, "
              f"CPU {nbgrader_run['cpu']:.1f} s, {'graded' if nbgrader_run['ok'] else 'FAILED (see the log above)'}"
              + (f"; ratio nbgrader / best ordinary wall s per submission here: {nbgrader_run['wall'] / ordinary_best:.2f}"
                 if ordinary_best else ""))
    if last_all:
        workers, judge, gradebook = last_all
        print(f"\nPer submission (all samples, --judge {judge}, workers {workers}, last run; judge seconds are measured "
              "inside each judge and overlap when workers > 1):\n")
        print(markdown_table(["submission", "status", "score", "judge s", "unpack to result s"],
                             [[r["student_id"], r["status"], f"{r['score']:g} / {r['max_score']:g}",
                               "" if r.get("seconds") is None else f"{r['seconds']:.1f}", f"{r['wall_s']:.1f}"]
                              for r in gradebook["submissions"]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Grading throughput: seconds per submission of `autograder.pipeline.grade.grade_folder` on the ViT sample submissions, with
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
     end: the preflight (one judge of the release notebook), unpacking, one judge (pytest + a sandboxed worker, forked from the judge server's worker template where it can be)
     per submission, the gradebook and feedback files. Besides the wall time, the table gives the median seconds of
     one submission from unpacking to its result, and the CPU seconds per submission of the grader and every process
     the batch started (judges, judge servers, sandboxed workers), read from a CPU-accounting cgroup this process
     joins (TreeCpu; where none can be made, psutil over the process tree, and the table says which; getrusage's
     RUSAGE_CHILDREN, shown beside it, misses the workers), which a busy machine inflates less, with the ratios of
     --judge process's wall and CPU seconds per submission over each judge's, and a second table splitting the CPU
     by process kind (grader, judge server, judges, sandbox launcher, worker template, sandboxed workers; psutil). For the
     ordinary set a one-copy batch is timed too, so that the table gives the marginal cost of a submission:
     (batch of N - batch of 1) / (N - 1), the batch's fixed costs (preflight, judge servers' imports) left out.
  3. With --nbgrader: `nbgrader autograde` of the reference notebook in a scratch course folder, in quick mode
     (DLCOURSE_QUICK=1: nbgrader re-executes every cell, training included, so it is run with 2 000 images and one
     epoch per training cell; the real recipe takes minutes). nbgrader runs the student's notebook without a sandbox.

Each judge gets max(1, cpu_count // workers) torch threads, as in `judges.judge`. The hostile samples
are part of the cost of "all": the infinite loop runs into the per-call timeout (20 s by default), so
seconds per submission over all samples is not the cost of an ordinary submission.

Everything is written to a temporary folder, removed at the end unless --keep is given. This is a
benchmark: it prints a table and makes no assertion about the numbers.
"""
from __future__ import annotations

import argparse
import atexit
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
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # noqa: E402
import torch  # noqa: E402

from autograder.assignments import PROJECT_ROOT, load_assignment  # noqa: E402
from autograder.pipeline.grade import grade_folder  # noqa: E402
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


GRADER = "grader (this process, less the sampling below)"
LAUNCHER = "sandbox launcher (confine.py, bwrap)"
ENDED = "other (ended before it was first read)"
# --judge's choices: the GradeOptions of each
JUDGE_KINDS = {"process": {"judge": "process"}, "server": {"judge": "server"},
               "server-started": {"judge": "server", "worker_template": False}}


def process_kind(proc, me: int) -> str:
    """What a process of the grading tree is, from its command line (forked judges keep their server's)."""
    try:
        cmdline, name = " ".join(proc.cmdline()), proc.name()
    except (psutil.Error, OSError):  # ended (a zombie has no command line) before its first reading
        return ENDED
    try:
        parent = proc.parent()
        parent_cmdline, parent_name = (" ".join(parent.cmdline()), parent.name()) if parent else ("", "")
    except (psutil.Error, OSError):  # its parent ended first: judged by its own command line alone
        parent_cmdline, parent_name = "", ""
    if proc.pid == me:
        return GRADER
    if "confine.py" in cmdline or name == "bwrap":  # (their command lines name the worker's program)
        return LAUNCHER
    if "sandbox/worker.py" in cmdline:
        return "sandboxed worker"
    if "sandbox/template.py" in cmdline:  # a worker forked from the template keeps its command line
        forked = "sandbox/template.py" in parent_cmdline and parent_name != "bwrap"
        return "sandboxed worker" if forked else "worker template (imports once per judge server)"
    if "autograder.pipeline.judge_server" in cmdline:
        return "judge (forked)" if "autograder.pipeline.judge_server" in parent_cmdline else "judge server"
    if "-m pytest" in cmdline:
        return "judge (process)"
    if "nbgrader" in cmdline or "ipykernel" in cmdline:
        return "nbgrader"
    return "other"


class TreeSampler:
    """CPU seconds of every process in this process's tree, by kind (process_kind), from psutil: each process's
    user + system time read every `interval` seconds, its last reading kept once it is gone. A process that starts and
    ends between two readings, and the last `interval` of each, are missed: a lower bound, for where no cgroup can be
    made, and for the breakdown by kind. The sampling's own CPU seconds (`overhead`, this process's) are counted apart,
    so that they can be left out of what the batch cost."""

    def __init__(self, interval: float = 0.1):
        self.interval, self.last, self.kinds, self.overhead = interval, {}, {}, 0.0
        self.me = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for proc in [self.me, *self.me.children(recursive=True)]:
            try:
                key = (proc.pid, proc.create_time())
                times = proc.cpu_times()
            except (psutil.Error, OSError):
                continue
            # A launcher execs what it launches (bwrap the worker, confine.py bwrap) under the same pid: asked again.
            if key not in self.kinds or self.kinds[key] in (LAUNCHER, ENDED):
                self.kinds[key] = process_kind(proc, self.me.pid)
            self.last[key] = times.user + times.system

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            started = time.thread_time()
            with contextlib.suppress(psutil.Error, OSError):
                self._read()
            self.overhead += time.thread_time() - started

    def seconds(self) -> float:
        self._read()
        return sum(self.last.values())

    def by_kind(self) -> dict[str, float]:
        self._read()
        totals: dict[str, float] = {}
        for key, value in self.last.items():
            totals[self.kinds[key]] = totals.get(self.kinds[key], 0.0) + value
        return totals


class TreeCpu:
    """CPU seconds of this process and of everything it starts, workers in their sandboxes included: a cgroup of the
    CPU accounting controller that this process joins at start (its children inherit it; the sandbox moves workers
    into memory and pids cgroups only). v1 `cpuacct.usage` or v2 `cpu.stat`; needs the right to make a cgroup (root).
    Without it, `source` says so and the reading falls back to psutil over the process tree (TreeSampler)."""

    def __init__(self):
        self.usage: Path | None = None
        self.sampler = TreeSampler()  # the breakdown by kind, and the fallback
        name = f"grading-throughput-{os.getpid()}"
        for folder, usage in ((Path("/sys/fs/cgroup/cpuacct") / name, "cpuacct.usage"),
                              (Path("/sys/fs/cgroup") / name, "cpu.stat")):
            try:
                if not folder.parent.is_dir() or (usage == "cpu.stat" and not (folder.parent / "cgroup.subtree_control").exists()):
                    continue
                folder.mkdir(exist_ok=True)
                (folder / "cgroup.procs").write_text(str(os.getpid()))
                atexit.register(self._remove, folder)
                self.usage = folder / usage
                self.source = f"a cgroup ({folder}/{usage}) around this process and everything it starts"
                return
            except OSError:
                continue
        self.source = ("psutil over this process's tree, read every 0.1 s (no cgroup could be made: not root?); "
                       "a lower bound")

    @staticmethod
    def _remove(folder: Path) -> None:
        """Leave the group for its parent and remove it (a group with no process left can be removed)."""
        with contextlib.suppress(OSError):
            (folder.parent / "cgroup.procs").write_text(str(os.getpid()))
            folder.rmdir()

    def seconds(self) -> float:
        if self.usage is None:
            return self.sampler.seconds()
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

    kinds, overhead = CPU.sampler.by_kind(), CPU.sampler.overhead
    cpu, reaped, start = CPU.seconds(), children_cpu_seconds(), time.perf_counter()
    gradebook = grade_folder(folder, ASSIGNMENT, out, options, progress=progress).to_dict()
    wall, cpu, reaped = time.perf_counter() - start, CPU.seconds() - cpu, children_cpu_seconds() - reaped
    kinds = {kind: value - kinds.get(kind, 0.0) for kind, value in CPU.sampler.by_kind().items()}
    overhead = CPU.sampler.overhead - overhead  # the sampling thread's: not the grading's
    cpu -= overhead
    kinds[GRADER] -= overhead
    preflight = next((float(m.group(1)) for line in said if (m := re.match(r"Preflight passed in ([\d.]+) s", line))), None)
    return {"wall": wall, "cpu": cpu, "reaped": reaped, "preflight": preflight, "gradebook": gradebook,
            "kinds": {kind: value for kind, value in kinds.items() if value > 0.005}}


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
    parser.add_argument("--judge", nargs="+", choices=list(JUDGE_KINDS), default=["process", "server"],
                        help="judge kinds to time (default: process server; the ratio is against process); "
                             "server-started: judge servers without their worker templates (grade --no-worker-template)")
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

        rows, per_submission, cpu_per_submission, last_all, breakdown = [], {}, {}, None, []
        for key in args.sets:
            label, folder = sets[key]
            for workers in args.workers:
                for judge in args.judge:
                    runs, singles = [], []
                    for run in range(args.repeat):
                        options = GradeOptions(workers=workers, call_timeout=args.timeout, **JUDGE_KINDS[judge])
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
                    cpu_per_submission[(key, workers, judge)] = cpu / n
                    kinds = sorted({k for r in runs + singles for k in r["kinds"]})
                    for kind in kinds:  # CPU by process kind: per submission, and marginal where there is a 1-copy batch
                        total = statistics.median(r["kinds"].get(kind, 0.0) for r in runs)
                        one = statistics.median(r["kinds"].get(kind, 0.0) for r in singles) if singles else None
                        breakdown.append([label, judge, str(workers), kind, f"{total / n:.2f}",
                                          "-" if one is None else f"{(total - one) / (n - 1):.2f}"])
                    reaped = statistics.median(r["reaped"] for r in runs)
                    # Each submission past the first, without the batch's fixed costs: (N copies - 1 copy) / (N - 1).
                    marginal = [f"{(value - statistics.median(r[measure] for r in singles)) / (n - 1):.1f}"
                                for measure, value in (("wall", wall), ("cpu", cpu))] if singles else ["-", "-"]
                    rows.append([label, str(n), judge, str(workers), str(len(runs)), f"{wall:.1f}",
                                 f"{statistics.median(r['preflight'] or 0 for r in runs):.1f}", f"{wall / n:.1f}",
                                 f"{cpu / n:.1f}", f"{each:.1f}", f"{reaped / n:.1f}", *marginal,
                                 ", ".join(f"{s} {c}" for s, c in sorted(statuses.items()))
                                 + f"; mean score {statistics.mean(row['score'] for row in submissions):g} / "
                                   f"{submissions[0]['max_score']:g}"])
        for row in rows:  # the ratios of wall and CPU seconds per submission, --judge process over this one
            key = next(k for k, v in sets.items() if v[0] == row[0])
            for column, measured in ((9, per_submission), (10, cpu_per_submission)):
                base = measured.get((key, int(row[3]), "process"))
                row.insert(column, f"{base / measured[(key, int(row[3]), row[2])]:.2f}" if base else "-")
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
                          "wall s / submission", "CPU s / submission", "wall: process / this", "CPU: process / this",
                          "s / submission, unpack to result (median)",
                          "getrusage CPU s / submission", "marginal wall s / submission",
                          "marginal CPU s / submission",
                          "statuses"], rows))
    print("\n(wall s / submission: the batch's wall time, preflight and judge server start-up included, over the count; "
          f"CPU s: user + sys of the grader and every process the batch started, over the count, measured by {CPU.source}, "
          "less the CPU of this script's own psutil sampling; "
          "getrusage CPU s: what the grader's RUSAGE_CHILDREN sees of the same, for comparison; marginal: what each submission past "
          "the first adds, (batch of N - batch of 1) / (N - 1), from a second, one-copy batch timed right after; the "
          "marginal wall seconds mean something only when N is several times --workers.)")
    print("\nCPU seconds by process kind (psutil over the tree, a lower bound: see TreeSampler), per submission and "
          "marginal (what each submission past the first adds):\n")
    print(markdown_table(["submissions", "judge", "workers", "process kind", "CPU s / submission",
                          "marginal CPU s / submission"], breakdown))
    if nbgrader_run:
        print(f"\nnbgrader autograde, 1 x reference notebook, quick mode (DLCOURSE_QUICK=1: every cell re-executed, "
              f"training on 2 000 images for one epoch; no sandbox): wall {nbgrader_run['wall']:.1f} s, "
              f"CPU {nbgrader_run['cpu']:.1f} s, {'graded' if nbgrader_run['ok'] else 'FAILED (see the log above)'}")
        for (key, workers, judge), wall in sorted(per_submission.items()):
            if key == "ordinary":
                print(f"  ratio nbgrader / --judge {judge} (workers {workers}) per submission: wall "
                      f"{nbgrader_run['wall'] / wall:.2f}, CPU {nbgrader_run['cpu'] / cpu_per_submission[(key, workers, judge)]:.2f}")
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

"""Training under CPU contention: the seq2seq reversal recipe's steps with the CPU idle and with one core busy, on 1
and 2 torch threads (issue 29: one epoch took 993 s instead of about 67 s while another process was busy).

    python benchmarks/contention.py               # 20 steps per run, 4 runs: 1-5 minutes on 2 cores (the busy ones vary)
    python benchmarks/contention.py --steps 10    # shorter
    python benchmarks/contention.py --threads 1 2 4

The model and recipe are the reference notebook's own (cells "reverse_data" and "reverse_hparams": a bidirectional
LSTM encoder, a Luong-attention LSTM decoder, batches of 64 sequences of 20-30 symbols), trained with
`dlcourse.translation.train_seq2seq` as the cell "reverse_train" does, but for `--steps` optimisation steps and a
validation of `--val` sequences instead of a whole epoch (313 steps, 1 000 sequences). Every run starts from the same
seeded model and data, so every run does the same work.

"One core busy": the script starts `yes > /dev/null` (one process that keeps one core busy), runs, then stops it by
its pid. "Idle" means no such process: other work on the machine is not stopped, so the 1-minute load average before
each run is printed. CPU seconds are this process's user + system time over the run (resource.getrusage
RUSAGE_SELF: all of its threads, not the `yes` process). Thread counts are applied with `dlcourse.threads.torch_threads`,
the course's own setting.

This is a benchmark: it prints a table and makes no assertion about the numbers.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from autograder.assignments import load_assignment  # noqa: E402
from autograder.samples import run_reference_cells  # noqa: E402
from dlcourse.threads import THREADS_ENV, available_cores, course_threads, torch_threads  # noqa: E402
from dlcourse.translation import train_seq2seq, with_source_lengths  # noqa: E402

ASSIGNMENT = load_assignment("seq2seq")
CELLS = [*ASSIGNMENT.spec.run_cells, "reverse_data", "reverse_hparams"]




@dataclasses.dataclass
class Run:
    threads: int
    busy: bool
    wall_s: float
    cpu_s: float
    load_before: float


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process; not the `yes` child
    return usage.ru_utime + usage.ru_stime


@contextlib.contextmanager
def one_core_busy(busy: bool):
    """While the block runs, `yes > /dev/null` keeps one core busy (when `busy`); stopped by its pid afterwards."""
    if not busy:
        yield
        return
    hog = subprocess.Popen(["yes"], stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.5)  # let it reach the scheduler before timing starts
        yield
    finally:
        os.kill(hog.pid, 15)
        hog.wait()


def train_steps(ns: dict, recipe, val: tuple[torch.Tensor, torch.Tensor]) -> None:
    ns["seed_everything"](0)
    model = ns["Seq2Seq"](ns["reverse_config"])
    with contextlib.redirect_stdout(sys.stderr):  # the epoch line; stdout is for the table
        train_seq2seq(model, ns["reverse_train"], val, recipe, forward=with_source_lengths())


def measure(ns: dict, recipe, val, threads: int, busy: bool) -> Run:
    load_before = os.getloadavg()[0]
    with torch_threads("cpu", threads=threads), one_core_busy(busy):
        started, cpu_started = time.perf_counter(), cpu_seconds()
        train_steps(ns, recipe, val)
        wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu_started
    run = Run(threads, busy, wall, cpu, load_before)
    print(f"{threads} thread(s), {'one core busy' if busy else 'idle'}: {wall:.1f} s wall, {cpu:.1f} s CPU "
          f"(load average before {load_before:.2f})", file=sys.stderr, flush=True)
    return run


def table(runs: list[Run], thread_counts: list[int]) -> str:
    by = {(r.threads, r.busy): r for r in runs}
    base = thread_counts[0]
    lines = [f"| torch threads | idle: wall s | idle: CPU s | one core busy: wall s | busy: CPU s | busy / idle (wall) "
             f"| / {base} thread(s), idle (wall) | / {base} thread(s), busy (wall) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n in thread_counts:
        idle, busy = by[(n, False)], by[(n, True)]
        lines.append(f"| {n} | {idle.wall_s:.1f} | {idle.cpu_s:.1f} | {busy.wall_s:.1f} | {busy.cpu_s:.1f} | "
                     f"{busy.wall_s / idle.wall_s:.2f} | {idle.wall_s / by[(base, False)].wall_s:.2f} | "
                     f"{busy.wall_s / by[(base, True)].wall_s:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="optimisation steps per run (default 20; an epoch is 313)")
    parser.add_argument("--val", type=int, default=200, help="validation sequences scored after the steps (default 200)")
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help=f"torch thread counts to compare (default: the course setting, {THREADS_ENV} or 1, and 2)")
    args = parser.parse_args()
    thread_counts = args.threads or sorted({course_threads(), 2})
    os.environ.pop("DLCOURSE_QUICK", None)  # the recipe as the notebook has it, cut only by --steps
    with contextlib.redirect_stdout(sys.stderr):
        ns = run_reference_cells(ASSIGNMENT, CELLS)
    full = ns["reverse_recipe"]
    steps_per_epoch = -(-len(ns["reverse_train"][0]) // full.batch_size)
    recipe = dataclasses.replace(full, epochs=1, max_steps=args.steps)
    val = tuple(t[:args.val] for t in ns["reverse_val"])
    load_start = os.getloadavg()
    started = dt.datetime.now(dt.timezone.utc)
    measure(ns, dataclasses.replace(recipe, max_steps=3), val, thread_counts[0], busy=False)  # warm-up, not reported
    runs = [measure(ns, recipe, val, n, busy) for n in thread_counts for busy in (False, True)]
    print(f"\n### seq2seq reversal recipe under contention ({started:%Y-%m-%d %H:%M} UTC)\n")
    print(f"{args.steps} steps of batches of {recipe.batch_size} (an epoch is {steps_per_epoch} steps) + validation "
          f"perplexity on {len(val[0])} sequences per run; CPU {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs ({available_cores()} usable by this process), torch {torch.__version__}; "
          f"load average before {load_start[0]:.2f} / {load_start[1]:.2f} / {load_start[2]:.2f} (1 / 5 / 15 min), "
          f"before each run {', '.join(f'{r.load_before:.2f}' for r in runs)}. CPU s: this process's user + system "
          "time (getrusage RUSAGE_SELF).\n")
    print(table(runs, thread_counts))


if __name__ == "__main__":
    main()

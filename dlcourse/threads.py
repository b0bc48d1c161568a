"""How many CPU threads torch uses while the course trains or evaluates a model: one setting for every notebook
helper, the reference builder and the benchmarks.

- `DLCOURSE_THREADS=N` (a positive whole number) is the user's override, for every model.
- Otherwise the course's small models (ViT, CNNs, RNN/LSTM, the Transformer, seq2seq, captioning) get ONE thread.
  Their per-step ops are tiny, and torch's OpenMP threads spin-wait at the end of every parallel region: when
  another process holds a core, a 2-thread step waits for a thread that is not running. The seq2seq reversal
  recipe took 993 s for an epoch instead of about 67 s that way (issue 29; `benchmarks/contention.py` measures it),
  and on a shared 2-core machine one thread trained captioning's 6-layer overfitting setting in 72 s, two in 256 s.
- BERT (`large_model=True`) gets every core this process may run on: its matmuls (batches of 32 x 256 tokens,
  384-1536 wide) are big enough that each parallel region's work dwarfs the wait at its end, so more threads pay
  even on a busy machine. Not measured under contention here; set DLCOURSE_THREADS=1 where it hurts.

`torch_threads(device)` applies the count for one training or evaluation run, and only on a CPU: on a GPU the
host threads only feed the device, and the course's GPU machines are not shared, so torch's own choice stays.
The outermost block wins: a benchmark or the reference builder that chose a count keeps it through the helpers
it calls. The autograder's judges do not read this setting: their threads are a grading option
(`autograder/options.py`, `GradeOptions.judge_threads`).
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

THREADS_ENV = "DLCOURSE_THREADS"
SMALL_MODEL_THREADS = 1

_chosen: list[int] = []  # counts of the torch_threads blocks now open, outermost first


def available_cores() -> int:
    """The CPUs this process may run on (its affinity mask, which taskset, cgroups' cpusets and Slurm narrow;
    os.cpu_count() counts the whole machine)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def course_threads(large_model: bool = False) -> int:
    """The torch CPU thread count for a course training/evaluation run: `DLCOURSE_THREADS` when set, else 1 for the
    course's small models and `available_cores()` for BERT (`large_model=True`). An invalid value is an error."""
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return available_cores() if large_model else SMALL_MODEL_THREADS
    try:
        threads = int(raw)
    except ValueError:
        threads = 0
    if threads < 1:
        raise ValueError(f"{THREADS_ENV}={raw!r}: it must be a positive whole number of torch CPU threads "
                         f"(e.g. {THREADS_ENV}=1), or unset for the course's default")
    return threads


@contextlib.contextmanager
def torch_threads(device: torch.device | str = "cpu", threads: int | None = None,
                  large_model: bool = False) -> Iterator[int]:
    """While the block runs on a CPU `device`, torch uses `threads` CPU threads (default `course_threads(large_model)`);
    afterwards as many as before. Yields the count in force. Inside another torch_threads block it changes nothing,
    so the outermost choice holds. On other devices it changes nothing and yields torch's current count."""
    import torch  # here, not at the top: the grader reads available_cores() without loading torch

    if torch.device(device).type != "cpu":
        yield torch.get_num_threads()
        return
    if _chosen:
        yield _chosen[0]
        return
    count = threads if threads is not None else course_threads(large_model)
    if count < 1:
        raise ValueError(f"torch_threads needs at least one thread, not {count}")
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    _chosen.append(count)
    try:
        yield count
    finally:
        _chosen.pop()
        torch.set_num_threads(previous)

"""Does one submission fit Gradescope's default container (about half a vCPU and 768 MB, no GPU)? Builds the
assignment's autograder zip (autograder/deploy/gradescope.py), then runs its run_autograder on one sample submission in
Gradescope's folder layout (GRADESCOPE_ROOT in a temporary folder) inside a cgroup with each memory limit and the
CPU quota asked for, next to a run without limits, and prints the wall time (with its ratio to the unlimited run),
the peak memory of the whole process tree (grader, judge, sandboxed worker; page cache included), whether the
kernel killed anything for memory, and the score results.json gave.

    python benchmarks/gradescope_limits.py vit --sample reference --memory-mb 768 1536 2048 --cpus 0.5

Needs root and a writable cgroup tree (v1 or v2), and the datasets (DLCOURSE_DATA_MIRROR) for the thresholds.
setup.sh's install step is not run: run_autograder uses this interpreter (GRADESCOPE_PYTHON).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autograder.deploy.gradescope import build_zip  # noqa: E402
from autograder.options import GradeOptions  # noqa: E402
from autograder.samples import build_samples  # noqa: E402

CGROUP = Path("/sys/fs/cgroup")


class Limits:
    """A cgroup (v2, or v1's memory and cpu hierarchies) with a memory limit and a CPU quota; None: no limit."""

    def __init__(self, memory_mb: int | None, cpus: float | None):
        name = f"gradescope-bench-{uuid.uuid4().hex[:8]}"
        self.v2 = (CGROUP / "cgroup.controllers").exists()
        self.memory = (CGROUP / name) if self.v2 else (CGROUP / "memory" / name)
        self.cpu = self.memory if self.v2 else (CGROUP / "cpu" / name)
        for folder in {self.memory, self.cpu}:
            folder.mkdir()
        period = 100_000
        if self.v2:
            (self.memory / "memory.max").write_text(f"{memory_mb}M" if memory_mb else "max")
            (self.memory / "memory.swap.max").write_text("0")
            (self.cpu / "cpu.max").write_text(f"{int(cpus * period)} {period}" if cpus else f"max {period}")
        else:
            if memory_mb:
                (self.memory / "memory.limit_in_bytes").write_text(f"{memory_mb}M")
            (self.cpu / "cpu.cfs_period_us").write_text(str(period))
            (self.cpu / "cpu.cfs_quota_us").write_text(str(int(cpus * period)) if cpus else "-1")

    def wrap(self, command: list[str]) -> list[str]:
        """`command`, started inside the group(s)."""
        procs = " ".join(str(folder / "cgroup.procs") for folder in {self.memory, self.cpu})
        return ["bash", "-c", f'for f in {procs}; do echo $$ > "$f"; done; exec "$@"', "bash", *command]

    def peak_mb(self) -> float:
        name = "memory.peak" if self.v2 else "memory.max_usage_in_bytes"
        return int((self.memory / name).read_text()) / 2**20

    def oom_kills(self) -> int:
        text = (self.memory / ("memory.events" if self.v2 else "memory.oom_control")).read_text()
        return next((int(line.split()[1]) for line in text.splitlines() if line.startswith("oom_kill ")), 0)

    def remove(self) -> None:
        for folder in {self.memory, self.cpu}:
            for _ in range(50):  # the last processes may still be leaving
                try:
                    folder.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)


def grade_once(zip_path: Path, archive: Path, limits: Limits, work: Path) -> dict:
    root = work / f"autograder-{uuid.uuid4().hex[:8]}"
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(root / "source")
    (root / "submission").mkdir()
    shutil.copy(archive, root / "submission")
    env = dict(os.environ, GRADESCOPE_ROOT=str(root), GRADESCOPE_PYTHON=sys.executable)
    started = time.monotonic()
    proc = subprocess.run(limits.wrap(["bash", str(root / "source" / "run_autograder")]), env=env, cwd=root,
                          capture_output=True, text=True)
    seconds = time.monotonic() - started
    results = json.loads((root / "results" / "results.json").read_text())
    judged = [t for t in results["tests"] if "max_score" in t]
    return {"seconds": seconds, "peak_mb": limits.peak_mb(), "oom": limits.oom_kills(), "exit": proc.returncode,
            "score": f"{results['score']:g}/{sum(t['max_score'] for t in judged):g}",
            "first_line": results["output"].splitlines()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("assignment")
    parser.add_argument("--sample", default="reference")
    parser.add_argument("--memory-mb", type=int, nargs="+", default=[768, 1536, 2048])
    parser.add_argument("--cpus", type=float, default=0.5, help="CPU quota of the limited runs, in CPUs")
    parser.add_argument("--judge", choices=("server", "process"), default=GradeOptions().judge,
                        help="the zip's judge kind (grade's --judge)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gradescope-bench-") as tmp:
        work = Path(tmp)
        zip_path = build_zip(args.assignment, work / "autograder.zip", GradeOptions(workers=1, judge=args.judge))
        [archive] = build_samples(args.assignment, work / "samples", only=[args.sample])
        rows = []
        for memory_mb, cpus in [(None, None)] + [(m, args.cpus) for m in args.memory_mb]:
            limits = Limits(memory_mb, cpus)
            try:
                row = grade_once(zip_path, archive, limits, work)
            finally:
                limits.remove()
            rows.append((f"{memory_mb} MB" if memory_mb else "none", f"{cpus:g}" if cpus else "all", row))
            print(f"  memory {rows[-1][0]}, cpus {rows[-1][1]}: {row}", flush=True)
    base = rows[0][2]["seconds"]
    print(f"\n{args.assignment} / {args.sample}: run_autograder under Gradescope-like limits ({os.cpu_count()} CPUs here)")
    print(f"{'memory':>8} {'cpus':>5} {'wall s':>8} {'x unlimited':>12} {'peak MB':>8} {'oom kills':>10} {'score':>8}  output")
    for memory, cpus, r in rows:
        print(f"{memory:>8} {cpus:>5} {r['seconds']:8.1f} {r['seconds'] / base:12.2f} {r['peak_mb']:8.0f} {r['oom']:>10} "
              f"{r['score']:>8}  {r['first_line'][:70]}")


if __name__ == "__main__":
    main()

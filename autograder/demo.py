"""`python -m autograder demo` (`make demo`): the whole pipeline on the course's own sample submissions, in minutes.

Four stages, each printing n/N and the time elapsed:
1. the releases (nbgrader), as `python -m autograder release`;
2. the reference weights a CPU can train (the spec's training_cells), two trainings side by side with one torch
   thread each (small per-step models: a second thread only spins when the other core is busy), cached in
   build/cache/ so that a second demo skips this stage;
3. grading a representative few samples of each assignment (`demo_samples`: the reference, the untouched release,
   one planted bug, one hostile submission where the assignment has one; `--all-samples` grades every sample);
4. the gradebooks, printed as each assignment finishes and written to build/grades/<assignment>/.

Where bubblewrap cannot run, the demo says so first, with the command that installs it, and goes on with weak
isolation (the bundled samples are the course's own); the banner and every gradebook header then say
"weak isolation (demo only)". Grading real submissions still refuses to run that way (autograder/grade.py).
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from autograder.assignments import PROJECT_ROOT, list_assignments, load_assignment
from autograder.options import GradeOptions

WEAK = "weak isolation (demo only)"
INSTALL_BUBBLEWRAP = ("sudo apt-get install bubblewrap   (Debian/Ubuntu; Fedora: sudo dnf install bubblewrap). "
                      "On macOS or Windows the sandbox needs Linux: run the grader in a Linux VM or container")
TRAINING_SLOTS = 2  # trainings side by side, one torch thread each
# Rough costs on an idle 2-core machine, for the banner's estimate only (measured: README, "The two commands").
RELEASE_S_EACH = 4.0  # nbgrader generate_assignment of one notebook
GRADING_S_EACH = 7.0  # one submission, judge server forked, 1 of 2 workers
GRADING_S_FIXED = 12.0  # per assignment: the preflight judge and the judge servers' imports


def demo_samples(name: str, all_samples: bool = False) -> list[str]:
    """The samples the demo grades for assignment `name`: the reference, the untouched release, the first planted bug
    and the first hostile sample that source/<name>/samples.py declares (or every sample with `all_samples`)."""
    from autograder.samples import samples_for

    names = [s.name for s in samples_for(name)]
    if all_samples:
        return names
    chosen = [n for n in ("reference", "untouched_release") if n in names]
    for prefix in ("bug_", "hostile_"):
        chosen += [n for n in names if n.startswith(prefix)][:1]
    return chosen


def references_to_train(names: list[str]) -> list[str]:
    """Assignments whose reference sample carries weights this machine trains and has not cached yet."""
    from autograder.samples import reference_cache, samples_for, training_cells

    todo = []
    for name in names:
        reference = next((s for s in samples_for(name) if s.name == "reference"), None)
        assignment = load_assignment(name)
        cells = training_cells(assignment)
        cached = cells and (reference_cache(assignment, cells, PROJECT_ROOT / "build" / "cache") / "TRAINED").exists()
        if reference is not None and reference.trained and cells and not cached:
            todo.append(name)
    return todo


@dataclass
class Clock:
    """Elapsed time since the demo started, as m:ss, in front of every progress line."""

    started: float = dataclasses.field(default_factory=time.monotonic)

    def elapsed(self) -> str:
        seconds = int(time.monotonic() - self.started)
        return f"{seconds // 60}:{seconds % 60:02d}"

    def say(self, message: str) -> None:
        print(f"[{self.elapsed()}] {message}", flush=True)


def estimate_s(names: list[str], to_train: list[str], samples: dict[str, list[str]]) -> float:
    """A rough wall-time estimate for the banner: releases, then the trainings packed longest first into the
    slots, then the gradings on two workers."""
    slots = [0.0] * TRAINING_SLOTS
    for seconds in sorted((load_assignment(n).spec.reference_train_s for n in to_train), reverse=True):
        slots[slots.index(min(slots))] += seconds
    grading = sum(GRADING_S_FIXED + GRADING_S_EACH * len(s) / 2 for s in samples.values())
    return RELEASE_S_EACH * len(names) + max(slots) + grading


def train_references(to_train: list[str], clock: Clock, logs: Path) -> list[str]:
    """Train each reference in a subprocess (`python -m autograder train-reference A`), TRAINING_SLOTS at a time with
    one torch thread each; return the assignments whose training failed (their logs are named)."""
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, DLCOURSE_THREADS="1", OMP_NUM_THREADS="1", MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    order = sorted(to_train, key=lambda n: -load_assignment(n).spec.reference_train_s)  # longest first
    done: list[str] = []
    failed: list[str] = []

    def train(name: str) -> None:
        started = time.monotonic()
        log = logs / f"train-{name}.log"
        with open(log, "w") as out:
            code = subprocess.run([sys.executable, "-m", "autograder", "train-reference", name], cwd=PROJECT_ROOT,
                                  env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
        (failed if code else done).append(name)
        outcome = f"failed (exit {code}; see {log.relative_to(PROJECT_ROOT)})" if code else "trained"
        clock.say(f"  references {len(done) + len(failed)}/{len(order)}: {name} {outcome} in "
                  f"{time.monotonic() - started:.0f} s")

    with ThreadPoolExecutor(TRAINING_SLOTS) as pool:
        list(pool.map(train, order))
    return failed


def run_demo(options: GradeOptions, names: list[str] | None = None, out_root: Path | None = None,
             hand_grades: Path | None = None, all_samples: bool = False) -> int:
    from autograder.__main__ import build_release
    from autograder.grade import grade_folder
    from autograder.gradebook import format_summary, format_table
    from autograder.samples import build_samples, reference_files_missing
    from autograder.sandbox import bwrap_problem

    clock = Clock()
    problem = bwrap_problem()
    if problem:
        print(f"bubblewrap, the sandbox student code runs in, cannot run here: {problem}.\n"
              f"  Install it with: {INSTALL_BUBBLEWRAP}\n"
              f"  The demo goes on with {WEAK}: it grades only the course's own samples. Grading real submissions "
              "refuses to run without bubblewrap (README, 'How grading stays safe').\n", flush=True)
        options = dataclasses.replace(options, allow_weak_isolation=True)
    names = names or list_assignments()
    samples = {name: demo_samples(name, all_samples) for name in names}
    to_train = references_to_train(names)
    count = sum(len(s) for s in samples.values())
    minutes = estimate_s(names, to_train, samples) / 60
    isolation = WEAK if problem else "bubblewrap sandbox"
    print(f"make demo: {len(names)} assignments ({', '.join(names)}), {isolation}.\n"
          f"  1. build the {len(names)} student releases from source/ (nbgrader)\n"
          f"  2. train {len(to_train)} reference model(s) a CPU can train"
          + (f" ({', '.join(to_train)}), two at a time, one thread each; cached in build/cache/ for the next run"
             if to_train else " (all cached in build/cache/)") + "\n"
          f"  3. grade {count} sample submissions ("
          + ("every sample" if all_samples else "the reference, the untouched release, a planted bug, and a hostile "
             "one where the assignment has one; `make demo-all` grades all of them")
          + f"), {options.workers} at a time\n"
          f"  4. print each gradebook and write it to build/grades/<assignment>/\n"
          f"  This takes about {max(1, round(minutes))} min on an idle 2-core machine"
          + (" (less next time: the references are cached)" if to_train else "") + ".\n", flush=True)

    clock.say(f"Stage 1/3: building the releases ({len(names)})")
    build_release(names)
    failed: list[str] = []
    if to_train:
        clock.say(f"Stage 2/3: training {len(to_train)} reference(s): {', '.join(to_train)}")
        failed = train_references(to_train, clock, PROJECT_ROOT / "build" / "logs")
    else:
        clock.say("Stage 2/3: every reference is cached in build/cache/: nothing to train")
    clock.say(f"Stage 3/3: grading {count} sample submissions")
    for i, name in enumerate(names, 1):
        if name in failed:
            clock.say(f"  {i}/{len(names)} {name}: skipped, its reference did not train (see build/logs/train-{name}.log)")
            continue
        folder = PROJECT_ROOT / "build" / "samples" / name
        clock.say(f"  {i}/{len(names)} {name}: {len(samples[name])} samples ({', '.join(samples[name])})")
        for stale in folder.glob("*.tar.gz"):  # a demo-all run's extra samples must not be graded by a plain demo
            stale.unlink()
        build_samples(name, folder, only=samples[name])
        out = (out_root / name) if out_root else PROJECT_ROOT / "build" / "grades" / name
        gradebook = grade_folder(folder, name, out, options, hand_grades, progress=lambda m: clock.say(f"    {m}"))
        header = f"Gradebook of '{name}'" + (f" — {WEAK}" if problem else "")
        print(f"\n{header}:\n{format_table(gradebook)}\n{format_summary(gradebook)}\n", flush=True)
        missing = reference_files_missing(name)
        if missing:
            print(f"No reference weights in this demo for {', '.join(missing)}: the reference notebook trains them only "
                  f"where CUDA is (cuda_training_cells in source/{name}/spec.py), so the thresholds judged from them "
                  "fail for the reference here. Grade on a GPU machine to see them pass.")
        shown = out.relative_to(PROJECT_ROOT) if out.is_relative_to(PROJECT_ROOT) else out
        print(f"Wrote {shown}/gradebook.csv, gradebook.json and feedback/<student>.md\n", flush=True)
    clock.say(f"Done: {count} submissions of {len(names)} assignments graded" + (f", {WEAK}" if problem else "")
              + (f"; training failed for {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0

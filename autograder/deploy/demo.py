"""`python -m autograder demo` (`make demo`): the whole pipeline on the course's own sample submissions, in minutes.

- the reference weights a CPU can train (the spec's training_cells, with its shorter demo recipes, `demo_edits`),
  two trainings side by side with one torch thread each (small per-step models: a second thread only spins when the
  other core is busy), in the background, cached in build/cache/ so that a second demo skips them;
- meanwhile the releases (nbgrader), as `python -m autograder release`;
- grading a representative few samples of each assignment (`demo_samples`: the reference, the untouched release,
  one planted bug, one hostile submission where the assignment has one) as soon as its reference is ready, and its
  gradebook, printed and written to build/grades/<assignment>/. `make demo-all` (`--all-samples --full-recipes`)
  grades every sample, with references trained by the notebooks' own recipes.
Every step prints its count (n/N) and the time elapsed.

Where bubblewrap cannot run, the demo says so first, with the command that installs it, and goes on with weak
isolation (the bundled samples are the course's own); the banner and every gradebook header then say
"weak isolation (demo only)". Grading real submissions still refuses to run that way (autograder/pipeline/preflight.py: check_isolation).
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

from autograder.assignments import PROJECT_ROOT, list_assignments, load_assignment
from autograder.options import BatchOptions, GradeOptions

WEAK = "weak isolation (demo only)"
INSTALL_BUBBLEWRAP = ("sudo apt-get install bubblewrap   (Debian/Ubuntu; Fedora: sudo dnf install bubblewrap). "
                      "On macOS or Windows the sandbox needs Linux: run the grader in a Linux VM or container")
TRAINING_SLOTS = 2  # trainings side by side, one torch thread each
# Rough costs on an idle 2-core machine, for the banner's estimate only (measured: README, "The two commands").
RELEASE_S_EACH = 1.3  # CPU seconds of building one release (nbgrader in-process: 8.7 s for all seven)
GRADING_S_EACH = 5.0  # CPU seconds of one submission's judge (forked from a judge server) and its worker
GRADING_S_FIXED = 5.0  # CPU seconds per assignment: the judge-server group's imports (one process, forked per slot)


def demo_samples(name: str, all_samples: bool = False) -> list[str]:
    """The samples the demo grades for assignment `name`: the reference, the untouched release, the first planted bug
    and the first hostile sample that source/<name>/samples.py declares (or every sample with `all_samples`)."""
    from autograder.samples import samples_for

    names = [s.name for s in samples_for(name)]
    if all_samples:
        return names
    chosen: list[str] = [n for n in ("reference", "untouched_release") if n in names]
    for prefix in ("bug_", "hostile_"):
        chosen += [n for n in names if n.startswith(prefix)][:1]
    return chosen


def references_to_train(names: list[str], demo: bool = True) -> list[str]:
    """Assignments whose reference sample carries weights this machine trains and has not cached yet (with the demo's
    recipes where `demo`)."""
    from autograder.samples import recipe_edits, reference_cache, samples_for, training_cells

    todo = []
    for name in names:
        reference = next((s for s in samples_for(name) if s.name == "reference"), None)
        assignment = load_assignment(name)
        cells = training_cells(assignment)
        folder = reference_cache(assignment, cells, PROJECT_ROOT / "build" / "cache", recipe_edits(assignment, demo))
        if reference is not None and reference.trained and cells and not (folder / "TRAINED").exists():
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
    """A rough wall-time estimate for the banner: every process runs one thread, so the work (CPU seconds) of the
    releases, the trainings and the gradings is shared by two cores; the longest training is a floor."""
    training = [load_assignment(n).spec.demo_train_s for n in to_train]
    grading = sum(GRADING_S_FIXED + GRADING_S_EACH * len(s) for s in samples.values())
    return max((RELEASE_S_EACH * len(names) + sum(training) + grading) / 2, max(training, default=0.0))


class Trainings:
    """The references' trainings, in subprocesses (`python -m autograder train-reference A`), TRAINING_SLOTS at a time
    with one torch thread each, longest first; `as_they_end()` yields each as it ends."""

    def __init__(self, names: list[str], demo: bool, clock: Clock, logs: Path):
        self.clock, self.logs, self.demo = clock, logs, demo
        self.failed: set[str] = set()
        self.order = sorted(names, key=lambda n: -load_assignment(n).spec.demo_train_s)
        self.ended = 0
        logs.mkdir(parents=True, exist_ok=True)
        self.pool = ThreadPoolExecutor(TRAINING_SLOTS)
        self.futures = {name: self.pool.submit(self._train, name) for name in self.order}

    def _train(self, name: str) -> None:
        started = time.monotonic()
        log = self.logs / f"train-{name}.log"
        env = dict(os.environ, DLCOURSE_THREADS="1", OMP_NUM_THREADS="1", MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
        command = [sys.executable, "-m", "autograder", "train-reference", name, *(["--demo"] if self.demo else [])]
        with open(log, "w") as out:
            code = subprocess.run(command, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, check=False).returncode
        self.ended += 1
        if code:
            self.failed.add(name)
        outcome = f"FAILED (exit {code}; see {log.relative_to(PROJECT_ROOT)})" if code else "trained"
        self.clock.say(f"  reference {self.ended}/{len(self.order)}: {name} {outcome} in "
                       f"{time.monotonic() - started:.0f} s")

    def as_they_end(self) -> Iterator[str]:
        """The trained assignments in the order their trainings end (so grading never waits for a slower one)."""
        names = {future: name for name, future in self.futures.items()}
        for future in as_completed(names):
            future.result()
            yield names[future]

    def trained(self, name: str) -> bool:
        """Whether `name` has weights to grade with (True when it needed no training)."""
        return name not in self.failed

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def demo_plan(names: list[str], to_train: list[str], samples: dict[str, list[str]], demo: bool, isolation: str,
              all_samples: bool, workers: int) -> str:
    """What the demo is about to do, and about how long it takes: its first lines."""
    notes = [load_assignment(n).spec.demo_note for n in to_train if demo and load_assignment(n).spec.demo_note]
    count = sum(len(s) for s in samples.values())
    return (f"make demo: {len(names)} assignment(s) ({', '.join(names)}), {isolation}.\n"
            f"  1. build the student releases from source/ (nbgrader)\n"
            f"  2. train {len(to_train)} reference model(s) that a CPU can train"
            + (f" ({', '.join(to_train)}), two at a time, one thread each, cached in build/cache/ for the next run"
               if to_train else " (every one is cached in build/cache/)")
            + (f";\n     shorter recipes than the notebooks' so that the demo takes minutes: {'; '.join(notes)} "
               "(`make demo-all` trains the notebooks' own)" if notes else "") + "\n"
            f"  3. grade {count} sample submissions as soon as their reference is ready ("
            + ("every sample" if all_samples else "the reference, the untouched release, a planted bug, and a hostile "
               "one where the assignment has one; `make demo-all` grades every sample")
            + f"), {workers} at a time, and print each gradebook (written to build/grades/<assignment>/)\n"
            f"  About {max(1, round(estimate_s(names, to_train, samples) / 60))} min on an idle 2-core machine"
            + (" (less next time: the references are cached)" if to_train else "") + ".\n")


def run_demo(options: GradeOptions, names: list[str] | None = None, out_root: Path | None = None,
             hand_grades: Path | None = None, all_samples: bool = False, full_recipes: bool = False) -> int:
    from autograder.deploy.release import build_release
    from autograder.pipeline.grade import grade_folder
    from autograder.pipeline.gradebook import format_summary, format_table
    from autograder.pipeline.integrity import format_flags
    from autograder.samples import build_samples, reference_files_missing
    from autograder.sandbox import choose_backend

    clock = Clock()
    backend, problem = choose_backend(options.sandbox)
    if backend is None:
        print(f"bubblewrap, the sandbox student code runs in, cannot run here: {problem}.\n"
              f"  Install it with: {INSTALL_BUBBLEWRAP}\n"
              f"  The demo goes on with {WEAK}: it grades only the course's own samples. Grading real submissions "
              "refuses to run without bubblewrap (docs/instructors.md, 'How grading stays safe').\n", flush=True)
        options = dataclasses.replace(options, allow_weak_isolation=True)
    names = names or list_assignments()
    demo = not full_recipes
    samples = {name: demo_samples(name, all_samples) for name in names}
    to_train = references_to_train(names, demo)
    count = sum(len(s) for s in samples.values())
    isolation = WEAK if backend is None else f"{backend} sandbox"
    print(demo_plan(names, to_train, samples, demo, isolation, all_samples, options.workers), flush=True)

    # Every process runs one thread, so the trainings, the releases and the gradings share the two cores: the
    # trainings start first (the longest is the floor), the assignments that need none are graded meanwhile.
    trainings = Trainings(to_train, demo, clock, PROJECT_ROOT / "build" / "logs")
    if to_train:
        clock.say(f"Training {len(to_train)} reference(s) in the background: {', '.join(trainings.order)}")
    clock.say(f"Building the {len(names)} release(s)")
    build_release(names)
    # The assignments that need no training first, then each as soon as its training ends.
    order = chain([n for n in names if n not in to_train], trainings.as_they_end())
    written = []  # the output folders of the assignments with answers graded by hand
    for i, name in enumerate(order, 1):
        if not trainings.trained(name):
            clock.say(f"Grading {i}/{len(names)} {name}: skipped, its reference did not train "
                      f"(build/logs/train-{name}.log)")
            continue
        folder = PROJECT_ROOT / "build" / "samples" / name
        clock.say(f"Grading {i}/{len(names)} {name}: {len(samples[name])} samples ({', '.join(samples[name])})")
        for stale in folder.glob("*.tar.gz"):  # a demo-all run's extra samples must not be graded by a plain demo
            stale.unlink()
        build_samples(name, folder, only=samples[name], demo=demo)
        out = (out_root / name) if out_root else PROJECT_ROOT / "build" / "grades" / name
        # No preflight: the samples graded include the untouched release, the notebook it would grade.
        gradebook = grade_folder(folder, name, out, options,
                                 BatchOptions(hand_grades=hand_grades,
                                              check_release="untouched_release" not in samples[name]),
                                 progress=lambda m: clock.say(f"    {m}"))
        header = f"Gradebook of '{name}'" + (f" — {WEAK}" if backend is None else "")
        print(f"\n{header}:\n{format_table(gradebook)}\n{format_summary(gradebook)}\n{format_flags(gradebook)}",
              flush=True)
        missing = reference_files_missing(name, demo=demo)
        if missing:
            print(f"No reference weights in this demo for {', '.join(missing)}: the reference trains them only where "
                  f"CUDA is (too slow on a CPU for a demo; source/{name}/samples.py says which), so the thresholds "
                  "judged from them fail for the reference here. Grade on a GPU machine to see them pass.")
        shown = out.relative_to(PROJECT_ROOT) if out.is_relative_to(PROJECT_ROOT) else out
        print(f"Wrote {shown}/gradebook.csv, gradebook.json, integrity.md and feedback/<student>.md\n", flush=True)
        if gradebook.hand_graded:
            written.append(shown)
    trainings.close()
    failed = sorted(trainings.failed)
    clock.say(f"Done: {count} submissions of {len(names)} assignment(s) graded" + (f", {WEAK}" if backend is None else "")
              + (f"; training FAILED for {', '.join(failed)}" if failed else ""))
    if written:  # the last line: how a TA goes on (docs/instructors.md, "Hand grading in the browser")
        executable = Path(sys.executable)
        python = executable.relative_to(PROJECT_ROOT) if executable.is_relative_to(PROJECT_ROOT) else "python"
        print(f"Grade the written answers in the browser: {python} -m autograder hand-grade {written[0]}"
              + (f" (likewise {', '.join(map(str, written[1:]))})" if written[1:] else ""), flush=True)
    return 1 if failed else 0

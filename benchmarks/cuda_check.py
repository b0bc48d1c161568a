"""Prove the course's thresholds on a CUDA GPU: train each reference recipe, grade it with the real grader, one table.

    python benchmarks/cuda_check.py --run cifar10 --out build/cuda_check      # on the GPU machine (see pack_for_gpu.py)
    python benchmarks/cuda_check.py --dry-run --jobs transformer              # on a CPU: tiny runs, the same code path

Each job trains one assignment's reference recipe with the source notebook's own cells
(`autograder.samples.train_reference`: the spec's training_cells + cuda_training_cells, minus the cells of the
thresholds another job covers), packs the weights into the reference sample as a student's archive
(`autograder.samples.build_samples`), grades that archive with `python -m autograder grade` (the judge, the
sandboxed worker on the GPU, the sequential threshold rule) and reads the measured values from the gradebook.

The jobs are declared beside each assignment (`gpu_checks` in source/<a>/spec.py). Each runs in a subprocess of its
own under its time budget; the budgets of a run's jobs fit the device's limit for one command (RUN_LIMIT_S), and a
job whose budget no longer fits is reported as not run.
`--dry-run` sets DLCOURSE_QUICK=1 (each recipe shrinks to a small subset and one epoch, or 10 steps), trains on the
CPU into a scratch cache (never build/cache: quick weights must not pass for the reference's) and grades with a short
threshold budget: its numbers mean nothing, it only proves the path still works (tests/test_cuda_check.py).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from autograder.spec import GpuCheck  # noqa: E402

PACKED_STAND_IN = "PACKED_STAND_IN"  # in a checkpoint folder packed by pack_for_gpu.py: the label to report
RUN_LIMIT_S = 540  # one device command may run 10 minutes; 9 leave room for start-up and the files coming back


@dataclass(frozen=True)
class Job:
    """One GpuCheck of an assignment's spec (source/<a>/spec.py, `gpu_checks`), with the assignment it belongs to."""

    assignment: str
    check: GpuCheck

    @property
    def name(self) -> str:
        return f"{self.assignment}-{self.check.part}" if self.check.part else self.assignment

    def __getattr__(self, field: str):  # run, thresholds, budget_s, data, skip_cells, grade_s: the check's
        return getattr(self.check, field)


def declared_jobs() -> dict[str, Job]:
    """Every assignment's GPU checks by job name (adding an assignment adds its jobs: nothing is listed here)."""
    from autograder.assignments import list_assignments, load_assignment

    jobs = [Job(a, check) for a in list_assignments() for check in load_assignment(a).spec.gpu_checks]
    named = {job.name: job for job in jobs}
    if len(named) != len(jobs):
        raise SystemExit("two GPU checks of one assignment have the same name: give each its own `part` in spec.py")
    return named


JOBS = declared_jobs()
# The device commands: each carries one pack (pack_for_gpu.py) and runs its jobs, in this order, within RUN_LIMIT_S.
RUNS: dict[str, tuple[str, ...]] = {}
for _job in JOBS.values():
    RUNS[_job.run] = (*RUNS.get(_job.run, ()), _job.name)


def job_cells(job: Job) -> list[str]:
    """The reference cells the job runs: all the spec's training cells (CPU and CUDA ones), less its skipped ones."""
    from autograder.assignments import load_assignment

    spec = load_assignment(job.assignment).spec
    cells = [*spec.training_cells, *spec.cuda_training_cells]
    unknown = set(job.skip_cells) - set(cells)
    if unknown:
        raise SystemExit(f"benchmarks/cuda_check.py: job {job.name} skips {sorted(unknown)}, which are not training "
                         f"cells of source/{job.assignment}/spec.py: update the job")
    return [c for c in cells if c not in job.skip_cells]


def plan(names: list[str], limit_s: float) -> tuple[list[Job], list[Job]]:
    """(the jobs that fit `limit_s` in the order given, the ones left out): a job runs only if its budget still fits."""
    kept, left, used = [], [], 0.0
    for job in (JOBS[name] for name in names):
        if used + job.budget_s <= limit_s:
            kept.append(job)
            used += job.budget_s
        else:
            left.append(job)
    return kept, left


def run_limited(command: list[str], log_path: Path, timeout: float, env: dict | None = None) -> str | None:
    """Run `command` (its output into `log_path`) in a process group of its own; None when it ends well, else why not.
    Past `timeout` the whole group is killed (the grader's judge servers and workers too, not only the child)."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return f"stopped at its limit of {timeout:.0f} s (see {log_path})"
    return f"exit {code} (see {log_path})" if code else None


# -- one job, in a subprocess of its own ------------------------------------------------------------------------------
def train_job(job: Job, cache_root: Path, report: Path) -> None:
    """Train the job's reference cells (train_reference), then make its weights the reference sample's: copied into
    the cache folder that build_samples reads for this machine's training_cells. Writes a JSON report."""
    import torch

    import autograder.samples as samples
    from autograder.assignments import load_assignment
    from dlcourse.bert import bert_checkpoint, checkpoint_label
    from dlcourse.data import ImageSplit
    from dlcourse.text_data import imdb_source
    from dlcourse.training import History, Recipe

    assignment = load_assignment(job.assignment)
    namespace: dict = {}
    run_cells = samples.run_reference_cells

    def keep_namespace(*args, **kwargs) -> dict:  # the trained recipes and histories: epochs and data sources
        namespace.update(run_cells(*args, **kwargs))
        return namespace

    samples.run_reference_cells = keep_namespace
    started = time.time()
    folder = samples.train_reference(assignment, job_cells(job), cache_root)
    seconds = time.time() - started
    sample_folder = samples.reference_cache(assignment, samples.training_cells(assignment), cache_root)
    if sample_folder != folder:
        shutil.copytree(folder, sample_folder, dirs_exist_ok=True)
    recipes = {name: value.epochs for name, value in namespace.items() if isinstance(value, Recipe)}
    histories = {name: len(value.seconds) for name, value in namespace.items() if isinstance(value, History)}
    sources = sorted({value.source for value in namespace.values() if isinstance(value, ImageSplit)})
    if "imdb" in job.data:
        sources.append(imdb_source())
    if "multi30k" in job.data:
        sources.append("Multi30k task 1 (official files)")
    if "minilm" in job.data:
        checkpoint = bert_checkpoint()  # pack_for_gpu.py's fp16 copy of the stand-in says so in a marker file
        packed = Path(checkpoint) / PACKED_STAND_IN
        sources.append(packed.read_text().strip() if packed.exists() else checkpoint_label(checkpoint))
    report.write_text(json.dumps({
        "train_s": round(seconds, 1), "recipe_epochs": recipes, "epochs_run": histories, "sources": sources,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}))


def grade_job(job: Job, cache_root: Path, folder: Path, options: argparse.Namespace, timeout: float) -> dict:
    """Pack the reference sample (its archive as a student's) and grade it with `python -m autograder grade`."""
    from autograder.samples import build_samples

    # Only the reference: other samples may need data the job's pack does not carry (vit's label-lookup sample reads
    # FashionMNIST, which the cifar10 pack leaves out).
    [archive] = build_samples(job.assignment, folder / "samples", cache_root, only=["reference"])
    submissions = folder / "submissions"
    submissions.mkdir(parents=True, exist_ok=True)
    shutil.copy(archive, submissions)
    command = [sys.executable, "-m", "autograder", "grade", str(submissions), "--assignment", job.assignment,
               "--out", str(folder / "grades"), "--workers", "1", "--threshold-budget", str(options.threshold_budget),
               "--force"]
    if options.allow_weak_isolation:
        command.append("--allow-weak-isolation")
    problem = run_limited(command, folder / "grade.log", timeout)
    gradebook = folder / "grades" / "gradebook.json"
    if not gradebook.exists():
        raise RuntimeError(f"the grader wrote no gradebook: {problem or 'see ' + str(folder / 'grade.log')}")
    return next(s for s in json.loads(gradebook.read_text())["submissions"] if s["student_id"] == "reference")


def measured_note(threshold: str, notes: dict[str, str]) -> str:
    """The gradebook note that reports `threshold`'s measured value (notes are keyed by saved file, e.g. threshold
    "better_cnn" by "cnn_better", "multi30k_perplexity" by "transformer_multi30k perplexity")."""
    words = set(re.split(r"[_ ]", threshold))

    def match(key: str) -> int:
        return len(words & set(re.split(r"[_ ]", key))) + 2 * (threshold.replace("_", "") in key.replace("_", ""))
    candidates = [k for k in notes if not k.endswith("canary")]
    best = max(candidates, key=match, default=None)
    return notes[best] if best is not None and match(best) > 0 else ""


def run_job(job: Job, out: Path, options: argparse.Namespace) -> list[dict]:
    """Train (in a subprocess under the job's budget) and grade one job; one row per threshold."""
    from autograder.assignments import load_assignment

    folder, cache_root = out / job.name, out / "cache"
    folder.mkdir(parents=True, exist_ok=True)
    report = folder / "train.json"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if options.dry_run:
        env["DLCOURSE_QUICK"] = "1"
        env.setdefault("HF_HUB_OFFLINE", "1")  # the BERT job takes the installed stand-in, as tests and CI do
    started = time.monotonic()
    budget, grade_s = job.budget_s * options.budget_scale, job.grade_s * options.budget_scale
    problem = run_limited([sys.executable, str(Path(__file__).resolve()), "--train-job", job.name, "--out", str(out)],
                          folder / "train.log", budget - grade_s, env)
    rows_error = f"training {problem}" if problem else None
    trained = json.loads(report.read_text()) if report.exists() else {}
    result = {}
    if rows_error is None:
        try:
            result = grade_job(job, cache_root, folder, options,
                               timeout=max(grade_s, budget - (time.monotonic() - started)))
        except (RuntimeError, StopIteration) as exc:
            rows_error = str(exc)
    spec = load_assignment(job.assignment).spec
    rows = []
    for name in job.thresholds:
        threshold = spec.thresholds[name]
        test = result.get("tests", {}).get(threshold.test, {})
        bar = f"{'≤' if threshold.ceiling else '≥'} {threshold.value:g}"
        measured = rows_error or measured_note(name, result.get("notes", {})) or test.get("message", "")
        rows.append({"job": job.name, "assignment": job.assignment, "threshold": name, "bar": bar,
                     "outcome": test.get("outcome", "not graded"), "measured": measured,
                     "epochs": ", ".join(f"{k} {v}" for k, v in trained.get("epochs_run", {}).items())
                               or ", ".join(f"{k} {v}" for k, v in trained.get("recipe_epochs", {}).items()),
                     "train_s": trained.get("train_s", ""), "total_s": round(time.monotonic() - started, 1),
                     "device": trained.get("device", ""), "data": "; ".join(trained.get("sources", [])),
                     "isolation": result.get("isolation", "")})
    return rows


def markdown_table(rows: list[dict]) -> str:
    columns = ["assignment", "threshold", "bar", "outcome", "measured", "epochs", "train_s", "total_s", "device",
               "data", "isolation"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row[c]).replace("|", "/").replace("\n", " ") for c in columns) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    choose = parser.add_mutually_exclusive_group(required=True)
    choose.add_argument("--run", choices=sorted(RUNS), help="one device command's jobs (pack_for_gpu.py prints them)")
    choose.add_argument("--jobs", nargs="+", choices=sorted(JOBS), help="these jobs, in this order")
    choose.add_argument("--train-job", choices=sorted(JOBS), help=argparse.SUPPRESS)  # the training subprocess
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "build" / "cuda_check")
    parser.add_argument("--dry-run", action="store_true",
                        help="on a CPU: DLCOURSE_QUICK=1 recipes, a scratch cache, a short threshold budget")
    parser.add_argument("--threshold-budget", type=float, default=None,
                        help="seconds each threshold may spend scoring (default 120; 20 with --dry-run)")
    parser.add_argument("--budget-scale", type=float, default=None,
                        help="multiply each job's budget (default 1; 5 with --dry-run: a CPU is slower than an H200 "
                             "even for quick recipes)")
    parser.add_argument("--limit", type=float, default=RUN_LIMIT_S, help=f"seconds for all jobs (default {RUN_LIMIT_S})")
    parser.add_argument("--allow-weak-isolation", action="store_true",
                        help="passed to the grader: where bubblewrap cannot run (the GPU machine may lack it), grade "
                             "with the audit hook only; the table's isolation column says which was used")
    args = parser.parse_args(argv)
    if args.train_job:
        train_job(JOBS[args.train_job], args.out / "cache", args.out / args.train_job / "train.json")
        return 0

    import torch

    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit("benchmarks/cuda_check.py: no CUDA GPU here; run it on the GPU machine "
                         "(benchmarks/pack_for_gpu.py prints the commands), or pass --dry-run to check the path on a CPU")
    if args.budget_scale is None:
        args.budget_scale = 5.0 if args.dry_run else 1.0
    if args.threshold_budget is None:
        args.threshold_budget = 20.0 if args.dry_run else 120.0
    if args.dry_run and args.out.resolve() == (PROJECT_ROOT / "build" / "cache").resolve():
        raise SystemExit("--dry-run must not write quick weights into build/cache")
    args.out.mkdir(parents=True, exist_ok=True)
    jobs, left = plan(list(RUNS[args.run]) if args.run else args.jobs, args.limit * args.budget_scale)
    rows = []
    for job in jobs:
        print(f"[cuda_check] {job.name}: training and grading (budget {job.budget_s} s) ...", file=sys.stderr, flush=True)
        rows += run_job(job, args.out, args)
    for job in left:
        rows += [{"job": job.name, "assignment": job.assignment, "threshold": name, "bar": "", "outcome": "not run",
                  "measured": f"its budget ({job.budget_s} s) did not fit the run's {args.limit:g} s", "epochs": "",
                  "train_s": "", "total_s": "", "device": "", "data": "", "isolation": ""} for name in job.thresholds]
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none (CPU)"
    print(f"\n## cuda_check {'DRY RUN (quick recipes on a CPU: smoke test, not a result)' if args.dry_run else ''}")
    print(f"GPU: {gpu}; torch {torch.__version__}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print(markdown_table(rows))
    (args.out / "table.md").write_text(markdown_table(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

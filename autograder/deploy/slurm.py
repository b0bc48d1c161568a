"""Grade on a Slurm cluster: one job array, one task per submission (or per shard of k), each graded exactly as
`python -m autograder grade` grades it (the same judge, bubblewrap sandbox and result store).

    python -m autograder grade SUBMISSIONS --assignment A --slurm [--partition P] [--gpus-per-task N]
        [--array-parallelism N] [--time-per-submission MIN] [--submissions-per-task K] [--cpus-per-task C] [--no-wait]
    python -m autograder collect OUT [--job ID]   wait for what --no-wait submitted (or for `sbatch OUT/slurm/grade.sbatch`
                                                  run by hand: its job ID), then write the gradebook

The submitting side (SlurmRunner, called by grade_folder with what is new, changed or failed) writes OUT/slurm/:
    batch.json        the run: assignment, submissions folder, grading options, hand grades, roster, and the
                      submissions of each array task
    preflight.sbatch  one job: the release notebook through the judge and sandbox on a compute node, first
    grade.sbatch      the array: task i runs `python -m autograder slurm-task OUT --index i`; it starts only if the
                      preflight succeeded (--dependency=afterok, --kill-on-invalid-dep), so a broken node image
                      never becomes a column of grader-errors. `sbatch OUT/slurm/grade.sbatch` resubmits it as is.
    job.json          the job ids of the last submission
    logs/             each job's output: task-<array job>_<i>.out, preflight-<job>.out
then waits (squeue, with a progress bar) and turns every task that ended without a result (FAILED, TIMEOUT,
CANCELLED, a lost node...) into a grader-error row naming the state and the log; a rerun submits only those (the
local grader's own rule: a grader-error is tried again). No accounting database (sacct) is needed.

Each array task is a trusted grader of its own: it reads only its line of batch.json, judges those submissions in new
sandboxed workers and writes only their OUT/results/<id>.json (atomically). Student code runs in the worker, which
sees no part of OUT (see docs/instructors.md, "At scale").
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from autograder.assignments import PROJECT_ROOT, Assignment, load_assignment
from autograder.options import BatchOptions, GradeOptions
from autograder.pipeline.grade import RunRequest
from autograder.pipeline.gradebook import Gradebook
from autograder.pipeline.results import Status, SubmissionResult
from autograder.pipeline.store import ResultStore, StoredResult, atomic_write, grader_digest, submission_digest

ENDED = {"COMPLETED", "FAILED", "TIMEOUT", "CANCELLED", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
         "DEADLINE", "REVOKED", "SPECIAL_EXIT"}
POLL_S = float(os.environ.get("DLCOURSE_SLURM_POLL_S", "5"))  # seconds between two squeue calls while waiting
JUDGE_MEMORY_MB = 2048  # the task's own share besides the worker's --memory-mb: the judge, torch, a dataset
PASSED_ON = ("DLCOURSE_DATA", "DLCOURSE_DATA_MIRROR", "DLCOURSE_DEVICE", "DLCOURSE_QUICK", "DLCOURSE_BERT_CHECKPOINT",
             "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")  # written into the scripts when set


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    gpus_per_task: int = 0  # --gres=gpu:N on every task (and the preflight)
    array_parallelism: int | None = None  # at most this many tasks at once (--array=0-N%P)
    time_per_submission: int | None = None  # minutes; None: the submission's budget plus the judge's grace, rounded up
    submissions_per_task: int = 1
    cpus_per_task: int = 2
    wait: bool = True


def slurm_dir(out: Path) -> Path:
    return out / "slurm"


def run_slurm(command: list[str], forgotten_ok: bool = False) -> str:
    """Run a Slurm client command; its stdout. Any failure is one line naming the fix (SystemExit); with
    `forgotten_ok`, jobs that slurmctld no longer knows are no error (squeue's "Invalid job id"): nothing is printed."""
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise SystemExit(f"{command[0]} is not on PATH: run this on a Slurm login node, or install Slurm's client "
                         "commands (Debian: apt-get install slurm-client)") from None
    except subprocess.TimeoutExpired:
        raise SystemExit(f"{command[0]} did not answer in 120 s: is slurmctld up? (`scontrol ping`)") from None
    if proc.returncode and forgotten_ok and "Invalid job id" in proc.stderr:
        return ""
    if proc.returncode:
        error = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        error = error.removeprefix(f"{command[0]}: error: ")
        if "contact slurm controller" in error or "Unable to contact" in error:
            raise SystemExit(f"{command[0]} cannot reach slurmctld ({error}): check `scontrol ping` and SLURM_CONF")
        if "Invalid partition" in error:
            raise SystemExit(f"{command[0]}: {error}; pass an existing --partition (`sinfo -s` lists them)")
        if "array specification" in error:  # more tasks than the cluster's MaxArraySize (1001 by default)
            raise SystemExit(f"{command[0]}: {error}; grade several submissions per task (--submissions-per-task K) "
                             "so that the array has fewer tasks than the cluster's MaxArraySize (`scontrol show config`)")
        raise SystemExit(f"{shlex.join(command)} failed: {error}")
    return proc.stdout


def minutes_per_submission(assignment: Assignment, options: GradeOptions, slurm: SlurmOptions) -> int:
    """Slurm's limit per submission: the submission's budget, the judge's grace past it, and two minutes of starting."""
    from autograder.pipeline.judges import JUDGE_GRACE_S

    return slurm.time_per_submission or math.ceil((options.budget(assignment) + JUDGE_GRACE_S + 120) / 60)


def sbatch_script(out: Path, assignment: Assignment, options: GradeOptions, slurm: SlurmOptions, minutes: int,
                  what: str, array: str | None) -> str:
    """A readable batch script: every resource on an #SBATCH line, so `sbatch` on the file alone resubmits it."""
    logs = slurm_dir(out) / "logs"
    lines = ["#!/bin/bash",
             f"# Written by `python -m autograder grade --slurm` for assignment '{assignment.name}' (autograder/deploy/slurm.py).",
             "# To grade what failed, run the same `grade --slurm` command again: it submits only that. This script",
             f"# can also be resubmitted as it is: sbatch {slurm_dir(out) / what}.sbatch"
             + (f"   then: python -m autograder collect {out} --job <its job id>" if array else ""),
             f"#SBATCH --job-name=grade-{assignment.name}-{what}",
             f"#SBATCH --output={logs}/{'task-%A_%a' if array else what + '-%j'}.out",  # by job: reruns keep old logs
             f"#SBATCH --chdir={PROJECT_ROOT}",
             f"#SBATCH --time={minutes}",
             f"#SBATCH --cpus-per-task={slurm.cpus_per_task}",
             f"#SBATCH --mem={options.memory_mb + JUDGE_MEMORY_MB}M",  # the worker's cap plus the judge's share
             "#SBATCH --ntasks=1"]
    if array:
        lines.append(f"#SBATCH --array={array}")
    if slurm.partition:
        lines.append(f"#SBATCH --partition={slurm.partition}")
    if slurm.gpus_per_task:
        lines.append(f"#SBATCH --gres=gpu:{slurm.gpus_per_task}")
    lines += [f"export {name}={shlex.quote(os.environ[name])}" for name in PASSED_ON if name in os.environ]
    target = '--index "$SLURM_ARRAY_TASK_ID"' if array else "--preflight"
    lines.append(f"exec {shlex.quote(sys.executable)} -m autograder slurm-task {shlex.quote(str(out))} {target}")
    return "\n".join(lines) + "\n"


def job_states(*job_ids: str) -> dict[str, str]:
    """{"<job>_<task>" or "<job>": state} of what slurmctld still remembers of these jobs (MinJobAge, 300 s by
    default, after they end: the states of tasks forgotten are read as ended)."""
    ids = [job for job in job_ids if job]  # a job resubmitted by hand has no preflight job
    text = run_slurm(["squeue", "-h", "-r", "--states=all", "-j", ",".join(ids), "-o", "%i %T"], forgotten_ok=True)
    return {job: state.split()[0] for job, _, state in (line.partition(" ") for line in text.splitlines()) if state}


def refuse_if_running(out: Path) -> None:
    """Stop a second grader (Slurm or local) from grading into OUT while the Slurm job submitted into it still runs:
    both would judge the same students, and a local grader would kill the tasks' judges as leftovers."""
    job_file = slurm_dir(out) / "job.json"
    if not job_file.exists() or not shutil.which("squeue"):
        return
    job = json.loads(job_file.read_text())
    if SlurmRunner.active(job):
        raise SystemExit(f"array job {job['array']} is still grading into {out}: wait for it with `python -m "
                         f"autograder collect {out}`, or cancel it (scancel {job['array']} {job['preflight'] or ''})")


class SlurmRunner:
    """grade_folder's runner for --slurm: submits the preflight and the array, waits, records tasks without a result."""

    def __init__(self, slurm: SlurmOptions, array_job: str | None = None):
        # array_job: `collect --array-job`, grade.sbatch resubmitted by hand (the same tasks, without a preflight job)
        self.slurm, self.array_job = slurm, array_job

    def __call__(self, request: RunRequest) -> None:
        todo, assignment, out, store, progress = (request.todo, request.assignment, request.out, request.store,
                                                  request.progress)
        bar = request.batch.bar
        job_file = slurm_dir(out) / "job.json"
        job = json.loads(job_file.read_text()) if job_file.exists() else None
        if request.batch.collect:
            if job is None:
                raise SystemExit(f"nothing was submitted to Slurm from {out} (no {job_file})")
            if self.array_job:  # grade.sbatch resubmitted by hand: the same tasks, without a preflight job
                job = dict(job, array=self.array_job, preflight=None)
                (slurm_dir(out) / "preflight.failed").unlink(missing_ok=True)
                atomic_write(job_file, json.dumps(job, indent=2))
            self.wait(job, assignment, out, store, progress, bar)
            return
        refuse_if_running(out)
        if not todo:
            progress(f"Nothing to grade on Slurm: every submission of '{assignment.name}' is already graded, unchanged, "
                     "by this grader (--force regrades them).")
            return
        job = self.submit(request)
        progress(f"Submitted {len(todo)} submission(s) of '{assignment.name}' as Slurm array job {job['array']} "
                 f"({len(job['tasks'])} task(s), after preflight job {job['preflight']}); scripts and logs in "
                 f"{slurm_dir(out)}")
        if not self.slurm.wait:
            progress(f"Not waiting (--no-wait): run `python -m autograder collect {out}` to wait and write the gradebook.")
            return
        self.wait(job, assignment, out, store, progress, bar)

    def submit(self, request: RunRequest) -> dict:
        todo, assignment, out, options, batch = (request.todo, request.assignment, request.out, request.options,
                                                 request.batch)
        folder = slurm_dir(out)
        (folder / "logs").mkdir(parents=True, exist_ok=True)
        per = max(1, self.slurm.submissions_per_task)
        tasks = [[{"student_id": s.student_id, "path": str(s.path.resolve()), "sha256": s.sha256} for s in todo[i:i + per]]
                 for i in range(0, len(todo), per)]
        minutes = minutes_per_submission(assignment, options, self.slurm)
        written = {"assignment": assignment.name, "submissions": str(request.submissions.resolve()),
                   "options": dataclasses.asdict(options), "slurm": dataclasses.asdict(self.slurm),
                   "hand_grades": str(batch.hand_grades.resolve()) if batch.hand_grades else None,
                   "roster": str(batch.roster.resolve()) if batch.roster else None, "duplicates": batch.duplicates,
                   "tasks": tasks}
        atomic_write(folder / "batch.json", json.dumps(written, indent=2))
        array = f"0-{len(tasks) - 1}" + (f"%{self.slurm.array_parallelism}" if self.slurm.array_parallelism else "")
        for what, limit, arr in (("preflight", minutes, None), ("grade", minutes * per, array)):
            (folder / f"{what}.sbatch").write_text(sbatch_script(out, assignment, options, self.slurm, limit, what, arr))
        (folder / "preflight.failed").unlink(missing_ok=True)
        # what the store held before: a result is this job's when it differs (no clock is compared across nodes)
        before = {s.student_id: stored.graded_at if (stored := request.store.get(s.student_id)) else None for s in todo}
        preflight = run_slurm(["sbatch", "--parsable", str(folder / "preflight.sbatch")]).strip().split(";")[0]
        try:
            array_job = run_slurm(["sbatch", "--parsable", f"--dependency=afterok:{preflight}",
                                   "--kill-on-invalid-dep=yes", str(folder / "grade.sbatch")]).strip().split(";")[0]
        except SystemExit:
            subprocess.run(["scancel", preflight], capture_output=True)
            raise
        job = {"preflight": preflight, "array": array_job, "before": before, "tasks": tasks}
        atomic_write(folder / "job.json", json.dumps(job, indent=2))
        return job

    @staticmethod
    def log(out: Path, job: dict, index: int | None) -> Path:
        """The output file of array task `index` (None: of the preflight), as the scripts' --output names it."""
        logs = slurm_dir(out) / "logs"
        return logs / (f"preflight-{job['preflight']}.out" if index is None else f"task-{job['array']}_{index}.out")

    @staticmethod
    def forgotten_state(job: dict, index: int, last_seen: str | None) -> str:
        """The end state of a task slurmctld no longer lists: from the accounting database (sacct) where the cluster
        has one, else what is known (a task cancelled before it started leaves the queue without a trace)."""
        try:
            proc = subprocess.run(["sacct", "-n", "-X", "-P", "-j", f"{job['array']}_{index}", "-o", "State"],
                                  capture_output=True, text=True, timeout=60)
            if proc.returncode == 0 and proc.stdout.split():
                return proc.stdout.split()[0]
        except (OSError, subprocess.TimeoutExpired):
            pass
        return (f"state unknown: it left the queue while {last_seen}, so it was probably cancelled before it started"
                if last_seen == "PENDING" else "state unknown: slurmctld no longer lists it and sacct has no record")

    @staticmethod
    def active(job: dict) -> bool:
        return any(state not in ENDED for state in job_states(job["preflight"], job["array"]).values())

    def wait(self, job: dict, assignment: Assignment, out: Path, store: ResultStore, progress, bar: bool) -> None:
        """Wait for the preflight and the array (a bar of tasks ended), then give every submission left without a
        result a grader-error row. ^C stops waiting only: the jobs go on, and `collect` waits again."""
        folder, tasks = slurm_dir(out), job["tasks"]
        seen: dict[int, str] = {}  # the last state squeue showed of each task (a task cancelled while pending vanishes)
        meter = tqdm(total=len(tasks), unit="task", disable=not bar, dynamic_ncols=True,
                     bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]{postfix}")
        try:
            while True:
                states = job_states(job["preflight"], job["array"])
                preflight = states.get(job["preflight"], "ENDED") if job["preflight"] else "COMPLETED"
                task_states = [states.get(f"{job['array']}_{i}", "ENDED") for i in range(len(tasks))]
                seen.update((i, state) for i, state in enumerate(task_states) if state != "ENDED")
                ended = sum(state in ENDED or state == "ENDED" for state in task_states)
                counts: dict[str, int] = {}
                for state in task_states:
                    counts[state] = counts.get(state, 0) + 1
                meter.set_postfix_str(", ".join(f"{k} {v}" for k, v in sorted(counts.items())), refresh=False)
                meter.update(ended - meter.n)
                if preflight in ENDED | {"ENDED"} and (folder / "preflight.failed").exists():
                    subprocess.run(["scancel", job["array"]], capture_output=True)  # already cancelled by Slurm too
                    raise SystemExit(f"Slurm preflight job {job['preflight']} failed on a compute node, so its array "
                                     f"job {job['array']} was cancelled (its log: {self.log(out, job, None)}):\n"
                                     f"{(folder / 'preflight.failed').read_text().strip()}")
                if ended == len(tasks) and preflight in ENDED | {"ENDED"}:
                    break
                time.sleep(POLL_S)
        except KeyboardInterrupt:
            raise SystemExit(f"Stopped waiting; Slurm job {job['array']} goes on. `python -m autograder collect {out}` "
                             f"waits for it and writes the gradebook (scancel {job['array']} to stop it).") from None
        finally:
            meter.close()
        if preflight not in ("COMPLETED", "ENDED"):
            raise SystemExit(f"grader-error: the preflight job {job['preflight']} ended {preflight}, so no "
                             f"student was graded; its log: {self.log(out, job, None)}")
        missing = 0
        for i, shard in enumerate(tasks):
            state = task_states[i] if task_states[i] != "ENDED" else self.forgotten_state(job, i, seen.get(i))
            for entry in shard:
                stored = store.get(entry["student_id"])
                if stored is not None and stored.graded_at != job["before"].get(entry["student_id"]):
                    continue
                missing += 1
                result = SubmissionResult.without_results(
                    Status.GRADER_ERROR, f"slurm array task {i} of job {job['array']} ended without a result for this "
                    f"submission ({state}; log: {self.log(out, job, i)}); the same command submits it again")
                store.put(StoredResult(entry["student_id"], assignment.name, Path(entry["path"]).name, entry["sha256"],
                                       0.0, result, ""))
        progress(f"Slurm job {job['array']} ended: {len(tasks)} task(s)"
                 + (f"; {missing} submission(s) without a result are grader-error rows (the same command submits "
                    "only them again)" if missing else ", every submission graded") + ".")


def collect(out: Path, bar: bool = True, array_job: str | None = None) -> Gradebook:
    """Wait for the job that `grade --slurm --no-wait` submitted into OUT (or `array_job`: OUT/slurm/grade.sbatch
    submitted again by hand), then write the gradebook."""
    from autograder.pipeline.grade import grade_folder

    path = slurm_dir(out.resolve()) / "batch.json"
    if not path.exists():
        raise SystemExit(f"{out} holds no Slurm submission ({path} is missing): grade with --slurm first")
    batch = json.loads(path.read_text())
    hand_grades, roster = (Path(batch[key]) if batch[key] else None for key in ("hand_grades", "roster"))
    return grade_folder(Path(batch["submissions"]), batch["assignment"], out, GradeOptions.from_dict(batch["options"]),
                        BatchOptions(hand_grades=hand_grades, roster=roster, duplicates=batch["duplicates"], bar=bar,
                                     collect=True),
                        runner=SlurmRunner(SlurmOptions(**batch["slurm"]), array_job))


# -- inside an array task, on a compute node --------------------------------------------------------------------------

def run_task(out: Path, index: int | None) -> int:
    """Grade array task `index`'s submissions (None: the preflight) into OUT, as the local grader grades each."""
    from autograder.pipeline.grade import grade_and_store
    from autograder.pipeline.judges import Interrupted, Judges
    from autograder.pipeline.preflight import check_isolation, preflight
    from autograder.pipeline.survey import Submission

    folder = slurm_dir(out)
    batch = json.loads((folder / "batch.json").read_text())
    assignment = load_assignment(batch["assignment"])
    cpus = int(os.environ.get("SLURM_CPUS_PER_TASK") or batch["slurm"]["cpus_per_task"])
    # one submission at a time in this task, with torch threads for this allocation only (task/none binds nothing)
    options = dataclasses.replace(GradeOptions.from_dict(batch["options"]), workers=1, threads=cpus)
    tag = "-preflight" if index is None else f"-task{index}"
    judges = Judges.for_batch(assignment, out, options, tag)
    signal.signal(signal.SIGTERM, lambda signum, frame: judges.stop())  # scancel, or Slurm's time limit
    try:
        if index is None:
            try:
                check_isolation(options, private=[out], own=[out])
                preflight(assignment, out, options, judges)
            except SystemExit as exc:  # the submitting side shows it and stops: no student is graded
                atomic_write(folder / "preflight.failed", str(exc))
                raise
            return 0
        check_isolation(options, private=[out], own=[out])  # every node: one without bubblewrap must refuse, not grade weakly
        store, grader = ResultStore(out, assignment.name), grader_digest(assignment)
        for entry in batch["tasks"][index]:
            sub = Submission(entry["student_id"], Path(entry["path"]))
            sub.sha256 = submission_digest(sub.path)  # of the bytes graded now
            try:
                result = grade_and_store(sub, assignment, out, options, store, grader, judges)
            except Interrupted:
                print(f"{sub.student_id}: stopped by Slurm (time limit or scancel) before a result", flush=True)
                return 1
            print(f"{sub.student_id}: {result.status}", flush=True)
        return 0
    finally:
        judges.close()

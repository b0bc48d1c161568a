"""Grading through a real Slurm (autograder/deploy/slurm.py): a one-node cluster (munged, slurmctld, slurmd from Debian's
slurm-wlm and munge, which .ci/run installs) is started in a temporary folder for this module and stopped after it,
by the pids it started. The ViT samples graded with `grade --slurm` must score as the local grader scores them (what
source/vit/samples.py declares, which tests/test_samples.py checks locally); an array task that ends without a result
(cancelled with scancel) must become a row with its status, and a rerun must submit only it. Skipped, saying why,
where Slurm is not installed or the tests do not run as root; in CI (CI set) that is a failure instead."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autograder.assignments import PROJECT_ROOT
from autograder.samples import build_samples, samples_for

ASSIGNMENT = "vit"
# trained weights, nothing done, a planted bug, and one that breaks if the sandbox lets it see anything it should not
SAMPLES = ["reference", "untouched_release", "bug_attention_scale", "hostile_snooping"]
SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
GRADE_OPTIONS = ["--memory-mb", "2048"]  # a task asks for 2048 + 2048 MiB: two fit on a small CI machine


def unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the Slurm test: .ci/run installs slurm-wlm and munge)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A one-node Slurm in `root`: its own munge key and socket, slurm.conf, state, spool and logs."""

    def __init__(self, root: Path):
        self.root, self.procs = root, {}
        self.conf = root / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf), PATH=SBIN, DLCOURSE_SLURM_POLL_S="1")

    def write_config(self) -> None:
        for folder in ("state", "spool", "log", "munge"):
            (self.root / folder).mkdir()
        (self.root / "munge").chmod(0o755)  # munge's clients need to reach the socket
        key = self.root / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        memory_mb = int(int(Path("/proc/meminfo").read_text().split()[1]) / 1024 * 0.9)  # MemTotal, less a margin
        node = socket.gethostname().split(".")[0]
        r = self.root
        self.conf.write_text(f"""ClusterName=autogradertest
SlurmctldHost={node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={r}/munge/socket
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerType=sched/builtin
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MinJobAge=600
NodeName={node} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={memory_mb} State=UNKNOWN
PartitionName=grading Nodes={node} Default=YES MaxTime=INFINITE State=UP
""")

    def start(self) -> None:
        self.write_config()
        r = self.root
        self.spawn("munged", ["munged", "-F", "-f", f"--key-file={r}/munge.key", f"--socket={r}/munge/socket",
                              f"--pid-file={r}/munge/pid", f"--log-file={r}/log/munged.log", f"--seed-file={r}/munge/seed"])
        self.wait_for(lambda: (r / "munge" / "socket").exists(), "munged's socket")
        self.spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)])
        self.spawn("slurmd", ["slurmd", "-D", "-f", str(self.conf)])
        self.wait_for(lambda: self.slurm("sinfo", "-h", "-o", "%T").stdout.strip() == "idle", "the node to be idle")

    def spawn(self, name: str, command: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.out", "wb")
        self.procs[name] = subprocess.Popen([shutil.which(command[0], path=SBIN), *command[1:]], stdout=log,
                                            stderr=subprocess.STDOUT, env=self.env, start_new_session=True)

    def wait_for(self, condition, what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            ended = [name for name, proc in self.procs.items() if proc.poll() is not None]
            if ended or time.monotonic() > deadline:
                logs = "".join(f"\n--- {p.name}:\n{p.read_text()[-2000:]}" for p in sorted((self.root / "log").iterdir()))
                pytest.fail(f"Slurm did not start: waiting for {what}; ended: {ended}{logs}")
            time.sleep(0.5)

    def slurm(self, *command: str) -> subprocess.CompletedProcess:
        return subprocess.run(command, capture_output=True, text=True, env=self.env, timeout=60)

    def stop(self) -> None:
        """Cancel what is left of our jobs, then stop exactly the daemons this cluster started."""
        self.slurm("scancel", "--user", "root")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.slurm("squeue", "-h").stdout.strip():
            time.sleep(1)
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.get(name)
            if proc and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    missing = [d for d in ("munged", "slurmctld", "slurmd", "sbatch", "squeue") if not shutil.which(d, path=SBIN)]
    if missing:
        unavailable(f"Slurm is not installed (no {', '.join(missing)}): apt-get install slurm-wlm munge")
    if os.geteuid() != 0:
        unavailable("a test Slurm runs its daemons as root; run the tests as root")
    cluster = Cluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    folder = tmp_path_factory.mktemp("slurm-samples") / "submissions"
    # the demo's recipes, as tests/test_samples.py: the reference's weights are trained once per run, for both
    build_samples(ASSIGNMENT, folder, only=SAMPLES, demo=True)
    return folder


def grade(env: dict, submissions: Path, out: Path, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "autograder", "grade", str(submissions), "--assignment", ASSIGNMENT,
               "--out", str(out), *GRADE_OPTIONS, *extra]
    proc = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, env=env, timeout=900)
    if check:
        assert proc.returncode == 0, f"{' '.join(command)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def rows(out: Path) -> dict[str, dict]:
    return {r["student_id"]: r for r in json.loads((out / "gradebook.json").read_text())["submissions"]}


def essentials(row: dict) -> dict:
    """What a row says about a student's grade and how the worker was confined (not the worker's uid, which is made
    from the judge's pid, nor how long it took)."""
    return {"status": row["status"], "score": row["score"], "max_score": row["max_score"],
            "tests": {tid: (t["outcome"], t["earned"]) for tid, t in row["tests"].items()},
            "isolation": re.sub(r"uid \d+", "uid N", row["isolation"]), "memory_cap": row["memory_cap"]}


def assert_graded_as_declared(row: dict) -> None:
    """The row is what the local grader gives the sample (tests/test_samples.py checks that against the same
    declarations): the status and the failed tests that source/vit/samples.py declares, every other test passed, the
    score their points, the worker under bubblewrap with a uid of its own (as root), the memory cap GRADE_OPTIONS sets."""
    sample = next(s for s in samples_for(ASSIGNMENT) if s.name == row["student_id"])
    outcomes = {tid: t["outcome"] for tid, t in row["tests"].items()}
    assert row["status"] == sample.expect_status, (row["student_id"], row["status"])
    assert {tid for tid, o in outcomes.items() if o != "passed"} == sample.expect_failed, (row["student_id"], outcomes)
    assert row["score"] == sum(t["earned"] for t in row["tests"].values())
    assert row["max_score"] == sum(t["points"] for t in row["tests"].values())
    assert row["isolation"].startswith("bubblewrap (uid "), row["isolation"]
    assert f" {GRADE_OPTIONS[1]} MiB" in row["memory_cap"], row["memory_cap"]


def test_slurm_grades_the_samples_as_the_local_grader(cluster, samples, tmp_path, shellcheck):
    out = tmp_path / "grades"
    proc = grade(cluster.env, samples, out, "--slurm", "--cpus-per-task", "1", "--submissions-per-task", "2")
    graded = rows(out)
    assert set(graded) == set(SAMPLES)
    for row in graded.values():
        assert_graded_as_declared(row)
    assert {r["status"] for r in graded.values()} == {"ok"}  # scored rows, each with its own tests' outcomes
    assert graded["reference"]["score"] > graded["bug_attention_scale"]["score"] > graded["untouched_release"]["score"]
    script = (out / "slurm" / "grade.sbatch").read_text()
    assert "#SBATCH --array=0-1\n" in script and "slurm-task" in script  # readable, and resubmittable as it is
    checked = subprocess.run([shellcheck, "--shell=bash", "grade.sbatch", "preflight.sbatch"], cwd=out / "slurm",
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout
    assert "Slurm job" in proc.stdout and "every submission graded" in proc.stdout
    # the same command again grades nothing: every result is stored, unchanged
    again = grade(cluster.env, samples, out, "--slurm")
    assert "Nothing to grade on Slurm" in again.stdout
    assert {sid: essentials(r) for sid, r in rows(out).items()} == {sid: essentials(r) for sid, r in graded.items()}
    # the script resubmitted by hand grades the same submissions again, and collect merges that job
    before = {sid: json.loads((out / "results" / f"{sid}.json").read_text())["graded_at"] for sid in SAMPLES}
    submitted = cluster.slurm("sbatch", "--parsable", str(out / "slurm" / "grade.sbatch"))
    assert submitted.returncode == 0, submitted.stderr
    collected = subprocess.run([sys.executable, "-m", "autograder", "collect", str(out), "--job",
                                submitted.stdout.strip()], cwd=PROJECT_ROOT, capture_output=True, text=True,
                               env=cluster.env, timeout=900)
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]
    after = {sid: json.loads((out / "results" / f"{sid}.json").read_text())["graded_at"] for sid in SAMPLES}
    assert all(after[sid] > before[sid] for sid in SAMPLES)  # graded again by that job
    assert {sid: essentials(r) for sid, r in rows(out).items()} == {sid: essentials(r) for sid, r in graded.items()}


def test_a_cancelled_array_task_becomes_a_row_and_a_rerun_submits_only_it(cluster, samples, tmp_path):
    subs = tmp_path / "submissions"
    subs.mkdir()
    for name in ("untouched_release", "bug_attention_scale"):
        shutil.copy(samples / f"{name}.tar.gz", subs)
    out = tmp_path / "grades"
    grade(cluster.env, subs, out, "--slurm", "--cpus-per-task", "1", "--array-parallelism", "1", "--no-wait")
    job = json.loads((out / "slurm" / "job.json").read_text())
    victim = job["tasks"][1][0]["student_id"]
    # the array waits for its preflight job, so task 1 is still pending: cancel it as an instructor (or Slurm) would
    assert cluster.slurm("scancel", f"{job['array']}_1").returncode == 0
    for extra in (["--slurm"], []):  # task 0 is not done: no second job, nor a local grader, into OUT
        refused = grade(cluster.env, subs, out, *extra, check=False)
        assert refused.returncode != 0 and f"array job {job['array']} is still grading into" in refused.stderr, \
            refused.stderr
    collected = subprocess.run([sys.executable, "-m", "autograder", "collect", str(out)], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, env=cluster.env, timeout=900)
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]
    graded = rows(out)
    assert graded[victim]["status"] == "grader-error"
    # slurm 22.05 drops a task cancelled while pending from its queue without a trace, and this cluster has no sacct
    assert f"slurm array task 1 of job {job['array']} ended without a result" in graded[victim]["message"]
    assert "state unknown" in graded[victim]["message"] or "(CANCELLED;" in graded[victim]["message"]
    [other] = set(graded) - {victim}
    assert_graded_as_declared(graded[other])
    rerun = grade(cluster.env, subs, out, "--slurm", "--cpus-per-task", "1")
    tasks = json.loads((out / "slurm" / "batch.json").read_text())["tasks"]
    assert [[e["student_id"] for e in shard] for shard in tasks] == [[victim]], rerun.stdout
    for row in rows(out).values():
        assert_graded_as_declared(row)


def test_slurm_errors_are_one_line_naming_the_fix(cluster, samples, tmp_path):
    env = dict(cluster.env, PATH="/nonexistent")
    cases = [(env, ["--slurm"], "sbatch is not on PATH"),
             (cluster.env, ["--slurm", "--partition", "nosuch"], "pass an existing --partition")]
    dead = tmp_path / "dead.conf"  # a controller nobody listens for
    dead.write_text(re.sub(r"SlurmctldPort=\d+", f"SlurmctldPort={free_port()}", cluster.conf.read_text()))
    cases.append((dict(cluster.env, SLURM_CONF=str(dead)), ["--slurm"], "cannot reach slurmctld"))
    for env, extra, expected in cases:
        proc = grade(env, samples, tmp_path / "grades", *extra, check=False)
        assert proc.returncode != 0 and expected in proc.stderr, (extra, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_a_failed_preflight_cancels_the_array_and_blames_no_student(cluster, samples, tmp_path):
    out = tmp_path / "grades"  # a 1 MiB memory cap: no worker can start, on the node as locally
    proc = grade(cluster.env, samples, out, "--slurm", "--memory-mb", "1", "--cpus-per-task", "1", check=False)
    assert proc.returncode != 0 and "Slurm preflight job" in proc.stderr and "no student was graded" in proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    job = json.loads((out / "slurm" / "job.json").read_text())
    states = cluster.slurm("squeue", "-h", "-r", "--states=all", "-j", job["array"], "-o", "%T").stdout.split()
    assert len(states) == len(SAMPLES) and set(states) == {"CANCELLED"}, states
    assert rows(out) == {}  # no row at all, so none blamed on a student

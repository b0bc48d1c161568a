"""Prints one line naming the system tools some tests need that pip cannot install, and the command that installs
them; prints nothing when all are there. `make test` runs it first and it never fails: the tests that need a missing
tool skip, saying why (and fail under CI=true, where .ci/run installs them)."""
from __future__ import annotations

import os
import platform
import shutil
import sys

# tool -> Debian package. The grading sandbox runs bwrap; tests/test_slurm.py starts munged, slurmctld and slurmd;
# tests/test_hand_grading.py drives Debian's chromium (through Playwright, which pip installs).
TOOLS = {"bwrap": "bubblewrap", "slurmctld": "slurm-wlm", "slurmd": "slurm-wlm", "sbatch": "slurm-wlm",
         "squeue": "slurm-wlm", "munged": "munge", "chromium": "chromium"}


def missing_line(search: str, system: str) -> str:
    """The line to print ("" when nothing is missing); `search`: the folders to look in, os.pathsep-separated."""
    if system != "Linux":
        return (f"make test: the grading sandbox (bubblewrap), Slurm and Debian's chromium need Linux: their tests skip on {system} "
                "(CI runs them on Debian)")
    missing = [tool for tool in TOOLS if not shutil.which(tool, path=search)]
    if not missing:
        return ""
    packages = " ".join(dict.fromkeys(TOOLS[tool] for tool in missing))
    return (f"make test: {', '.join(missing)} not found, so the sandbox/Slurm/browser tests will skip; "
            f"install them with: sudo apt-get install {packages}")


if __name__ == "__main__":
    # The daemons live in sbin, often not on a user's PATH; the Slurm test looks there too.
    line = missing_line(os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]), platform.system())
    if line:
        print(line, file=sys.stderr)

"""make test's first line: what pip cannot install, named with the command that installs it."""
from pathlib import Path

from system_tools import TOOLS, missing_line


def fake_tools(folder: Path, names) -> str:
    folder.mkdir()
    for name in names:
        (folder / name).write_text("#!/bin/sh\n")
        (folder / name).chmod(0o755)
    return str(folder)


def test_names_what_is_missing_and_the_command_that_installs_it(tmp_path):
    line = missing_line(fake_tools(tmp_path / "bin", ["bwrap", "sbatch", "chromium"]), "Linux")
    assert line.endswith("install them with: sudo apt-get install slurm-wlm munge")  # each package once
    assert "slurmctld, slurmd, squeue, munged not found" in line and "bwrap" not in line


def test_everything_missing(tmp_path):
    line = missing_line(fake_tools(tmp_path / "bin", []), "Linux")
    assert line.endswith("sudo apt-get install bubblewrap slurm-wlm munge chromium")


def test_says_nothing_when_everything_is_there(tmp_path):
    assert missing_line(fake_tools(tmp_path / "bin", TOOLS), "Linux") == ""


def test_macos_gets_a_note_not_an_apt_command():
    line = missing_line("", "Darwin")
    assert "need Linux" in line and "apt-get" not in line

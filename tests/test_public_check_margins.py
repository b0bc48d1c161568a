"""The public checks pass on the solution with a 10x margin under the float settings that change results, so a
student's machine (another CPU, thread count or kernel library) does not fail a correct solution.

Measured on the solution (issue 29), a check's value moved by up to 3e-5 with ATen's kernels (AVX512/AVX2/portable,
on a logit near zero before the transformer check moved away from such logits), 6e-6 with oneDNN on/off and 5e-6
with the thread count (1, 2, 3-4 and 8 threads split reductions differently). So every printed `(should be < TOL)`
value must be at most TOL / 10 under each setting below; exact verdicts `(should be X)` must hold exactly."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from autograder.assignments import list_assignments
from public_checks import check_cells, run_public_checks, verdicts

MARGIN = 10


def short_of_margin(outputs: dict[str, str]) -> list[str]:
    """The verdict lines that hold with less than MARGIN to spare, or do not hold."""
    return [f"{check}: {line}" for check, text in outputs.items() for line, strict, bound, value in verdicts(text)
            if not (value <= bound / MARGIN if strict else value == bound)]


def verdict_count(outputs: dict[str, str]) -> int:
    return sum(len(verdicts(text)) for text in outputs.values())


@pytest.mark.parametrize("threads, onednn", [(1, True), (2, False), (8, True)],
                         ids=["1thread-onednn", "2threads-no-onednn", "8threads-onednn"])
def test_public_checks_have_a_margin_in_process(threads, onednn):
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.backends.mkldnn.flags(enabled=onednn):
            problems, count = [], 0
            for name in list_assignments():
                outputs: dict[str, str] = {}
                results = run_public_checks(name, outputs=outputs)
                assert list(outputs) == check_cells(name), f"{name}: a check raised: {results}"
                problems += [f"{name} {p}" for p in short_of_margin(outputs)]
                count += verdict_count(outputs)
    finally:
        torch.set_num_threads(previous)
    assert count > 0, "no verdict line was parsed: the margin test would check nothing"
    assert not problems, problems


def test_public_checks_have_a_margin_without_simd_kernels(tmp_path):
    """ATen's portable kernels (ATEN_CPU_CAPABILITY=default, read once at start: a fresh process) stand in for a CPU
    whose vector width differs from this one's; they gave the largest spread measured, at one thread."""
    report_file = tmp_path / "report.json"
    env = dict(os.environ, ATEN_CPU_CAPABILITY="default", OMP_NUM_THREADS="1")
    script = Path(__file__).with_name("public_checks.py")
    subprocess.run([sys.executable, str(script), str(report_file), *list_assignments()], env=env, check=True,
                   cwd=Path(__file__).resolve().parents[1], timeout=900)
    report = json.loads(report_file.read_text())
    problems, count = [], 0
    for name in list_assignments():
        outputs = report[name]["outputs"]
        assert list(outputs) == check_cells(name), f"{name}: a check raised: {report[name]['results']}"
        problems += [f"{name} {p}" for p in short_of_margin(outputs)]
        count += verdict_count(outputs)
    assert count > 0, "no verdict line was parsed: the margin test would check nothing"
    assert not problems, problems


def test_short_of_margin_flags_a_value_within_ten_times_of_its_bound():
    # The margin rule itself: a passing but too-close value is flagged, a far one is not, exact verdicts are exact.
    assert short_of_margin({"c": "x (should be < 1e-4): 2e-05"}) == ["c: x (should be < 1e-4): 2e-05"]
    assert short_of_margin({"c": "x (should be < 1e-4): 9e-06\ny (should be 0): 0.0"}) == []
    assert short_of_margin({"c": "y (should be 0): 1e-12"}) == ["c: y (should be 0): 1e-12"]

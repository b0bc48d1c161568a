"""benchmarks/cuda_check.py cannot rot: its jobs cover every threshold of every assignment, its runs fit the device's
limits, and its dry run (quick recipe on the CPU, the same training, packing and grading path as on a GPU) ends in a
table whose row was graded by the real grader. The GPU numbers themselves come only from a GPU machine
(benchmarks/README.md)."""
import importlib.util
import subprocess
import sys

from autograder.assignments import PROJECT_ROOT, list_assignments, load_assignment


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", PROJECT_ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


cuda_check = _load("cuda_check")


def test_jobs_cover_every_threshold_once_and_runs_fit_the_device():
    covered = [(job.assignment, t) for job in cuda_check.JOBS.values() for t in job.thresholds]
    declared = [(a, t) for a in list_assignments() for t in load_assignment(a).spec.thresholds]
    assert sorted(covered) == sorted(declared), "add a GpuCheck (or a threshold to one) to the spec's gpu_checks"
    in_runs = [name for names in cuda_check.RUNS.values() for name in names]
    assert sorted(in_runs) == sorted(cuda_check.JOBS), "every job belongs to exactly one device run"
    for run, names in cuda_check.RUNS.items():
        assert sum(cuda_check.JOBS[n].budget_s for n in names) <= cuda_check.RUN_LIMIT_S, run
    for job in cuda_check.JOBS.values():
        cells = cuda_check.job_cells(job)  # raises when a skipped cell is no longer a training cell
        assert cells and not set(job.skip_cells) & set(cells)


def test_plan_leaves_out_a_job_whose_budget_no_longer_fits():
    kept, left = cuda_check.plan(["vit-cifar10", "cnn", "rnn", "transformer"], limit_s=540)
    assert [j.name for j in kept] == ["vit-cifar10", "cnn"]  # 300 + 240
    assert [j.name for j in left] == ["rnn", "transformer"]


def test_measured_note_finds_the_note_of_each_threshold():
    notes = {"cnn_simple": "simple note", "cnn_better": "better note", "cnn_better canary": "canary",
             "transformer_multi30k perplexity": "ppl note", "vit_fashionmnist": "fashion note"}
    assert cuda_check.measured_note("better_cnn", notes) == "better note"
    assert cuda_check.measured_note("simple_cnn", notes) == "simple note"
    assert cuda_check.measured_note("multi30k_perplexity", notes) == "ppl note"
    assert cuda_check.measured_note("fashion_mnist", notes) == "fashion note"
    assert cuda_check.measured_note("imdb", notes) == ""


def test_dry_run_trains_packs_and_grades_through_the_real_grader(local_datasets, tmp_path):
    """The cheapest job end to end on the CPU: quick training in a subprocess, the reference archive, the grader."""
    out = tmp_path / "check"
    real_cache = PROJECT_ROOT / "build" / "cache"
    before = {p: p.stat().st_mtime_ns for p in real_cache.glob("*/*")} if real_cache.is_dir() else {}
    proc = subprocess.run([sys.executable, str(PROJECT_ROOT / "benchmarks" / "cuda_check.py"), "--dry-run",
                           "--jobs", "vit-fashionmnist", "--out", str(out), "--allow-weak-isolation"],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "DRY RUN" in proc.stdout
    rows = [line for line in (out / "table.md").read_text().splitlines() if line.startswith("| vit ")]
    assert len(rows) == 1, (out / "table.md").read_text()
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assignment, threshold, bar, outcome, measured, epochs, train_s, total_s, device, data, isolation = cells
    assert (threshold, bar, device) == ("fashion_mnist", "≥ 0.85", "cpu")
    assert outcome in ("passed", "failed", "skipped"), (outcome, measured, (out / "vit-fashionmnist" / "grade.log"))
    assert measured and "FashionMNIST" in data and epochs and isolation
    assert list((out / "cache").glob("vit-*/vit_fashionmnist.safetensors")), "the quick weights are in the scratch cache"
    after = {p: p.stat().st_mtime_ns for p in real_cache.glob("*/*")} if real_cache.is_dir() else {}
    assert after == before, "a dry run must never write quick weights into build/cache"

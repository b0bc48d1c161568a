"""Sample submissions: the reference, the untouched release, planted bugs and hostile ones.

Each assignment lists its samples in `source/<assignment>/samples.py` (beside its notebook and spec; nbgrader keeps
it out of the release) as edits of the instructor's notebook (or of the release), with the tests each must fail. They are generated, not committed, so
they always match the current notebooks:

    python -m autograder samples vit --out build/samples/vit

writes one `<sample>.tar.gz` per sample, packed as CollectSubmission.sh packs a student's work. The
reference sample also carries weights trained by running the reference notebook's own training cells
(cached in build/cache/, retrained when the notebook changes).
"""
from __future__ import annotations

import copy
import fcntl
import functools
import hashlib
import io
import json
import os
import re
import sys
import tarfile
import time
import types
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

from autograder.assignments import PROJECT_ROOT, Assignment, load_assignment, load_module_file
from autograder.notebook import cell_source, grade_id, read_notebook, strip_magics
from autograder.pipeline.results import Status

SOLUTION_MARKER = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$")


@dataclass
class Sample:
    name: str
    description: str
    base: str = "reference"  # "reference": the source with its solutions as a student would write them; "release"
    # (grade_id, old text, new text); the new text may be a function that makes it when the sample is built
    edits: list[tuple[str, str, str | Callable[[], str]]] = field(default_factory=list)
    trained: bool = False  # carry the reference's trained weights
    # carry them with each tensor's values shuffled (seeded): the keys, shapes and scale of trained weights, nothing
    # of what was learned (a model whose code, not its weights, would have to reach a threshold)
    scrambled: bool = False
    expect_failed: set[str] = field(default_factory=set)  # test ids that must fail; all others must pass (or be skipped)
    expect_status: Status = Status.OK
    needs_sandbox: bool = False  # its expectations hold only in a sandbox (bubblewrap or the uid backend), not weakly


def reference_notebook(assignment: Assignment) -> dict:
    """The source notebook with the solution markers removed: a complete student answer."""
    nb = read_notebook(assignment.source_dir / assignment.notebook)
    for cell in nb["cells"]:
        lines = cell_source(cell).splitlines()
        cell["source"] = "\n".join(line for line in lines if not SOLUTION_MARKER.match(line))
    return nb


def sample_notebook(assignment: Assignment, sample: Sample) -> dict:
    nb = reference_notebook(assignment) if sample.base == "reference" else read_notebook(assignment.release_dir / assignment.notebook)
    nb = copy.deepcopy(nb)
    cells = {grade_id(c): c for c in nb["cells"]}
    for gid, old, new in sample.edits:
        source = cell_source(cells[gid])
        if old not in source:
            raise ValueError(f"sample {sample.name}: {old!r} not found in cell {gid!r}")
        cells[gid]["source"] = source.replace(old, new() if callable(new) else new, 1)
    for i, cell in enumerate(c for c in nb["cells"] if c["cell_type"] == "code"):
        cell["execution_count"] = i + 1  # as if the student ran the notebook
    return nb


@functools.lru_cache(maxsize=None)
def samples_for(name: str) -> list[Sample]:
    """The samples declared in source/<name>/samples.py."""
    return load_module_file(f"_assignment_samples_{name}", load_assignment(name).samples_file).SAMPLES


def training_cells(assignment: Assignment) -> list[str]:
    """The reference cells that train the sample weights here: the spec's, plus its CUDA ones where CUDA is."""
    import torch

    extra = assignment.spec.cuda_training_cells if torch.cuda.is_available() else ()
    return [*assignment.spec.training_cells, *extra]


def recipe_edits(assignment: Assignment, demo: bool) -> tuple[tuple[str, str, str], ...]:
    """The edits of the training cells that train the reference here: the spec's demo recipes for `make demo`, none
    otherwise (the notebook's own recipes)."""
    return assignment.spec.demo_edits if demo else ()


def reference_files_missing(name: str, cache_root: Path | None = None, demo: bool = False) -> list[str]:
    """The saved files (weights, tokenizers) the reference sample of `name` lacks on this machine: those its training
    cells here do not make (cuda_training_cells where there is no CUDA), or all of them where it carries none. Their
    thresholds fail for the reference here: the demo says "no reference weights in this demo"."""
    assignment = load_assignment(name)
    reference = next((s for s in samples_for(name) if s.name == "reference"), None)
    saved = list(assignment.files[1:])
    if reference is None or not reference.trained:
        return saved
    folder = reference_cache(assignment, training_cells(assignment), cache_root or PROJECT_ROOT / "build" / "cache",
                             recipe_edits(assignment, demo))
    return [f for f in saved if not (folder / f).exists()]


def run_reference_cells(assignment: Assignment, cell_ids: list[str], log=None,
                        edits: tuple[tuple[str, str, str], ...] = ()) -> dict:
    """Execute the reference notebook's cells `cell_ids`, in order, in a fresh module; return its namespace.
    `edits`: (grade_id, old text, new text) replacements in those cells first (the demo's shorter recipes).
    (Trusted: this is the instructor's own code.)"""
    cells = {grade_id(c): c for c in edited_notebook(assignment, edits)["cells"] if grade_id(c)}
    missing = [gid for gid in cell_ids if gid not in cells]
    if missing:
        raise SystemExit(f"the reference notebook of {assignment.name} has no cell(s) {missing}")
    os.environ.setdefault("MPLBACKEND", "Agg")
    module = types.ModuleType(f"__reference_{assignment.name}__")  # a real module: dataclasses look it up in sys.modules
    sys.modules[module.__name__] = module
    for gid in cell_ids:
        if log:
            log(f"[reference {assignment.name}] running cell {gid}")
        exec(compile(strip_magics(cell_source(cells[gid])), f"<reference {gid}>", "exec"), module.__dict__)
    return module.__dict__


def edited_notebook(assignment: Assignment, edits: tuple[tuple[str, str, str], ...] = ()) -> dict:
    """The reference notebook with `edits` applied: (grade_id, old text, new text), each old text found once."""
    nb = reference_notebook(assignment)
    cells = {grade_id(c): c for c in nb["cells"] if grade_id(c)}
    for gid, old, new in edits:
        source = cell_source(cells[gid]) if gid in cells else ""
        if old not in source:
            raise SystemExit(f"{assignment.source_dir / 'spec.py'}: demo_edits: {old!r} is not in cell {gid!r} of "
                             f"{assignment.notebook}: update the edit to the notebook's text")
        cells[gid]["source"] = source.replace(old, new, 1)
    return nb


def reference_cache(assignment: Assignment, cells: list[str], cache_root: Path,
                    edits: tuple[tuple[str, str, str], ...] = ()) -> Path:
    """The folder where the reference's weights trained by `cells` (with `edits`) are kept: named after the notebook's
    code's hash, so a changed code cell or recipe trains again (markdown, the points table included, trains nothing)."""
    from autograder.deploy.colab import is_generated  # the Colab setup/submit cells train nothing: they leave the key alone

    nb = edited_notebook(assignment, edits)
    sources = [cell_source(c) for c in nb["cells"] if c.get("cell_type") == "code" and not is_generated(c)]
    digest = hashlib.sha256(json.dumps([cells, sources]).encode()).hexdigest()[:12]
    folder = cache_root / f"{assignment.name}-{digest}"
    if not (folder / "TRAINED").exists():  # a copy under another name (same cells, same sources) has the same weights
        folder = next((done.parent for done in sorted(cache_root.glob(f"*-{digest}/TRAINED"))), folder)
    return folder


def train_reference(assignment: Assignment, cells: list[str], cache_root: Path,
                    edits: tuple[tuple[str, str, str], ...] = ()) -> Path:
    """Run the reference notebook's own cells (definitions, data, hyper-parameters, training; with `edits`) in this
    process, in its cache folder (reference_cache); return the folder with the saved weights. On a CPU the cells run
    on the course's torch thread count (`dlcourse.threads`), the same a student's run gets."""
    from dlcourse.threads import torch_threads
    from dlcourse.utils import get_device

    folder = reference_cache(assignment, cells, cache_root, edits)
    if (folder / "TRAINED").exists():
        return folder
    cache_root.mkdir(parents=True, exist_ok=True)
    # One training per cache folder at a time: the demo's trainings and the test workers (pytest-xdist) may ask for the
    # same reference at once; the second waits for the first and takes its weights.
    with open(cache_root / f"{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        folder = reference_cache(assignment, cells, cache_root, edits)
        done = folder / "TRAINED"
        if done.exists():
            return folder
        folder.mkdir(parents=True, exist_ok=True)
        started, cpu, previous = time.time(), time.process_time(), Path.cwd()
        os.chdir(folder)  # the training cells save their weights into the working folder
        try:
            # the cells pick their device with get_device too; BERT's matmuls are big enough for all cores
            with torch_threads(get_device(verbose=False), large_model=assignment.spec.large_model):
                run_reference_cells(assignment, cells, log=lambda m: print(m, flush=True), edits=edits)
        finally:
            os.chdir(previous)
        # CPU seconds too: with one thread they are what the training costs whatever else the machine was doing
        done.write_text(f"trained in {time.time() - started:.0f} s ({time.process_time() - cpu:.0f} CPU s)\n")
    return folder


def scrambled_weights(data: bytes, seed: int = 0) -> bytes:
    """safetensors `data` with each tensor's values in a seeded random order: same keys, shapes and dtypes."""
    import torch
    from safetensors.torch import load, save

    generator = torch.Generator().manual_seed(seed)
    state = load(data)
    return save({k: v.flatten()[torch.randperm(v.numel(), generator=generator)].reshape(v.shape) for k, v in state.items()})


def build_samples(name: str, out: Path, cache_root: Path | None = None, only: Collection[str] | None = None,
                  demo: bool = False) -> list[Path]:
    """Write every sample of assignment `name` (or those named in `only`) as `<out>/<sample>.tar.gz`; return the
    archive paths. The reference's weights are trained (or taken from the cache) only when a sample chosen needs them;
    `demo`: with the spec's demo recipes (recipe_edits)."""
    assignment = load_assignment(name)
    samples = [s for s in samples_for(name) if only is None or s.name in only]
    unknown = set(only or ()) - {s.name for s in samples}
    if unknown:
        raise SystemExit(f"{assignment.samples_file}: no sample(s) named {', '.join(sorted(unknown))}")
    out.mkdir(parents=True, exist_ok=True)
    weights_dir: Path | None = None
    if any(s.trained or s.scrambled for s in samples):
        weights_dir = train_reference(assignment, training_cells(assignment), cache_root or PROJECT_ROOT / "build" / "cache",
                                      recipe_edits(assignment, demo))
    archives = []
    for sample in samples:
        files = {assignment.notebook: json.dumps(sample_notebook(assignment, sample), indent=1).encode()}
        if sample.trained or sample.scrambled:
            assert weights_dir is not None, "trained above for any trained or scrambled sample"
            for f in assignment.files[1:]:
                if (weights_dir / f).exists():
                    data = (weights_dir / f).read_bytes()
                    files[f] = scrambled_weights(data) if sample.scrambled and f.endswith(".safetensors") else data
        files["manifest.json"] = json.dumps({"student_id": sample.name, "assignment": name,
                                             "files": sorted(files), "sample": sample.description}).encode()
        archive = out / f"{sample.name}.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            for fname, data in files.items():
                info = tarfile.TarInfo(f"{name}/{fname}")
                info.size, info.mtime = len(data), 0
                tar.addfile(info, io.BytesIO(data))
        archives.append(archive)
    return archives



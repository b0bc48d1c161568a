"""Time to accuracy: train the reference ViT with the reference recipe and report when it reaches
the autograder's threshold.

    python benchmarks/time_to_accuracy.py                      # FashionMNIST, target 85 %
    python benchmarks/time_to_accuracy.py --dataset cifar10    # CIFAR-10, target 65 % (CUDA GPU only)
    python benchmarks/time_to_accuracy.py --epochs 2           # override the recipe's epoch count

The model is the instructor's own code: the reference notebook's cells "setup", "patchify",
"attention", "mlp", "block", "vit_config" and "vit" are executed in a fresh module, then the
hyper-parameter cell ("fashion_hparams" or "cifar_hparams") gives the ViTConfig and TrainRecipe.
Training is `dlcourse.train_classifier`, which evaluates test accuracy after every epoch; the
History's per-epoch `test_acc` and `seconds` give the epoch and wall time at which the threshold is
first met. `seconds` covers the training epochs and their test evaluations, not data loading or
model construction (those are reported separately).

Data comes from `dlcourse.load_image_split` (set DLCOURSE_DATA_MIRROR=../shared/data to run
offline). Offline, CIFAR-10 is the JPEG q75 stand-in; its `source` string is printed in the table
and results on it must be reported as "CIFAR-10 (JPEG q75 stand-in)", never as CIFAR-10.

This is a benchmark: it prints a table and makes no assertion about the numbers.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

# Run from anywhere: the project is installed editable, but make `python benchmarks/...` work from
# a plain checkout too.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from autograder.assignments import load_assignment  # noqa: E402
from autograder.samples import run_reference_cells  # noqa: E402
from dlcourse.data import load_image_split  # noqa: E402
from dlcourse.threads import torch_threads  # noqa: E402
from dlcourse.training import QUICK_ENV, quick_mode, train_classifier  # noqa: E402
from dlcourse.utils import seed_everything  # noqa: E402

MODEL_CELLS = list(load_assignment("vit").spec.run_cells)  # the model's cells, as the worker runs them
SETTINGS = {
    # dataset: (hyper-parameter cell, config variable, recipe variable, threshold)
    "fashion_mnist": ("fashion_hparams", "fashion_config", "fashion_recipe", 0.85),
    "cifar10": ("cifar_hparams", "cifar_config", "cifar_recipe", 0.65),
}
DATASET_ALIASES = {"fashion_mnist": "fashion_mnist", "fashionmnist": "fashion_mnist", "fashion": "fashion_mnist",
                   "cifar10": "cifar10", "cifar": "cifar10", "cifar-10": "cifar10"}


def reference_namespace(hparams_cell: str) -> dict:
    """Execute the reference notebook's model cells and `hparams_cell` in a fresh module; return its namespace."""
    with contextlib.redirect_stdout(sys.stderr):  # the cells print (e.g. "Using device"); stdout is for the table
        return run_reference_cells(load_assignment("vit"), MODEL_CELLS + [hparams_cell])


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} torch threads, {os.cpu_count()} CPU cores, {platform.processor() or platform.machine()})"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="fashion_mnist", type=str.lower,
                        help="fashion_mnist (default, target 85%%) or cifar10 (target 65%%)")
    parser.add_argument("--epochs", type=int, help="override the recipe's epoch count (the LR schedule is "
                        "rescaled to it, so this is a different run, not a prefix of the reference run)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto (default): cuda if available, else cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads on a CPU (default: the course setting, "
                        "dlcourse.threads: DLCOURSE_THREADS, else 1)")
    parser.add_argument("--force", action="store_true", help="run CIFAR-10 on a CPU anyway (hours)")
    args = parser.parse_args(argv)

    dataset = DATASET_ALIASES.get(args.dataset)
    if dataset is None:
        parser.error(f"unknown dataset {args.dataset!r}; choose fashion_mnist or cifar10")
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        if args.device == "cuda" and not torch.cuda.is_available():
            parser.error("--device cuda, but torch sees no CUDA device")
        device = torch.device(args.device)
    if dataset == "cifar10" and device.type != "cuda" and not args.force:
        print("CIFAR-10 with the reference recipe (40 epochs, a 6-layer 192-wide ViT) is meant for a CUDA GPU; "
              "on a CPU it takes many hours. Refusing; pass --force to run it anyway.", file=sys.stderr)
        return 2

    with torch_threads(device, threads=args.threads):  # the whole run, model construction and evaluation included
        return measure(args, parser, dataset, device)


def measure(args: argparse.Namespace, parser: argparse.ArgumentParser, dataset: str, device: torch.device) -> int:
    hparams_cell, config_name, recipe_name, threshold = SETTINGS[dataset]
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    namespace = reference_namespace(hparams_cell)
    config, recipe = namespace[config_name], namespace[recipe_name]
    if args.epochs is not None:
        if args.epochs < 1:
            parser.error("--epochs must be at least 1")
        recipe = dataclasses.replace(recipe, epochs=args.epochs)
    if quick_mode():
        print(f"warning: {QUICK_ENV}=1 shrinks every run to one epoch on a small subset; "
              "these numbers are a smoke test, not a benchmark.", file=sys.stderr)

    t0 = time.perf_counter()
    train = load_image_split(dataset, train=True)
    test = load_image_split(dataset, train=False)
    load_seconds = time.perf_counter() - t0

    seed_everything(recipe.seed)
    model = namespace["ViT"](config)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"Training the reference ViT ({n_params:,} parameters) on {train.source} for {recipe.epochs} epoch(s) "
          f"on {device_description(device)} ...", file=sys.stderr, flush=True)
    with contextlib.redirect_stdout(sys.stderr):  # per-epoch log lines go to stderr, the tables to stdout
        history = train_classifier(model, train, test, recipe, device=device, progress=False)
    effective = recipe.quick() if quick_mode() else recipe  # what train_classifier actually ran
    total_seconds = time.perf_counter() - started

    cumulative, reached = 0.0, None
    per_epoch = []
    for epoch, (acc, seconds) in enumerate(zip(history.test_acc, history.seconds, strict=True), start=1):
        cumulative += seconds
        per_epoch.append([str(epoch), f"{history.train_loss[epoch - 1]:.4f}", f"{acc:.2%}", f"{seconds:.1f}",
                          f"{cumulative:.1f}"])
        if reached is None and acc >= threshold:
            reached = (epoch, cumulative)

    recipe_text = ", ".join(f"{f.name}={getattr(effective, f.name)}" for f in dataclasses.fields(effective))
    n_train = min(len(train), effective.train_subset or len(train))
    rows = [
        ["date", dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")],
        ["dataset source", train.source + (f" ({QUICK_ENV}=1: smoke test, not a result)" if quick_mode() else "")],
        ["train / test images", f"{n_train:,} / {len(test):,}"],
        ["device", device_description(device)],
        ["torch", torch.__version__],
        ["model", f"reference ViT, {n_params:,} parameters ({config})"],
        ["recipe", f"{hparams_cell}{' with --epochs ' + str(args.epochs) if args.epochs is not None else ''}"
                   f"{' shrunk by ' + QUICK_ENV + '=1' if quick_mode() else ''}: {recipe_text}"],
        ["target test accuracy", f"{threshold:.0%}"],
        ["epochs to target", str(reached[0]) if reached else f"not reached in {len(history.test_acc)}"],
        ["wall seconds to target", f"{reached[1]:.1f}" if reached else "not reached"],
        ["final test accuracy", f"{history.test_acc[-1]:.2%}"],
        ["training + eval seconds (all epochs)", f"{sum(history.seconds):.1f}"],
        ["data loading seconds", f"{load_seconds:.1f}"],
        ["total wall seconds (incl. setup)", f"{total_seconds:.1f}"],
        ["1-min load average before / after", f"{load_before:.2f} / {os.getloadavg()[0]:.2f} "
         "(other processes on the CPUs slow every epoch they overlap)"],
    ]
    print()
    print(markdown_table(["metric", "value"], rows))
    print()
    print(markdown_table(["epoch", "train loss", "test acc", "epoch s (train + eval)", "cumulative s"], per_epoch))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Do the reference recipes clear their own bars? Trains each reference recipe that fits a CPU to completion, with
the source notebook's own cells (definitions, data, hyper-parameters, training), and prints the value it reaches
on the whole test split (measured by the notebook's own evaluation after the last epoch), the course's bar, the
margin and the time. Not run in CI: minutes to hours.

    python benchmarks/recipes.py                 # the recipes that take minutes on a CPU (ViT FashionMNIST, SimpleCNN, RNN)
    python benchmarks/recipes.py --only rnn      # one of them
    python benchmarks/recipes.py --only lstm     # also the long ones by name (the LSTM: ~20 min an epoch on 2 cores)

Run it niced in the background on a shared machine, e.g.
    nohup nice -n 10 python benchmarks/recipes.py --only rnn > recipes.log 2>&1 &

Measured (2 shared CPU cores, torch threads 1-2, seed 0): see benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autograder.assignments import load_assignment  # noqa: E402
from autograder.samples import run_reference_cells  # noqa: E402
from dlcourse.threads import torch_threads  # noqa: E402
from dlcourse.utils import get_device  # noqa: E402


@dataclass(frozen=True)
class ReferenceRecipe:
    assignment: str
    threshold: str  # the name of its threshold in the assignment's spec
    cells: tuple[str, ...]  # the notebook's cells that train it, in order
    history: str  # the notebook variable holding its History (test_acc per epoch, on the whole test split)
    fits_a_cpu: bool = True  # run by default (minutes); False: only when named (hours)


RNN_DEFINITIONS = ("setup", "imdb_data", "collate", "vanilla_rnn", "lstm", "classifier_config", "classifier", "loss",
                   "loops")
RECIPES = {
    "vit_fashionmnist": ReferenceRecipe("vit", "fashion_mnist", ("setup", "patchify", "attention", "mlp", "block",
                                        "vit_config", "vit", "fashion_data", "fashion_hparams", "fashion_train"),
                                        "fashion_history"),
    "cnn_simple": ReferenceRecipe("cnn", "simple_cnn", ("setup", "simple_config", "simple_cnn", "cifar_data",
                                  "simple_hparams", "simple_train"), "simple_history"),
    "rnn": ReferenceRecipe("rnn", "rnn", RNN_DEFINITIONS + ("rnn_hparams", "rnn_train"), "rnn_history"),
    "lstm": ReferenceRecipe("rnn", "lstm", RNN_DEFINITIONS + ("lstm_hparams", "lstm_train"), "lstm_history",
                            fits_a_cpu=False),
}


def train(name: str, recipe: ReferenceRecipe) -> tuple[float, float, float]:
    """(test accuracy after the last epoch, bar, seconds) of the reference recipe `name`, trained in a temporary folder."""
    assignment = load_assignment(recipe.assignment)
    bar = assignment.spec.thresholds[recipe.threshold].value
    previous = Path.cwd()
    with tempfile.TemporaryDirectory(prefix=f"recipe-{name}-") as folder:
        os.chdir(folder)  # the training cells save their files into the working folder
        try:
            started = time.time()
            namespace = run_reference_cells(assignment, list(recipe.cells), log=lambda m: print(m, flush=True))
            seconds = time.time() - started
        finally:
            os.chdir(previous)
    return namespace[recipe.history].test_acc[-1], bar, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=sorted(RECIPES), help="these recipes (default: all that fit a CPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads on a CPU (default: the course "
                        "setting, dlcourse.threads: DLCOURSE_THREADS, else 1: reproducible, and kind to a shared machine)")
    args = parser.parse_args()
    with torch_threads(get_device(verbose=False), threads=args.threads):  # the device the notebook cells pick
        run(args)


def run(args: argparse.Namespace) -> None:
    os.environ.pop("DLCOURSE_QUICK", None)  # the full recipes, never the smoke-test size
    names = args.only or [name for name, recipe in RECIPES.items() if recipe.fits_a_cpu]
    rows = []
    for name in names:
        print(f"=== training {name} (the reference notebook's own cells)", flush=True)
        accuracy, bar, seconds = train(name, RECIPES[name])
        rows.append((name, accuracy, bar, seconds))
        print(f"{name}: {accuracy:.2%} (bar {bar:.0%}) in {seconds:.0f} s", flush=True)
    print(f"\n{'recipe':<18} {'test accuracy':>13} {'bar':>6} {'margin':>8} {'ratio':>6} {'time':>8}")
    for name, accuracy, bar, seconds in rows:
        print(f"{name:<18} {accuracy:>13.2%} {bar:>6.0%} {100 * (accuracy - bar):>+7.2f}p {accuracy / bar:>6.3f} "
              f"{seconds:>7.0f}s")
    failing = [name for name, accuracy, bar, _ in rows if accuracy < bar]
    if failing:
        raise SystemExit(f"below their bars: {', '.join(failing)}")


if __name__ == "__main__":
    main()

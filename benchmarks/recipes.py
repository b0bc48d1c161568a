"""Do the reference recipes clear their own bars? Trains each reference recipe that fits a CPU to completion, with
the source notebook's own cells (definitions, data, hyper-parameters, training), and prints the value it reaches
on the whole test split (measured by the notebook's own evaluation after the last epoch), the course's bar, the
margin and the time. Not run in CI: minutes to hours.

The RNN recipes are chosen on a validation split (dlcourse.rnn.validation_split: 10 % of the IMDB training reviews,
seeded, never trained on), so for them the table shows the validation accuracy beside the test accuracy; a recipe
is picked by the first column, and the second is the number the grader checks. `rnn_read_first` is the RNN recipe
reading the first tokens of each review instead of the last (the choice the validation split decides).

    python benchmarks/recipes.py                 # the recipes that take minutes on a CPU (ViT FashionMNIST, SimpleCNN, RNN)
    python benchmarks/recipes.py --only rnn      # one of them
    python benchmarks/recipes.py --only lstm     # also the long ones by name (the LSTM: ~20 min an epoch on 2 cores)
    python benchmarks/recipes.py --only rnn rnn_read_first --reduced   # a shorter run, labelled "reduced" in the table

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
    edits: tuple[tuple[str, str, str], ...] = ()  # (cell, old, new) changes to the notebook's recipe (a variant)
    reduced: tuple[tuple[str, str, str], ...] = ()  # the changes of --reduced: a shorter run of the same recipe
    validated: bool = False  # chosen on a validation split: its History has val_acc


# --reduced for the RNN: 6 000 of the 22 500 training reviews and 3 of the 6 epochs (about 6 minutes on one idle core
# instead of about 33); the validation and test splits stay whole.
RNN_REDUCED = (("rnn_hparams", "rnn_recipe = RNNRecipe(epochs=6,", "rnn_recipe = RNNRecipe(epochs=3, train_subset=6000,"),)
RNN_DEFINITIONS = ("setup", "imdb_data", "collate", "vanilla_rnn", "lstm", "classifier_config", "classifier", "loss",
                   "loops")
RECIPES = {
    "vit_fashionmnist": ReferenceRecipe("vit", "fashion_mnist", ("setup", "patchify", "attention", "mlp", "block",
                                        "vit_config", "vit", "fashion_data", "fashion_hparams", "fashion_train"),
                                        "fashion_history"),
    "cnn_simple": ReferenceRecipe("cnn", "simple_cnn", ("setup", "simple_config", "simple_cnn", "cifar_data",
                                  "simple_hparams", "simple_train"), "simple_history"),
    "rnn": ReferenceRecipe("rnn", "rnn", RNN_DEFINITIONS + ("rnn_hparams", "rnn_train"), "rnn_history",
                           reduced=RNN_REDUCED, validated=True),
    "rnn_read_first": ReferenceRecipe("rnn", "rnn", RNN_DEFINITIONS + ("rnn_hparams", "rnn_train"), "rnn_history",
                                      fits_a_cpu=False, edits=(("rnn_hparams", 'read="last"', 'read="first"'),),
                                      reduced=RNN_REDUCED, validated=True),
    "lstm": ReferenceRecipe("rnn", "lstm", RNN_DEFINITIONS + ("lstm_hparams", "lstm_train"), "lstm_history",
                            fits_a_cpu=False, validated=True),
}


@dataclass(frozen=True)
class Outcome:
    """What one recipe reached after its last epoch."""

    name: str
    val_accuracy: float | None  # on the validation split (recipes chosen on one), else None
    test_accuracy: float
    bar: float
    seconds: float


def train(name: str, recipe: ReferenceRecipe, reduced: bool = False) -> Outcome:
    """The accuracies after the last epoch of the reference recipe `name` (its shorter run with `reduced`), trained
    in a temporary folder."""
    assignment = load_assignment(recipe.assignment)
    bar = assignment.spec.thresholds[recipe.threshold].value
    if reduced and not recipe.reduced:
        raise SystemExit(f"{name} has no reduced run; run it without --reduced")
    previous = Path.cwd()
    with tempfile.TemporaryDirectory(prefix=f"recipe-{name}-") as folder:
        os.chdir(folder)  # the training cells save their files into the working folder
        try:
            started = time.time()
            namespace = run_reference_cells(assignment, list(recipe.cells), log=lambda m: print(m, flush=True),
                                            edits=recipe.edits + (recipe.reduced if reduced else ()))
            seconds = time.time() - started
        finally:
            os.chdir(previous)
    history = namespace[recipe.history]
    return Outcome(name + (" (reduced)" if reduced else ""), history.val_acc[-1] if recipe.validated else None,
                   history.test_acc[-1], bar, seconds)


def table(outcomes: list[Outcome]) -> str:
    """The benchmark's table: validation and test accuracy side by side, the bar, the test margin and ratio."""
    lines = [f"{'recipe':<26} {'val accuracy':>12} {'test accuracy':>13} {'test-val':>9} {'bar':>5} {'margin':>8} "
             f"{'test/bar':>8} {'time':>7}"]
    for o in outcomes:
        val = f"{o.val_accuracy:>12.2%}" if o.val_accuracy is not None else f"{'-':>12}"
        gap = f"{100 * (o.test_accuracy - o.val_accuracy):>+8.2f}p" if o.val_accuracy is not None else f"{'-':>9}"
        lines.append(f"{o.name:<26} {val} {o.test_accuracy:>13.2%} {gap} {o.bar:>5.0%} "
                     f"{100 * (o.test_accuracy - o.bar):>+7.2f}p {o.test_accuracy / o.bar:>8.3f} {o.seconds:>6.0f}s")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=sorted(RECIPES), help="these recipes (default: all that fit a CPU)")
    parser.add_argument("--reduced", action="store_true", help="a shorter run of each recipe that has one (fewer "
                        "training examples and epochs; the table labels it), where the full recipe takes too long")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads on a CPU (default: the course "
                        "setting, dlcourse.threads: DLCOURSE_THREADS, else 1: reproducible, and kind to a shared machine)")
    args = parser.parse_args()
    with torch_threads(get_device(verbose=False), threads=args.threads):  # the device the notebook cells pick
        run(args)


def run(args: argparse.Namespace) -> None:
    os.environ.pop("DLCOURSE_QUICK", None)  # the full recipes, never the smoke-test size
    names = args.only or [name for name, recipe in RECIPES.items() if recipe.fits_a_cpu]
    outcomes = []
    for name in names:
        print(f"=== training {name} (the reference notebook's own cells{', reduced' if args.reduced else ''})", flush=True)
        outcome = train(name, RECIPES[name], reduced=args.reduced)
        outcomes.append(outcome)
        val = f", validation {outcome.val_accuracy:.2%}" if outcome.val_accuracy is not None else ""
        print(f"{outcome.name}: test {outcome.test_accuracy:.2%}{val} (bar {outcome.bar:.0%}) in {outcome.seconds:.0f} s",
              flush=True)
    print("\n" + table(outcomes))
    failing = [o.name for o in outcomes if o.test_accuracy < o.bar and not args.reduced]  # a shorter run may fall short
    if failing:
        raise SystemExit(f"below their bars: {', '.join(failing)}")

if __name__ == "__main__":
    main()

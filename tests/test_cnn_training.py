"""The CNN assignment's training path works on CPU (CI): the reference BetterCNN, taken from the source
notebook's own cells, trains for a short run on a few thousand real CIFAR-10 training images (the local
JPEG q75 stand-in where that is what the mirror holds) with the shared loop, and its loss falls and its
accuracy on 1 000 test images clearly beats chance (10 %).

The full run (≥ 70 % on the whole test split) needs a GPU and is judged by the autograder in CUDA runs;
this test uses a narrower width (16 instead of 32) and 3 000 images so that it takes 20 s (idle) to 90 s (busy) on
two cores."""
import time

import pytest
import torch

from autograder.assignments import load_assignment
from autograder.samples import run_reference_cells
from dlcourse import TrainRecipe, load_image_split, seed_everything, train_classifier

DEFINITION_CELLS = ["setup", "simple_config", "simple_cnn", "inception", "residual", "better_config", "better_cnn"]


@pytest.fixture(scope="module")
def reference():
    """The namespace of the reference notebook's definition cells (solutions included)."""
    return run_reference_cells(load_assignment("cnn"), DEFINITION_CELLS)


def test_reference_better_cnn_learns_on_a_cifar10_subset(reference, local_datasets, monkeypatch):
    monkeypatch.delenv("DLCOURSE_QUICK", raising=False)  # this test sets its own size
    torch.set_num_threads(2)
    train = load_image_split("cifar10", train=True).subset(3000, seed=0)
    test = load_image_split("cifar10", train=False).subset(1000, seed=0)
    seed_everything(0)
    model = reference["BetterCNN"](reference["BetterCNNConfig"](width=16, dropout=0.0))
    recipe = TrainRecipe(epochs=3, batch_size=64, lr=3e-3, weight_decay=0.05, warmup_epochs=0.3)
    started = time.time()
    history = train_classifier(model, train, test, recipe, device="cpu", progress=False)
    print(f"\nBetterCNN(width=16) on {train.source}: train loss per epoch "
          f"{[round(x, 3) for x in history.train_loss]}, test accuracy per epoch "
          f"{[f'{a:.1%}' for a in history.test_acc]} on {len(test)} test images of {test.source}, "
          f"{time.time() - started:.0f} s")
    assert history.train_loss[-1] < history.train_loss[0] - 0.1, history.train_loss
    assert history.test_acc[-1] > 0.25, history.test_acc

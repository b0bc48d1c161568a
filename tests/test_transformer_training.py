"""The Transformer assignment's training paths on CPU (CI).

- The synthetic threshold (reversal, >= 99 % of held-out sequences exactly right) is judged through the real
  grading path by tests/test_samples.py, on the reference sample that the notebook's own cells train.
- Multi30k: the course tokenizer is deterministic and has the special ids the notebook relies on, and a tiny
  reference Transformer trained for 60 steps on real Multi30k pairs lowers the validation perplexity from about
  the vocabulary size (8 000) to well below it. The full run needs a GPU to train; its test perplexity threshold
  is judged by the autograder on every grader (all 1 000 test pairs: seconds on a CPU), a path checked below.
"""
import json
import time

import pytest
import torch

from autograder.assignments import load_assignment
from autograder.feedback import Feedback
from autograder.samples import run_reference_cells
from threshold_notes import assert_decided
from dlcourse.translation import (BOS_ID, EOS_ID, PAD_ID, UNK_ID, Seq2SeqRecipe, encode_pairs, evaluate_perplexity,
                                  train_multi30k_tokenizer, train_seq2seq)


DEFINITION_CELLS = ["setup", "positional_encoding", "masks", "mha", "feedforward", "encoder_layer", "decoder_layer",
                    "transformer_config", "transformer", "greedy"]


@pytest.fixture(scope="module")
def multi30k():
    from dlcourse.text_data import load_multi30k

    return load_multi30k("train"), load_multi30k("val")


def test_course_tokenizer_is_deterministic_with_the_special_ids(multi30k, local_datasets):
    train, _ = multi30k
    first, second = train_multi30k_tokenizer(train), train_multi30k_tokenizer(train)
    assert first.get_vocab() == second.get_vocab() and first.get_vocab_size() == 8000
    assert [first.token_to_id(t) for t in ("[PAD]", "[BOS]", "[EOS]", "[UNK]")] == [PAD_ID, BOS_ID, EOS_ID, UNK_ID]
    english = train[0][1]
    assert first.decode(first.encode(english).ids) == english.lower()
    src, tgt = encode_pairs(first, train[:50])
    assert (tgt[:, 0] == BOS_ID).all() and ((src == EOS_ID).sum(1) == 1).all() and ((tgt == EOS_ID).sum(1) == 1).all()


def test_reference_transformer_learns_on_a_multi30k_subset(multi30k, local_datasets, monkeypatch, course_threads):
    monkeypatch.delenv("DLCOURSE_QUICK", raising=False)  # this test sets its own size
    train, val = multi30k
    tokenizer = train_multi30k_tokenizer(train)
    train_ids, val_ids = encode_pairs(tokenizer, train[:4000]), encode_pairs(tokenizer, val[:200])
    ns = run_reference_cells(load_assignment("transformer"), DEFINITION_CELLS)
    config = ns["TransformerConfig"](src_vocab_size=8000, tgt_vocab_size=8000, d_model=64, num_heads=4, num_encoder_layers=1,
                                     num_decoder_layers=1, d_ff=128, dropout=0.0)
    torch.manual_seed(0)
    model = ns["Transformer"](config)
    before = evaluate_perplexity(model, *val_ids)
    started = time.time()
    history = train_seq2seq(model, train_ids, val_ids, Seq2SeqRecipe(epochs=1, batch_size=64, lr=2e-3, warmup_steps=15,
                                                                     max_steps=60))
    print(f"\ntiny Transformer (d=64, 1+1 layers) on Multi30k: validation perplexity {before:.0f} -> "
          f"{history.val_perplexity[-1]:.0f} on 200 pairs after 60 steps of 64 pairs, {time.time() - started:.0f} s")
    assert before > 3000
    assert history.val_perplexity[-1] < 800, history.val_perplexity


def test_multi30k_perplexity_grading_path_agrees_with_the_notebook(tmp_path, multi30k, local_datasets):
    """The perplexity threshold's scoring on CPU: a saved (untrained, tiny) model and the course tokenizer go through
    the sandbox; the grader's perplexity equals evaluate_perplexity's in this process, a bar just above it passes, one
    just below fails (CI bars around this model's value, not the course's), and the note says how it was decided."""

    from autograder.hidden_tests import test_transformer as hidden
    from autograder.spec import Threshold
    from autograder.kit.student import StudentCode
    from autograder.samples import reference_notebook
    from dlcourse.export import save_model
    from dlcourse.text_data import load_multi30k

    train, _ = multi30k
    tokenizer = train_multi30k_tokenizer(train)
    tokenizer.save(str(tmp_path / hidden.TOKENIZER_FILE))
    (tmp_path / "transformer.ipynb").write_text(json.dumps(reference_notebook(load_assignment("transformer"))))
    ns = run_reference_cells(load_assignment("transformer"), DEFINITION_CELLS)
    config = ns["TransformerConfig"](src_vocab_size=8000, tgt_vocab_size=8000, d_model=16, num_heads=2, num_encoder_layers=1,
                                     num_decoder_layers=1, d_ff=32, dropout=0.0)
    torch.manual_seed(0)
    model = ns["Transformer"](config).eval()
    save_model(model, config, "transformer_multi30k", tmp_path)
    expected = evaluate_perplexity(model, *encode_pairs(tokenizer, load_multi30k("test")))

    student = StudentCode.for_assignment(load_assignment("transformer"), tmp_path, tmp_path / "worker.log", threads=1)
    try:
        graded = hidden.multi30k_perplexity(student, Threshold(expected * 1.01, test="", reference_eval_s=8))
        with pytest.raises(Feedback, match="above the required"):
            hidden.multi30k_perplexity(student, Threshold(expected * 0.99, test="", reference_eval_s=8))
    finally:
        student.close()
    note = student.notes["transformer_multi30k perplexity"]
    print(f"\nperplexity of an untrained tiny model: grader {graded:.2f}, notebook {expected:.2f}; {note}")
    assert graded == pytest.approx(expected, rel=1e-4)
    assert "transformer_multi30k check" not in student.notes  # the notebook's forward computes what the grader's does
    assert_decided(note)

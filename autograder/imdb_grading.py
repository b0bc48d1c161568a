"""IMDB accuracy of a saved sentiment classifier (the RNN assignment), judged on the trusted side.

The student's submission holds `tokenizer.json` (Hugging Face `tokenizers` JSON: plain data, parsed here
without running any of the student's code) and `<name>.safetensors` / `<name>.json` written by
`dlcourse.export.save_model`. The test reviews are tokenised HERE with that tokenizer, cut to the saved
config's `max_length` tokens, padded, and sent to the worker, which runs the student's
`SentimentClassifier(ClassifierConfig(**config))` on them. Only this side holds the labels.
"""
from __future__ import annotations

import torch

from autograder.feedback import Feedback, assert_shape
from autograder.judge import StudentCode, call, score_accuracy
from dlcourse.rnn import PAD, PAD_ID, TOKENIZER_FILE, UNK, UNK_ID, imdb_texts_labels, tokenize_for_grading
from dlcourse.text_data import IMDB_LABELS, imdb_source

MAX_GRADING_LENGTH = 1000  # a longer saved max_length is capped (time)


def graded_imdb_accuracy(student: StudentCode, saved_name: str, threshold: float, subset: int | None = None,
                         seed: int = 0, batch_size: int = 500, timeout: float = 1800.0) -> float:
    """Accuracy of the saved `<saved_name>.*` on the IMDB test split (all 25 000 reviews, or the first `subset`
    of them after a shuffle with `seed`); recorded in student.notes, Feedback below `threshold`."""
    config, weights = student.saved_model(saved_name)
    tokenizer = student.saved_tokenizer(TOKENIZER_FILE, "the notebook's data cell")
    if tokenizer.token_to_id(PAD) != PAD_ID or tokenizer.token_to_id(UNK) != UNK_ID:
        raise Feedback(f"{TOKENIZER_FILE}: the tokenizer must have {PAD} = {PAD_ID} and {UNK} = {UNK_ID} "
                       "(train it with dlcourse.rnn.train_tokenizer)")
    max_length = config.get("max_length")
    if not isinstance(max_length, int) or max_length < 1:
        raise Feedback(f"{saved_name}.json has no positive integer max_length (save the ClassifierConfig with save_model)")
    texts, labels = imdb_texts_labels("test", subset=subset, seed=seed)
    num_classes = len(IMDB_LABELS)  # neg, pos
    batches = list(tokenize_for_grading(tokenizer, texts, min(max_length, MAX_GRADING_LENGTH), batch_size))
    build = call("SentimentClassifier", call("ClassifierConfig", **config))
    logits = torch.full((len(texts), num_classes), float("nan"))
    outputs = student.saved_model_outputs(saved_name, build, weights, ((tokens, lengths) for _, tokens, lengths in batches),
                                          timeout=timeout)
    for (indices, _, _), out in zip(batches, outputs):
        assert_shape(out, (len(indices), num_classes), f"{saved_name} logits")
        logits[indices] = out.float()
    what = f"{len(texts):,} test reviews" + (f" (a fixed subset, seed {seed})" if subset else "")
    return score_accuracy(student, saved_name, logits, torch.tensor(labels), num_classes, f"{what} of {imdb_source()}",
                          threshold)

"""IMDB accuracy of a saved sentiment classifier (the RNN and BERT assignments), judged on the trusted side.

The student's submission holds a tokenizer (Hugging Face `tokenizers` JSON: plain data, parsed here without
running any of the student's code) and `<name>.safetensors` / `<name>.json` written by the notebook. The test
reviews are tokenised HERE with that tokenizer, cut to the saved config's `max_length` tokens (its first or its
last, as the config's `read` says: dlcourse.rnn.review_window, as in training), padded, and sent
in a secret order (autograder.kit.scoring.graded_classifier) to the classifier: for the RNN assignment, whose release fixes
the architecture, the saved weights in the course's implementation here (the student's code only on a slice, for a
note); for BERT, whose head is the student's design, the student's classifier in the worker. Only this side holds the
labels. The canary, where the student's code classifies (BERT): copies of a secret subset of the reviews with 1-2 % of
their tokens dropped and extra padding, which land in other batches with other padded lengths; a classifier's
prediction hardly depends on any of it.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from autograder.feedback import Feedback
from autograder.kit.requests import call
from autograder.kit.scoring import (CANARY_SIZE, CANARY_TOKEN_DROPOUT, evaluation_limit, graded_classifier, in_worker,
                                secret_rng, secret_sample)
from autograder.spec import Threshold
from autograder.kit.student import StudentCode
from dlcourse.rnn import PAD, PAD_ID, READ_PARTS, TOKENIZER_FILE, UNK, UNK_ID, encode, imdb_texts_labels, review_window
from dlcourse.text_data import IMDB_LABELS, imdb_source

MAX_GRADING_LENGTH = 1000  # a longer saved max_length is capped (time)
CANARY_EXTRA_PADDING = 32  # each canary copy gets 1 to this many extra padding tokens


def graded_imdb(student: StudentCode, saved_name: str, build: dict, weights: dict, ids: list[list[int]], labels: list[int],
                pad_id: int, model_args: Callable[[torch.Tensor, torch.Tensor], tuple], examples: str, threshold: Threshold,
                batch_size: int, max_width: int | None = None, course: torch.nn.Module | None = None) -> float:
    """Whether the saved classifier `build` reaches `threshold` on the tokenised reviews `ids` (each already cut to
    the model's length; `examples` says which: "test reviews of ..."), by the sequential rule, with the canary. Each
    batch is padded with `pad_id` to its widest row (a canary copy counts its extra padding, up to `max_width`);
    `model_args(tokens (B, T), lengths (B,))` makes the model's forward arguments. `course`: the saved weights in the
    course's implementation (autograder/kit/trusted.py), which then classifies here, the student's `build` only a slice in
    the worker, for a note where it disagrees; None: `build` classifies in the worker."""
    from autograder.kit.trusted import COMPARED_EXAMPLES, compare_with_student, local_outputs

    rng = secret_rng()
    sample = secret_sample(labels, rng, canary_size=0 if course is not None else CANARY_SIZE)
    canary = sample.canary
    rows = ids + [drop_tokens(ids[i], rng) for i in canary]
    widths = [max(1, len(r)) for r in rows[:len(ids)]] + [len(r) + rng.randint(1, CANARY_EXTRA_PADDING)
                                                           for r in rows[len(ids):]]
    widths = [min(w, max_width) if max_width else w for w in widths]

    def batch_args(indices: list[int]) -> tuple:
        tokens = torch.full((len(indices), max(widths[i] for i in indices)), pad_id, dtype=torch.long)
        for row, i in enumerate(indices):
            tokens[row, :len(rows[i])] = torch.tensor(rows[i], dtype=torch.long)
        return model_args(tokens, torch.tensor([max(1, len(rows[i])) for i in indices], dtype=torch.long))

    if course is not None:
        compare_with_student(student, saved_name, build, weights, course,
                             batch_args(rng.sample(range(len(ids)), min(COMPARED_EXAMPLES, len(ids)))))
    outputs = (in_worker(student, saved_name, build, weights) if course is None
               else local_outputs(course, saved_name, student))
    return graded_classifier(student, saved_name, outputs, torch.tensor(labels),
                             sample, batch_args, len(IMDB_LABELS), examples,
                             "copies of test reviews with a few tokens dropped, re-batched with different padding",
                             threshold.value, rng, batch_size, lengths=widths,
                             timeout=evaluation_limit(threshold.reference_eval_s), reference_drop=threshold.canary_drop)


def drop_tokens(row: list[int], rng) -> list[int]:
    """A canary copy of a tokenised review: CANARY_TOKEN_DROPOUT of its tokens dropped at random (a share drawn per copy),
    the first and the last always kept (BERT's [CLS] and [SEP])."""
    rate = rng.uniform(*CANARY_TOKEN_DROPOUT)
    return [t for j, t in enumerate(row) if j in (0, len(row) - 1) or rng.random() >= rate]


def graded_rnn_accuracy(student: StudentCode, saved_name: str, threshold: Threshold, subset: int | None = None,
                        seed: int = 0, batch_size: int = 500) -> float:
    """Accuracy of the saved RNN classifier `<saved_name>.*` on the IMDB test split (all 25 000 reviews, or the first
    `subset` of them after a shuffle with `seed`), judged with the saved weights in the course's SentimentClassifier
    (the release fixes its architecture); recorded in student.notes, Feedback below `threshold.value`."""
    from autograder.kit.trusted import course_model

    course, config, weights = course_model(student, saved_name, "SentimentClassifier", "ClassifierConfig")
    tokenizer = student.saved_tokenizer(TOKENIZER_FILE, "the notebook's data cell")
    if tokenizer.token_to_id(PAD) != PAD_ID or tokenizer.token_to_id(UNK) != UNK_ID:
        raise Feedback(f"{TOKENIZER_FILE}: the tokenizer must have {PAD} = {PAD_ID} and {UNK} = {UNK_ID} "
                       "(train it with dlcourse.rnn.train_tokenizer)")
    max_length, read = config.get("max_length"), config.get("read", "first")  # saved before `read` existed: "first"
    if not isinstance(max_length, int) or max_length < 1:
        raise Feedback(f"{saved_name}.json has no positive integer max_length (save the ClassifierConfig with save_model)")
    if read not in READ_PARTS:
        raise Feedback(f"{saved_name}.json: read must be one of {', '.join(READ_PARTS)}, not {read!r}")
    texts, labels = imdb_texts_labels("test", subset=subset, seed=seed)
    ids = [review_window(x, min(max_length, MAX_GRADING_LENGTH), read) for x in encode(tokenizer, texts)]
    build = call("SentimentClassifier", call("ClassifierConfig", **config))
    what = "test reviews" + (f" (a fixed subset, seed {seed})" if subset else "")
    return graded_imdb(student, saved_name, build, weights, ids, labels, PAD_ID, lambda tokens, lengths: (tokens, lengths),
                       f"{what} of {imdb_source()}", threshold, batch_size, course=course)

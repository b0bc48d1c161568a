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
from autograder.judge import StudentCode, call, handle, module
from dlcourse.rnn import TOKENIZER_FILE, imdb_texts_labels, load_tokenizer, tokenize_for_grading
from dlcourse.text_data import imdb_source

MAX_TOKENIZER_BYTES = 64 << 20
MAX_GRADING_LENGTH = 1000  # a longer saved max_length is capped (time)


def graded_imdb_accuracy(student: StudentCode, saved_name: str, threshold: float, subset: int | None = None,
                         seed: int = 0, batch_size: int = 500, timeout: float = 1800.0) -> float:
    """Accuracy of the saved `<saved_name>.*` on the IMDB test split (all 25 000 reviews, or the first `subset`
    of them after a shuffle with `seed`); recorded in student.notes, Feedback below `threshold`."""
    import time

    config, weights = student.saved_model(saved_name)
    path = student.submission_dir / TOKENIZER_FILE
    if not path.exists():
        raise Feedback(f"{TOKENIZER_FILE} is not in the submission: run the notebook's data cell (it saves the "
                       "tokenizer), then CollectSubmission.sh")
    if path.stat().st_size > MAX_TOKENIZER_BYTES:
        raise Feedback(f"{TOKENIZER_FILE} is too large to grade")
    try:
        tokenizer = load_tokenizer(path)
    except (ValueError, FileNotFoundError) as exc:
        raise Feedback(str(exc).replace(str(path), TOKENIZER_FILE)) from None
    max_length = config.get("max_length")
    if not isinstance(max_length, int) or max_length < 1:
        raise Feedback(f"{saved_name}.json has no positive integer max_length (save the ClassifierConfig with save_model)")
    texts, labels = imdb_texts_labels("test", subset=subset, seed=seed)
    labels = torch.tensor(labels)
    logits = torch.full((len(texts), int(config.get("num_classes", 2))), float("nan"))
    started, model = time.monotonic(), None
    for indices, tokens, lengths in tokenize_for_grading(tokenizer, texts, min(max_length, MAX_GRADING_LENGTH), batch_size):
        if model is None:
            model = module(call("SentimentClassifier", call("ClassifierConfig", **config)), weights=weights, keep_as=saved_name)
        remaining = timeout - (time.monotonic() - started)
        if remaining <= 0:
            student.events.append("timeout")
            raise Feedback(f"{saved_name}: classifying the test reviews took more than {timeout:.0f} s")
        out = student.invoke(model, tokens, lengths, what=f"{saved_name} on the IMDB test reviews", timeout=remaining).value
        if not isinstance(out, torch.Tensor):
            raise Feedback(f"{saved_name}: SentimentClassifier.forward returned {type(out).__name__}, expected a tensor")
        assert_shape(out, (len(indices), logits.shape[1]), f"{saved_name} logits")
        logits[indices] = out.float()
        model = handle(saved_name)
    accuracy = (logits.argmax(dim=1) == labels).float().mean().item()
    what = f"{len(texts):,} test reviews" + (f" (a fixed subset, seed {seed})" if subset else "")
    student.notes[saved_name] = f"test accuracy {accuracy:.2%} on {what} of {imdb_source()}"
    if accuracy < threshold:
        raise Feedback(f"{saved_name}: test accuracy {accuracy:.2%} on {what} of {imdb_source()}, "
                       f"below the required {threshold:.0%}")
    return accuracy

"""Multi30k scores of a saved translation model (the Transformer and the seq2seq assignments), judged on the trusted side.

The submission holds the course tokenizer (Hugging Face `tokenizers` JSON: plain data, parsed here without running
any of the student's code, and checked to be the course's own: perplexities are only comparable under one
tokenisation) and `<name>.safetensors` / `<name>.json` written by the notebook. The test sentences are tokenised
HERE; the worker only computes the student's logits (perplexity) or greedy translations (BLEU), in a secret order.
The targets, the references and the scoring stay on this side. Also the check of a greedy decoder's output against
reference rows, which both assignments' greedy tests share, and the reversal thresholds of both (graded_reversal:
the saved weights decoded by the course's own model and decoder, here).
"""
from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable

import torch

from autograder.feedback import Feedback, assert_shape
from autograder.requests import call, handle, module, name
from autograder.scoring import (evaluation_limit, in_worker, outputs_in_secret_order, scored_on, secret_batches,
                                secret_rng)
from autograder.spec import Threshold
from autograder.student import StudentCode
from dlcourse.translation import PAD_ID, corpus_bleu, encode_pairs, target_nll, token_ids_to_text, trim_padding

BLEU_MAX_LEN = 64  # tokens per greedy translation, BOS included (as the notebooks translate)


REVERSAL_COMPARED = 64  # held-out sequences the student's own decoder also decodes, for the note where it disagrees


def graded_reversal(student: StudentCode, saved_name: str, model: str, config: str, decoder: str, task, count: int,
                    with_lengths: bool) -> float:
    """Exact-sequence accuracy of the saved reversal model `<saved_name>.*` on `count` sequences drawn here from a
    secret seed: the saved weights go into the course's `model(config(**saved config))` and are decoded by the course's
    own `decoder` (the notebook's solution, autograder/trusted.py), in this process. The student's code only decodes a
    slice in the worker, for a note where it disagrees: a decoder that looks answers up, or recognises its weights,
    changes nothing. `with_lengths`: the decoder takes (model, src, source lengths, ...), as seq2seq's does."""
    from autograder.trusted import compare_decoding, course_model, course_namespace
    from dlcourse.threads import torch_threads
    from dlcourse.translation import BOS_ID, EOS_ID, make_reversal_data, sequence_accuracy

    course, saved_config, weights = course_model(student, saved_name, model, config)
    src, tgt = make_reversal_data(count, task, seed=secret_rng().getrandbits(63))
    kwargs = dict(max_len=task.max_len + 2, bos_id=BOS_ID, eos_id=EOS_ID, pad_id=PAD_ID)

    def arguments(batch: torch.Tensor) -> tuple:
        return (batch, (batch != PAD_ID).sum(1)) if with_lengths else (batch,)

    decode = course_namespace(student.assignment_name)[decoder]
    device = next(course.parameters()).device
    with torch_threads(device, threads=student.policy.threads), torch.no_grad():
        predicted = decode(course, *(a.to(device) for a in arguments(src)), **kwargs).cpu()
    build = module(call(model, call(config, **saved_config)), weights=weights)
    shown = slice(0, REVERSAL_COMPARED)
    compare_decoding(student, saved_name, decoder, build, arguments(src[shown]), kwargs, predicted[shown])
    return sequence_accuracy(predicted.long(), tgt)


def check_greedy_rows(function: str, out, reference: list[list[int]], max_len: int) -> None:
    """Feedback unless `out`, what the student's greedy decoder `function` returned for len(reference) sources, is a
    (B, L) tensor whose rows start with the reference rows (BOS, the argmax tokens, EOS when reached) and hold PAD_ID
    after them, with L the longest reference row: decoding stops once every row has produced EOS, or at max_len."""
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != len(reference):
        raise Feedback(f"{function} must return a (B, L) tensor of token ids with B = {len(reference)}")
    if out.shape[1] > max_len:
        raise Feedback(f"{function} returned {out.shape[1]} tokens per row, more than max_len = {max_len}")
    if out.shape[1] != max(len(r) for r in reference):
        raise Feedback(f"{function} returned {out.shape[1]} tokens per row; it should stop as soon as every row has "
                       "produced EOS, or at max_len")
    for b, ref_row in enumerate(reference):
        row = out[b].tolist()
        if row[:len(ref_row)] != ref_row:
            raise Feedback(f"row {b}: the tokens differ from greedy decoding (first token must be BOS, then the most "
                           "likely next token at each step)")
        if any(t != PAD_ID for t in row[len(ref_row):]):
            raise Feedback(f"row {b}: the positions after EOS must hold pad_id")


@functools.lru_cache(maxsize=1)
def _course_vocabulary() -> dict[str, int]:
    from dlcourse.text_data import load_multi30k
    from dlcourse.translation import train_multi30k_tokenizer

    return train_multi30k_tokenizer(load_multi30k("train")).get_vocab()


def course_tokenizer(student: StudentCode, filename: str, saved_by: str):
    """The tokenizer the notebook saved as `filename`, which must be the course's (train_multi30k_tokenizer on the
    training split)."""
    tokenizer = student.saved_tokenizer(filename, saved_by)
    if tokenizer.get_vocab() != _course_vocabulary():
        raise Feedback(f"{filename} is not the course's tokenizer (train_multi30k_tokenizer on the training split): "
                       "perplexities are only comparable under the same tokenisation")
    return tokenizer


def multi30k_test_pairs() -> list[tuple[str, str]]:
    from dlcourse.text_data import load_multi30k

    return load_multi30k("test")


def graded_perplexity(student: StudentCode, saved_name: str, build: dict, weights: dict, tokenizer, vocab_size: int,
                      forward_args: Callable[[torch.Tensor, torch.Tensor], tuple], threshold: Threshold,
                      batch_size: int = 25) -> float:
    """Per-token test perplexity, teacher-forced, padding excluded, of the saved model `build` (with `weights`): the
    worker returns the logits of `forward_args(src, tgt_in)` for batches in a secret order; the targets stay here.
    Fails the test above `threshold.value`."""
    src, tgt = encode_pairs(tokenizer, multi30k_test_pairs())
    started = time.monotonic()

    def batch_args(indices: list[int]) -> tuple:
        s, t = trim_padding(src[indices], tgt[indices])
        return forward_args(s, t[:, :-1])

    outputs = outputs_in_secret_order(in_worker(student, saved_name, build, weights), len(src), batch_args, secret_rng(),
                                      batch_size, lengths=(tgt != PAD_ID).sum(dim=1).tolist(),
                                      timeout=evaluation_limit(threshold.reference_eval_s))
    total, count = 0.0, 0
    for indices, logits in outputs:
        t = trim_padding(tgt[indices])[0]
        assert_shape(logits, (len(indices), t.shape[1] - 1, vocab_size), f"{saved_name} logits")
        nll, n = target_nll(logits, t[:, 1:])
        total, count = total + nll, count + n
    perplexity = math.exp(total / count)
    student.notes[f"{saved_name} perplexity"] = (f"test perplexity {perplexity:.2f} per target token on all {len(src):,} "
                                                 f"Multi30k test pairs (exact; {count:,} target tokens): "
                                                 f"{'within' if perplexity <= threshold.value else 'above'} the bar "
                                                 f"{threshold.value:g}; {scored_on(student, started)}")
    if not perplexity <= threshold.value:
        raise Feedback(f"{saved_name}: test perplexity {perplexity:.2f}, above the required {threshold.value}")
    return perplexity


def graded_bleu(student: StudentCode, saved_name: str, build: dict, weights: dict, tokenizer,
                translate_args: Callable[[torch.Tensor], tuple], threshold: Threshold,
                batch_size: int = 100) -> tuple[float, list[str]]:
    """Corpus BLEU (dlcourse.translation.corpus_bleu) of the student's greedy translations of the test set: the
    worker runs the notebook's `greedy_translate(model, *translate_args(src), max_len=64)` on batches in a secret
    order; decoding to text and scoring against the references happen here. Returns (BLEU, the translations in test
    order); fails the test below `threshold.value`."""
    pairs = multi30k_test_pairs()
    src, _ = encode_pairs(tokenizer, pairs)
    limit, started = evaluation_limit(threshold.reference_eval_s), time.monotonic()
    hypotheses: list[str | None] = [None] * len(src)
    target = module(build, weights=weights, keep_as=f"{saved_name} translating")
    for indices in secret_batches(len(src), secret_rng(), batch_size, lengths=(src != PAD_ID).sum(dim=1).tolist()):
        s = trim_padding(src[indices])[0]
        if time.monotonic() - started >= limit:
            student.events.append("timeout")
            raise Feedback(f"{saved_name}: translating the test set took more than {limit:.0f} s")
        result = student.invoke(name("greedy_translate"), target, *translate_args(s), max_len=BLEU_MAX_LEN,
                                what=f"greedy_translate with {saved_name}", timeout=limit - (time.monotonic() - started))
        target = handle(f"{saved_name} translating")
        if not isinstance(result.value, torch.Tensor) or result.value.dim() != 2 or len(result.value) != len(indices):
            raise Feedback(f"greedy_translate must return a (B, L) tensor of token ids, B = {len(indices)}")
        for i, text in zip(indices, token_ids_to_text(tokenizer, result.value.long())):
            hypotheses[i] = text
    bleu = corpus_bleu(hypotheses, [english for _, english in pairs])
    student.notes[f"{saved_name} BLEU"] = (f"BLEU {bleu.score:.2f} on all {len(src):,} Multi30k test sentences (exact; "
                                           f"{bleu.signature}): {'reaches' if bleu.score >= threshold.value else 'below'} "
                                           f"the bar {threshold.value:g}; {scored_on(student, started)}")
    if not bleu.score >= threshold.value:
        raise Feedback(f"{saved_name}: BLEU {bleu.score:.2f} on the test set, below the required {threshold.value}")
    return bleu.score, hypotheses

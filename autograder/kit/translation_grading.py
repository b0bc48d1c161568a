"""The thresholds of a saved translation model (the Transformer and the seq2seq assignments), judged on the trusted side.

Both architectures are fixed by the release, so every threshold here loads the saved weights into the course's own
implementation (autograder/kit/trusted.py) and computes in this process: the reversal accuracy on sequences drawn from a
secret seed (graded_reversal), and on Multi30k the teacher-forced perplexity (graded_perplexity) and the BLEU of greedy
translations by the course's decoder (graded_bleu). The student's own forward or decoder runs on a slice in the worker
only, for a note where it computes something else. The submission also holds the course tokenizer (Hugging Face
`tokenizers` JSON: plain data, parsed here without running any of the student's code, and checked to be the course's
own: perplexities are only comparable under one tokenisation). Also the check of a greedy decoder's output against
reference rows, which both assignments' greedy tests share.
"""
from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from autograder.feedback import Feedback, assert_shape
from autograder.kit.requests import call, module, name
from autograder.kit.scoring import evaluation_limit, outputs_in_secret_order, scored_on, secret_batches, secret_rng
from autograder.spec import Threshold
from autograder.kit.student import StudentCode
from dlcourse.translation import PAD_ID, corpus_bleu, encode_pairs, target_nll, token_ids_to_text, trim_padding

BLEU_MAX_LEN = 64  # tokens per greedy translation, BOS included (as the notebooks translate)


REVERSAL_COMPARED = 64  # held-out sequences the student's own decoder also decodes, for the note where it disagrees
# The reversal task has no fixed test split: sequences are drawn from a secret seed in stages of REVERSAL_STAGES
# sequences (1 000, then 1 000 more, then 2 000 more ...), and the sequential rule of autograder/kit/sequential.py decides
# after each (the bar inside the 99.9 % interval: draw more). After the last stage, the accuracy on all 16 000 decides:
# a model within about a point of the bar is decided right far more often than by one sample of 1 000.
REVERSAL_STAGES = (1000, 2000, 4000, 8000, 16000)


def graded_reversal(student: StudentCode, saved_name: str, model: str, config: str, decoder: str, task,
                    threshold: Threshold, with_lengths: bool) -> float:
    """Exact-sequence accuracy of the saved reversal model `<saved_name>.*` on sequences drawn here from a secret seed,
    as many as the sequential rule needs to decide `threshold` (REVERSAL_STAGES): the saved weights go into the
    course's `model(config(**saved config))` and are decoded by the course's own `decoder` (the notebook's solution,
    autograder/kit/trusted.py), in this process. The student's code only decodes a slice in the worker, for a note where it
    disagrees: a decoder that looks answers up, or recognises its weights, changes nothing. `with_lengths`: the
    decoder takes (model, src, source lengths, ...), as seq2seq's does. Notes the decision; Feedback below the bar."""
    from autograder.kit.sequential import CONFIDENCE, decide
    from autograder.kit.trusted import (
        compare_decoding,
        course_decoding,
        course_model,
        course_namespace,
    )
    from dlcourse.translation import (
        BOS_ID,
        EOS_ID,
        decoded_sequences,
        make_reversal_data,
    )

    course, saved_config, weights = course_model(student, saved_name, model, config)
    kwargs = dict(max_len=task.max_len + 2, bos_id=BOS_ID, eos_id=EOS_ID, pad_id=PAD_ID)
    decode = course_namespace(student.assignment_name)[decoder]
    rng, started = secret_rng(), time.monotonic()

    def arguments(batch: torch.Tensor) -> tuple:
        return (batch, (batch != PAD_ID).sum(1)) if with_lengths else (batch,)

    def decoded(src: torch.Tensor) -> torch.Tensor:
        return course_decoding(student, course, decode, course, *arguments(src), **kwargs)

    correct, scored, cap = 0, 0, REVERSAL_STAGES[-1]
    for end in REVERSAL_STAGES:
        src, tgt = make_reversal_data(end - scored, task, seed=rng.getrandbits(63))
        predicted = decoded(src)
        if scored == 0:
            build = module(call(model, call(config, **saved_config)), weights=weights)
            shown = slice(0, REVERSAL_COMPARED)
            # decoded alone, as the worker decodes it: a batch's width depends on its rows (decoding stops when all end)
            compare_decoding(student, saved_name, decoder, name(decoder), (build, *arguments(src[shown])), kwargs,
                             decoded(src[shown]))
        correct += sum(p is not None and p == t for p, t in zip(decoded_sequences(predicted), decoded_sequences(tgt), strict=True))
        scored = end
        decision = decide(correct, scored, cap, threshold.value, first=REVERSAL_STAGES[0])
        if decision.passed is not None:
            break
    accuracy = correct / scored
    how = ("the accuracy on all of them decides" if decision.exact else
           f"{CONFIDENCE:.1%} interval {decision.lower:.2%}–{decision.upper:.2%}")
    student.notes[saved_name] = (f"exact-sequence accuracy {accuracy:.2%} on {scored:,} held-out reversal sequences "
                                 f"(lengths {task.min_len}-{task.max_len}, drawn for this run; {how}): "
                                 f"{'reaches' if decision.passed else 'falls short of'} the bar {threshold.value:.0%}; "
                                 f"{scored_on(student, started)}")
    if not decision.passed:
        raise Feedback(f"{saved_name}: {accuracy:.2%} of {scored:,} held-out sequences are reversed exactly right, "
                       f"below the required {threshold.value:.0%}")
    return accuracy


@dataclass(frozen=True)
class DecodingWords:
    """How the feedback of a greedy-decoding test names things: translations (rows of token ids, BOS first, EOS, then
    pad_id) or captions (rows of words, <START> left out, <END>, then <NULL>)."""

    row: str = "row"
    tokens: str = "tokens"
    length: str = "max_len"
    end: str = "EOS"
    pad_name: str = "pad_id"
    pad: int = PAD_ID
    rule: str = "first token must be BOS, then the most likely next token at each step"


def check_greedy_rows(function: str, out, reference: list[list[int]], max_len: int,
                      words: DecodingWords = DecodingWords()) -> None:
    """Feedback unless `out`, what the student's greedy decoder `function` returned for len(reference) inputs, is a
    (B, L) tensor whose rows start with the reference rows (the argmax tokens up to the end token, when reached) and
    hold the pad value after them, with L the longest reference row: decoding stops once every row has ended, or at
    max_len."""
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != len(reference):
        raise Feedback(f"{function} must return a (B, L) tensor of {words.tokens[:-1]} ids with B = {len(reference)}")
    if out.shape[1] > max_len:
        raise Feedback(f"{function} returned {out.shape[1]} {words.tokens} per {words.row}, more than "
                       f"{words.length} = {max_len}")
    if out.shape[1] != max(len(r) for r in reference):
        raise Feedback(f"{function} returned {out.shape[1]} {words.tokens} per {words.row}; it should stop as soon as "
                       f"every {words.row} has produced {words.end}, or at {words.length}")
    for b, ref_row in enumerate(reference):
        row = out[b].tolist()
        if row[:len(ref_row)] != ref_row:
            raise Feedback(f"{words.row} {b}: the {words.tokens} differ from greedy decoding ({words.rule})")
        if any(t != words.pad for t in row[len(ref_row):]):
            raise Feedback(f"{words.row} {b}: the positions after {words.end} must hold {words.pad_name}")


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


def graded_perplexity(student: StudentCode, saved_name: str, model: str, config: str, tokenizer,
                      forward_args: Callable[[torch.Tensor, torch.Tensor], tuple], threshold: Threshold,
                      batch_size: int = 25) -> float:
    """Per-token test perplexity, teacher-forced, padding excluded, of the saved Multi30k model `<saved_name>.*`: its
    weights go into the course's `model(config(**saved config))` (autograder/kit/trusted.py), which computes the logits of
    `forward_args(src, tgt_in)` here. The student's own forward runs on a slice in the worker, for a note where it
    computes something else: a forward that reads the next decoder input earns nothing. Fails the test above
    `threshold.value`."""
    from autograder.kit.trusted import (
        COMPARED_EXAMPLES,
        compare_with_student,
        course_model,
        local_outputs,
    )

    course, saved_config, weights = course_model(student, saved_name, model, config)
    src, tgt = encode_pairs(tokenizer, multi30k_test_pairs())
    started, rng = time.monotonic(), secret_rng()

    def batch_args(indices: list[int]) -> tuple:
        s, t = trim_padding(src[indices], tgt[indices])
        return forward_args(s, t[:, :-1])

    compare_with_student(student, saved_name, call(model, call(config, **saved_config)), weights, course,
                         batch_args(rng.sample(range(len(src)), COMPARED_EXAMPLES)))
    outputs = outputs_in_secret_order(local_outputs(course, saved_name, student), len(src), batch_args, rng,
                                      batch_size, lengths=(tgt != PAD_ID).sum(dim=1).tolist(),
                                      timeout=evaluation_limit(threshold.reference_eval_s))
    vocab_size = saved_config.get("tgt_vocab_size")
    total, count = 0.0, 0
    for indices, logits in outputs:
        t = trim_padding(tgt[indices])[0]
        assert_shape(logits, (len(indices), t.shape[1] - 1, vocab_size), f"{saved_name} logits")
        nll, n = target_nll(logits, t[:, 1:])
        total, count = total + nll, count + n
    perplexity = math.exp(total / count)
    student.notes[f"{saved_name} perplexity"] = (f"test perplexity {perplexity:.2f} per target token on all {len(src):,} "
                                                 f"Multi30k test pairs (exact; {count:,} target tokens; your weights in "
                                                 f"the notebook's {model}): "
                                                 f"{'within' if perplexity <= threshold.value else 'above'} the bar "
                                                 f"{threshold.value:g}; {scored_on(student, started)}")
    if not perplexity <= threshold.value:
        raise Feedback(f"{saved_name}: test perplexity {perplexity:.2f}, above the required {threshold.value}")
    return perplexity


def graded_bleu(student: StudentCode, saved_name: str, model: str, config: str, decoder: str, tokenizer,
                translate_args: Callable[[torch.Tensor], tuple], threshold: Threshold,
                batch_size: int = 100) -> tuple[float, list[str]]:
    """Corpus BLEU (dlcourse.translation.corpus_bleu) of greedy translations of the test set by the saved Multi30k
    model: its weights in the course's `model(config(**saved config))`, decoded by the course's own `decoder`
    (`decoder(model, *translate_args(src), max_len=64)`), here. The student's decoder translates a slice in the
    worker, for a note where it decodes something else. Returns (BLEU, the translations in test order); fails the
    test below `threshold.value`."""
    from autograder.kit.trusted import (
        COMPARED_EXAMPLES,
        compare_decoding,
        course_decoding,
        course_model,
        course_namespace,
    )

    course, saved_config, weights = course_model(student, saved_name, model, config)
    decode = course_namespace(student.assignment_name)[decoder]
    pairs = multi30k_test_pairs()
    src, _ = encode_pairs(tokenizer, pairs)
    limit, started, rng = evaluation_limit(threshold.reference_eval_s), time.monotonic(), secret_rng()

    def translated(s: torch.Tensor) -> torch.Tensor:
        return course_decoding(student, course, decode, course, *translate_args(s), max_len=BLEU_MAX_LEN)

    shown = trim_padding(src[rng.sample(range(len(src)), COMPARED_EXAMPLES)])[0]
    build = module(call(model, call(config, **saved_config)), weights=weights)
    compare_decoding(student, saved_name, decoder, name(decoder), (build, *translate_args(shown)),
                     dict(max_len=BLEU_MAX_LEN), translated(shown))
    translations: dict[int, str] = {}
    for indices in secret_batches(len(src), rng, batch_size, lengths=(src != PAD_ID).sum(dim=1).tolist()):
        if time.monotonic() - started >= limit:
            raise Feedback(f"{saved_name}: translating the test set took more than {limit:.0f} s")
        for i, text in zip(indices, token_ids_to_text(tokenizer, translated(trim_padding(src[indices])[0])), strict=True):
            translations[i] = text
    hypotheses = [translations[i] for i in range(len(src))]  # every sentence, in order
    bleu = corpus_bleu(hypotheses, [english for _, english in pairs])
    student.notes[f"{saved_name} BLEU"] = (f"BLEU {bleu.score:.2f} on all {len(src):,} Multi30k test sentences (exact; "
                                           f"{bleu.signature}): {'reaches' if bleu.score >= threshold.value else 'below'} "
                                           f"the bar {threshold.value:g}; {scored_on(student, started)}")
    if not bleu.score >= threshold.value:
        raise Feedback(f"{saved_name}: BLEU {bleu.score:.2f} on the test set, below the required {threshold.value}")
    return bleu.score, hypotheses

"""Time to threshold for the seq2seq assignment: the reference notebook's own cells and recipes, timed.

    python benchmarks/seq2seq_time_to_threshold.py                 # reversal task, with and without attention (CPU, ~3 min)
    python benchmarks/seq2seq_time_to_threshold.py --multi30k      # also the Multi30k recipe (GPU minutes, ~75 min on one CPU thread)

Reversal: the cells "reverse_data" and "reverse_hparams" give the task, the data and the recipe; the model trains
with `train_seq2seq` (as the cell "reverse_train" does), with attention and then with `attention=None`, and is
scored after every epoch by exact-sequence accuracy of the notebook's `greedy_translate` on the 1 000 validation
sequences. Multi30k: the cells "multi30k_data" and "multi30k_hparams" give the data and the recipe; the table
reports the validation perplexity per epoch, then the test perplexity (teacher-forced, per target token) and
corpus BLEU (sacrebleu) of greedy translations, as the autograder computes them.

This is a benchmark: it prints tables and makes no assertion about the numbers.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from autograder.assignments import load_assignment  # noqa: E402
from autograder.samples import run_reference_cells  # noqa: E402
from dlcourse.threads import torch_threads  # noqa: E402
from dlcourse.translation import (Seq2SeqHistory, corpus_bleu, evaluate_perplexity, sequence_accuracy,  # noqa: E402
                                  source_lengths, token_ids_to_text, train_seq2seq, with_source_lengths)

ASSIGNMENT = load_assignment("seq2seq")
DEFINITIONS = list(ASSIGNMENT.spec.run_cells)


def namespace(cells: list[str]) -> dict:
    with contextlib.redirect_stdout(sys.stderr):  # the cells print; stdout is for the tables
        return run_reference_cells(ASSIGNMENT, DEFINITIONS + cells)


def machine(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s)"


def reversal(device: str) -> None:
    ns = namespace(["reverse_data", "reverse_hparams"])
    task, train, val, recipe = ns["task"], ns["reverse_train"], ns["reverse_val"], ns["reverse_recipe"]
    threshold = ASSIGNMENT.spec.thresholds["reversal"].value
    rows = []
    for label, config in (("dot attention (reference)", ns["reverse_config"]),
                          ("no attention", dataclasses.replace(ns["reverse_config"], attention=None))):
        ns["seed_everything"](0)
        model = ns["Seq2Seq"](config).to(device)
        accuracies: list[float] = []

        def score(epoch: int, history: Seq2SeqHistory, model: torch.nn.Module = model,
                  accuracies: list[float] = accuracies) -> None:
            model.eval()
            src = val[0].to(device)
            predicted = ns["greedy_translate"](model, src, source_lengths(src), task.max_len + 2).cpu()
            accuracies.append(sequence_accuracy(predicted, val[1]))

        history = train_seq2seq(model, train, val, recipe, device=device, forward=with_source_lengths(), on_epoch_end=score)
        reached = next((i for i, a in enumerate(accuracies) if a >= threshold), None)
        rows.append((label, accuracies, history.seconds, reached))
    print(f"\n### Reversal of {task.min_len}-{task.max_len} symbols, threshold {threshold:.0%} "
          f"({machine(device)}; recipe: {recipe})\n")
    print("| model | accuracy per epoch | seconds per epoch | epochs to threshold | seconds to threshold |")
    print("|---|---|---|---|---|")
    for label, accuracies, seconds, reached in rows:
        to = "not reached" if reached is None else f"{reached + 1}"
        secs = "-" if reached is None else f"{sum(seconds[:reached + 1]):.0f}"
        print(f"| {label} | {', '.join(f'{a:.1%}' for a in accuracies)} | {', '.join(f'{s:.0f}' for s in seconds)} | {to} | {secs} |")
    (_, with_acc, with_s, _), (_, without_acc, without_s, _) = rows
    print(f"\nwith / without attention: final accuracy {with_acc[-1]:.1%} / {without_acc[-1]:.1%}, "
          f"training time ratio {sum(with_s) / max(1e-9, sum(without_s)):.2f}")


def multi30k(device: str) -> None:
    ns = namespace(["multi30k_data", "multi30k_hparams"])
    tokenizer, test, test_pairs = ns["tokenizer"], ns["mt_test"], ns["mt_test_pairs"]
    ns["seed_everything"](0)
    model = ns["Seq2Seq"](ns["mt_config"])
    started = time.time()
    history = train_seq2seq(model, ns["mt_train"], ns["mt_val"], ns["mt_recipe"], device=device, log_every=200,
                            forward=with_source_lengths(ns["mt_teacher_forcing"]))
    trained = time.time() - started
    teacher_forced = with_source_lengths()
    perplexity = evaluate_perplexity(model, *test, device=device, forward=teacher_forced)
    model.eval()
    src, lengths = test[0].to(device), source_lengths(test[0]).to(device)
    hypotheses = [text for start in range(0, len(src), 100) for text in token_ids_to_text(
        tokenizer, ns["greedy_translate"](model, src[start:start + 100], lengths[start:start + 100], max_len=64))]
    bleu = corpus_bleu(hypotheses, [english for _, english in test_pairs])
    thresholds = ASSIGNMENT.spec.thresholds
    print(f"\n### Multi30k reference recipe ({machine(device)}; {ns['mt_config']}; {ns['mt_recipe']})\n")
    print("| epoch | train loss | validation perplexity | seconds |")
    print("|---|---|---|---|")
    for e, (loss, ppl, s) in enumerate(zip(history.train_loss, history.val_perplexity, history.seconds, strict=True)):
        print(f"| {e + 1} | {loss:.3f} | {ppl:.2f} | {s:.0f} |")
    print("\n| measure | value | threshold | value / threshold |\n|---|---|---|---|")
    print(f"| test perplexity (test_2016_flickr) | {perplexity:.2f} | ≤ {thresholds['multi30k_perplexity'].value} | "
          f"{perplexity / thresholds['multi30k_perplexity'].value:.2f} |")
    print(f"| BLEU ({bleu.signature}) | {bleu.score:.2f} | ≥ {thresholds['multi30k_bleu'].value} | "
          f"{bleu.score / thresholds['multi30k_bleu'].value:.2f} |")
    print(f"| training seconds | {trained:.0f} | | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--multi30k", action="store_true", help="also train and score the Multi30k reference recipe")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads on a CPU (default: the course "
                        "setting, dlcourse.threads: DLCOURSE_THREADS, else 1)")
    args = parser.parse_args()
    with torch_threads(args.device, threads=args.threads):
        reversal(args.device)
        if args.multi30k:
            multi30k(args.device)


if __name__ == "__main__":
    main()

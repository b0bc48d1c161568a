"""What judging a threshold costs a grader's CPU per submission: the sequential rule (autograder/kit/sequential.py) next
to scoring the whole test split.

For each classifier threshold, the reference architecture is built from the source notebook's own definition and
hyper-parameter cells (a forward pass costs the same trained or not), timed on real-shaped inputs in inference mode
in this process, and its rate turned into the seconds for

* a clear case: the first stage (FIRST_STAGE examples, plus the canary copies of half of them),
* a model 3 points from its bar: the median examples the rule scores there (tests/test_sequential.py's simulation),
* the whole split (plus the CANARY_SIZE canary copies), which only a borderline model costs.

    python benchmarks/threshold_cost.py                  # 1 and 2 torch threads
    python benchmarks/threshold_cost.py --threads 2 --only rnn lstm

The worker adds its own start-up (seconds) and the transfer of each batch; BERT-base is left out (no offline
copy here: about 0.66 s a review on one CPU thread, 1 500 reviews ~ 16 min, the whole split ~ 4.6 h). A model that
slow gets a first stage sized to the grader's budget (autograder/kit/scoring.py: sized_first_stage; 250 reviews in the
default 600 s), so the "clear case" column here is the planned first stage, what a fast enough model costs.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autograder.assignments import load_assignment  # noqa: E402
from autograder.notebook import cell_source, grade_id  # noqa: E402
from autograder.samples import reference_notebook, run_reference_cells  # noqa: E402
from autograder.kit.scoring import CANARY_SIZE, CLASSIFIER_LOOKS  # noqa: E402
from autograder.kit.sequential import FIRST_STAGE, decide, stage_ends  # noqa: E402


class VocabularyOf20000:
    """Stands in for the notebook's trained tokenizer in its hyper-parameter cells (vocabulary size only)."""

    @staticmethod
    def get_vocab_size() -> int:
        return 20000


@dataclass(frozen=True)
class Threshold:
    assignment: str
    name: str  # in the spec's thresholds
    split: int  # test examples
    cells: tuple[str, ...]  # definition and hyper-parameter cells
    model: Callable[[dict], torch.nn.Module]
    inputs: Callable[[dict, int], tuple]  # (namespace, batch size) -> forward arguments


def tokens(length: int) -> Callable[[dict, int], tuple]:
    return lambda ns, b: (torch.randint(2, 20000, (b, length)), torch.full((b,), length))


VIT = ("setup", "patchify", "attention", "mlp", "block", "vit_config", "vit")
CNN = ("setup", "simple_config", "simple_cnn", "inception", "residual", "better_config", "better_cnn")
RNN = ("setup", "collate", "vanilla_rnn", "lstm", "classifier_config", "classifier")
THRESHOLDS = {
    "vit_fashionmnist": Threshold("vit", "fashion_mnist", 10_000, VIT + ("fashion_hparams",),
                                  lambda ns: ns["ViT"](ns["fashion_config"]), lambda ns, b: (torch.randn(b, 1, 28, 28),)),
    "vit_cifar10": Threshold("vit", "cifar10", 10_000, VIT + ("cifar_hparams",),
                             lambda ns: ns["ViT"](ns["cifar_config"]), lambda ns, b: (torch.randn(b, 3, 32, 32),)),
    "cnn_simple": Threshold("cnn", "simple_cnn", 10_000, CNN, lambda ns: ns["SimpleCNN"](ns["SimpleCNNConfig"]()),
                            lambda ns, b: (torch.randn(b, 3, 32, 32),)),
    "cnn_better": Threshold("cnn", "better_cnn", 10_000, CNN + ("better_hparams",),
                            lambda ns: ns["BetterCNN"](ns["better_config"]), lambda ns, b: (torch.randn(b, 3, 32, 32),)),
    "rnn": Threshold("rnn", "rnn", 25_000, RNN + ("rnn_hparams",), lambda ns: ns["SentimentClassifier"](ns["rnn_config"]),
                     lambda ns, b: tokens(ns["rnn_config"].max_length)(ns, b)),
    "lstm": Threshold("rnn", "lstm", 25_000, RNN + ("lstm_hparams",), lambda ns: ns["SentimentClassifier"](ns["lstm_config"]),
                      lambda ns, b: tokens(ns["lstm_config"].max_length)(ns, b)),
}


def namespace(threshold: Threshold) -> dict:
    """The notebook's definition cells run as usual; its hyper-parameter cells with a stand-in tokenizer."""
    assignment = load_assignment(threshold.assignment)
    hparams = [c for c in threshold.cells if c.endswith("_hparams")]
    ns = run_reference_cells(assignment, [c for c in threshold.cells if c not in hparams])
    ns["tokenizer"] = VocabularyOf20000()
    cells = {grade_id(c): c for c in reference_notebook(assignment)["cells"]}
    for cell in hparams:
        exec(cell_source(cells[cell]), ns)
    return ns


@torch.inference_mode()
def seconds_per_example(threshold: Threshold, threads: int, batch: int = 250, repeats: int = 2) -> float:
    torch.set_num_threads(threads)
    ns = namespace(threshold)
    model = threshold.model(ns).eval()
    args = threshold.inputs(ns, batch)
    model(*args)  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        model(*args)
        times.append(time.perf_counter() - started)
    return min(times) / batch


def examples_scored_three_points_off(split: int, bar: float, replicates: int = 400) -> int:
    """Median examples the rule scores (canary copies included) for a model 3 points below its bar."""
    rng, scored = np.random.default_rng(0), []
    correct = round((bar - 0.03) * split)
    for _ in range(replicates):
        right = np.zeros(split, dtype=np.int64)
        right[:correct] = 1
        cumulative = np.cumsum(right[rng.permutation(split)])
        for end in stage_ends(split):
            if decide(int(cumulative[end - 1]), end, split, bar, FIRST_STAGE, **CLASSIFIER_LOOKS).passed is not None:
                scored.append(end + min(end // 2, CANARY_SIZE))
                break
    return int(statistics.median(scored))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--only", nargs="+", choices=sorted(THRESHOLDS))
    args = parser.parse_args()
    print(f"{'threshold':<17} {'split':>7} {'threads':>7} {'ms/example':>10} {'clear case':>11} {'3 points off':>13} "
          f"{'whole split':>12} {'whole/clear':>11}")
    for name in args.only or THRESHOLDS:
        threshold = THRESHOLDS[name]
        bar = load_assignment(threshold.assignment).spec.thresholds[threshold.name].value
        clear = FIRST_STAGE + FIRST_STAGE // 2
        off = examples_scored_three_points_off(threshold.split, bar)
        whole = threshold.split + CANARY_SIZE
        for threads in args.threads:
            rate = seconds_per_example(threshold, threads)
            print(f"{name:<17} {threshold.split:>7,} {threads:>7} {1000 * rate:>10.3f} {clear * rate:>10.1f}s "
                  f"{off * rate:>12.1f}s {whole * rate:>11.1f}s {whole / clear:>10.1f}x", flush=True)


if __name__ == "__main__":
    main()

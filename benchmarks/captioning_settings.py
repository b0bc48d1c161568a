"""Time to the expected loss for the captioning assignment's three overfitting settings, with the reference notebook's
own cells (definitions, "overfit_settings": the settings, the recipe and the 50-caption subset).

    python benchmarks/captioning_settings.py            # on the stand-in data (CPU: a few minutes on a busy 2-core machine)
    python benchmarks/captioning_settings.py --coco     # also on COCO, where DLCOURSE_COCO points at the CS231n files

Each setting trains 100 epochs from seed 0 with `train_captioner` (as the cell "overfit_train" does); the table gives
the final training loss next to the hand-out's expectation, the first epoch whose training loss reaches it, the
seconds until then and the seconds of the whole run. The data is labelled in every row (stand-in or COCO).

This is a benchmark: it prints a table and makes no assertion about the numbers.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from autograder.assignments import load_assignment  # noqa: E402
from autograder.samples import run_reference_cells  # noqa: E402
from dlcourse.captioning import coco_available, load_coco, small_subset, train_captioner  # noqa: E402
from dlcourse.threads import course_threads  # noqa: E402

ASSIGNMENT = load_assignment("captioning")
CELLS = list(ASSIGNMENT.spec.run_cells) + ["data", "overfit_settings"]


def machine(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    threads = course_threads()
    return (f"CPU {platform.processor() or platform.machine()}, {threads} torch thread{'' if threads == 1 else 's'} "
            "(train_captioner's on a CPU: the course setting, dlcourse.threads)")


def run(ns: dict, features: torch.Tensor, captions: torch.Tensor, vocab_size: int, source: str, device: str) -> list[str]:
    rows = []
    for label, sizes, lr, expected in ns["SETTINGS"]:
        ns["seed_everything"](0)
        config = ns["CaptioningConfig"](vocab_size=vocab_size, input_dim=features.shape[-1], **sizes)
        model = ns["CaptioningTransformer"](config)
        with contextlib.redirect_stdout(sys.stderr):
            history = train_captioner(model, features, captions, dataclasses.replace(ns["OVERFIT_RECIPE"], lr=lr),
                                      ns["temporal_softmax_loss"], device=device, log_every=0)
        reached = next((i for i, loss in enumerate(history.train_loss) if loss <= expected), None)
        to_bar = f"{sum(history.seconds[:reached + 1]):.1f}" if reached is not None else "-"
        rows.append(f"| {source} | {label} | {history.train_loss[-1]:.3f} | <= {expected:g} | "
                    f"{'-' if reached is None else reached + 1} | {to_bar} | {sum(history.seconds):.1f} |")
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--coco", action="store_true", help="also the COCO captioning subset (needs DLCOURSE_COCO)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    with contextlib.redirect_stdout(sys.stderr):  # the cells print; stdout is for the table
        ns = run_reference_cells(ASSIGNMENT, CELLS)
    data = ns["data"]
    rows = run(ns, ns["small_features"], ns["small_captions"], len(data.idx_to_word), data.source, args.device)
    if args.coco:
        if coco_available():
            coco = load_coco()
            features, captions = small_subset(coco, 50)
            rows += run(ns, features, captions, len(coco.idx_to_word), coco.source, args.device)
        else:
            rows.append("| COCO | (no COCO captioning folder here: set DLCOURSE_COCO) | | | | | |")
    print(f"Overfitting 50 captions, 100 epochs, batches of 25, seed 0; {machine(args.device)}")
    print("| data | setting | final training loss | expected | first epoch at the bar | seconds to the bar | seconds, 100 epochs |")
    print("|---|---|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()

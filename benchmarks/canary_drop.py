"""How much an honest model's accuracy drops on the image canary (autograder/kit/scoring.py: perturb_images), next to
how much a model that looks the test images up drops: the measurement behind each threshold's `canary_drop` and
CANARY_MARGIN.

A saved model (`<name>.safetensors` / `<name>.json`, as a notebook saves it) goes into the course's own implementation
of its architecture (autograder/kit/trusted.py), classifies N test images and a perturbed copy of each, and the table
lists the accuracy on both and the drop, for several draws of the secret seed. Two lookups run beside it on the same
copies: one that knows every test image exactly (a hash of its pixels), and one that matches the nearest test image
after 4x4 average pooling.

    python benchmarks/canary_drop.py vit path/to/folder/with/vit_fashionmnist.* --model ViT --config ViTConfig \
        --dataset fashion_mnist
    python benchmarks/canary_drop.py cnn path/to/cnn_simple-folder --saved cnn_simple --model SimpleCNN \
        --config CNNConfig --dataset cifar10
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autograder.kit.scoring import perturb_images  # noqa: E402
from autograder.kit.trusted import course_model  # noqa: E402
from dlcourse.data import load_image_split  # noqa: E402
from dlcourse.export import load_model_files  # noqa: E402


class SavedFolder:
    """What course_model reads of a student: the saved files of one folder."""

    def __init__(self, assignment: str, folder: Path):
        self.assignment_name, self.folder = assignment, folder
        self.policy = SimpleNamespace(device="cpu", threads=1)

    def saved_model(self, name: str, config_class: str | None = None) -> tuple[dict, dict]:
        weights, config = load_model_files(name, self.folder, config_class)
        return config, weights


def predictions(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(images[i:i + 500]).argmax(1) for i in range(0, len(images), 500)])


def nearest_pooled(test: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """Index of the test image nearest to each query after 4x4 average pooling (a lookup robust to small changes)."""
    pooled = F.avg_pool2d(test, 4).flatten(1)
    return torch.cdist(F.avg_pool2d(queries, 4).flatten(1), pooled).argmin(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("assignment")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--saved", default="vit_fashionmnist")
    parser.add_argument("--model", default="ViT")
    parser.add_argument("--config", default="ViTConfig")
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--draws", type=int, default=3)
    args = parser.parse_args()

    torch.set_num_threads(1)
    model, _, _ = course_model(SavedFolder(args.assignment, args.folder), args.saved, args.model, args.config)
    split = load_image_split(args.dataset, train=False)
    images, labels = split.normalized(), split.labels
    table = {image.numpy().tobytes(): int(label) for image, label in zip(images, labels, strict=True)}
    print(f"{args.saved} on {split.source}: {args.examples} test images and a perturbed copy of each\n")
    print("| draw | model: plain | model: canary | model: drop | hash lookup: canary | pooled NN lookup: canary |")
    print("|---:|---:|---:|---:|---:|---:|")
    for draw in range(args.draws):
        rng = random.Random(draw)
        chosen = torch.tensor(rng.sample(range(len(images)), args.examples))
        copies = perturb_images(images[chosen], rng)
        truth = labels[chosen]
        plain = (predictions(model, images[chosen]) == truth).float().mean().item()
        canary = (predictions(model, copies) == truth).float().mean().item()
        hashed = torch.tensor([table.get(c.numpy().tobytes(), -1) for c in copies])
        nearest = labels[nearest_pooled(images, copies)]
        print(f"| {draw} | {plain:.2%} | {canary:.2%} | {plain - canary:+.2%} | {(hashed == truth).float().mean():.2%} "
              f"| {(nearest == truth).float().mean():.2%} |")


if __name__ == "__main__":
    main()

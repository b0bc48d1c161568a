"""The course's training loop for image classifiers: AdamW, warm-up then cosine decay, tqdm bars,
and a `History` of per-epoch loss and accuracy for plotting."""
from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from dlcourse.data import ImageSplit, random_crop_flip
from dlcourse.utils import seed_everything

QUICK_ENV = "DLCOURSE_QUICK"


def quick_mode() -> bool:
    """True when `DLCOURSE_QUICK=1`: every training run shrinks to a small subset and one epoch.

    This is the one setting that makes a notebook run end to end in minutes on a CPU (CI uses it).
    Results in quick mode are smoke tests, not results.
    """
    return os.environ.get(QUICK_ENV, "") == "1"


@dataclass
class TrainRecipe:
    """Hyper-parameters of one training run (everything except the model's own config)."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.0
    augment: bool = False  # random crop (4-pixel padding) + horizontal flip
    train_subset: int | None = None  # use only this many training images
    seed: int = 0

    def quick(self) -> "TrainRecipe":
        """The recipe shrunk for `DLCOURSE_QUICK=1`: 2 000 training images, one epoch."""
        return dataclasses.replace(self, epochs=1, train_subset=2000, warmup_epochs=0.0)


@dataclass
class History:
    """Per-epoch record of a training run."""

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{len(self.train_loss)} epochs in {sum(self.seconds):.0f} s, final train loss "
                f"{self.train_loss[-1]:.3f}, train acc {self.train_acc[-1]:.2%}, test acc {self.test_acc[-1]:.2%}")


@torch.no_grad()
def evaluate_accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                      device: torch.device | str = "cpu", batch_size: int = 1000) -> float:
    """Fraction of `images` (N, C, H, W float) that `model` classifies as `labels` (N,)."""
    model.eval()
    correct = 0
    for start in range(0, len(labels), batch_size):
        x = images[start:start + batch_size].to(device)
        correct += (model(x).argmax(dim=1).cpu() == labels[start:start + batch_size]).sum().item()
    return correct / len(labels)


def lr_at(step: int, total_steps: int, warmup_steps: int, peak_lr: float) -> float:
    """Linear warm-up to `peak_lr`, then cosine decay to zero."""
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return peak_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def train_classifier(model: torch.nn.Module, train: ImageSplit, test: ImageSplit, recipe: TrainRecipe,
                     device: torch.device | str = "cpu", progress: bool = True) -> History:
    """Train `model` on `train`, evaluating on `test` after every epoch; returns the History.

    With `DLCOURSE_QUICK=1` the recipe is shrunk (see `TrainRecipe.quick`).
    """
    if quick_mode():
        recipe = recipe.quick()
        print(f"{QUICK_ENV}=1: quick smoke run ({recipe.train_subset} images, 1 epoch); accuracy will be low.")
    seed_everything(recipe.seed)
    if recipe.train_subset:
        train = train.subset(recipe.train_subset, seed=recipe.seed)
    device = torch.device(device)
    x_train, y_train = train.normalized(), train.labels
    x_test, y_test = test.normalized(), test.labels
    if device.type == "cuda":  # the whole split fits on any course GPU; saves host-to-device copies
        x_train, y_train = x_train.to(device), y_train.to(device)

    model.to(device)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "pos_embed" not in n and "cls_token" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "pos_embed" not in n and "cls_token" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=recipe.lr)
    steps_per_epoch = math.ceil(len(y_train) / recipe.batch_size)
    total_steps = recipe.epochs * steps_per_epoch
    warmup_steps = int(recipe.warmup_epochs * steps_per_epoch)
    use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()

    history, step = History(), 0
    for epoch in range(recipe.epochs):
        model.train()
        start, loss_sum, correct, seen = time.time(), 0.0, 0, 0
        order = torch.randperm(len(y_train), device=y_train.device)
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{recipe.epochs}", disable=None if progress else True, leave=False)  # None: no bars when not a terminal
        for i in bar:
            idx = order[i * recipe.batch_size:(i + 1) * recipe.batch_size]
            x, y = x_train[idx].to(device, non_blocking=True), y_train[idx].to(device, non_blocking=True)
            if recipe.augment:
                x = random_crop_flip(x)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total_steps, warmup_steps, recipe.lr)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_bf16):
                logits = model(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.2%}")
        history.train_loss.append(loss_sum / seen)
        history.train_acc.append(correct / seen)
        history.test_acc.append(evaluate_accuracy(model, x_test, y_test, device))
        history.seconds.append(time.time() - start)
        print(f"epoch {epoch + 1}/{recipe.epochs}: loss {history.train_loss[-1]:.4f}, "
              f"train acc {history.train_acc[-1]:.2%}, test acc {history.test_acc[-1]:.2%}, "
              f"{history.seconds[-1]:.0f} s")
    return history

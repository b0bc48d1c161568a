"""The course's training-loop core and the image classifiers' loop built on it.

- `Recipe`: the hyper-parameters every run has, and the one way to shrink a run for `DLCOURSE_QUICK=1`.
- `History`: the per-epoch record every run keeps (each assignment's subclass adds its own columns).
- `Trainer`: epochs of a training step followed by an evaluation, recorded in a History (minGPT's Trainer
  is the model). The step is the course's own loop or, where an assignment asks for it, the student's.
- `ScheduledSteps`: optimisation steps under the course's warm-up + cosine schedule, counted across epochs.
- `train_classifier`: AdamW, warm-up then cosine decay, tqdm bars, for the image classifiers.

Every run and evaluation here uses the course's torch CPU thread count (`dlcourse.threads`: one thread unless
`DLCOURSE_THREADS` says otherwise).
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, TypeVar

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from dlcourse.data import ImageSplit, random_crop_flip
from dlcourse.threads import torch_threads
from dlcourse.utils import seed_everything

QUICK_ENV = "DLCOURSE_QUICK"

RecipeT = TypeVar("RecipeT", bound="Recipe")


def quick_mode() -> bool:
    """True when `DLCOURSE_QUICK=1`: every training run shrinks to a small subset and one epoch.

    This is the one setting that makes a notebook run end to end in minutes on a CPU (CI uses it).
    Results in quick mode are smoke tests, not results.
    """
    return os.environ.get(QUICK_ENV, "") == "1"


# -- what every run shares: its recipe and its history ---------------------------------------------------
@dataclass
class Recipe:
    """Hyper-parameters every training run has (the model's own sizes are in its config). Each assignment's
    recipe adds its own (and its own defaults) and says in `quick_changes` how quick mode shrinks it."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    train_subset: int | None = None  # train on only this many examples
    seed: int = 0

    def quick_changes(self) -> dict[str, Any]:
        """The fields `quick()` replaces, and with what."""
        raise NotImplementedError(f"{type(self).__name__} does not say how quick mode shrinks it")

    def quick(self: RecipeT) -> RecipeT:
        """This recipe shrunk for `DLCOURSE_QUICK=1` (see `quick_changes`)."""
        return dataclasses.replace(self, **self.quick_changes())


@dataclass
class History:
    """Per-epoch record of a training run: the training loss and the wall time of every epoch (training plus
    evaluation). Subclasses add the columns their runs measure; `record` appends one value to each (columns declared
    with `field(metadata={"per_step": True})` are per optimisation step instead, appended by the loop itself)."""

    train_loss: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def record(self, **values: float) -> None:
        """Append one epoch: a value for every column (a missing or unknown column is an error, so that the
        columns never drift out of step)."""
        columns = {f.name for f in dataclasses.fields(self) if not f.metadata.get("per_step")}
        if set(values) != columns:
            raise ValueError(f"{type(self).__name__}.record needs exactly {sorted(columns)}, got {sorted(values)}")
        for name, value in values.items():
            getattr(self, name).append(value)

    def epoch_metrics(self) -> str:
        """The last epoch's numbers, for the one line the Trainer prints per epoch."""
        return f"train loss {self.train_loss[-1]:.3f}"

    def epoch_line(self, epoch: int, epochs: int) -> str:
        return f"epoch {epoch + 1}/{epochs}: {self.epoch_metrics()}, {self.seconds[-1]:.0f} s"

    def summary(self) -> str:
        return f"{len(self.train_loss)} epochs in {sum(self.seconds):.0f} s, final train loss {self.train_loss[-1]:.3f}"


@dataclass
class ClassifierHistory(History):
    """A classifier's run: accuracy on the training batches and on the test split as well."""

    train_acc: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)

    def epoch_metrics(self) -> str:
        return f"loss {self.train_loss[-1]:.4f}, train acc {self.train_acc[-1]:.2%}, test acc {self.test_acc[-1]:.2%}"

    def summary(self) -> str:
        return f"{super().summary()}, train acc {self.train_acc[-1]:.2%}, test acc {self.test_acc[-1]:.2%}"


# -- the loop ---------------------------------------------------------------------------------------------
Metrics = dict[str, float]


@dataclass
class Trainer:
    """Runs `epochs` rounds of `train_epoch(epoch)` then `evaluate()`, records both (and the epoch's seconds) in
    `history`, calls `on_epoch_end(epoch, history)` and logs one line. Stops early once `finished()`.

    `train_epoch` is where assignments differ: the course's own batch loop (train_classifier, train_seq2seq) or
    the student's (the RNN notebook's train_one_epoch). The Trainer itself draws no random numbers, so a run
    repeats exactly what its step and evaluation do. On a CPU `device` the run uses the course's thread count
    (`dlcourse.threads.torch_threads`; `large_model` for BERT-sized models)."""

    epochs: int
    train_epoch: Callable[[int], Metrics]
    evaluate: Callable[[], Metrics]
    history: History
    log: Callable[[str], None] = print
    on_epoch_end: Callable[[int, History], None] | None = None
    finished: Callable[[], bool] = lambda: False
    device: torch.device | str = "cpu"
    large_model: bool = False

    def run(self) -> History:
        with torch_threads(self.device, large_model=self.large_model):
            return self._run()

    def _run(self) -> History:
        for epoch in range(self.epochs):
            started = time.time()
            metrics = self.train_epoch(epoch)
            metrics.update(self.evaluate())
            self.history.record(**metrics, seconds=time.time() - started)
            if self.on_epoch_end is not None:
                self.on_epoch_end(epoch, self.history)
            self.log(self.history.epoch_line(epoch, self.epochs))
            if self.finished():
                break
        return self.history


def lr_at(step: int, total_steps: int, warmup_steps: int, peak_lr: float) -> float:
    """Linear warm-up to `peak_lr`, then cosine decay to zero."""
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return peak_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class ScheduledSteps:
    """Optimisation steps of `optimizer` under `lr_at`'s warm-up + cosine schedule, counted across epochs so that
    the schedule spans the whole run. `clip_norm` clips the gradient norm before each step when given."""

    optimizer: torch.optim.Optimizer
    peak_lr: float
    total_steps: int
    warmup_steps: int
    clip_norm: float | None = None
    taken: int = 0

    def done(self) -> bool:
        return self.taken >= self.total_steps

    def take(self, loss: torch.Tensor, parameters: Iterator[torch.nn.Parameter]) -> None:
        """Set the scheduled learning rate, backpropagate `loss` and step."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.taken, self.total_steps, self.warmup_steps, self.peak_lr)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(parameters, self.clip_norm)
        self.optimizer.step()
        self.taken += 1


def shuffled_batches(num: int, batch_size: int, device: torch.device | str | None = None) -> Iterator[torch.Tensor]:
    """Index tensors of consecutive `batch_size` slices of a fresh random permutation of range(num) (drawn on
    `device`'s generator: a CUDA split is shuffled on the GPU); the last batch may be smaller."""
    order = torch.randperm(num, device=device)
    for start in range(0, num, batch_size):
        yield order[start:start + batch_size]


# -- image classifiers ------------------------------------------------------------------------------------
@dataclass
class TrainRecipe(Recipe):
    """Hyper-parameters of one image-classifier run (epochs, batch size, lr and weight decay: Recipe's defaults)."""

    warmup_epochs: float = 1.0
    label_smoothing: float = 0.0
    augment: bool = False  # random crop (4-pixel padding) + horizontal flip
    test_subset: int | None = None  # evaluate on only this many test images (a seeded random subset)

    def quick_changes(self) -> dict[str, Any]:
        """500 training images, one epoch, no warm-up, evaluated on 500 test images (the CIFAR-10 ViT's quick run: 23 s on
        a CPU thread with 1 000 of each, most of the ViT notebook's quick run)."""
        return dict(epochs=1, train_subset=500, test_subset=500, warmup_epochs=0.0)


@torch.no_grad()
def evaluate_accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                      device: torch.device | str = "cpu", batch_size: int = 1000) -> float:
    """Fraction of `images` (N, C, H, W float) that `model` classifies as `labels` (N,), on the course's CPU
    thread count."""
    model.eval()
    correct = 0
    with torch_threads(device):
        for start in range(0, len(labels), batch_size):
            x = images[start:start + batch_size].to(device)
            correct += (model(x).argmax(dim=1).cpu() == labels[start:start + batch_size]).sum().item()
    return correct / len(labels)


def train_classifier(model: torch.nn.Module, train: ImageSplit, test: ImageSplit, recipe: TrainRecipe,
                     device: torch.device | str = "cpu", progress: bool = True) -> ClassifierHistory:
    """Train `model` on `train`, evaluating on `test` after every epoch; returns the history.

    With `DLCOURSE_QUICK=1` the recipe is shrunk (see `TrainRecipe.quick_changes`).
    """
    if quick_mode():
        recipe = recipe.quick()
        print(f"{QUICK_ENV}=1: quick smoke run ({recipe.train_subset} images, 1 epoch, {recipe.test_subset} test "
              "images); accuracy will be low.")
    seed_everything(recipe.seed)
    if recipe.train_subset:
        train = train.subset(recipe.train_subset, seed=recipe.seed)
    if recipe.test_subset:
        test = test.subset(recipe.test_subset, seed=recipe.seed)
    device = torch.device(device)
    x_train, y_train = train.normalized(), train.labels
    x_test, y_test = test.normalized(), test.labels
    if device.type == "cuda":  # the whole split fits on any course GPU; saves host-to-device copies
        x_train, y_train = x_train.to(device), y_train.to(device)

    model.to(device)
    # Weight decay pulls weights towards zero; biases, norms and learned positions/tokens have no reason to shrink.
    decays = [p.ndim >= 2 and "pos_embed" not in n and "cls_token" not in n for n, p in model.named_parameters()]
    params = [p for _, p in model.named_parameters()]
    optimizer = torch.optim.AdamW([{"params": [p for p, d in zip(params, decays, strict=True) if d], "weight_decay": recipe.weight_decay},
                                   {"params": [p for p, d in zip(params, decays, strict=True) if not d], "weight_decay": 0.0}], lr=recipe.lr)
    steps_per_epoch = math.ceil(len(y_train) / recipe.batch_size)
    steps = ScheduledSteps(optimizer, recipe.lr, total_steps=recipe.epochs * steps_per_epoch,
                           warmup_steps=int(recipe.warmup_epochs * steps_per_epoch))
    use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()

    def train_epoch(epoch: int) -> Metrics:
        model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        bar = tqdm(shuffled_batches(len(y_train), recipe.batch_size, y_train.device), total=steps_per_epoch,
                   desc=f"epoch {epoch + 1}/{recipe.epochs}", disable=None if progress else True, leave=False)  # None: no bars when not a terminal
        for idx in bar:
            x, y = x_train[idx].to(device, non_blocking=True), y_train[idx].to(device, non_blocking=True)
            if recipe.augment:
                x = random_crop_flip(x)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_bf16):
                logits = model(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=recipe.label_smoothing)
            steps.take(loss, model.parameters())
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.2%}")
        return {"train_loss": loss_sum / seen, "train_acc": correct / seen}

    return Trainer(recipe.epochs, train_epoch, lambda: {"test_acc": evaluate_accuracy(model, x_test, y_test, device)},
                   ClassifierHistory(), device=device).run()

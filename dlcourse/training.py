"""The course's training-loop core and the image classifiers' loop built on it.

- `Recipe`: the hyper-parameters every run has, and the one way to shrink a run for `DLCOURSE_QUICK=1`.
- `History`: the per-epoch record every run keeps (each assignment's subclass adds its own columns).
- `Trainer` (configured by a `TrainerConfig`): the batch loop and the optimisation step (warm-up + cosine or constant
  learning rate, zero_grad, backward, clipping, step, mixed precision on CUDA); an assignment gives only its batches,
  its loss of a batch (`forward` -> `BatchLoss`) and its evaluation. minGPT's Trainer is the model.
- `run_epochs`: the epoch driver under the Trainer: training epochs, evaluation, the History, one line per epoch. It
  also drives the student's own epoch where a notebook asks the student to write the step (the RNN's train_one_epoch).
- `train_classifier`: AdamW, warm-up then cosine decay, tqdm bars, for the image classifiers.

Every run and evaluation here uses the course's torch CPU thread count (`dlcourse.threads`: one thread unless
`DLCOURSE_THREADS` says otherwise).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from collections.abc import Callable, Iterable, Iterator, Sized
from typing import Any, Generic, TypeVar

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
    clip_norm: float | None = None  # clip the gradients' total norm to this before every step

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

    def record_step(self, lr: float, loss: float) -> None:
        """One optimisation step's learning rate and loss (the Trainer calls it; a history with per-step columns keeps
        them)."""

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
BatchT = TypeVar("BatchT")
HistoryT = TypeVar("HistoryT", bound=History)
PRECISIONS = ("fp32", "bf16", "fp16")


def run_epochs(epochs: int, train_epoch: Callable[[int], Metrics], evaluate: Callable[[], Metrics], history: HistoryT,
               log: Callable[[str], None] = print, on_epoch_end: Callable[[int, HistoryT], None] | None = None,
               finished: Callable[[], bool] = lambda: False, device: torch.device | str = "cpu",
               large_model: bool = False) -> HistoryT:
    """`epochs` rounds of `train_epoch(epoch)` then `evaluate()`, both recorded in `history` with the epoch's seconds;
    then `on_epoch_end(epoch, history)` and one logged line. Stops early once `finished()`. On a CPU `device` the run
    uses the course's thread count (`dlcourse.threads.torch_threads`; `large_model` for BERT-sized models).

    `Trainer.run` drives its own batch loop with it; `dlcourse.rnn.fit` drives the student's `train_one_epoch`, where
    the notebook asks the student to write the step. It draws no random numbers: a run repeats what its epochs do."""
    with torch_threads(device, large_model=large_model):
        for epoch in range(epochs):
            started = time.time()
            metrics = train_epoch(epoch)
            metrics.update(evaluate())
            history.record(**metrics, seconds=time.time() - started)
            if on_epoch_end is not None:
                on_epoch_end(epoch, history)
            log(history.epoch_line(epoch, epochs))
            if finished():
                break
    return history


def lr_at(step: int, total_steps: int, warmup_steps: int, peak_lr: float) -> float:
    """Linear warm-up to `peak_lr`, then cosine decay to zero."""
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return peak_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class TrainerConfig:
    """How a `Trainer` optimises: the schedule, clipping, precision and what it shows."""

    epochs: int
    lr: float  # the peak learning rate
    total_steps: int  # the run stops after this many optimisation steps; the cosine schedule spans them
    warmup_steps: int = 0
    schedule: str = "cosine"  # "cosine" (lr_at: linear warm-up, cosine decay to zero) or "constant" (always lr)
    clip_norm: float | None = None  # clip the gradients' total norm to this before every step
    precision: str = "fp32"  # on CUDA: "bf16" autocast (where the GPU has bf16), "fp16" autocast with a GradScaler
    progress: bool = False  # a tqdm bar per epoch (only in a terminal or notebook)
    log_every: int = 0  # log the loss every this many steps

    def __post_init__(self) -> None:
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule is 'cosine' or 'constant', not {self.schedule!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision is one of {PRECISIONS}, not {self.precision!r}")

    def lr_at(self, step: int) -> float:
        if self.schedule == "constant":
            return self.lr
        return lr_at(step, self.total_steps, self.warmup_steps, self.lr)


@dataclass
class BatchLoss:
    """What an assignment's `forward` returns for one batch: the loss to minimise and how the batch counts in the
    epoch's numbers. `train_loss` is the epoch's batch losses averaged with the weights; each of `counts` (e.g.
    {"train_acc": correct predictions}) is summed over the epoch and divided by the epoch's total weight."""

    loss: torch.Tensor
    weight: torch.Tensor | int = 1  # examples or tokens in the batch
    # Tensors are read after the step (no GPU sync before it).
    counts: dict[str, torch.Tensor | int] = field(default_factory=dict)


@dataclass
class Trainer(Generic[BatchT, HistoryT]):
    """The course's training loop (minGPT's Trainer is the model): each epoch iterates over `batches` (re-iterated
    every epoch, e.g. `ShuffledBatches`), computes `forward(batch)` (the assignment's loss, under autocast when
    `config.precision` asks for it on CUDA) and takes one optimisation step: the scheduled learning rate,
    zero_grad(set_to_none=True), backward, gradient clipping, optimizer step. After every epoch `evaluate()`; all
    recorded in `history` (see `run_epochs`). Stops after `config.total_steps` steps.

    The Trainer draws no random numbers: a run repeats exactly what its batches, forward and evaluation draw."""

    config: TrainerConfig
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    batches: Iterable[BatchT]
    forward: Callable[[BatchT], BatchLoss]
    evaluate: Callable[[], Metrics]
    history: HistoryT
    device: torch.device | str = "cpu"
    log: Callable[[str], None] = print
    on_epoch_end: Callable[[int, HistoryT], None] | None = None
    taken: int = field(default=0, init=False)  # optimisation steps so far, across epochs

    def __post_init__(self) -> None:
        on_cuda = torch.device(self.device).type == "cuda"
        self.autocast_dtype = {"bf16": torch.bfloat16 if on_cuda and torch.cuda.is_bf16_supported() else None,
                               "fp16": torch.float16 if on_cuda else None, "fp32": None}[self.config.precision]
        # float16 gradients underflow without loss scaling; bfloat16 has float32's range and needs none
        self.scaler = torch.amp.GradScaler("cuda") if self.autocast_dtype == torch.float16 else None

    def run(self) -> HistoryT:
        return run_epochs(self.config.epochs, self.train_epoch, self.evaluate, self.history, log=self.log,
                          on_epoch_end=self.on_epoch_end, finished=self.done, device=self.device)

    def done(self) -> bool:
        return self.taken >= self.config.total_steps

    def train_epoch(self, epoch: int) -> Metrics:
        """One pass over `batches` (fewer once the run has taken its steps): the mean loss and the counts' rates."""
        self.model.train()
        loss_sum, weight = 0.0, 0
        counts: dict[str, int] = {}
        bar = tqdm(total=len(self.batches) if isinstance(self.batches, Sized) else None, leave=False,
                   desc=f"epoch {epoch + 1}/{self.config.epochs}",
                   disable=None if self.config.progress else True)  # None: no bar when not a terminal
        for batch in self.batches:
            if self.done():
                break
            with self.autocast():
                out = self.forward(batch)
            self.step(out.loss)
            value = out.loss.item()
            self.history.record_step(lr=self.optimizer.param_groups[0]["lr"], loss=value)
            loss_sum, weight = loss_sum + value * int(out.weight), weight + int(out.weight)
            for name, count in out.counts.items():
                counts[name] = counts.get(name, 0) + int(count)
            if not bar.disable:
                bar.update()
                bar.set_postfix(loss=f"{loss_sum / max(1, weight):.3f}",
                                **{k: f"{v / max(1, weight):.2%}" for k, v in counts.items()})
            if self.config.log_every and self.taken % self.config.log_every == 0:
                self.log(f"  step {self.taken}/{self.config.total_steps}: loss {value:.3f}")
        bar.close()
        return {"train_loss": loss_sum / max(1, weight), **{k: v / max(1, weight) for k, v in counts.items()}}

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision for the forward pass where `config.precision` asks for it (CUDA only)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.autocast_dtype)

    def step(self, loss: torch.Tensor) -> None:
        """One optimisation step on `loss` at the scheduled learning rate."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr_at(self.taken)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            self._clip()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
            self._clip()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.taken += 1

    def _clip(self) -> None:
        if self.config.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_norm)


@dataclass
class ShuffledBatches:
    """Index tensors of consecutive `batch_size` slices of a fresh random permutation of range(num) every time it is
    iterated (drawn on `device`'s generator: a CUDA split is shuffled on the GPU); the last batch may be smaller."""

    num: int
    batch_size: int
    device: torch.device | str | None = None

    def __len__(self) -> int:
        return math.ceil(self.num / self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        order = torch.randperm(self.num, device=self.device)
        for start in range(0, self.num, self.batch_size):
            yield order[start:start + self.batch_size]


# -- image classifiers ------------------------------------------------------------------------------------
@dataclass
class TrainRecipe(Recipe):
    """Hyper-parameters of one image-classifier run (epochs, batch size, lr and weight decay: Recipe's defaults)."""

    warmup_epochs: float = 1.0
    label_smoothing: float = 0.0
    augment: bool = False  # random crop (4-pixel padding) + horizontal flip
    test_subset: int | None = None  # evaluate on only this many test images (a seeded random subset)

    def quick_changes(self) -> dict[str, Any]:
        """256 training images, one epoch, no warm-up, evaluated on 256 test images (the CIFAR-10 ViT's quick run, most
        of the ViT notebook's: 23 s on a CPU thread with 1 000 of each, 11 s with 500)."""
        return dict(epochs=1, train_subset=256, test_subset=256, warmup_epochs=0.0)


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
    batches = ShuffledBatches(len(y_train), recipe.batch_size, y_train.device)
    config = TrainerConfig(recipe.epochs, recipe.lr, total_steps=recipe.epochs * len(batches),
                           warmup_steps=int(recipe.warmup_epochs * len(batches)), clip_norm=recipe.clip_norm,
                           precision="bf16", progress=progress)

    def forward(idx: torch.Tensor) -> BatchLoss:
        x, y = x_train[idx].to(device, non_blocking=True), y_train[idx].to(device, non_blocking=True)
        if recipe.augment:
            x = random_crop_flip(x)
        logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=recipe.label_smoothing)
        return BatchLoss(loss, len(y), {"train_acc": (logits.argmax(1) == y).sum()})

    def evaluate() -> Metrics:
        return {"test_acc": evaluate_accuracy(model, x_test, y_test, device)}

    return Trainer(config, model, optimizer, batches, forward, evaluate, ClassifierHistory(), device=device).run()

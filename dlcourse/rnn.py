"""Course code of the RNN/LSTM assignment (source/rnn/rnn.ipynb): IMDB reviews as token ids, a word-level
tokenizer trained with Hugging Face `tokenizers`, length-bucketed loaders, the training driver that calls
the student's `train_one_epoch` / `evaluate`, TensorBoard logging and reading the logged curves back.

Graded ideas (collate_batch, the recurrent layers, the loss, the loops) are written by the student in the
notebook; this module only holds the plumbing around them. The grader tokenises the test reviews with `encode`
and the student's saved tokenizer (plain JSON data, loaded on the trusted side): autograder/kit/imdb_grading.py.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from dlcourse.training import QUICK_ENV, ClassifierHistory, History, Metrics, Recipe, lr_at, quick_mode, run_epochs
from dlcourse.utils import seed_everything

QUICK_REVIEWS = 256  # DLCOURSE_QUICK=1: the reviews a run trains on, and each split it evaluates on

PAD, UNK = "[PAD]", "[UNK]"
PAD_ID, UNK_ID = 0, 1  # fixed: the embedding's padding_idx and the grader rely on them
TOKENIZER_FILE = "tokenizer.json"


# -- tokenisation -----------------------------------------------------------------------------------
def train_tokenizer(texts, vocab_size: int = 20000):
    """A lower-casing word-level tokenizer (words and punctuation) trained on `texts`, with [PAD] = 0 and
    [UNK] = 1 and at most `vocab_size` entries. HTML line breaks (`<br />`, frequent in IMDB) become spaces."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
    tokenizer.normalizer = normalizers.Sequence([normalizers.Replace(Regex(r"<br\s*/?>"), " "),
                                                 normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()  # \w+ runs and punctuation runs
    trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=[PAD, UNK], min_frequency=2)
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    assert tokenizer.token_to_id(PAD) == PAD_ID and tokenizer.token_to_id(UNK) == UNK_ID
    return tokenizer


def encode(tokenizer, texts) -> list[list[int]]:
    """Token ids of each text (no special tokens added)."""
    return [e.ids for e in tokenizer.encode_batch(list(texts), add_special_tokens=False)]


def imdb_texts_labels(split: str, subset: int | None = None, seed: int = 0) -> tuple[list[str], list[int]]:
    """IMDB `split` as (texts, labels), shuffled with `seed` (the local copy is sorted by label) and cut to
    `subset` reviews when given."""
    from dlcourse.text_data import load_imdb

    data = load_imdb(split)
    order = list(range(len(data)))
    random.Random(seed).shuffle(order)
    if subset is not None:
        order = order[:subset]
    data = data.select(order)
    return list(data["text"]), [int(y) for y in data["label"]]


VALIDATION_FRACTION = 0.1  # of the IMDB training split, held out to choose recipes (never trained on)
VALIDATION_SEED = 0


def validation_split(texts: list[str], labels: list[int], fraction: float = VALIDATION_FRACTION,
                     seed: int = VALIDATION_SEED) -> tuple[tuple[list[str], list[int]], tuple[list[str], list[int]]]:
    """((train texts, labels), (validation texts, labels)): `fraction` of each label's reviews, drawn with `seed`,
    held out of the training split to choose a recipe on (the test split is for the final number only); the rest, in
    their order, is what is trained on. The two are disjoint, and the same for the same inputs and seed."""
    if not 0 < fraction < 1:
        raise ValueError(f"the validation fraction must be between 0 and 1, not {fraction!r}")
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    rng, held = random.Random(seed), set()
    for label in sorted(set(labels)):
        members = [i for i, y in enumerate(labels) if y == label]
        held.update(rng.sample(members, round(fraction * len(members))))
    kept = [i for i in range(len(texts)) if i not in held]
    chosen = sorted(held)
    return ([texts[i] for i in kept], [labels[i] for i in kept]), ([texts[i] for i in chosen], [labels[i] for i in chosen])


READ_PARTS = ("first", "last")  # which tokens of a long review a classifier reads (ClassifierConfig.read)


def review_window(ids: list[int], max_length: int, read: str = "first") -> list[int]:
    """The part of a review's token ids a classifier reads: its first or its last `max_length` tokens. The
    notebook's training cells and the grader cut reviews with this one function, so they always agree."""
    if read not in READ_PARTS:
        raise ValueError(f"read must be one of {READ_PARTS}, not {read!r}")
    return list(ids[:max_length] if read == "first" else ids[-max_length:])


def reviews_as_read(items: list[tuple[list[int], int]], max_length: int, read: str = "first") -> list[tuple[list[int], int]]:
    """(token ids, label) pairs with each review cut by `review_window`."""
    return [(review_window(ids, max_length, read), label) for ids, label in items]


# -- batching ---------------------------------------------------------------------------------------
def bucketed_batches(lengths: list[int], batch_size: int, shuffle: bool, seed: int = 0) -> list[list[int]]:
    """Index batches of reviews of similar length (much less padding, so a recurrent loop over time is
    faster). With `shuffle`, the reviews are shuffled, sorted by length within chunks of 50 batches, and the
    batches shuffled; without, batches follow the sorted order."""
    order = list(range(len(lengths)))
    if not shuffle:
        order.sort(key=lambda i: lengths[i])
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rng = random.Random(seed)
    rng.shuffle(order)
    chunk = batch_size * 50
    batches = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start:start + chunk], key=lambda i: lengths[i])
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


class ReviewLoader:
    """Iterates over `collate_fn([(token_ids, label), ...], max_length, pad_id)` batches of `items`; a new
    length-bucketed shuffle every epoch when `shuffle`."""

    def __init__(self, items: list[tuple[list[int], int]], batch_size: int, max_length: int,
                 collate_fn: Callable, shuffle: bool = False, seed: int = 0):
        self.items, self.batch_size, self.max_length = items, batch_size, max_length
        self.collate_fn, self.shuffle, self.seed, self.epoch = collate_fn, shuffle, seed, 0
        self.lengths = [min(len(ids), max_length) for ids, _ in items]

    def __len__(self) -> int:
        return math.ceil(len(self.items) / self.batch_size)

    def __iter__(self):
        batches = bucketed_batches(self.lengths, self.batch_size, self.shuffle, self.seed + self.epoch)
        self.epoch += 1
        for batch in batches:
            yield self.collate_fn([self.items[i] for i in batch], self.max_length, PAD_ID)


# -- training ---------------------------------------------------------------------------------------
@dataclass
class RNNRecipe(Recipe):
    """Hyper-parameters of one training run (the model's own sizes are in its config)."""

    epochs: int = 3
    batch_size: int = 64
    optimizer: str = "adam"      # "adam", "adamw" or "sgd" (momentum 0.9)
    lr: float = 2e-3
    weight_decay: float = 0.0
    scheduler: str = "cosine"    # "constant", "cosine" (linear warm-up, cosine decay) or "step" (x0.5 per epoch)
    warmup_fraction: float = 0.05
    clip_norm: float | None = 1.0  # gradient clipping, given to train_one_epoch

    def quick_changes(self) -> dict[str, Any]:
        """QUICK_REVIEWS training reviews, one epoch (fit also cuts the reviews to 64 tokens and evaluates on as many)."""
        return dict(epochs=1, train_subset=min(self.train_subset or QUICK_REVIEWS, QUICK_REVIEWS))


def make_optimizer(model: torch.nn.Module, recipe: RNNRecipe) -> torch.optim.Optimizer:
    if recipe.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=0.9, weight_decay=recipe.weight_decay)
    raise ValueError(f"unknown optimizer {recipe.optimizer!r}: use 'adam', 'adamw' or 'sgd'")


def make_scheduler(optimizer: torch.optim.Optimizer, recipe: RNNRecipe, steps_per_epoch: int):
    """A LambdaLR meant to be stepped once per BATCH (after optimizer.step()), as the notebook's
    train_one_epoch does."""
    total = max(1, recipe.epochs * steps_per_epoch)
    warmup = int(recipe.warmup_fraction * total)
    if recipe.scheduler == "constant":
        factor = lambda step: 1.0  # noqa: E731
    elif recipe.scheduler == "cosine":  # the course's warm-up + cosine schedule, as a multiplier of the peak lr
        factor = lambda step: lr_at(min(step, total), total, warmup, 1.0)  # noqa: E731
    elif recipe.scheduler == "step":
        factor = lambda step: 0.5 ** (step // max(1, steps_per_epoch))  # noqa: E731
    else:
        raise ValueError(f"unknown scheduler {recipe.scheduler!r}: use 'constant', 'cosine' or 'step'")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass
class RNNHistory(ClassifierHistory):
    """Per-epoch record of a run (train loss/accuracy from train_one_epoch, validation and test from evaluate), plus
    the learning rate at the end of each epoch. A split the run did not evaluate on holds NaN."""

    test_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)

    def _evaluated(self) -> str:
        parts = [f"{split} loss {getattr(self, split + '_loss')[-1]:.4f}, {split} acc {getattr(self, split + '_acc')[-1]:.2%}"
                 for split in ("val", "test") if not math.isnan(getattr(self, split + "_acc")[-1])]
        return ", ".join(parts)

    def epoch_metrics(self) -> str:
        return ", ".join([f"train loss {self.train_loss[-1]:.4f}, train acc {self.train_acc[-1]:.2%}", self._evaluated()])

    def summary(self) -> str:
        return f"{History.summary(self)}, train acc {self.train_acc[-1]:.2%}, {self._evaluated()}"


TENSORBOARD_TAGS = {"train_loss": "loss/train", "val_loss": "loss/val", "test_loss": "loss/test",
                    "train_acc": "accuracy/train", "val_acc": "accuracy/val", "test_acc": "accuracy/test",
                    "lr": "lr"}  # History column -> TensorBoard tag (a split not evaluated is not logged)


def fit(model: torch.nn.Module, train_items: list, test_items: list | None, recipe: RNNRecipe, *, max_length: int,
        collate_fn: Callable, train_one_epoch: Callable, evaluate: Callable, val_items: list | None = None,
        device="cpu", writer=None, log=print) -> RNNHistory:
    """Train `model` on reviews cut to `max_length` tokens with the student's `train_one_epoch(model, loader,
    optimizer, scheduler, device=..., clip_norm=...)` and evaluate with `evaluate(model, loader, device=...)` after
    every epoch on `val_items` (the validation split: choose recipes on it) and `test_items` (either may be None: a
    hyper-parameter search evaluates on validation only); log to the TensorBoard `writer` (a SummaryWriter) when
    given. On a CPU the student's loops run on the course's thread count (`dlcourse.threads`). With DLCOURSE_QUICK=1
    the recipe is shrunk."""
    if test_items is None and val_items is None:
        raise ValueError("fit needs test_items or val_items to evaluate on")
    if quick_mode():
        recipe, max_length = recipe.quick(), min(max_length, 64)
        log(f"{QUICK_ENV}=1: quick smoke run ({recipe.train_subset} reviews of at most {max_length} tokens, 1 epoch); "
            "accuracy will be low.")
    seed_everything(recipe.seed)
    if recipe.train_subset:
        train_items = train_items[:recipe.train_subset]
    if quick_mode():
        test_items, val_items = (items[:QUICK_REVIEWS] if items is not None else None
                                 for items in (test_items, val_items))
    train_loader = ReviewLoader(train_items, recipe.batch_size, max_length, collate_fn, shuffle=True, seed=recipe.seed)
    loaders = {split: ReviewLoader(items, 256, max_length, collate_fn)
               for split, items in (("val", val_items), ("test", test_items)) if items is not None}
    model.to(device)
    optimizer = make_optimizer(model, recipe)
    scheduler = make_scheduler(optimizer, recipe, len(train_loader))

    def train_epoch(epoch: int) -> Metrics:  # the student's loop does the whole epoch, scheduler steps included
        train_loss, train_acc = train_one_epoch(model, train_loader, optimizer, scheduler, device=device,
                                                clip_norm=recipe.clip_norm)
        return {"train_loss": float(train_loss), "train_acc": float(train_acc)}

    def evaluate_splits() -> Metrics:
        metrics = {"lr": optimizer.param_groups[0]["lr"]}
        for split in ("val", "test"):
            loss, acc = evaluate(model, loaders[split], device=device) if split in loaders else (math.nan, math.nan)
            metrics.update({f"{split}_loss": float(loss), f"{split}_acc": float(acc)})
        return metrics

    def write_scalars(epoch: int, history: History) -> None:
        for column, tag in TENSORBOARD_TAGS.items():
            if not math.isnan(getattr(history, column)[-1]):
                writer.add_scalar(tag, getattr(history, column)[-1], epoch + 1)
        writer.flush()

    # The student's train_one_epoch is the step (the notebook asks for it): the course drives only the epochs.
    return run_epochs(recipe.epochs, train_epoch, evaluate_splits, RNNHistory(), log=log,
                      on_epoch_end=write_scalars if writer is not None else None, device=device)


# -- TensorBoard curves, read back for inline plots ----------------------------------------------------
def read_scalars(logdir: str | Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """{run name: {tag: [(step, value), ...]}} from the TensorBoard event files under `logdir` (one run per
    sub-folder), so the curves TensorBoard shows can also be plotted inline with matplotlib."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = {}
    for folder in sorted({p.parent for p in Path(logdir).rglob("events.out.tfevents.*")}):
        accumulator = EventAccumulator(str(folder))
        accumulator.Reload()
        runs[str(folder.relative_to(logdir))] = {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)]
                                                 for tag in accumulator.Tags()["scalars"]}
    return runs


def plot_scalars(runs: dict, tags=("loss/train", "accuracy/test")):
    """One subplot per tag, one line per run."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tags), figsize=(6 * len(tags), 4))
    for ax, tag in zip(list(axes) if len(tags) > 1 else [axes], tags, strict=True):
        for run, scalars in runs.items():
            if tag in scalars:
                steps, values = zip(*scalars[tag], strict=True)
                ax.plot(steps, values, marker="o", label=run)
        ax.set_title(tag)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig

"""Course code of the translation assignments (the Transformer and the seq2seq LSTM with attention): the synthetic
reversal task and its exact-sequence accuracy; for Multi30k German -> English the shared BPE tokenizer, id tensors
of sentence pairs, the per-token negative log-likelihood and perplexity, corpus BLEU (sacrebleu) that the notebooks
and the autograder share; and the teacher-forcing training loop for any sequence-to-sequence model.

The graded ideas (the models, masks, attention, decoding) are written by the students in the notebooks; nothing
here implements them.

Token ids: PAD_ID = 0, BOS_ID = 1, EOS_ID = 2, UNK_ID = 3 (the tokenizer's special tokens, in that order).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from dlcourse.threads import torch_threads
from dlcourse.training import (BatchLoss, History, Metrics, Recipe, ShuffledBatches, Trainer, TrainerConfig,
                               quick_mode)
from dlcourse.utils import seed_everything

PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
SPECIAL_TOKENS = ["[PAD]", "[BOS]", "[EOS]", "[UNK]"]  # ids 0, 1, 2, 3 in the Multi30k tokenizer
MULTI30K_VOCAB_SIZE = 8000


# -- the synthetic task: reverse a sequence of symbols ----------------------------------------------
@dataclass(frozen=True)
class ReversalTask:
    """Sequences of `min_len`..`max_len` symbols drawn from `num_symbols` symbols; the target is the
    sequence reversed. Symbol ids start after the special tokens PAD, BOS, EOS."""

    num_symbols: int = 10
    min_len: int = 4
    max_len: int = 10

    @property
    def vocab_size(self) -> int:
        return self.num_symbols + 3  # PAD, BOS, EOS + the symbols


def make_reversal_data(num: int, task: ReversalTask = ReversalTask(), seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`num` examples of `task`, from their own seeded generator.

    Returns (src, tgt): src (num, max_len) holds the symbols, right-padded with PAD_ID;
    tgt (num, max_len + 2) holds BOS, the symbols reversed, EOS, then PAD_ID.
    """
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(task.min_len, task.max_len + 1, (num,), generator=g)
    symbols = torch.randint(3, task.vocab_size, (num, task.max_len), generator=g)
    src = torch.full((num, task.max_len), PAD_ID, dtype=torch.long)
    tgt = torch.full((num, task.max_len + 2), PAD_ID, dtype=torch.long)
    for i, n in enumerate(lengths.tolist()):
        src[i, :n] = symbols[i, :n]
        tgt[i, 0] = BOS_ID
        tgt[i, 1:n + 1] = symbols[i, :n].flip(0)
        tgt[i, n + 1] = EOS_ID
    return src, tgt


def decoded_sequences(tokens: torch.Tensor, eos_id: int = EOS_ID) -> list[tuple[int, ...] | None]:
    """The sequences in a batch of decoder outputs `tokens` (B, T) that start with BOS: for each row the
    tokens after position 0 up to (not including) the first EOS, or None when the row has no EOS."""
    rows = []
    for row in tokens.tolist():
        body = row[1:]
        rows.append(tuple(body[:body.index(eos_id)]) if eos_id in body else None)
    return rows


def sequence_accuracy(predicted: torch.Tensor, target: torch.Tensor, eos_id: int = EOS_ID) -> float:
    """Fraction of rows whose predicted sequence (up to its first EOS, which it must have) equals the
    target's exactly. Both are (B, T) token tensors that start with BOS; lengths may differ."""
    if len(predicted) != len(target):
        raise ValueError(f"{len(predicted)} predicted rows for {len(target)} targets")
    pred, true = decoded_sequences(predicted, eos_id), decoded_sequences(target, eos_id)
    return sum(p is not None and p == t for p, t in zip(pred, true, strict=True)) / max(1, len(true))


# -- Multi30k: tokenisation and tensors ------------------------------------------------------------
def train_multi30k_tokenizer(pairs: list[tuple[str, str]], vocab_size: int = MULTI30K_VOCAB_SIZE):
    """A byte-pair-encoding tokenizer (Hugging Face `tokenizers`) shared by German and English, trained
    on `pairs` (the train split): NFKC + lower-casing, words split on spaces (SentencePiece-style "▁"
    word starts, so decoding restores the spaces) and punctuation split off, `vocab_size` tokens including the specials
    [PAD]=0, [BOS]=1, [EOS]=2, [UNK]=3. Deterministic: the same pairs give the same tokenizer."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation()])
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False)
    tokenizer.train_from_iterator((s for pair in pairs for s in pair), trainer=trainer)
    return tokenizer


def encode_pairs(tokenizer, pairs: list[tuple[str, str]], max_len: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenise (German, English) pairs into right-padded id tensors: src (N, S) German ids + EOS,
    tgt (N, T) BOS + English ids + EOS. Sentences longer than `max_len` tokens are cut to it."""
    de = [e.ids[:max_len - 1] + [EOS_ID] for e in tokenizer.encode_batch([p[0] for p in pairs])]
    en = [[BOS_ID] + e.ids[:max_len - 2] + [EOS_ID] for e in tokenizer.encode_batch([p[1] for p in pairs])]
    return pad_sequences(de), pad_sequences(en)


def pad_sequences(rows: list[list[int]]) -> torch.Tensor:
    """(N, longest row) ids, each row right-padded with PAD_ID."""
    out = torch.full((len(rows), max(len(r) for r in rows)), PAD_ID, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, :len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def trim_padding(*batches: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Drop the trailing columns that are padding in every row (saves compute on short batches)."""
    out = []
    for b in batches:
        used = (b != PAD_ID).any(dim=0).nonzero()
        out.append(b[:, :int(used.max()) + 1] if len(used) else b[:, :1])
    return tuple(out)


# -- scoring ------------------------------------------------------------------------------------------
def target_nll(logits: torch.Tensor, targets: torch.Tensor, pad_id: int = PAD_ID) -> tuple[float, int]:
    """(sum of negative log-likelihoods, number of tokens) of `targets` (B, T) under `logits` (B, T, V),
    padding excluded. Perplexity = exp(sum / number)."""
    nll = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                          ignore_index=pad_id, reduction="sum")
    return nll.item(), int((targets != pad_id).sum())


def source_lengths(src: torch.Tensor, pad_id: int = PAD_ID) -> torch.Tensor:
    """(B,) number of real (non-padding) tokens of each right-padded row of src (B, S)."""
    return (src != pad_id).sum(dim=1)


# -- how the course calls a model: logits (B, T, V) for the decoder inputs tgt_in (B, T) ------------------------
Forward = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def src_tgt(model: torch.nn.Module, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
    """The default call, `model(src, tgt_in)` (the Transformer assignment's models)."""
    return model(src, tgt_in)


def with_source_lengths(teacher_forcing_ratio: float = 1.0, seed: int = 0, pad_id: int = PAD_ID) -> Forward:
    """The call of the seq2seq assignment's models, `model(src, src_lengths, tgt_in, teacher_forcing_ratio, generator)`.
    In training mode the decoder is fed its own predictions with probability 1 - `teacher_forcing_ratio`, drawn from
    a generator seeded with `seed` (so a run repeats); in evaluation mode it is always teacher-forced (ratio 1)."""
    generator = torch.Generator().manual_seed(seed)

    def forward(model: torch.nn.Module, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        ratio = teacher_forcing_ratio if model.training else 1.0
        return model(src, source_lengths(src, pad_id), tgt_in, teacher_forcing_ratio=ratio, generator=generator)
    return forward


@torch.no_grad()
def evaluate_perplexity(model: torch.nn.Module, src: torch.Tensor, tgt: torch.Tensor, device="cpu",
                        batch_size: int = 200, pad_id: int = PAD_ID, forward: Forward = src_tgt) -> float:
    """Per-token perplexity of the logits `forward(model, src, tgt[:, :-1])` predicting `tgt[:, 1:]`, teacher-forced,
    padding excluded, on the course's CPU thread count. With `DLCOURSE_QUICK=1` only the first 100 pairs are scored."""
    if quick_mode():
        src, tgt = src[:100], tgt[:100]
    model.eval()
    total, count = 0.0, 0
    with torch_threads(device):
        for start in range(0, len(src), batch_size):
            s, t = trim_padding(src[start:start + batch_size], tgt[start:start + batch_size])
            s, t = s.to(device), t.to(device)
            nll, n = target_nll(forward(model, s, t[:, :-1]), t[:, 1:], pad_id)
            total, count = total + nll, count + n
    return math.exp(total / max(1, count))


def token_ids_to_text(tokenizer, rows: list[list[int]] | torch.Tensor, eos_id: int = EOS_ID) -> list[str]:
    """Decoded sentences of decoder outputs (B, L): each row up to its first EOS, BOS and padding dropped."""
    rows = rows.tolist() if isinstance(rows, torch.Tensor) else rows
    texts = []
    for row in rows:
        row = row[:row.index(eos_id)] if eos_id in row else row
        texts.append(tokenizer.decode([t for t in row if t not in (PAD_ID, BOS_ID)]))
    return texts


def corpus_bleu(hypotheses: list[str], references: list[str]):
    """Corpus BLEU of detokenised `hypotheses` against one reference each, with sacrebleu's defaults (13a
    tokenisation, exponential smoothing) and `lowercase=True`, since the course tokenizer lower-cases. Returns
    sacrebleu's BLEUScore: `.score` (0-100) and, printed, the signature that makes a number reproducible."""
    import sacrebleu

    metric = sacrebleu.BLEU(lowercase=True)
    score = metric.corpus_score(hypotheses, [references])
    score.signature = str(metric.get_signature())
    return score


# -- teacher-forcing training --------------------------------------------------------------------------
@dataclass
class Seq2SeqRecipe(Recipe):
    """Hyper-parameters of one teacher-forcing training run."""

    batch_size: int = 64
    weight_decay: float = 0.01
    warmup_steps: int = 100
    label_smoothing: float = 0.0
    max_steps: int | None = None  # stop after this many steps (quick runs)
    clip_norm: float | None = 1.0

    def quick_changes(self) -> dict[str, Any]:
        """3 steps of at most 8 pairs (a Multi30k step of 32 pairs cost 0.3-0.5 CPU s: the 8 000-word output layer)."""
        return dict(epochs=1, max_steps=3, warmup_steps=1, batch_size=min(self.batch_size, 8))


@dataclass
class Seq2SeqHistory(History):
    """A teacher-forcing run: `train_loss` is per target token; the validation split is scored by perplexity.
    `step_lr` and `step_loss` hold every optimisation step's learning rate and loss (for the plots)."""

    val_perplexity: list[float] = field(default_factory=list)
    step_lr: list[float] = field(default_factory=list, metadata={"per_step": True})
    step_loss: list[float] = field(default_factory=list, metadata={"per_step": True})

    def record_step(self, lr: float, loss: float) -> None:
        self.step_lr.append(lr)
        self.step_loss.append(loss)

    def epoch_metrics(self) -> str:
        return f"{super().epoch_metrics()}, val perplexity {self.val_perplexity[-1]:.2f}"

    def summary(self) -> str:
        return f"{super().summary()}, validation perplexity {self.val_perplexity[-1]:.2f}"


def train_seq2seq(model: torch.nn.Module, train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
                  recipe: Seq2SeqRecipe, device="cpu", pad_id: int = PAD_ID, log_every: int = 0,
                  forward: Forward = src_tgt,
                  on_epoch_end: Callable[[int, Seq2SeqHistory], None] | None = None) -> Seq2SeqHistory:
    """`forward(model, src, tgt[:, :-1])` returns logits (B, T, V) for the next tokens `tgt[:, 1:]` (teacher forcing,
    unless `forward` says otherwise in training mode); cross-entropy over non-padding tokens, AdamW, linear warm-up
    then cosine decay. Evaluates the validation perplexity after every epoch, then calls `on_epoch_end(epoch, history)`.
    On a CPU it uses the course's thread count (`dlcourse.threads`). With `DLCOURSE_QUICK=1` the recipe is shrunk (3 steps)."""
    if quick_mode():
        recipe = recipe.quick()
        print("DLCOURSE_QUICK=1: quick smoke run (3 steps, 100 validation pairs); the numbers mean nothing.")
    seed_everything(recipe.seed)
    src, tgt = train
    if recipe.train_subset:
        keep = torch.randperm(len(src), generator=torch.Generator().manual_seed(recipe.seed))[:recipe.train_subset]
        src, tgt = src[keep], tgt[keep]
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay, betas=(0.9, 0.98))
    batches = ShuffledBatches(len(src), recipe.batch_size)
    total_steps = recipe.epochs * len(batches)
    if recipe.max_steps:
        total_steps = min(total_steps, recipe.max_steps)
    config = TrainerConfig(recipe.epochs, recipe.lr, total_steps, recipe.warmup_steps, clip_norm=recipe.clip_norm,
                           log_every=log_every)

    def loss_of(idx: torch.Tensor) -> BatchLoss:
        s, t = trim_padding(src[idx], tgt[idx])
        s, t = s.to(device), t.to(device)
        logits = forward(model, s, t[:, :-1])  # (B, T-1, V): teacher forcing, the decoder reads the true prefix
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), t[:, 1:].reshape(-1), ignore_index=pad_id,
                               label_smoothing=recipe.label_smoothing)
        return BatchLoss(loss, (t[:, 1:] != pad_id).sum())  # weighted by tokens

    def evaluate() -> Metrics:
        return {"val_perplexity": evaluate_perplexity(model, *val, device=device, pad_id=pad_id, forward=forward)}

    return Trainer(config, model, optimizer, batches, loss_of, evaluate, Seq2SeqHistory(), device=device,
                   on_epoch_end=on_epoch_end).run()

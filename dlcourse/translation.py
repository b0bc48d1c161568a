"""Course code of the translation assignments (Multi30k German -> English): the shared BPE tokenizer, id
tensors of sentence pairs, the per-token negative log-likelihood and perplexity that the notebooks and the
autograder share, and the teacher-forcing training loop for any sequence-to-sequence model called as
`model(src, tgt_in)` -> logits (B, T, V).

Both the Transformer assignment and the seq2seq (LSTM + attention) assignment import it; the graded ideas
(the models, masks, decoding) are written by the students in the notebooks.

Token ids: PAD_ID = 0, BOS_ID = 1, EOS_ID = 2, UNK_ID = 3 (the tokenizer's special tokens, in that order).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from dlcourse.training import History, Metrics, Recipe, ScheduledSteps, Trainer, quick_mode, shuffled_batches
from dlcourse.utils import seed_everything

PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
SPECIAL_TOKENS = ["[PAD]", "[BOS]", "[EOS]", "[UNK]"]  # ids 0, 1, 2, 3 in the Multi30k tokenizer
MULTI30K_VOCAB_SIZE = 8000


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


@torch.no_grad()
def evaluate_perplexity(model: torch.nn.Module, src: torch.Tensor, tgt: torch.Tensor, device="cpu",
                        batch_size: int = 200, pad_id: int = PAD_ID) -> float:
    """Per-token perplexity of `model(src, tgt[:, :-1])` predicting `tgt[:, 1:]`, padding excluded.
    With `DLCOURSE_QUICK=1` only the first 100 pairs are scored."""
    if quick_mode():
        src, tgt = src[:100], tgt[:100]
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(src), batch_size):
        s, t = trim_padding(src[start:start + batch_size], tgt[start:start + batch_size])
        s, t = s.to(device), t.to(device)
        nll, n = target_nll(model(s, t[:, :-1]), t[:, 1:], pad_id)
        total, count = total + nll, count + n
    return math.exp(total / max(1, count))


# -- teacher-forcing training --------------------------------------------------------------------------
@dataclass
class Seq2SeqRecipe(Recipe):
    """Hyper-parameters of one teacher-forcing training run."""

    batch_size: int = 64
    weight_decay: float = 0.01
    warmup_steps: int = 100
    label_smoothing: float = 0.0
    max_steps: int | None = None  # stop after this many steps (quick runs)

    def quick_changes(self) -> dict[str, Any]:
        """10 steps of at most 32 pairs."""
        return dict(epochs=1, max_steps=10, warmup_steps=2, batch_size=min(self.batch_size, 32))


@dataclass
class Seq2SeqHistory(History):
    """A teacher-forcing run: `train_loss` is per target token; the validation split is scored by perplexity."""

    val_perplexity: list[float] = field(default_factory=list)

    def epoch_metrics(self) -> str:
        return f"{super().epoch_metrics()}, val perplexity {self.val_perplexity[-1]:.2f}"

    def summary(self) -> str:
        return f"{super().summary()}, validation perplexity {self.val_perplexity[-1]:.2f}"


def train_seq2seq(model: torch.nn.Module, train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
                  recipe: Seq2SeqRecipe, device="cpu", pad_id: int = PAD_ID, log_every: int = 0) -> Seq2SeqHistory:
    """Teacher forcing: `model(src, tgt[:, :-1])` returns logits (B, T, V) for the next tokens `tgt[:, 1:]`;
    cross-entropy over non-padding tokens, AdamW, linear warm-up then cosine decay. Evaluates the
    validation perplexity after every epoch. With `DLCOURSE_QUICK=1` the recipe is shrunk (10 steps)."""
    if quick_mode():
        recipe = recipe.quick()
        print("DLCOURSE_QUICK=1: quick smoke run (10 steps, 100 validation pairs); the numbers mean nothing.")
    seed_everything(recipe.seed)
    src, tgt = train
    if recipe.train_subset:
        keep = torch.randperm(len(src), generator=torch.Generator().manual_seed(recipe.seed))[:recipe.train_subset]
        src, tgt = src[keep], tgt[keep]
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay, betas=(0.9, 0.98))
    total_steps = recipe.epochs * math.ceil(len(src) / recipe.batch_size)
    if recipe.max_steps:
        total_steps = min(total_steps, recipe.max_steps)
    steps = ScheduledSteps(optimizer, recipe.lr, total_steps, recipe.warmup_steps, clip_norm=1.0)

    def train_epoch(epoch: int) -> Metrics:
        model.train()
        loss_sum, tokens = 0.0, 0
        for idx in shuffled_batches(len(src), recipe.batch_size):
            if steps.done():
                break
            s, t = trim_padding(src[idx], tgt[idx])
            s, t = s.to(device), t.to(device)
            logits = model(s, t[:, :-1])  # (B, T-1, V): teacher forcing, the decoder reads the true prefix
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), t[:, 1:].reshape(-1), ignore_index=pad_id,
                                   label_smoothing=recipe.label_smoothing)
            steps.take(loss, model.parameters())
            n = int((t[:, 1:] != pad_id).sum())
            loss_sum, tokens = loss_sum + loss.item() * n, tokens + n
            if log_every and steps.taken % log_every == 0:
                print(f"  step {steps.taken}/{total_steps}: loss {loss.item():.3f}")
        return {"train_loss": loss_sum / max(1, tokens)}

    def evaluate() -> Metrics:
        return {"val_perplexity": evaluate_perplexity(model, *val, device=device, pad_id=pad_id)}

    return Trainer(recipe.epochs, train_epoch, evaluate, Seq2SeqHistory(), finished=steps.done).run()

"""Course code of the Transformer assignment: the synthetic reversal task, Multi30k tokenisation and
batching, a teacher-forcing training loop for sequence-to-sequence models, and the scoring that the
notebook and the autograder share (exact-sequence accuracy, per-token perplexity).

The graded ideas (positional encoding, attention, masks, layers, greedy decoding) are written by the
students in the notebook; nothing here implements them.

Token ids shared by both tasks: PAD_ID = 0, BOS_ID = 1, EOS_ID = 2 (and UNK_ID = 3 for Multi30k).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from dlcourse.training import lr_at, quick_mode
from dlcourse.utils import seed_everything

PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
SPECIAL_TOKENS = ["[PAD]", "[BOS]", "[EOS]", "[UNK]"]  # ids 0, 1, 2, 3 in the Multi30k tokenizer


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
    return sum(p is not None and p == t for p, t in zip(pred, true)) / max(1, len(true))


# -- Multi30k: tokenisation and tensors ------------------------------------------------------------
MULTI30K_VOCAB_SIZE = 8000


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


# -- training and scoring ---------------------------------------------------------------------------
def target_nll(logits: torch.Tensor, targets: torch.Tensor, pad_id: int = PAD_ID) -> tuple[float, int]:
    """(sum of negative log-likelihoods, number of tokens) of `targets` (B, T) under `logits` (B, T, V),
    padding excluded. Perplexity = exp(sum / number)."""
    nll = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                          ignore_index=pad_id, reduction="sum")
    return nll.item(), int((targets != pad_id).sum())


@dataclass
class Seq2SeqRecipe:
    """Hyper-parameters of one teacher-forcing training run."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    label_smoothing: float = 0.0
    train_subset: int | None = None  # use only this many training pairs
    max_steps: int | None = None  # stop after this many steps (quick runs)
    seed: int = 0

    def quick(self) -> "Seq2SeqRecipe":
        """The recipe shrunk for `DLCOURSE_QUICK=1`: 10 steps of at most 32 pairs."""
        return Seq2SeqRecipe(**{**self.__dict__, "epochs": 1, "max_steps": 10, "warmup_steps": 2,
                                "batch_size": min(self.batch_size, 32)})


@dataclass
class Seq2SeqHistory:
    train_loss: list[float] = field(default_factory=list)  # per epoch, per target token
    val_perplexity: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{len(self.train_loss)} epochs in {sum(self.seconds):.0f} s, final train loss {self.train_loss[-1]:.3f}, "
                f"validation perplexity {self.val_perplexity[-1]:.2f}")


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
    steps_per_epoch = math.ceil(len(src) / recipe.batch_size)
    total_steps = recipe.epochs * steps_per_epoch
    if recipe.max_steps:
        total_steps = min(total_steps, recipe.max_steps)
    history, step = Seq2SeqHistory(), 0
    for epoch in range(recipe.epochs):
        model.train()
        started, loss_sum, tokens = time.time(), 0.0, 0
        order = torch.randperm(len(src))
        for i in range(steps_per_epoch):
            if step >= total_steps:
                break
            idx = order[i * recipe.batch_size:(i + 1) * recipe.batch_size]
            s, t = trim_padding(src[idx], tgt[idx])
            s, t = s.to(device), t.to(device)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total_steps, recipe.warmup_steps, recipe.lr)
            logits = model(s, t[:, :-1])  # (B, T-1, V): teacher forcing, the decoder reads the true prefix
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), t[:, 1:].reshape(-1), ignore_index=pad_id,
                                   label_smoothing=recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            n = int((t[:, 1:] != pad_id).sum())
            loss_sum, tokens = loss_sum + loss.item() * n, tokens + n
            if log_every and step % log_every == 0:
                print(f"  step {step}/{total_steps}: loss {loss.item():.3f}")
        history.train_loss.append(loss_sum / max(1, tokens))
        history.val_perplexity.append(evaluate_perplexity(model, *val, device=device, pad_id=pad_id))
        history.seconds.append(time.time() - started)
        print(f"epoch {epoch + 1}/{recipe.epochs}: train loss {history.train_loss[-1]:.3f}, "
              f"val perplexity {history.val_perplexity[-1]:.2f}, {history.seconds[-1]:.0f} s")
        if step >= total_steps:
            break
    return history

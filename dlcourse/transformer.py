"""Course code of the Transformer assignment's own task: the synthetic reversal task and its score
(exact-sequence accuracy), shared by the notebook and the autograder. Multi30k, teacher forcing and
perplexity are in `dlcourse.translation`, which every translation assignment shares.

The graded ideas (positional encoding, attention, masks, layers, greedy decoding) are written by the
students in the notebook; nothing here implements them.

Token ids are Multi30k's (dlcourse.translation): PAD_ID = 0, BOS_ID = 1, EOS_ID = 2; symbols start at 3.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from dlcourse.translation import BOS_ID, EOS_ID, PAD_ID


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

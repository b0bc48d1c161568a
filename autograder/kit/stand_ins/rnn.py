"""Stand-ins of the RNN assignment: torch's recurrent layers behind the notebook's interface, a torch-built
classifier, and a reference compute_loss for the student's loops (autograder/sandbox/harness/rnn.py runs them)."""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence

from . import register


@register("torch_recurrent")
class TorchRecurrent(nn.Module):
    """torch.nn.RNN (tanh) or torch.nn.LSTM with the interface of the notebook's VanillaRNN / LSTM:
    forward(x (B, T, D), lengths (B,)) -> the final hidden state at each sequence's true length (B, H)."""

    def __init__(self, cell: str, input_size: int, hidden_size: int):
        super().__init__()
        self.layer = (nn.LSTM if cell == "lstm" else nn.RNN)(input_size, hidden_size, batch_first=True)

    def forward(self, x, lengths):
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, state = self.layer(packed)
        return (state[0] if isinstance(state, tuple) else state)[0]  # (B, H)


@register("torch_classifier")
class TorchClassifier(nn.Module):
    """A sentiment classifier built from torch layers (embedding -> nn.LSTM or nn.RNN -> linear), with the notebook
    classifier's forward(tokens, lengths): the model the hidden tests train with the student's loops, and the
    reference for the student's SentimentClassifier."""

    def __init__(self, vocab_size: int, embed_dim: int, hidden_size: int, num_classes: int = 2, state=None,
                 cell: str = "lstm"):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.rnn = TorchRecurrent(cell, embed_dim, hidden_size)
        self.head = nn.Linear(hidden_size, num_classes)
        if state is not None:
            self.load_state_dict(state)
            self.to(next(iter(state.values())).device)

    def forward(self, tokens, lengths):
        return self.head(self.rnn(self.embedding(tokens), lengths))


@register("reference_compute_loss")
def compute_loss_stand_in():
    return reference_compute_loss


def reference_compute_loss(prediction: torch.Tensor, label: torch.Tensor):
    """The notebook's compute_loss: (mean cross-entropy over the batch, number of correct predictions)."""
    loss = -prediction.log_softmax(dim=1).gather(1, label.unsqueeze(1)).mean()
    return loss, int((prediction.argmax(dim=1) == label).sum())

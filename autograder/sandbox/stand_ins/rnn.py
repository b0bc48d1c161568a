"""Stand-ins of the RNN assignment: torch's recurrent layers behind the notebook's interface, a torch-built
classifier, a reference compute_loss for the student's loops, and a driver that runs the student's training loop
with a recording optimizer and scheduler."""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence

from . import recorded_optimizer, register, replaced_names


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


def reference_compute_loss(prediction: torch.Tensor, label: torch.Tensor):
    """The notebook's compute_loss: (mean cross-entropy over the batch, number of correct predictions)."""
    loss = -prediction.log_softmax(dim=1).gather(1, label.unsqueeze(1)).mean()
    return loss, int((prediction.argmax(dim=1) == label).sum())


def reference_loss_in(function: Callable):
    """While the block runs, the name compute_loss in `function`'s notebook means reference_compute_loss: the loop
    tests judge the student's loops, not their compute_loss (tested on its own)."""
    return replaced_names(function, {"compute_loss": reference_compute_loss})


@register("with_reference_loss")
def with_reference_loss(function: Callable):
    """`function` (the student's evaluate, say), called with the reference compute_loss in its notebook."""
    def run(*args, **kwargs):
        with reference_loss_in(function):
            return function(*args, **kwargs)
    return run


@register("train_loop_probe")
def train_loop_probe(train_one_epoch, model, batches, epochs: int = 1, lr: float = 0.01, optimizer: str = "adam"):
    """Run the student's train_one_epoch `epochs` times on `batches` with a recording optimizer and scheduler, and
    the reference compute_loss.
    Returns a function (the hidden test calls it) giving what happened: the optimizer/scheduler step events
    in order, the values train_one_epoch returned, and the model's weights afterwards."""
    opt, scheduler, events, _ = recorded_optimizer(model, lr, optimizer)
    device = next(model.parameters()).device
    # (the worker answers calls without autograd unless asked for a backward pass)
    with torch.enable_grad(), reference_loss_in(train_one_epoch):
        returned = [train_one_epoch(model, batches, opt, scheduler, device=device, clip_norm=None) for _ in range(epochs)]
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return lambda: {"events": events, "returned": returned, "state": state}

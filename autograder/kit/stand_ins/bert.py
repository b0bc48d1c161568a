"""Stand-ins of the BERT assignment: a classifier with mean pooling on a tiny random encoder, the model the
training-step test trains, so that the student's head design plays no part in it."""
from __future__ import annotations

import torch
import torch.nn as nn

from . import register


@register("reference_bert_classifier")
class ReferenceClassifier(nn.Module):
    """The notebook's classifier with mean pooling (tiny random encoder, seeded head, no dropout): the model the
    training-step test trains, so that the student's head design plays no part in it."""

    def __init__(self, seed: int = 0):
        super().__init__()
        from dlcourse.bert import tiny_bert_encoder

        self.encoder = tiny_bert_encoder(seed=seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.classifier = nn.Linear(self.encoder.config.hidden_size, 2)

    def forward(self, input_ids, attention_mask):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return self.classifier((hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0))

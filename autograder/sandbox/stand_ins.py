"""Reference layers the worker can put in place of a student's sublayer or pass to a student's function.

A test of one layer (say Block) should not depend on the student's other layers (say Attention), so that
a bug costs points once: the hidden test asks the worker to substitute a stand-in built only from
torch / torchvision / transformers. Stand-ins run on the untrusted side; they hold no answers.

Each assignment adds its stand-ins in its own section and registers them in STAND_INS by name.
"""
from __future__ import annotations

from functools import partial

import torch.nn as nn
from torchvision.models.vision_transformer import EncoderBlock


# -- vit ---------------------------------------------------------------------------------------------
class TorchAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.mha = nn.MultiheadAttention(dim, num_heads, batch_first=True)

    def forward(self, x):
        return self.mha(x, x, x, need_weights=False)[0]


class TorchMLP(nn.Module):
    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class ConvPatchify(nn.Module):
    def __init__(self, in_channels: int, patch_size: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


def torchvision_block(dim: int, num_heads: int, mlp_dim: int):
    return EncoderBlock(num_heads, dim, mlp_dim, 0.0, 0.0, partial(nn.LayerNorm, eps=1e-6))


# name -> factory; a later assignment section adds its own with STAND_INS.update({...}).
STAND_INS = {"torch_attention": TorchAttention, "torch_mlp": TorchMLP, "conv_patchify": ConvPatchify,
             "torchvision_block": torchvision_block}



# -- bert --------------------------------------------------------------------------------------------
# Tiny random BERT pieces (dlcourse.bert, no download, no files) and small drivers that call the student's
# functions the way the notebook does. transformers is imported lazily (the bert tests preload it).
def tiny_bert(seed: int = 0):
    from dlcourse.bert import tiny_bert_encoder

    return tiny_bert_encoder(seed=seed)


def tiny_bert_tokenizer():
    from dlcourse.bert import tiny_tokenizer

    return tiny_tokenizer()


def encoder_from_saved_config(encoder_config: str):
    """A randomly initialised encoder of the saved architecture; the saved weights are loaded afterwards."""
    from dlcourse.bert import encoder_from_config

    return encoder_from_config(encoder_config)


def requires_grad_flags():
    """A function: model -> {parameter name: requires_grad}."""
    return lambda model: {name: bool(p.requires_grad) for name, p in model.named_parameters()}


def training_steps_runner():
    """A function running `steps` calls of the student's training_step (None: a reference step) on one batch,
    with a plain AdamW and a constant learning rate (or, given `create_optimizer_and_scheduler`, the student's).
    Returns {"losses": [...], "lrs": [lr in effect at each step, then after the last], "optimizer": class}."""
    import torch

    def reference_step(model, batch, optimizer, scheduler, device):
        logits = model(batch["input_ids"].to(device), batch["attention_mask"].to(device))
        loss = torch.nn.functional.cross_entropy(logits.float(), batch["label"].to(device))
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    def run(training_step, model, batch, steps: int, lr: float, create_optimizer_and_scheduler=None,
            warmup_ratio: float = 0.0):
        device = next(model.parameters()).device
        if create_optimizer_and_scheduler is None:
            optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        else:
            optimizer, scheduler = create_optimizer_and_scheduler(model, lr=lr, weight_decay=0.0,
                                                                  num_training_steps=steps, warmup_ratio=warmup_ratio)
        model.train()
        losses, lrs = [], []
        with torch.enable_grad():  # as in the notebook (the worker answers requests with gradients off)
            for _ in range(steps):
                lrs.append(float(optimizer.param_groups[0]["lr"]))
                losses.append(float((training_step or reference_step)(model, batch, optimizer, scheduler, device)))
        lrs.append(float(optimizer.param_groups[0]["lr"]))
        return {"losses": losses, "lrs": lrs, "optimizer": type(optimizer).__name__,
                "is_adamw": isinstance(optimizer, torch.optim.AdamW)}
    return run


STAND_INS.update({"tiny_bert": tiny_bert, "tiny_bert_tokenizer": tiny_bert_tokenizer,
                  "encoder_from_saved_config": encoder_from_saved_config, "requires_grad_flags": requires_grad_flags,
                  "training_steps_runner": training_steps_runner})

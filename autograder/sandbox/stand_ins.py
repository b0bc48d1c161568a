"""Reference layers the worker can put in place of a student's sublayer or pass to a student's function.

A test of one layer (say Block) should not depend on the student's other layers (say Attention), so that
a bug costs points once: the hidden test asks the worker to substitute a stand-in built only from
torch / torchvision / transformers. Stand-ins run on the untrusted side; they hold no answers.

Each assignment adds its stand-ins in its own section and registers them in STAND_INS by name.
"""
from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence
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


class TorchvisionBlock(EncoderBlock):
    """torchvision's ViT encoder block (same parameter names); its own forward makes it stand-in code."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int):
        super().__init__(num_heads, dim, mlp_dim, 0.0, 0.0, partial(nn.LayerNorm, eps=1e-6))

    def forward(self, input):
        return super().forward(input)


# name -> factory; a later assignment section adds its own with STAND_INS.update({...}).
STAND_INS = {"torch_attention": TorchAttention, "torch_mlp": TorchMLP, "conv_patchify": ConvPatchify,
             "torchvision_block": TorchvisionBlock}


# -- rnn ---------------------------------------------------------------------------------------------
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


class TorchLSTMClassifier(nn.Module):
    """A sentiment classifier built from torch layers (embedding -> nn.LSTM -> linear), with the notebook
    classifier's forward(tokens, lengths): the model the hidden tests train with the student's loops."""

    def __init__(self, vocab_size: int, embed_dim: int, hidden_size: int, num_classes: int = 2, state=None):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.rnn = TorchRecurrent("lstm", embed_dim, hidden_size)
        self.head = nn.Linear(hidden_size, num_classes)
        if state is not None:
            self.load_state_dict(state)
            self.to(next(iter(state.values())).device)

    def forward(self, tokens, lengths):
        return self.head(self.rnn(self.embedding(tokens), lengths))


def _loop_parts(model, lr: float, optimizer: str):
    """An optimizer and a constant LambdaLR whose step() calls are recorded in order in `events`."""
    events: list[str] = []
    opt = (torch.optim.Adam if optimizer == "adam" else torch.optim.SGD)(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)  # its own first step is not recorded
    opt_step = opt.step  # (after LambdaLR, which wraps the bound method itself)

    def recorded_opt_step(*args, **kwargs):
        events.append("optimizer")
        return opt_step(*args, **kwargs)
    opt.step = recorded_opt_step
    scheduler_step = scheduler.step

    def recorded_scheduler_step(*args, **kwargs):
        events.append("scheduler")
        return scheduler_step(*args, **kwargs)
    scheduler.step = recorded_scheduler_step
    return opt, scheduler, events


def train_loop_probe(train_one_epoch, model, batches, epochs: int = 1, lr: float = 0.01, optimizer: str = "adam"):
    """Run the student's train_one_epoch `epochs` times on `batches` with a recording optimizer and scheduler.
    Returns a function (the hidden test calls it) giving what happened: the optimizer/scheduler step events
    in order, the values train_one_epoch returned, and the model's weights afterwards."""
    opt, scheduler, events = _loop_parts(model, lr, optimizer)
    device = next(model.parameters()).device
    with torch.enable_grad():  # the worker answers calls without autograd unless asked for a backward pass
        returned = [train_one_epoch(model, batches, opt, scheduler, device=device, clip_norm=None) for _ in range(epochs)]
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return lambda: {"events": events, "returned": returned, "state": state}


STAND_INS.update({"torch_recurrent": TorchRecurrent, "torch_lstm_classifier": TorchLSTMClassifier,
                  "train_loop_probe": train_loop_probe})

# -- transformer -------------------------------------------------------------------------------------
# Masks follow the assignment's convention: bool, broadcastable to (B, num_heads, T_q, T_k), True = may attend.
class TorchMHA(nn.Module):
    """Multi-head attention with the student's parameter names (q_proj, k_proj, v_proj, out_proj), computed
    by F.scaled_dot_product_attention, whose bool mask has the same meaning (True = may attend)."""

    def __init__(self, d_model: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q_proj, self.k_proj = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
        self.v_proj, self.out_proj = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)

    def forward(self, query, key, value, mask=None):
        B, T_q, D = query.shape
        split = lambda t: t.view(B, t.shape[1], self.num_heads, D // self.num_heads).transpose(1, 2)  # noqa: E731
        y = F.scaled_dot_product_attention(split(self.q_proj(query)), split(self.k_proj(key)),
                                           split(self.v_proj(value)), attn_mask=mask)
        return self.out_proj(y.transpose(1, 2).reshape(B, T_q, D))


class TorchFeedForward(nn.Module):
    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.linear1, self.linear2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)

    def forward(self, x):
        return self.linear2(F.relu(self.linear1(x)))


def _torch_attn_mask(mask, batch: int, num_heads: int, t_q: int, t_k: int):
    """The assignment's mask (True = may attend) as torch's attn_mask (True = not allowed), (B * nh, T_q, T_k)."""
    if mask is None:
        return None
    return ~mask.expand(batch, num_heads, t_q, t_k).reshape(batch * num_heads, t_q, t_k)


class TorchEncoderLayer(nn.Module):
    """nn.TransformerEncoderLayer (post-norm, ReLU, no dropout) behind the student's EncoderLayer interface."""

    def __init__(self, d_model: int, num_heads: int, d_ff: int):
        super().__init__()
        self.num_heads = num_heads
        self.layer = nn.TransformerEncoderLayer(d_model, num_heads, d_ff, dropout=0.0, batch_first=True)

    def forward(self, x, src_mask=None):
        B, S, _ = x.shape
        return self.layer(x, src_mask=_torch_attn_mask(src_mask, B, self.num_heads, S, S))


class TorchDecoderLayer(nn.Module):
    """nn.TransformerDecoderLayer (post-norm, ReLU, no dropout) behind the student's DecoderLayer interface."""

    def __init__(self, d_model: int, num_heads: int, d_ff: int):
        super().__init__()
        self.num_heads = num_heads
        self.layer = nn.TransformerDecoderLayer(d_model, num_heads, d_ff, dropout=0.0, batch_first=True)

    def forward(self, x, memory, src_mask=None, tgt_mask=None):
        B, T, _ = x.shape
        S = memory.shape[1]
        return self.layer(x, memory, tgt_mask=_torch_attn_mask(tgt_mask, B, self.num_heads, T, T),
                          memory_mask=_torch_attn_mask(src_mask, B, self.num_heads, T, S))


def _sinusoidal_table(max_len: int, d_model: int):
    position = torch.arange(max_len, dtype=torch.float64)[:, None]
    angles = position * 10000.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    pe = torch.zeros(max_len, d_model, dtype=torch.float64)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(angles), torch.cos(angles[:, :d_model // 2])
    return pe.float()


class TorchSeq2Seq(nn.Module):
    """A whole encoder-decoder with the student's Transformer interface (encode, decode, generator), built
    from torch layers and filled with seeded weights: what greedy_decode is tested on, without the
    student's own layers."""

    def __init__(self, vocab_size: int, d_model: int, num_heads: int, d_ff: int, num_layers: int, seed: int,
                 eos_bias: float = 0.0, eos_id: int = 2):
        super().__init__()
        from dlcourse.checks import fill_parameters_

        self.d_model = d_model
        self.src_embed, self.tgt_embed = nn.Embedding(vocab_size, d_model), nn.Embedding(vocab_size, d_model)
        self.encoder_layers = nn.ModuleList([TorchEncoderLayer(d_model, num_heads, d_ff) for _ in range(num_layers)])
        self.decoder_layers = nn.ModuleList([TorchDecoderLayer(d_model, num_heads, d_ff) for _ in range(num_layers)])
        self.generator = nn.Linear(d_model, vocab_size)
        self.register_buffer("pe", _sinusoidal_table(64, d_model), persistent=False)
        fill_parameters_(self, seed=seed, scale=0.3)
        with torch.no_grad():  # logits driven by the input rather than by biases, so that rows differ
            for m in self.modules():
                if isinstance(m, nn.LayerNorm):
                    m.weight.fill_(1.0)
                    m.bias.zero_()
            self.generator.bias.zero_()
            self.generator.bias[eos_id] = eos_bias  # makes EOS come at different steps in different rows
        self.eval()
        self.to("cuda" if torch.cuda.is_available() else "cpu")  # where the worker puts the inputs

    def encode(self, src, src_mask):
        x = self.src_embed(src) * math.sqrt(self.d_model) + self.pe[:src.shape[1]]
        for layer in self.encoder_layers:
            x = layer(x, src_mask)
        return x

    def decode(self, tgt, memory, src_mask, tgt_mask):
        x = self.tgt_embed(tgt) * math.sqrt(self.d_model) + self.pe[:tgt.shape[1]]
        for layer in self.decoder_layers:
            x = layer(x, memory, src_mask, tgt_mask)
        return x

    def forward(self, src, tgt):
        raise RuntimeError("greedy_decode should use encode / decode / generator")


STAND_INS.update({"torch_mha": TorchMHA, "torch_feedforward": TorchFeedForward,
                  "torch_encoder_layer": TorchEncoderLayer, "torch_decoder_layer": TorchDecoderLayer,
                  "torch_seq2seq": TorchSeq2Seq})

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

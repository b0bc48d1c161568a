"""Helpers of the BERT assignment: tiny random BERT pieces (dlcourse.bert, no download, no files: given to students
too, so nothing to hide) and small drivers that call the student's functions the way the notebook does. transformers is imported lazily (the bert
tests preload it)."""
from __future__ import annotations

import torch

from . import recorded_optimizer, register


@register("tiny_bert")
def tiny_bert(seed: int = 0, **overrides):
    """overrides: BertConfig settings (e.g. a larger initializer_range, for weights under which padding that is
    attended changes the hidden states a lot)."""
    from dlcourse.bert import tiny_bert_encoder

    return tiny_bert_encoder(seed=seed, **overrides)


@register("training_step_probe")
def training_step_probe(training_step, model, batch: dict, steps: int = 3):
    """A function running `steps` calls of the student's training_step on `batch` with a plain SGD at learning rate
    0 (the weights never change, so every step sees the same gradient) and a recording constant scheduler.
    Returns {"losses": what training_step returned, "events": optimizer / scheduler steps in order, "grad_norms": the
    gradients' norm at each optimizer.step()}."""
    def run():
        optimizer, scheduler, events, grad_norms = recorded_optimizer(model, lr=0.0, optimizer="sgd")
        model.train()
        device = next(model.parameters()).device
        losses = []
        with torch.enable_grad():  # as in the notebook (the worker answers requests with gradients off)
            for _ in range(steps):
                loss = training_step(model, batch, optimizer, scheduler, device)
                is_number = isinstance(loss, (int, float)) or (isinstance(loss, torch.Tensor) and loss.numel() == 1)
                losses.append(float(loss) if is_number else type(loss).__name__)
        return {"losses": losses, "events": events, "grad_norms": grad_norms}
    return run


@register("tiny_bert_tokenizer")
def tiny_bert_tokenizer():
    from dlcourse.bert import tiny_tokenizer

    return tiny_tokenizer()


@register("encoder_from_saved_config")
def encoder_from_saved_config(encoder_config: str):
    """A randomly initialised encoder of the saved architecture; the saved weights are loaded afterwards."""
    from dlcourse.bert import encoder_from_config

    return encoder_from_config(encoder_config)


@register("requires_grad_flags")
def requires_grad_flags():
    """A function: model -> {parameter name: requires_grad}."""
    return lambda model: {name: bool(p.requires_grad) for name, p in model.named_parameters()}


@register("training_steps_runner")
def training_steps_runner():
    """A function stepping an optimizer `steps` times over `model`'s parameters with a fixed gradient (no loss, no
    training step: the schedule is what is tested), with a plain AdamW and a constant learning rate or, given
    `create_optimizer_and_scheduler`, the student's.
    Returns {"lrs": [lr in effect at each step, then after the last], "optimizer": class, "is_adamw": bool}."""
    import torch

    def run(model, steps: int, lr: float, create_optimizer_and_scheduler=None, warmup_ratio: float = 0.0):
        if create_optimizer_and_scheduler is None:
            optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        else:
            optimizer, scheduler = create_optimizer_and_scheduler(model, lr=lr, weight_decay=0.0,
                                                                  num_training_steps=steps, warmup_ratio=warmup_ratio)
        lrs = []
        for _ in range(steps):
            lrs.append(float(optimizer.param_groups[0]["lr"]))
            for p in model.parameters():
                if p.requires_grad:
                    p.grad = torch.full_like(p, 1e-3)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        lrs.append(float(optimizer.param_groups[0]["lr"]))
        return {"lrs": lrs, "optimizer": type(optimizer).__name__, "is_adamw": isinstance(optimizer, torch.optim.AdamW)}
    return run

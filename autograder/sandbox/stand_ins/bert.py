"""Stand-ins of the BERT assignment: tiny random BERT pieces (dlcourse.bert, no download, no files) and small
drivers that call the student's functions the way the notebook does. transformers is imported lazily (the
bert tests preload it)."""
from __future__ import annotations

from . import register


@register("tiny_bert")
def tiny_bert(seed: int = 0):
    from dlcourse.bert import tiny_bert_encoder

    return tiny_bert_encoder(seed=seed)


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

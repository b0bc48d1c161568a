"""Reference layers ("stand-ins") the worker can put in place of a student's sublayer or pass to a student's function.

A test of one layer (say Block) should not depend on the student's other layers (say Attention), so that
a bug costs points once: the hidden test asks the worker to substitute a stand-in built only from
torch / torchvision / transformers. Stand-ins run on the untrusted side; they hold no answers (a reference
that *is* an answer, such as the CNN assignment's reference networks, stays in its hidden test file).

One module per assignment (vit.py, rnn.py, transformer.py, seq2seq.py, bert.py, captioning.py, ...; every module of
this package is imported, so a new one needs no list), and dropout.py (replayable dropout masks, shared), registers its
stand-ins by name with
`@register("name")`; the worker builds them by that name (`lookup`), and the hidden tests import the same
classes on the trusted side to compute their references. The worker imports this package as `stand_ins`
(autograder/sandbox/ is on its path), the trusted side as `autograder.sandbox.stand_ins`: hence the relative
imports. The worker's tripwires trust the code of every module in MODULES (by code-object identity).
"""
from __future__ import annotations

import contextlib
import inspect
import sys
from collections.abc import Callable, Iterator
from types import ModuleType

STAND_INS: dict[str, Callable] = {}  # name -> factory (a class or a function), filled by the modules below


class UnknownStandIn(LookupError):
    """A hidden test asked for a stand-in that no module registers."""


def register(name: str) -> Callable[[Callable], Callable]:
    """Class or function decorator: make `factory` the stand-in called `name`."""
    def add(factory: Callable) -> Callable:
        if STAND_INS.get(name, factory) is not factory:
            raise ValueError(f"two stand-ins are called {name!r}: {STAND_INS[name].__qualname__} and {factory.__qualname__}")
        STAND_INS[name] = factory
        return factory
    return add


def lookup(name: str) -> Callable:
    """The factory of the stand-in called `name`."""
    try:
        return STAND_INS[name]
    except KeyError:
        raise UnknownStandIn(f"no stand-in is called {name!r}; known: {', '.join(sorted(STAND_INS))}") from None


@contextlib.contextmanager
def replaced_names(target, replacements: dict[str, Callable]) -> Iterator[None]:
    """While the block runs, the notebook that defined `target` (a student function, or module instance) sees
    `replacements` (name -> reference) instead of its own definitions: a test of one part calls the reference for
    the parts it uses (the student's loop gets the reference compute_loss, their Transformer the reference masks)."""
    function = inspect.unwrap(target) if callable(target) else target  # past @torch.no_grad() and other wrappers
    namespace = getattr(function, "__globals__", None)
    if namespace is None:
        namespace = vars(sys.modules[type(target).__module__])
    saved = {name: namespace[name] for name in replacements if name in namespace}
    namespace.update(replacements)
    try:
        yield
    finally:
        for name in replacements:
            namespace.pop(name, None)
        namespace.update(saved)


def recorded_optimizer(model, lr: float, optimizer: str = "adam"):
    """(optimizer, scheduler, events, grad_norms) for a student's training loop or step: Adam or SGD over `model` and
    a constant LambdaLR whose step() calls are recorded in order in `events` ("optimizer", "scheduler"); at each
    optimizer.step(), grad_norms gets the norm of all the gradients then (None when no parameter has one)."""
    import torch

    events: list[str] = []
    grad_norms: list[float | None] = []
    opt = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[optimizer](model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)  # its own first step is not recorded
    opt_step = opt.step  # (after LambdaLR, which wraps the bound method itself)

    def recorded_opt_step(*args, **kwargs):
        events.append("optimizer")
        grads = [p.grad.detach().float().norm() for p in model.parameters() if p.grad is not None]
        grad_norms.append(float(torch.stack(grads).norm()) if grads else None)
        return opt_step(*args, **kwargs)
    opt.step = recorded_opt_step
    scheduler_step = scheduler.step

    def recorded_scheduler_step(*args, **kwargs):
        events.append("scheduler")
        return scheduler_step(*args, **kwargs)
    scheduler.step = recorded_scheduler_step
    return opt, scheduler, events, grad_norms


def _import_every_module() -> tuple[ModuleType, ...]:
    """Every module of this package (each registers its stand-ins when imported), so that an assignment's stand-ins
    are one new file here and no list to edit."""
    import importlib
    import pkgutil

    return tuple(importlib.import_module(f"{__name__}.{info.name}") for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name)
                 if not info.name.startswith("_"))


MODULES: tuple[ModuleType, ...] = _import_every_module()  # the stand-in code the worker's tripwires trust

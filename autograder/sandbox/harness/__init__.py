"""The grader's helpers that run in the worker: drivers that call a student's code the way the notebook does.

A hidden test names them by kind (`stand_in("train_loop_probe", ...)` in autograder/kit/requests.py) and the worker builds
them here. They hold no reference implementation of anything a student writes: the reference layers, losses and
masks ("stand-ins", autograder/kit/stand_ins/) stay with the grader, and the worker gets only a shell of them
(autograder/sandbox/remote.py). So nothing here uses an API an assignment forbids, and nothing here is worth
importing for a student.

One module per assignment where it has drivers (rnn.py, bert.py, ...), and dropout.py (replayable dropout masks,
shared); each registers its helpers with `@register("name")`; every module of this package is imported, so a new
one needs no list. The worker imports this package as `harness` (autograder/sandbox/ is on its path), the trusted
side as `autograder.sandbox.harness`: hence the relative imports.
"""
from __future__ import annotations

import contextlib
import inspect
import sys
from collections.abc import Callable, Iterator
from types import ModuleType


class UnknownStandIn(LookupError):
    """A hidden test asked for a stand-in or helper that no module registers."""


class Registry:
    """Factories (classes or functions) by name; `register` is their decorator."""

    def __init__(self, what: str):
        self.what = what
        self.factories: dict[str, Callable] = {}

    def register(self, name: str) -> Callable[[Callable], Callable]:
        def add(factory: Callable) -> Callable:
            if self.factories.get(name, factory) is not factory:
                raise ValueError(f"two {self.what}s are called {name!r}: {self.factories[name].__qualname__} and "
                                 f"{factory.__qualname__}")
            self.factories[name] = factory
            return factory
        return add

    def lookup(self, name: str) -> Callable:
        try:
            return self.factories[name]
        except KeyError:
            raise UnknownStandIn(f"no {self.what} is called {name!r}; known: {', '.join(sorted(self.factories))}") from None

    def __contains__(self, name: str) -> bool:
        return name in self.factories


def import_every_module(package: str, path, skip: tuple[str, ...] = ()) -> tuple[ModuleType, ...]:
    """Every module of `package` (each registers its factories when imported): a new one is one new file, no list."""
    import importlib
    import pkgutil

    return tuple(importlib.import_module(f"{package}.{info.name}") for info in sorted(pkgutil.iter_modules(path), key=lambda i: i.name)
                 if not info.name.startswith("_") and info.name not in skip)


HELPERS = Registry("worker helper")
register, lookup = HELPERS.register, HELPERS.lookup


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
    scheduler.step = recorded_scheduler_step  # type: ignore[method-assign]  # this one instance's calls are recorded
    return opt, scheduler, events, grad_norms


MODULES: tuple[ModuleType, ...] = import_every_module(__name__, __path__)

"""Public sanity checks that students run inside the notebooks (CS231n style)."""
from __future__ import annotations

from typing import Sequence, TypeVar

import numpy as np
import torch


def rel_error(x, y) -> float:
    """Maximum relative error between two arrays or tensors: max |x - y| / max(1e-8, |x| + |y|).

    Around 1e-7 or less means "equal up to float rounding"; 1e-2 or more usually means a bug.
    """
    x = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    y = y.detach().cpu().double().numpy() if isinstance(y, torch.Tensor) else np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"rel_error: shapes differ, {x.shape} vs {y.shape}")
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y))))


def check_shape(tensor: torch.Tensor, expected: Sequence[int], name: str = "output") -> None:
    """Raise an AssertionError that prints both shapes when `tensor` does not have `expected` shape."""
    got = tuple(tensor.shape)
    assert got == tuple(expected), f"{name} has shape {got}, expected {tuple(expected)}"
    print(f"{name} shape {got}: OK")


def seeded_randn(*shape: int, seed: int = 0) -> torch.Tensor:
    """Standard-normal tensor from its own seeded generator (the same numbers on every machine)."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


_ModuleT = TypeVar("_ModuleT", bound=torch.nn.Module)


@torch.no_grad()
def fill_parameters_(module: _ModuleT, seed: int = 0, scale: float = 0.5) -> _ModuleT:
    """Overwrite every parameter of `module` with seeded normal values times `scale`, in
    `named_parameters()` order, so a public check gives the same numbers everywhere."""
    generator = torch.Generator().manual_seed(seed)
    for _, p in module.named_parameters():
        p.copy_(scale * torch.randn(p.shape, generator=generator))
    return module

"""Helpers the hidden tests' isolation rests on (autograder/sandbox/harness/): replayable dropout masks and names
replaced in a student's notebook for one call. Run in this process: no sandbox needed."""
import sys
import types

import torch
import torch.nn as nn
import torch.nn.functional as F

from autograder.sandbox.harness import replaced_names
from autograder.sandbox.harness.dropout import replayed_dropout, train_mode_forward


def test_replayed_masks_ignore_memory_layout():
    """A transposed (non-contiguous) tensor gets the mask of its logical layout: einsum-style answers match."""
    x = torch.randn(2, 3, 4, 5)
    with replayed_dropout(0):
        contiguous = F.dropout(x, 0.5, True)
    with replayed_dropout(0):
        transposed = F.dropout(x.transpose(1, 2).contiguous().transpose(1, 2), 0.5, True)
    assert torch.equal(contiguous, transposed)
    zeroed = (contiguous == 0).float().mean().item()
    assert 0.3 < zeroed < 0.7 and torch.allclose(contiguous[contiguous != 0], 2 * x[contiguous != 0])


def test_replayed_dropout_records_calls_and_is_undone():
    original = F.dropout
    with replayed_dropout(1) as calls:
        nn.Dropout(0.25)(torch.ones(3))            # the module goes through F.dropout
        F.dropout(torch.ones(3), 0.5, training=False)  # eval: no mask drawn, not recorded
        F.dropout(torch.ones(3), 0.0, True)             # p = 0: nothing to draw
    assert calls == [0.25] and F.dropout is original


def test_train_mode_forward_sets_train_mode():
    module = nn.Sequential(nn.Dropout(0.5)).eval()
    result = train_mode_forward(module, seed=3)(torch.ones(8))
    assert module.training and result["dropout_calls"] == [0.5]
    with replayed_dropout(3):
        assert torch.equal(result["output"], F.dropout(torch.ones(8), 0.5, True))


def test_replaced_names_reach_decorated_functions_and_modules_and_are_restored():
    notebook = types.ModuleType("_notebook_for_test")
    sys.modules[notebook.__name__] = notebook
    try:
        exec("import torch\n"
             "def helper():\n    return 'student'\n"
             "@torch.no_grad()\ndef decorated():\n    return helper()\n"
             "class Layer(torch.nn.Module):\n    def forward(self):\n        return helper()\n", vars(notebook))
        with replaced_names(notebook.decorated, {"helper": lambda: "reference"}):
            assert notebook.decorated() == "reference"
        with replaced_names(notebook.Layer(), {"helper": lambda: "reference", "extra": 1}):
            assert notebook.Layer()() == "reference"
        assert notebook.decorated() == "student" and not hasattr(notebook, "extra")
    finally:
        del sys.modules[notebook.__name__]


def test_torch_dropout_is_replayed_too():
    x = torch.randn(4, 6)
    with replayed_dropout(2) as calls:
        functional = F.dropout(x, 0.5, True)
    with replayed_dropout(2):
        twin = torch.dropout(x, 0.5, True)
    assert torch.equal(functional, twin) and calls == [0.5]

"""Forbidden-API tripwires of the worker (the untrusted side), decided where torch runs an operation.

A forbidden API is caught by what it *does*, not by the Python name it was reached through: a
TorchFunctionMode sees every torch function, tensor method, `torch._C`/`torch._VF` builtin and
`torch.ops` call, and a TorchDispatchMode sees every aten operator (even when torch-function handling is
switched off). Each forbidden dotted API maps to the names it lowers to at those two levels (OPS below,
traced on torch 2.14 CPU and CUDA), so `__wrapped__`, `getattr`, `importlib`, `sys.modules`, `torch.ops`,
`torch._C._nn` and a reference saved earlier all end in the same check. Python-only APIs (prebuilt model
factories, `torch.hub.load`) and the construction of forbidden classes are guarded in Python as well.

Who called: nothing of the grader in the worker uses a forbidden API (the reference layers that do are the grader's
stand-ins, which run on the trusted side: autograder/kit/stand_ins/), so every forbidden operation in the worker is the
student's, however it was reached. A forbidden import is the student's when a notebook cell is on the stack (libraries
may import what they like for themselves). The modes are entered afresh around every request (`guarding`); a request
after which they are missing or replaced counts as tampering and fails.
"""
from __future__ import annotations

import builtins
import contextlib
import importlib
import sys
import types

import torch
from torch.overrides import TorchFunctionMode
from torch.utils import _python_dispatch as python_dispatch
from torch.utils._python_dispatch import TorchDispatchMode

CELL_PREFIX = "<cell "  # filename of every compiled student/instructor cell
TAMPERED = "tampered with the grader's checks"
FORBIDDEN_CALLS: list[str] = []

_ATTENTION = ({"scaled_dot_product_attention"}, ("_scaled_dot_product_", "_flash_attention", "_efficient_attention"))
_MHA = ({"multi_head_attention_forward", "_native_multi_head_attention"}, ("_native_multi_head_attention",))
_TRANSFORMER = ({"_transformer_encoder_layer_fwd"} | _MHA[0] | _ATTENTION[0],
                ("_transformer_encoder_layer_fwd",) + _MHA[1] + _ATTENTION[1])
_RNN_KERNELS = ("_cudnn_rnn", "miopen_rnn", "mkldnn_rnn")
_NLL = ({"nll_loss", "nll_loss_nd", "nll_loss2d", "cross_entropy", "cross_entropy_loss"}, ("nll_loss",))
# Last component of a forbidden API -> (torch-function names, aten operator name prefixes) it lowers to.
OPS: dict[str, tuple[set, tuple]] = {
    "scaled_dot_product_attention": _ATTENTION,
    "multi_head_attention_forward": (_MHA[0] | _ATTENTION[0], _MHA[1] + _ATTENTION[1]),
    "MultiheadAttention": (_MHA[0] | _ATTENTION[0], _MHA[1] + _ATTENTION[1]),
    **{name: _TRANSFORMER for name in ("Transformer", "TransformerEncoder", "TransformerEncoderLayer",
                                       "TransformerDecoder", "TransformerDecoderLayer")},
    **{name: ({"lstm"}, _RNN_KERNELS) for name in ("LSTM", "lstm")},
    **{name: ({"rnn_tanh", "rnn_relu"}, _RNN_KERNELS) for name in ("RNN", "rnn_tanh", "rnn_relu")},
    **{name: ({"gru"}, _RNN_KERNELS) for name in ("GRU", "gru")},
    **{name: ({"lstm_cell"}, ("_thnn_fused_lstm_cell",)) for name in ("LSTMCell", "lstm_cell")},
    **{name: ({"gru_cell"}, ("_thnn_fused_gru_cell",)) for name in ("GRUCell", "gru_cell")},
    **{name: ({"rnn_tanh_cell", "rnn_relu_cell"}, ()) for name in ("RNNCell", "rnn_tanh_cell", "rnn_relu_cell")},
    **{name: ({"_pack_padded_sequence"}, ("_pack_padded_sequence",)) for name in ("pack_padded_sequence", "pack_sequence")},
    **{name: _NLL for name in ("cross_entropy", "CrossEntropyLoss", "nll_loss", "NLLLoss")},
}


class ForbiddenAPIError(RuntimeError):
    pass


# -- who is calling -------------------------------------------------------------------------------------
def _cell_on_stack(frame) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith(CELL_PREFIX):
            return True
        frame = frame.f_back
    return False


def _trip(label: str) -> None:
    FORBIDDEN_CALLS.append(label)
    raise ForbiddenAPIError(f"{label} is not allowed in this assignment")


def _check(label: str | None) -> None:
    if label is not None:
        _trip(label)


# -- the two modes -----------------------------------------------------------------------------------------
class _FunctionTripwire(TorchFunctionMode):
    def __init__(self, names: dict[str, str]):
        super().__init__()
        self.names = names  # torch-function name -> forbidden API

    def __torch_function__(self, func, types, args=(), kwargs=None):
        _check(self.names.get(getattr(func, "__name__", "").partition(".")[0]))
        return func(*args, **(kwargs or {}))


class _DispatchTripwire(TorchDispatchMode):
    seen: dict = {}  # aten operator -> the forbidden API it belongs to, or None

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # By default torch wraps a dispatch mode's __torch_dispatch__ in torch._disable_dynamo, whose first call
        # imports torch._dynamo and torch._inductor: about 2 CPU s in every worker, for a compiler it never uses.
        return False

    def __init__(self, prefixes: dict[str, str]):
        super().__init__()
        self.prefixes = prefixes  # aten name prefix -> forbidden API

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func not in self.seen:  # backward kernels run for the graph's owner, whoever calls .backward()
            name = func.__name__
            self.seen[func] = None if "backward" in name else next(
                (api for p, api in self.prefixes.items() if name.startswith(p)), None)
        _check(self.seen[func])
        return func(*args, **(kwargs or {}))


_config: dict = {}  # "names", "prefixes": set by install()
_installed: dict = {}  # what install() set, kept apart: a request that leaves _config or _check changed tampered


def _tables_intact() -> bool:
    """Whether the tables and the check are still what install() set."""
    return (_check is _installed["check"] and _config.get("names") == _installed["names"]
            and _config.get("prefixes") == _installed["prefixes"])


def _restore_tables() -> None:
    global _check
    _check = _installed["check"]
    _config.update(names=dict(_installed["names"]), prefixes=dict(_installed["prefixes"]))


@contextlib.contextmanager
def guarding():
    """Run one request under fresh tripwire modes; afterwards, fail it if they were removed or replaced, or if the
    tables or the check they consult were changed (best effort: code in this process can undo its changes in time)."""
    if not _installed:
        yield
        return
    if not _tables_intact():  # changed after an earlier request ended
        _restore_tables()
        FORBIDDEN_CALLS.append(TAMPERED)
    _clear_mode_stacks()
    function_mode, dispatch_mode = _FunctionTripwire(_config["names"]), _DispatchTripwire(_config["prefixes"])
    function_mode.__enter__()
    dispatch_mode.__enter__()
    failed = True
    try:
        yield
        failed = False
    finally:
        intact = (torch._C._len_torch_function_stack() == 1 and torch._C._get_function_stack_at(0) is function_mode
                  and torch._C._len_torch_dispatch_stack() == 1 and torch._C._get_dispatch_stack_at(0) is dispatch_mode
                  and _tables_intact())
        if intact:
            dispatch_mode.__exit__(None, None, None)
            function_mode.__exit__(None, None, None)
        else:
            _clear_mode_stacks()
            _restore_tables()
            FORBIDDEN_CALLS.append(TAMPERED)
            if not failed:
                raise ForbiddenAPIError(f"your code {TAMPERED}")


def _clear_mode_stacks() -> None:
    while torch._C._len_torch_function_stack():
        torch._C._pop_torch_function_stack()
    while torch._C._len_torch_dispatch_stack():
        torch._C._pop_torch_dispatch_stack(None)
    python_dispatch._is_in_torch_dispatch_mode = python_dispatch._is_in_non_infra_torch_dispatch_mode = False


# -- Python-level guards: pure-Python APIs, construction of forbidden classes, imports --------------------
def _guard_function(original, label):
    def guarded(*args, **kwargs):
        _check(label)
        return original(*args, **kwargs)
    guarded.__name__, guarded.__doc__ = getattr(original, "__name__", "guarded"), f"{label} (forbidden here)"
    return guarded


def _guard_class(cls, label):
    original_init = cls.__init__

    def __init__(self, *args, **kwargs):
        _check(label)
        original_init(self, *args, **kwargs)
    cls.__init__ = __init__


def _replace_everywhere(original, replacement) -> None:
    """Put `replacement` wherever a loaded module holds `original` (torchvision.models.resnet18 is also
    torchvision.models.resnet.resnet18)."""
    for module in list(sys.modules.values()):
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for key, value in list(namespace.items()):
            if value is original:
                namespace[key] = replacement


def install(forbidden_attributes: list[str], forbidden_modules: list[str]) -> None:
    """Arm the tripwires for one assignment's lists (its spec's forbidden APIs)."""
    names: dict[str, str] = {}
    prefixes: dict[str, str] = {}
    for dotted in forbidden_attributes:
        module_name, _, attr = dotted.rpartition(".")
        function_names, op_prefixes = OPS.get(attr, ((), ()))
        for name in function_names:
            names.setdefault(name, dotted)
        for prefix in op_prefixes:
            prefixes.setdefault(prefix, dotted)
        try:
            target = getattr(sys.modules.get(module_name) or importlib.import_module(module_name), attr)
        except (ImportError, AttributeError):
            continue
        if isinstance(target, type):
            _guard_class(target, dotted)
        elif isinstance(target, types.FunctionType) and attr not in OPS:  # no torch operation to catch it by
            _replace_everywhere(target, _guard_function(target, dotted))
    _config.update(names=names, prefixes=prefixes)
    _installed.update(check=_check, names=dict(names), prefixes=dict(prefixes))
    _DispatchTripwire.seen.clear()
    _guard_imports(forbidden_modules)


def _guard_imports(forbidden_modules: list[str]) -> None:
    def check(name: str, fromlist=()) -> None:
        # The name first, the stack only for a forbidden one: torch's own functions import inside themselves (about
        # 3 000 times in a ViT submission's tests), and a walk of the stack for each cost more than the check.
        forbidden = [full for full in [name] + [f"{name}.{f}" for f in (fromlist or ())]
                     if any(full == m or full.startswith(m + ".") for m in forbidden_modules)]
        if forbidden and _cell_on_stack(sys._getframe(2)):
            FORBIDDEN_CALLS.append(f"import {forbidden[0]}")
            raise ImportError(f"importing {forbidden[0]} is not allowed in this assignment")

    original_import, original_import_module = builtins.__import__, importlib.import_module

    def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0:
            check(name, fromlist)
        return original_import(name, globals, locals, fromlist, level)

    def guarded_import_module(name, package=None):
        check(name)
        return original_import_module(name, package)
    builtins.__import__, importlib.import_module = guarded_import, guarded_import_module

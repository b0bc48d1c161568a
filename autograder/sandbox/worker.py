"""The untrusted side of grading: runs a student's code and answers the grader's requests.

Started by `autograder.sandbox.Sandbox` inside the sandbox (see launch.sh): its own network, PID and mount
namespaces where the machine allows them, no capabilities, a memory cap, an empty private /tmp as its
working directory, and the hidden tests, reference notebooks and other submissions out of sight. It only
ever receives inputs and sends back outputs; every score is decided by the trusted side.

Order of events (each step makes the next one safer):
1. set resource limits, import torch and friends (things student code may need);
2. install the audit hook (no network, no subprocesses, no reading hidden paths) and the
   forbidden-API tripwires;
3. run the instructor's cells and the student's answer cells, then serve requests until told to stop.
"""
from __future__ import annotations

import builtins
import json
import linecache
import os
import resource
import sys
import traceback
import types

REQUEST_FD, RESPONSE_FD = int(sys.argv[1]), int(sys.argv[2])
SETTINGS = json.loads(sys.argv[3])
CELL_PREFIX = "<cell "  # filename of every compiled student/instructor cell

# 1. Limits and imports. ----------------------------------------------------------------------------
if SETTINGS.get("memory_mb"):
    limit = SETTINGS["memory_mb"] << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 20, 64 << 20))

import math  # noqa: E402,F401  (pre-imported for student code)

import numpy  # noqa: E402,F401
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torchvision  # noqa: E402,F401
from torchvision.models.vision_transformer import EncoderBlock  # noqa: E402

import dlcourse  # noqa: E402,F401

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from protocol import read_frame_blocking, write_frame  # noqa: E402

torch.set_num_threads(int(SETTINGS.get("threads", 1)))
DEVICE = torch.device(SETTINGS.get("device", "cpu"))

# 2. Audit hook and tripwires. -----------------------------------------------------------------------
BLOCKED_ROOTS = [os.path.realpath(p) for p in SETTINGS.get("blocked_roots", [])]
ALLOWED_ROOTS = [os.path.realpath(p) for p in SETTINGS.get("allowed_roots", [])]
DENIED_EVENTS = {"socket.__new__", "socket.connect", "socket.bind", "socket.sendto", "socket.getaddrinfo",
                 "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                 "os.forkpty", "pty.spawn", "ctypes.dlopen", "sys.remote_exec", "os.kill", "os.killpg"}
PATH_EVENTS = {"open", "os.listdir", "os.scandir", "os.chdir", "glob.glob", "os.rename", "os.remove",
               "os.rmdir", "os.mkdir", "os.symlink", "os.link", "os.truncate", "os.chmod", "shutil.rmtree"}


def _blocked_path(path) -> bool:
    if isinstance(path, int) or path is None:
        return False
    try:
        real = os.path.realpath(os.fsdecode(path))
    except (TypeError, ValueError):
        return False
    if any(real == a or real.startswith(a + os.sep) for a in ALLOWED_ROOTS):
        return False
    return any(real == b or real.startswith(b + os.sep) for b in BLOCKED_ROOTS)


def _audit(event: str, args: tuple) -> None:
    if event in DENIED_EVENTS:
        raise PermissionError(f"the autograder sandbox does not allow {event}")
    if event in PATH_EVENTS and args and _blocked_path(args[0]):
        raise PermissionError(f"the autograder sandbox does not allow access to {args[0]}")


FORBIDDEN_CALLS: list[str] = []


class ForbiddenAPIError(RuntimeError):
    pass


def _called_from_student(depth: int = 2) -> bool:
    frame = sys._getframe(depth)
    return frame.f_code.co_filename.startswith(CELL_PREFIX)


def _tripwire_function(original, label):
    def guarded(*args, **kwargs):
        if _called_from_student():
            FORBIDDEN_CALLS.append(label)
            raise ForbiddenAPIError(f"{label} is not allowed in this assignment")
        return original(*args, **kwargs)
    guarded.__wrapped__ = original
    return guarded


def _tripwire_class(cls, label):
    original_init = cls.__init__

    def guarded_init(self, *args, **kwargs):
        if _called_from_student():
            FORBIDDEN_CALLS.append(label)
            raise ForbiddenAPIError(f"{label} is not allowed in this assignment")
        original_init(self, *args, **kwargs)
    cls.__init__ = guarded_init


def install_tripwires(forbidden_attributes: list[str], forbidden_modules: list[str]) -> None:
    """Guard each dotted attribute (function or class) and block imports of forbidden modules
    when (and only when) the call comes straight from a notebook cell."""
    for dotted in forbidden_attributes:
        module_name, _, attr = dotted.rpartition(".")
        module = sys.modules.get(module_name) or __import__(module_name, fromlist=[attr])
        target = getattr(module, attr, None)
        if target is None:
            continue
        if isinstance(target, type):
            _tripwire_class(target, dotted)
        else:
            setattr(module, attr, _tripwire_function(target, dotted))
    original_import = builtins.__import__

    def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0 and _called_from_student():
            wanted = [name] + [f"{name}.{f}" for f in (fromlist or ())]
            for full in wanted:
                if any(full == m or full.startswith(m + ".") for m in forbidden_modules):
                    FORBIDDEN_CALLS.append(f"import {full}")
                    raise ImportError(f"importing {full} is not allowed in this assignment")
        return original_import(name, globals, locals, fromlist, level)
    builtins.__import__ = guarded_import


# Stand-in sublayers built only from torch/torchvision, so that a test of one layer (say Block) does not
# depend on the student's other layers (say Attention): a bug costs points once.
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
    from functools import partial

    return EncoderBlock(num_heads, dim, mlp_dim, 0.0, 0.0, partial(nn.LayerNorm, eps=1e-6))


STAND_INS = {"torch_attention": TorchAttention, "torch_mlp": TorchMLP, "conv_patchify": ConvPatchify,
             "torchvision_block": torchvision_block}

# 3. Running cells and serving requests. -------------------------------------------------------------
_STUDENT_MODULE = types.ModuleType("__student__")  # a real module: dataclasses look their class up in sys.modules
sys.modules[_STUDENT_MODULE.__name__] = _STUDENT_MODULE
NAMESPACE: dict = _STUDENT_MODULE.__dict__
HANDLES: dict = {}


class StudentError(Exception):
    """An error to report back as the student's (not the grader's)."""


def describe_exception(exc: BaseException) -> dict:
    """The exception plus only the traceback frames from notebook cells: the student's own code."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(CELL_PREFIX)]
    lines = [f'  {f.filename[len(CELL_PREFIX):-1]}, line {f.lineno}, in {f.name}: {f.line or ""}'.rstrip()
             for f in frames[-5:]]
    return {"type": type(exc).__name__, "message": str(exc)[:500], "traceback": "\n".join(lines)}


def run_cells(cells: list[dict]) -> dict:
    errors = {}
    for cell in cells:
        filename = f"{CELL_PREFIX}{cell['grade_id']}>"
        linecache.cache[filename] = (len(cell["source"]), None, cell["source"].splitlines(True), filename)
        try:
            code = compile(cell["source"], filename, "exec")
            exec(code, NAMESPACE)
        except BaseException as exc:  # noqa: BLE001  (student code may raise anything, SystemExit too)
            errors[cell["grade_id"]] = describe_exception(exc)
    return errors


def build(spec):
    """Instantiate a call spec: {"call": name, "args": [...], "kwargs": {...}}, names from the notebook."""
    if isinstance(spec, dict) and "call" in spec:
        name = spec["call"]
        if name not in NAMESPACE:
            raise StudentError(f"your notebook does not define {name!r} (was its cell deleted or renamed?)")
        args = [build(a) for a in spec.get("args", [])]
        kwargs = {k: build(v) for k, v in spec.get("kwargs", {}).items()}
        return NAMESPACE[name](*args, **kwargs)
    return spec


def substitute(module: nn.Module, path: str, spec: dict) -> None:
    parent_path, _, leaf = path.rpartition(".")
    parent = module.get_submodule(parent_path) if parent_path else module
    replacement = STAND_INS[spec["kind"]](**spec.get("kwargs", {}))
    if leaf.isdigit():
        parent[int(leaf)] = replacement
    else:
        setattr(parent, leaf, replacement)


def load_weights(module: nn.Module, weights: dict) -> None:
    own = module.state_dict()
    missing = sorted(set(weights) - set(own))
    unexpected = sorted(set(own) - set(weights))
    wrong = sorted(k for k in set(own) & set(weights) if tuple(own[k].shape) != tuple(weights[k].shape))
    if missing or unexpected or wrong:
        raise StudentError(json.dumps({
            "state_dict_mismatch": True, "missing": missing, "unexpected": unexpected,
            "wrong_shape": {k: [list(own[k].shape), list(weights[k].shape)] for k in wrong}}))
    module.load_state_dict(weights, strict=True)


def handle_run(header: dict, tensors: dict) -> tuple[dict, dict]:
    if header.get("use"):
        module = HANDLES[header["use"]]
    else:
        module = build(header["build"])
        if not isinstance(module, nn.Module):
            raise StudentError(f"{header['build']['call']} did not return an nn.Module")
        for path, spec in header.get("substitutes", {}).items():
            substitute(module, path, spec)
        weights = {k[len("weight."):]: v for k, v in tensors.items() if k.startswith("weight.")}
        if weights or header.get("exact_weights"):
            load_weights(module, weights)
        module.to(DEVICE)
        if header.get("keep_as"):
            HANDLES[header["keep_as"]] = module
    module.train(bool(header.get("train_mode", False)))
    inputs = [tensors[f"input.{i}"].to(DEVICE) for i in range(header.get("num_inputs", 0))]
    grad = "grad_output" in tensors
    if grad:
        inputs = [x.requires_grad_(True) if x.is_floating_point() else x for x in inputs]
        module.zero_grad(set_to_none=True)
    with torch.set_grad_enabled(grad):
        output = module(*inputs)
    if not isinstance(output, torch.Tensor):
        raise StudentError(f"forward returned {type(output).__name__}, expected a torch.Tensor")
    out = {"output": output.detach().float().cpu().contiguous().clone()}
    if grad:
        if tuple(output.shape) != tuple(tensors["grad_output"].shape):
            raise StudentError(f"forward returned shape {tuple(output.shape)}, expected {tuple(tensors['grad_output'].shape)}")
        output.backward(tensors["grad_output"].to(DEVICE))
        for i, x in enumerate(inputs):
            if x.grad is not None:
                out[f"input_grad.{i}"] = x.grad.detach().float().cpu().contiguous().clone()
        for name, p in module.named_parameters():
            if p.grad is not None:
                out[f"param_grad.{name}"] = p.grad.detach().float().cpu().contiguous().clone()
    params = {name: list(p.shape) for name, p in module.named_parameters()}
    return {"param_shapes": params}, out


def serve() -> None:
    while True:
        header, tensors = read_frame_blocking(REQUEST_FD)
        cmd = header.get("cmd")
        reply, out = {"ok": True}, {}
        try:
            if cmd == "stop":
                write_frame(RESPONSE_FD, {"ok": True})
                return
            if cmd == "load":
                install_tripwires(header.get("forbidden_attributes", []), header.get("forbidden_modules", []))
                reply["cell_errors"] = run_cells(header["cells"])
            elif cmd == "run":
                extra, out = handle_run(header, tensors)
                reply.update(extra)
            else:
                raise StudentError(f"unknown command {cmd!r}")
        except StudentError as exc:
            reply, out = {"ok": False, "error": {"type": "StudentError", "message": str(exc), "traceback": ""}}, {}
        except BaseException as exc:  # noqa: BLE001  (student code may raise SystemExit, KeyboardInterrupt...)
            reply, out = {"ok": False, "error": describe_exception(exc)}, {}
        reply["forbidden_calls"] = sorted(set(FORBIDDEN_CALLS))
        write_frame(RESPONSE_FD, reply, out)


if SETTINGS.get("audit_hook", True):
    sys.addaudithook(_audit)
serve()

"""Stand-ins the worker calls but does not hold: the worker's end, and the wire format both ends share.

A test of one part puts the grader's reference of another part in the student's model (a stand-in,
autograder/kit/stand_ins/). The reference's code never enters the worker: the grader builds it and sends a shell
(`build_shell`), a module with the same submodules, parameters, persistent buffers and plain attributes, whose
forward (and the stand-in's own public methods) send their arguments, the shell's current parameters and its
train/eval flag to the grader in the middle of the request, and return what the grader's stand-in computed. So
weights load into it, optimizers step it and gradients reach it as they would reach the real thing: backward
through a shell asks the grader for the gradients of its inputs and parameters (`_RemoteCall`). Function
stand-ins (a reference compute_loss, the masks) are shells too (`RemoteFunction`).

Wire format (also used by the grader's end, autograder/kit/stand_ins/remote.py): a frame {"stand_in": call} from the
worker, answered by {"ok": true, ...} or {"ok": false, "error": text}. A call is
    {"op": "call", "id": n, "path": submodule, "method": name, "args": pack([args, kwargs]), "count": k,
     "params": [names], "buffers": [names], "needs_grad": [input indices], "grad": bool, "training": bool}
with tensors in.0 .. in.(count-1) (the arguments' tensors, then the parameters, then the buffers), answered by
{"result": picture, "call": n} and tensors out.i; a backward is {"op": "backward", "call": n} with tensors g.i (one
per float output), answered by tensors g.j, one per input index that needed a gradient.
"""
from __future__ import annotations

import torch
import torch.nn as nn

try:  # the trusted side imports autograder.sandbox.remote; the worker, with autograder/sandbox/ on its path, remote
    from .protocol import read_frame_blocking, write_frame
except ImportError:
    from protocol import read_frame_blocking, write_frame  # type: ignore[no-redef]


class StandInError(RuntimeError):
    """The grader's stand-in refused or failed a call (shown to the student as an error of their code)."""


# -- values: the JSON picture of a call's arguments and results, tensors by index --------------------------------
def pack(value, tensors: list):
    """A JSON-able picture of `value`; its tensors are appended to `tensors` and named by index."""
    if isinstance(value, torch.Tensor):
        tensors.append(value)
        return {"$t": len(tensors) - 1}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list)):
        return {"$seq": [pack(v, tensors) for v in value], "tuple": isinstance(value, tuple)}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"$map": {k: pack(v, tensors) for k, v in value.items()}}
    if isinstance(value, torch.device):
        return {"$device": str(value)}
    if isinstance(value, torch.dtype):
        return {"$dtype": str(value).removeprefix("torch.")}
    raise TypeError(f"a stand-in cannot take or return a {type(value).__name__}")


def unpack(picture, tensors: list, device: torch.device | None = None, depth: int = 0):
    """The value `pack` pictured; tensors from `tensors` by index; devices become `device` when given."""
    if depth > 32:
        raise ValueError("a stand-in call's value is nested too deeply")
    if isinstance(picture, list) or not isinstance(picture, dict):
        if isinstance(picture, list):
            raise ValueError("a stand-in call's value is not a valid picture")
        return picture
    if "$t" in picture:
        return tensors[int(picture["$t"])]
    if "$seq" in picture:
        items = [unpack(v, tensors, device, depth + 1) for v in picture["$seq"]]
        return tuple(items) if picture.get("tuple") else items
    if "$map" in picture:
        return {str(k): unpack(v, tensors, device, depth + 1) for k, v in dict(picture["$map"]).items()}
    if "$device" in picture:
        return device if device is not None else torch.device(str(picture["$device"]))
    if "$dtype" in picture:
        dtype = getattr(torch, str(picture["$dtype"]), None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"not a dtype: {picture['$dtype']!r}")
        return dtype
    raise ValueError("a stand-in call's value is not a valid picture")


def wire(tensor: torch.Tensor) -> torch.Tensor:
    """A tensor as it travels: on the CPU, contiguous, its own memory (safetensors refuses shared storage)."""
    return tensor.detach().cpu().contiguous().clone()


# -- the worker's end ----------------------------------------------------------------------------------------------
class Link:
    """A stand-in call in the middle of a request: one frame to the grader, then its answer."""

    def __init__(self, request_fd: int, response_fd: int, device: torch.device):
        self.request_fd, self.response_fd, self.device = request_fd, response_fd, device

    def ask(self, call: dict, tensors: dict) -> tuple[dict, dict]:
        write_frame(self.response_fd, {"stand_in": call}, tensors)
        reply, out = read_frame_blocking(self.request_fd)
        if not reply.get("ok"):
            raise StandInError(f"the grader's stand-in: {reply.get('error', 'failed')}")
        return reply, out


class _RemoteCall(torch.autograd.Function):
    """One call of a stand-in as an autograd node: forward asks the grader for the outputs; backward for the
    gradients of the inputs (the arguments' tensors and the shell's parameters)."""

    @staticmethod
    def forward(ctx, remote: "Remote", call: dict, answer: dict, *inputs):
        reply, outputs = remote.send(call, inputs)
        answer.update(reply)  # (the result's picture, for the caller: forward returns only tensors)
        ctx.remote, ctx.call_id, ctx.devices = remote, reply.get("call"), [x.device for x in inputs]
        ctx.mark_non_differentiable(*[o for o in outputs if not o.is_floating_point()])
        return tuple(outputs)

    @staticmethod
    def backward(ctx, *grads):
        tensors = {f"g.{i}": wire(g) for i, g in enumerate(grads) if g is not None and g.is_floating_point()}
        _, out = ctx.remote.link.ask({"op": "backward", "call": ctx.call_id}, tensors)
        input_grads = [out[f"g.{i}"].to(ctx.devices[i]) if f"g.{i}" in out else None for i in range(len(ctx.devices))]
        return (None, None, None, *input_grads)


class Remote:
    """One stand-in the grader holds (by id), and the worker's shell of it (None for a function)."""

    def __init__(self, link: Link, ident: int, kind: str):
        self.link, self.ident, self.kind = link, ident, kind
        self.shell: nn.Module | None = None

    def call(self, path: str, method: str, args: tuple, kwargs: dict):
        tensors: list = []
        picture = pack([list(args), kwargs], tensors)
        params = list(self.shell.named_parameters()) if self.shell is not None else []
        buffers = list(self.shell.named_buffers()) if self.shell is not None else []  # (only persistent ones: build_shell)
        inputs = tensors + [p for _, p in params] + [b for _, b in buffers]
        needs = [i for i, x in enumerate(inputs) if x.requires_grad and x.is_floating_point()]
        grad = torch.is_grad_enabled() and bool(needs)
        call = {"op": "call", "id": self.ident, "path": path, "method": method, "args": picture, "count": len(inputs),
                "params": [n for n, _ in params], "buffers": [n for n, _ in buffers], "needs_grad": needs if grad else [],
                "grad": grad, "training": bool(self.shell.training) if self.shell is not None else False}
        if grad:
            answer: dict = {}
            outputs = list(_RemoteCall.apply(self, call, answer, *inputs))
        else:
            answer, outputs = self.send(call, inputs)
        return unpack(answer.get("result"), outputs)

    def send(self, call: dict, inputs) -> tuple[dict, list]:
        reply, out = self.link.ask(call, {f"in.{i}": wire(x) for i, x in enumerate(inputs)})
        return reply, [out[f"out.{i}"].to(self.link.device) for i in range(len(out))]


class RemoteModule(nn.Module):
    """A shell of a stand-in module the grader holds: parameters here, code there (see the module docstring)."""

    def __init__(self, remote: Remote, path: str):
        super().__init__()
        self._remote, self._path = remote, path

    def forward(self, *args, **kwargs):
        return self._remote.call(self._path, "forward", args, kwargs)

    def extra_repr(self) -> str:
        return f"the grader's {self._remote.kind}{'.' + self._path if self._path else ''}"


class RemoteFunction:
    """A shell of a function stand-in the grader holds (a reference compute_loss, a mask)."""

    def __init__(self, remote: Remote):
        self._remote = remote

    def __call__(self, *args, **kwargs):
        return self._remote.call("", "__call__", args, kwargs)

    def __repr__(self) -> str:
        return f"<the grader's {self._remote.kind}>"


def build_shell(spec: dict, tensors: dict, link: Link):
    """The worker's shell of the stand-in `spec` describes ({"$remote": id, "kind", "modules", "parameters",
    "buffers"}; the grader's StandInServer.describe), with its parameter and buffer values from `tensors`."""
    remote = Remote(link, int(spec["$remote"]), str(spec.get("kind", "stand-in")))
    if spec.get("modules") is None:
        return RemoteFunction(remote)
    modules = dict(spec["modules"])
    root = RemoteModule(remote, "")
    for path in modules:  # (the grader's named_modules order: a parent before its children)
        target = root
        if path:
            parent, _, leaf = path.rpartition(".")
            target = RemoteModule(remote, path)
            root.get_submodule(parent).add_module(leaf, target)
        for attribute, value in dict(modules[path].get("attributes", {})).items():
            setattr(target, attribute, value)
        for method in modules[path].get("methods", []):
            setattr(target, method, _method(remote, path, method))
    for kind, register in (("parameters", _add_parameter), ("buffers", _add_buffer)):
        for name, entry in dict(spec.get(kind, {})).items():
            parent, _, leaf = name.rpartition(".")
            register(root.get_submodule(parent), leaf, tensors[entry["key"]], entry)
    remote.shell = root
    return root.to(link.device)


def _method(remote: Remote, path: str, method: str):
    def call(*args, **kwargs):
        return remote.call(path, method, args, kwargs)
    call.__name__ = method
    return call


def _add_parameter(module: nn.Module, leaf: str, value: torch.Tensor, entry: dict) -> None:
    module.register_parameter(leaf, nn.Parameter(value.clone(), requires_grad=bool(entry.get("requires_grad", True))))


def _add_buffer(module: nn.Module, leaf: str, value: torch.Tensor, entry: dict) -> None:
    module.register_buffer(leaf, value.clone())

"""The grader's end of stand-ins: build the ones a request names, send the worker shells, run them when it calls.

`prepare` rewrites a request before it is sent: every {"$stand_in": kind} of this package becomes {"$remote": id,
...}, a description of the instance built here (submodules, public methods, plain attributes, parameters and
persistent buffers, whose values travel with the request), from which the worker builds a shell
(autograder/sandbox/remote.py, which also has the wire format). Kinds of autograder/sandbox/harness/ (drivers that
call the student's code) stay as they are; the worker builds them. While the request runs, `answer` serves the
worker's calls: it runs the stand-in here, on the tensors the worker sent and the shell's current parameters, and
keeps the autograd graph for a later backward. `finish` forgets the request's graphs.

What the worker sends is untrusted: only plain JSON and safetensors, only the methods the description listed,
parameter names exactly the instance's, and the stand-ins of the current request (or of a module kept by an earlier
request and named in this one), so a student's code cannot call a stand-in of another test to learn its answers.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from autograder.kit.requests import decode_value
from autograder.sandbox.remote import pack, unpack, wire

from . import STAND_INS

MAX_GRAPHS = 4096  # stand-in calls with gradients kept in one request
MAX_CALL_ELEMENTS = 1 << 24  # tensor elements one call may send (64 MiB of float32): the layer tests send thousands
MAX_KEPT_ELEMENTS = 1 << 26  # input elements of the graphs kept for backward in one request (256 MiB of float32)
PLAIN = (bool, int, float, str, type(None))


@dataclass
class _Graph:
    outputs: list[torch.Tensor]
    leaves: dict[int, torch.Tensor]  # input index -> the leaf tensor here


@dataclass
class StandInServer:
    instances: dict[int, object] = field(default_factory=dict)
    methods: dict[int, dict[str, set[str]]] = field(default_factory=dict)  # id -> path -> callable methods
    kept: dict[str, set[int]] = field(default_factory=dict)  # keep_as name -> the stand-ins built in its request
    allowed: set[int] = field(default_factory=set)  # what the current request may call
    graphs: dict[int, _Graph] = field(default_factory=dict)
    kept_elements: int = 0  # input elements of `graphs`
    next_id: int = 0

    # -- before the request ------------------------------------------------------------------------------------------
    def prepare(self, header: dict, tensors: dict) -> dict:
        """`header` with this package's stand-ins built here and described for the worker (their parameter values
        added to `tensors`); the request may call them and those of the modules it names by handle."""
        self.allowed = set()
        built: list[int] = []
        kept: list[str] = []
        rewritten = self._rewrite(header, tensors, built, kept)
        self.allowed.update(built)
        for name in kept:
            self.kept[name] = set(built)
        live = self.allowed | set().union(*self.kept.values())
        for ident in [i for i in self.instances if i not in live]:
            del self.instances[ident], self.methods[ident]
        return rewritten

    def _rewrite(self, value, tensors: dict, built: list[int], kept: list[str]):
        if isinstance(value, list):
            return [self._rewrite(v, tensors, built, kept) for v in value]
        if not isinstance(value, dict):
            return value
        if "$handle" in value:
            self.allowed |= self.kept.get(str(value["$handle"]), set())
        if value.get("keep_as"):
            kept.append(str(value["keep_as"]))
        if "$stand_in" in value and value["$stand_in"] in STAND_INS:
            kwargs = decode_value(value.get("kwargs", {}), tensors)
            return self._describe(value["$stand_in"], STAND_INS.lookup(value["$stand_in"])(**kwargs), tensors, built)
        return {k: self._rewrite(v, tensors, built, kept) for k, v in value.items()}

    def _describe(self, kind: str, instance, tensors: dict, built: list[int]) -> dict:
        ident, self.next_id = self.next_id, self.next_id + 1
        self.instances[ident] = instance
        built.append(ident)
        spec: dict = {"$remote": ident, "kind": kind}
        if not isinstance(instance, nn.Module):
            self.methods[ident] = {"": {"__call__"}}
            return spec
        instance.to("cpu")
        self.methods[ident] = {path: {"forward", *_own_methods(m)} for path, m in instance.named_modules()}
        spec["modules"] = {path: {"attributes": {k: v for k, v in vars(m).items()
                                                 if isinstance(v, PLAIN) and not k.startswith("_") and k != "training"},
                                  "methods": sorted(self.methods[ident][path] - {"forward"})}
                           for path, m in instance.named_modules()}
        persistent = instance.state_dict(keep_vars=True)
        spec["parameters"], spec["buffers"] = {}, {}
        for name, p in instance.named_parameters():
            tensors[key := f"remote.{ident}.{name}"] = wire(p)
            spec["parameters"][name] = {"key": key, "requires_grad": p.requires_grad}
        for name, b in instance.named_buffers():
            if name in persistent:
                tensors[key := f"remote.{ident}.{name}"] = wire(b)
                spec["buffers"][name] = {"key": key}
        return spec

    # -- during the request --------------------------------------------------------------------------------------------
    def answer(self, call, tensors: dict) -> tuple[dict, dict]:
        """The reply to one of the worker's stand-in calls (never raises: an error goes back to the worker)."""
        try:
            if not isinstance(call, dict):
                raise ValueError("a stand-in call must be a JSON object")
            if call.get("op") == "call":
                return self._call(call, tensors)
            if call.get("op") == "backward":
                return self._backward(call, tensors)
            raise ValueError(f"unknown stand-in operation {call.get('op')!r}")
        except Exception as exc:  # noqa: BLE001  (whatever the worker sent, the grader answers and goes on)
            return {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:400]}"}, {}

    def _call(self, call: dict, tensors: dict) -> tuple[dict, dict]:
        ident = call.get("id")
        if ident not in self.allowed or ident not in self.instances:
            raise PermissionError("this stand-in belongs to another test")
        path, method = str(call.get("path", "")), str(call.get("method", ""))
        if method not in self.methods[ident].get(path, set()):
            raise PermissionError(f"the stand-in has no method {method!r} here")
        count, grad = int(call.get("count", 0)), bool(call.get("grad"))
        inputs = [tensors[f"in.{i}"] for i in range(count)]
        size = sum(x.numel() for x in inputs)
        if size > MAX_CALL_ELEMENTS:  # the grader's memory is not the student's to use
            raise ValueError(f"a stand-in call of {size:,} tensor elements, more than the {MAX_CALL_ELEMENTS:,} allowed")
        if grad and self.kept_elements + size > MAX_KEPT_ELEMENTS:
            raise RuntimeError("the stand-in calls of this request kept too much for backward (call backward sooner, "
                               "or use smaller inputs)")
        leaves: dict[int, torch.Tensor] = {}
        for i in call.get("needs_grad", []) if grad else []:
            if inputs[int(i)].is_floating_point():
                leaves[int(i)] = inputs[int(i)] = inputs[int(i)].detach().requires_grad_(True)
        instance = self.instances[ident]
        params, buffers = list(call.get("params", [])), list(call.get("buffers", []))
        if isinstance(instance, nn.Module):
            self._load(instance, params, buffers, inputs, leaves, count)
            instance.train(bool(call.get("training")))
            target = getattr(instance.get_submodule(path), method)
        else:
            target = instance
        arg_count = count - len(params) - len(buffers)
        args, kwargs = unpack(call.get("args"), inputs[:arg_count], device=torch.device("cpu"))
        with torch.set_grad_enabled(grad):
            result = target(*args, **kwargs)
        outputs: list = []
        picture = pack(result, outputs)
        reply = {"ok": True, "result": picture}
        if grad and any(o.requires_grad for o in outputs):
            if len(self.graphs) >= MAX_GRAPHS:
                raise RuntimeError(f"more than {MAX_GRAPHS} stand-in calls with gradients in one request")
            reply["call"] = len(self.graphs)
            self.graphs[len(self.graphs)] = _Graph(outputs, leaves)
            self.kept_elements += size
        return reply, {f"out.{i}": wire(o) for i, o in enumerate(outputs)}

    @staticmethod
    def _load(instance: nn.Module, params: list, buffers: list, inputs: list, leaves: dict, count: int) -> None:
        """The shell's current parameters and buffers into the instance (new leaves, so that earlier graphs keep
        theirs); the names must be exactly the instance's."""
        own_params = [n for n, _ in instance.named_parameters()]
        own_buffers = [n for n in instance.state_dict() if n not in set(own_params)]
        if sorted(params) != sorted(own_params) or len(set(params)) != len(params) or sorted(buffers) != sorted(own_buffers):
            raise ValueError("the shell's parameters are not the stand-in's")
        start = count - len(params) - len(buffers)
        for offset, name in enumerate(params):
            index = start + offset
            parent, _, leaf = name.rpartition(".")
            parameter = nn.Parameter(inputs[index].detach(), requires_grad=index in leaves)
            if index in leaves:
                leaves[index] = parameter
            setattr(instance.get_submodule(parent), leaf, parameter)
        for offset, name in enumerate(buffers):
            parent, _, leaf = name.rpartition(".")
            setattr(instance.get_submodule(parent), leaf, inputs[start + len(params) + offset].detach())

    def _backward(self, call: dict, tensors: dict) -> tuple[dict, dict]:
        graph = self.graphs.get(call.get("call"))  # type: ignore[arg-type]
        if graph is None:
            raise ValueError("no such stand-in call in this request")
        pairs = [(o, tensors[f"g.{i}"]) for i, o in enumerate(graph.outputs) if o.requires_grad and f"g.{i}" in tensors]
        indices = list(graph.leaves)
        if not pairs or not indices:
            return {"ok": True}, {}
        grads = torch.autograd.grad([o for o, _ in pairs], [graph.leaves[i] for i in indices],
                                    [g.to(o.dtype).reshape(o.shape) for o, g in pairs], retain_graph=True, allow_unused=True)
        return {"ok": True}, {f"g.{i}": wire(g) for i, g in zip(indices, grads, strict=True) if g is not None}

    # -- after the request ------------------------------------------------------------------------------------------
    def finish(self) -> None:
        self.graphs.clear()
        self.kept_elements = 0
        self.allowed = set()


def _own_methods(module: nn.Module) -> set[str]:
    """The public methods a stand-in class of this package defines (greedy decoding calls encode / decode)."""
    names = set()
    for cls in type(module).__mro__:
        if cls.__module__.startswith(__package__ or "autograder.kit.stand_ins"):
            names |= {n for n, v in vars(cls).items() if inspect.isfunction(v) and not n.startswith("_")}
    return names

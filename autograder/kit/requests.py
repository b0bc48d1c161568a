"""The request language: how a hidden test names things that exist only in the sandboxed worker.

    student.invoke(name("greedy_decode"), module(call("Transformer", call("TransformerConfig", **config)),
                                                  weights=weights), src, max_len=12)

`call`, `module`, `name`, `handle`, `stand_in` and `needs_grad` build plain JSON specs; tensors may appear anywhere
in a request's arguments and travel as safetensors. The worker resolves the specs (autograder/sandbox/worker.py:
resolve) and sends back values and gradients, which `call_result` puts back in place.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class CallResult:
    value: object  # tensors, lists, dicts, numbers as returned; a module is {"$module": class name}
    input_grads: list[torch.Tensor | None]  # one per needs_grad() argument, in order
    param_grads: dict[str, dict[str, torch.Tensor]]  # module(..., grads=label) -> parameter name -> gradient
    param_shapes: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # the same modules' parameter shapes


# -- value specs: how a hidden test names things that exist only in the worker ----------------------
# Tensors may appear anywhere inside args/kwargs: they travel as safetensors and are put back in place.
def call(name: str, *args, **kwargs) -> dict:
    """A call of a notebook name in the worker: call("ViT", call("ViTConfig", depth=2)) builds
    ViT(ViTConfig(depth=2)). To load weights into a module, substitute its sublayers, keep it or take its
    gradients, wrap the call in module()."""
    return {"$call": name, "args": list(args), "kwargs": kwargs}


def module(spec: dict, weights: dict | None = None, substitutes: dict | None = None, keep_as: str | None = None,
           train: bool = False, grads: str | None = None) -> dict:
    """A module built by `spec` (a call()), then: sublayers replaced by stand-ins (`substitutes`, path ->
    stand_in()), `weights` loaded exactly (names and shapes must match), kept in the worker under `keep_as`
    for later requests, set to train mode, and, with `grads=label`, its parameter gradients returned by
    invoke(..., backward=...) as result.param_grads[label]."""
    spec = dict(spec)
    if weights is not None:
        spec["weights"] = {k: v.detach().contiguous() for k, v in weights.items()}
    if substitutes:
        spec["substitutes"] = dict(substitutes)
    spec.update({k: v for k, v in (("keep_as", keep_as), ("train", train), ("grads", grads)) if v})
    return spec


def name(identifier: str) -> dict:
    """A notebook name itself (a function or class), not called."""
    return {"$name": identifier}


def handle(kept_as: str) -> dict:
    """A module kept in the worker by an earlier request (module(..., keep_as=kept_as))."""
    return {"$handle": kept_as}


def stand_in(kind: str, **kwargs) -> dict:
    """A stand-in of autograder/kit/stand_ins/ (a reference layer, loss or mask: the grader builds and runs it, the worker
    gets a shell) or a driver of autograder/sandbox/harness/ (built in the worker), by its registered name."""
    return {"$stand_in": kind, "kwargs": kwargs}


def needs_grad(x: torch.Tensor) -> dict:
    """Mark an argument tensor: the worker makes it require grad and returns its gradient."""
    return {"$needs_grad": x}


def _encode_value(value, tensors: dict, marked: list):
    """Replace every tensor in `value` by a {"$tensor": key} reference, collecting the tensors (and, in
    `marked`, the keys of needs_grad() tensors in order)."""
    if isinstance(value, torch.Tensor):
        key = f"arg.{len(tensors)}"
        tensors[key] = value.detach().contiguous()
        return {"$tensor": key}
    if isinstance(value, dict) and "$needs_grad" in value:
        reference = _encode_value(value["$needs_grad"], tensors, marked)
        marked.append(reference["$tensor"])
        return {**reference, "grad": True}
    if isinstance(value, dict):
        return {k: _encode_value(v, tensors, marked) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode_value(v, tensors, marked) for v in value]
    return value


def call_request(function: dict, args: tuple, kwargs: dict, backward: tuple | None) -> tuple[dict, dict, list[str]]:
    """The worker request for StudentCode.invoke: (header, tensors, keys of the needs_grad() tensors)."""
    tensors: dict = {}
    marked: list[str] = []
    header = {"cmd": "call", "function": _encode_value(function, tensors, marked),
              "args": _encode_value(list(args), tensors, marked), "kwargs": _encode_value(kwargs, tensors, marked)}
    if backward is not None:
        path, grad_output = backward
        header["backward"] = {"path": list(path)}
        if grad_output is not None:
            tensors["grad_output"] = grad_output.detach().contiguous()
            header["backward"]["grad_output"] = "grad_output"
    return header, tensors, marked


def call_result(reply: dict, out: dict, marked: list[str]) -> CallResult:
    param_grads: dict[str, dict[str, torch.Tensor]] = {}
    for key, grad in out.items():
        if key.startswith("param_grad."):
            module_label, _, param = key[len("param_grad."):].partition(".")
            param_grads.setdefault(module_label, {})[param] = grad
    return CallResult(decode_value(reply.get("value"), out), [out.get(f"input_grad.{k}") for k in marked], param_grads,
                      reply.get("param_shapes") or {})


def decode_value(value, tensors: dict):
    """`value` with each {"$tensor": key} replaced by tensors[key] (a reply's value, a stand-in's kwargs)."""
    if isinstance(value, dict) and "$tensor" in value:
        return tensors[value["$tensor"]]
    if isinstance(value, dict):
        return {k: decode_value(v, tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_value(v, tensors) for v in value]
    return value


@dataclass
class RunResult:
    output: torch.Tensor
    input_grads: list[torch.Tensor | None]
    param_grads: dict[str, torch.Tensor]
    param_shapes: dict[str, list[int]]


def layer_request(build: dict, inputs: tuple, weights: dict | None = None, grad_output: torch.Tensor | None = None,
                  substitutes: dict | None = None) -> tuple[dict, dict, list[str]]:
    """The layer tests' request (StudentCode.run), a call like any other: build the module `build` (with `weights`
    loaded exactly and `substitutes`, path -> stand_in()), call it on `inputs`, and
    with `grad_output` differentiate its output, for the gradients of every floating-point input and of the
    module's parameters (label "layer"). Returns (header, tensors, marked) as call_request does."""
    target = module(build, weights=weights, grads="layer")
    if substitutes:
        target["substitutes"] = substitutes
    if grad_output is not None:
        inputs = tuple(needs_grad(x) if x.is_floating_point() else x for x in inputs)
    return call_request(target, tuple(inputs), {}, ((), grad_output) if grad_output is not None else None)


def layer_result(reply: dict, out: dict, marked: list[str], inputs: tuple) -> RunResult:
    """The reply to a layer_request: the output, one gradient per input (None where none was asked), the module's
    parameter gradients and shapes."""
    result = call_result(reply, out, marked)
    if not isinstance(result.value, torch.Tensor):
        raise TypeError(f"forward returned {type(result.value).__name__}, expected a torch.Tensor")
    grads = iter(result.input_grads)
    input_grads = [next(grads) if marked and x.is_floating_point() else None for x in inputs]
    return RunResult(result.value.float(), input_grads, result.param_grads.get("layer", {}),
                     result.param_shapes.get("layer", {}))

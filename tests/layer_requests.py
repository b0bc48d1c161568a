"""For the sandbox tests: the layer request (autograder.kit.requests.layer_request), sent straight to a Sandbox, with
its reply flattened the way these tests read it."""
from __future__ import annotations

import torch

from autograder.kit.requests import layer_request, layer_result
from autograder.sandbox import Sandbox
from autograder.kit.stand_ins.remote import StandInServer


def send_layer(sandbox: Sandbox, build: dict, *inputs: torch.Tensor, timeout: float = 30.0, tensors: dict | None = None,
               exact_weights: bool = False, substitutes: dict | None = None) -> tuple[dict, dict]:
    """(reply, out): out holds "output", "input_grad.<i>" and "param_grad.<name>" (nothing when the reply is not ok);
    `tensors` may hold "weight.<name>" (loaded exactly) and "grad_output"; reply["param_shapes"] is the module's."""
    tensors = dict(tensors or {})
    weights = {k.removeprefix("weight."): v for k, v in tensors.items() if k.startswith("weight.")}
    header, payload, marked = layer_request(build, inputs, weights if weights or exact_weights else None,
                                            tensors.get("grad_output"), substitutes)
    server = StandInServer()  # the stand-ins `substitutes` names run here, as StudentCode runs them
    header = server.prepare(header, payload)
    try:
        reply, out = sandbox.request(header, payload, timeout=timeout, stand_ins=server)
    finally:
        server.finish()
    if not reply["ok"]:
        return reply, out
    result = layer_result(reply, out, marked, inputs)
    flat = {"output": result.output, **{f"param_grad.{k}": v for k, v in result.param_grads.items()},
            **{f"input_grad.{i}": g for i, g in enumerate(result.input_grads) if g is not None}}
    return dict(reply, param_shapes=result.param_shapes), flat

"""The grader's stand-ins stay with the grader (autograder/kit/stand_ins/remote.py, autograder/sandbox/remote.py).

A test of one part puts a reference of another part in the student's model. The worker gets a shell that holds the
reference's parameters; the grader runs the reference's code when the shell is called. These tests drive a real
sandbox: the shell gives the reference's values and gradients, optimizers step it, a shell of an earlier request
is refused, and nothing the worker can import, find through `gc` or `sys.modules`, or open is a reference. The
probes only look: they read no file but the grader's own stand-in sources (which must not exist for the worker)
and write nothing.
"""
from __future__ import annotations

import json

import pytest
import torch

from autograder.assignments import list_assignments, load_assignment
from autograder.kit.requests import call, call_request, call_result, handle, module, name, needs_grad, stand_in
from autograder.sandbox import Sandbox, SandboxPolicy
from autograder.kit.stand_ins import STAND_INS
from autograder.kit.stand_ins.remote import StandInServer
from autograder.kit.stand_ins.rnn import reference_compute_loss
from autograder.kit.stand_ins.vit import TorchMLP

STAND_IN_FILES = sorted(str(m.__file__) for m in __import__("autograder.kit.stand_ins", fromlist=["MODULES"]).MODULES)
REFERENCE_NAMES = sorted({getattr(f, "__name__", kind) for kind, f in STAND_INS.factories.items()}
                         | {"reference_compute_loss", "reference_padding_mask", "reference_causal_mask", "attention",
                            "StandInServer"})

CELLS = [{"grade_id": "student", "source": '''
import gc, importlib, json, sys, types
import torch, torch.nn as nn


class Wrapper(nn.Module):
    """A student's model with a sublayer the tests replace by a stand-in."""
    def __init__(self, dim):
        super().__init__()
        self.inner = nn.Linear(dim, dim)
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return self.inner(x * self.scale) * 2


def apply(function, *args):
    return function(*args)


def train_steps(model, x, steps):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with torch.enable_grad():
        for _ in range(steps):
            loss = model(x).pow(2).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


KEPT = []


def keep(value):
    KEPT.append(value)
    return 0


def call_kept(x):
    return KEPT[-1](x)


def reach_references(holding, names, files):
    """Every route to the grader's references a student might take, while a shell is alive: what it found."""
    found = {}
    for route in ("stand_ins", "autograder.kit.stand_ins", "autograder.kit.stand_ins.transformer", "autograder.kit.stand_ins.remote",
                  "autograder.sandbox.stand_ins"):
        try:
            importlib.import_module(route)
            found[route] = "imported"
        except BaseException:
            pass
    found.update({m: "in sys.modules" for m in list(sys.modules) if "stand_ins" in m})
    for obj in gc.get_objects():
        module = getattr(obj, "__module__", None) if isinstance(obj, (type, types.FunctionType)) else None
        module = module if isinstance(module, str) else ""
        if isinstance(obj, (type, types.FunctionType)) and ("stand_ins" in module or module.startswith("autograder")
                                                             or (obj.__name__ in names and module == "__student__")):
            found[obj.__name__] = f"gc: {module}"
        if isinstance(obj, types.CodeType) and "stand_ins" in obj.co_filename:
            found[obj.co_filename] = "gc: code"
    for path in files:
        try:
            open(path).close()
            found[path] = "opened"
        except OSError:
            pass
    for part in holding.modules():  # the shell: parameters and its own small class, no reference code
        if type(part).__name__ != "RemoteModule":
            found[type(part).__name__] = "part of the shell"
    return found
'''}]


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    sandbox = Sandbox(CELLS, SandboxPolicy(threads=1), tmp_path_factory.mktemp("logs") / "worker.log")
    sandbox.start(timeout=120)
    yield sandbox
    sandbox.close()


def ask(sandbox: Sandbox, server: StandInServer, function: dict, *args, backward=None, **kwargs):
    """One request through `server`, as StudentCode sends it: (reply, CallResult or None, the tensors sent)."""
    header, tensors, marked = call_request(function, args, kwargs, backward)
    header = server.prepare(header, tensors)
    try:
        reply, out = sandbox.request(header, tensors, timeout=60, stand_ins=server)
    finally:
        server.finish()
    return reply, (call_result(reply, out, marked) if reply.get("ok") else None), tensors


def test_shell_gives_the_stand_ins_values_and_gradients(box):
    torch.manual_seed(0)
    inner = TorchMLP(4, 8)
    scale = torch.rand(4) + 0.5
    x, g = torch.randn(3, 4), torch.randn(3, 4)
    weights = {"scale": scale, **{f"inner.{k}": v for k, v in inner.state_dict().items()}}
    target = module(call("Wrapper", 4), weights=weights, substitutes={"inner": stand_in("torch_mlp", d_model=4, d_ff=8)},
                    grads="model")
    reply, result, _ = ask(box, StandInServer(), target, needs_grad(x), backward=((), g))
    assert reply["ok"], reply
    x_ref, scale_ref = x.clone().requires_grad_(), scale.clone().requires_grad_()
    expected = inner(x_ref * scale_ref) * 2
    expected.backward(g)
    torch.testing.assert_close(result.value, expected.detach())
    torch.testing.assert_close(result.input_grads[0], x_ref.grad)
    torch.testing.assert_close(result.param_grads["model"]["scale"], scale_ref.grad)
    torch.testing.assert_close(result.param_grads["model"]["inner.fc1.weight"], inner.fc1.weight.grad)


def test_optimizer_steps_the_shells_parameters(box):
    server, x = StandInServer(), torch.randn(5, 4)
    reply, result, sent = ask(box, server, name("train_steps"), stand_in("torch_mlp", d_model=4, d_ff=8), x, 3)
    assert reply["ok"], reply
    local = TorchMLP(4, 8)
    local.load_state_dict({k.split(".", 2)[2]: v for k, v in sent.items() if k.startswith("remote.")})
    optimizer = torch.optim.SGD(local.parameters(), lr=0.1)
    for _ in range(3):
        loss = local(x).pow(2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for key, value in local.state_dict().items():
        torch.testing.assert_close(result.value[key], value)


def test_function_stand_in_gives_the_reference_loss(box):
    prediction, label = torch.randn(6, 2), torch.tensor([0, 1, 1, 0, 1, 1])
    reply, result, _ = ask(box, StandInServer(), name("apply"), stand_in("reference_compute_loss"), prediction, label)
    assert reply["ok"], reply
    loss, correct = reference_compute_loss(prediction, label)
    torch.testing.assert_close(result.value[0], loss)
    assert result.value[1] == correct


def test_a_shell_kept_from_another_request_is_refused(box):
    server = StandInServer()
    reply, _, _ = ask(box, server, name("keep"), stand_in("torch_mlp", d_model=4, d_ff=8))
    assert reply["ok"], reply
    reply, _, _ = ask(box, server, name("call_kept"), torch.randn(2, 4))
    assert not reply["ok"] and "belongs to another test" in reply["error"]["message"], reply
    assert box.alive


def test_a_kept_module_keeps_its_stand_ins(box):
    server, x = StandInServer(), torch.randn(2, 4)
    target = module(call("Wrapper", 4), substitutes={"inner": stand_in("torch_mlp", d_model=4, d_ff=8)}, keep_as="kept")
    first, result, _ = ask(box, server, target, x)
    again, repeated, _ = ask(box, server, handle("kept"), x)
    assert first["ok"] and again["ok"], (first, again)
    torch.testing.assert_close(repeated.value, result.value)


def test_wrong_arguments_are_the_students_error(box):
    reply, _, _ = ask(box, StandInServer(), name("apply"), stand_in("torch_mlp", d_model=4, d_ff=8), torch.randn(2, 5))
    assert not reply["ok"] and reply["error"]["type"] == "StandInError", reply
    assert box.alive


def test_a_call_too_large_for_the_graders_memory_is_refused(box, monkeypatch):
    monkeypatch.setattr("autograder.kit.stand_ins.remote.MAX_CALL_ELEMENTS", 1000)
    reply, _, _ = ask(box, StandInServer(), name("apply"), stand_in("torch_mlp", d_model=4, d_ff=8), torch.randn(500, 4))
    assert not reply["ok"] and "more than the 1,000 allowed" in reply["error"]["message"], reply
    assert box.alive


@pytest.mark.parametrize("call_", [
    "not a call", {"op": "call", "id": 12345}, {"op": "unknown"}, {"op": "backward", "call": 7},
])
def test_forged_calls_are_refused(call_):
    reply, out = StandInServer().answer(call_, {})
    assert reply["ok"] is False and out == {}


def test_only_listed_methods_and_exact_parameters_are_accepted():
    server = StandInServer()
    header = server.prepare({"function": stand_in("torch_mlp", d_model=4, d_ff=8)}, tensors := {})
    ident = header["function"]["$remote"]
    server.allowed = {ident}
    params = list(header["function"]["parameters"])
    base = {"op": "call", "id": ident, "path": "", "args": {"$seq": [{"$seq": [{"$t": 0}]}, {"$map": {}}]},
            "buffers": [], "grad": False, "training": False, "count": 1 + len(params)}
    inputs = {"in.0": torch.randn(2, 4), **{f"in.{i + 1}": tensors[f"remote.{ident}.{p}"] for i, p in enumerate(params)}}
    assert server.answer({**base, "method": "forward", "params": params}, inputs)[0]["ok"]
    for method in ("state_dict", "__init__", "load_state_dict", "_apply"):
        assert not server.answer({**base, "method": method, "params": params}, inputs)[0]["ok"]
    assert not server.answer({**base, "method": "forward", "params": params[:-1] + params[:1]}, inputs)[0]["ok"]


@pytest.mark.parametrize("assignment", list_assignments())
def test_the_worker_cannot_reach_a_reference(assignment, tmp_path):
    """For every assignment's worker (its preloaded libraries), while a shell is alive in the same request: no
    reference can be imported, found through gc or sys.modules, or opened."""
    policy = SandboxPolicy(threads=1, preload_modules=list(load_assignment(assignment).spec.preload_modules))
    with Sandbox(CELLS, policy, tmp_path / "worker.log") as sandbox:
        sandbox.start(timeout=120)
        reply, result, _ = ask(sandbox, StandInServer(), name("reach_references"),
                               stand_in("torch_mha", d_model=4, num_heads=2), REFERENCE_NAMES, STAND_IN_FILES)
    assert reply["ok"], reply
    assert result.value == {}, json.dumps(result.value, indent=1)


def test_a_kind_names_either_a_stand_in_or_a_driver():
    """`stand_in(kind)` is built by the grader when the kind is a stand-in, by the worker when it is a driver."""
    from autograder.sandbox.harness import HELPERS

    assert not set(STAND_INS.factories) & set(HELPERS.factories)

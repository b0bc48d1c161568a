"""The forbidden-API tripwires (autograder/sandbox/tripwires.py) against evasions, in a real sandbox.

Every evasion below reaches a forbidden API by some other Python path than its plain name; each must fail
in the worker with ForbiddenAPIError and be reported in forbidden_calls. The grader's own stand-ins, which
use the same APIs inside a student's module, must keep working: they run on the grader's side (the worker holds a
shell), so nothing in the worker is trusted with a forbidden API, and no route through the grader's drivers
(autograder/sandbox/harness/) or a forged file name makes a student's call the grader's.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from autograder.sandbox import Sandbox, SandboxPolicy
from autograder.kit.requests import stand_in
from layer_requests import send_layer

SDPA = "torch.nn.functional.scaled_dot_product_attention"
MHA = "torch.nn.MultiheadAttention"
LSTM = "torch.nn.LSTM"
FORBIDDEN = [SDPA, "torch.nn.functional.multi_head_attention_forward", MHA, LSTM, "torch.lstm"]
TAMPERED = "tampered with the grader's checks"

STUDENT = '''
import importlib, sys
import torch, torch.nn as nn
import torch.nn.functional as F

_name = "scaled_dot_" + "product_attention"
_sdpa = getattr(F, _name)


def _saved(x, attend=F.scaled_dot_product_attention):
    return attend(x, x, x)


def _disabled(x):
    with torch._C.DisableTorchFunction():
        return F.scaled_dot_product_attention(x, x, x)


def _through_a_grader_driver(x):
    run = sys.modules["harness"].lookup("train_mode_forward")(nn.MultiheadAttention(4, 2, batch_first=True))
    return run(x[0], x[0], x[0])["output"][0]


def _popped(x):
    torch._C._pop_torch_function_stack()
    torch._C._pop_torch_dispatch_stack(None)
    return F.scaled_dot_product_attention(x, x, x)


def _popped_python(x):
    from torch.utils._python_dispatch import _pop_mode
    from torch.overrides import _pop_mode as _pop_function_mode
    _pop_mode()
    _pop_function_mode()
    return F.scaled_dot_product_attention(x, x, x)


def _lstm(x):
    return getattr(nn, "LS" + "TM")(4, 4, batch_first=True)(x[0])[0]


def _lstm_op(x):
    B, T, D = x[0].shape
    h = torch.zeros(1, B, 4)
    return torch.ops.aten.lstm(x[0], (h, h), [torch.randn(16, 4), torch.randn(16, 4)], False, 1, 0.0, False, False, True)[0]


def _mha_forward_no_init(x):
    m = nn.MultiheadAttention.__new__(nn.MultiheadAttention)
    nn.Module.__init__(m)
    m.__dict__.update(embed_dim=4, kdim=4, vdim=4, _qkv_same_embed_dim=True, num_heads=2, dropout=0.0,
                      batch_first=True, head_dim=2, bias_k=None, bias_v=None, add_zero_attn=False,
                      in_proj_weight=nn.Parameter(torch.randn(12, 4)), in_proj_bias=nn.Parameter(torch.zeros(12)),
                      q_proj_weight=None, k_proj_weight=None, v_proj_weight=None,
                      out_proj=nn.Linear(4, 4))
    return m(x[0], x[0], x[0], need_weights=False)[0]


EVASIONS = {
    "plain": lambda x: F.scaled_dot_product_attention(x, x, x),
    "wrapped": lambda x: getattr(_sdpa, "__wrapped__", _sdpa)(x, x, x),
    "getattr_built_string": lambda x: getattr(F, "scaled_dot_" + "product_attention")(x, x, x),
    "importlib": lambda x: importlib.import_module("torch.nn.functional").scaled_dot_product_attention(x, x, x),
    "sys_modules": lambda x: sys.modules["torch.nn.functional"].scaled_dot_product_attention(x, x, x),
    "torch_ops": lambda x: torch.ops.aten.scaled_dot_product_attention(x, x, x),
    "torch_ops_kernel": lambda x: torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(x, x, x)[0],
    "torch_C_nn": lambda x: torch._C._nn.scaled_dot_product_attention(x, x, x),
    "default_argument": _saved,
    "torch_function_disabled": _disabled,
    "mha_forward": lambda x: F.multi_head_attention_forward(
        x[0], x[0], x[0], 4, 2, torch.randn(12, 4), torch.zeros(12), None, None, False, 0.0,
        torch.randn(4, 4), torch.zeros(4), need_weights=False)[0],
    "mha_class": lambda x: nn.MultiheadAttention(4, 2)(x[0], x[0], x[0])[0],
    "mha_without_init": _mha_forward_no_init,
    "through_a_grader_driver": _through_a_grader_driver,
    "lstm_class": _lstm,
    "lstm_op": _lstm_op,
    "forged_file_name": lambda x: forged(x),
}

exec(compile("def forged(x):\\n    return F.scaled_dot_product_attention(x, x, x)\\n",
             sys.modules["harness"].__file__, "exec"), globals())


class Evade(nn.Module):
    def __init__(self, how):
        super().__init__()
        self.how = how

    def forward(self, x):
        return EVASIONS[self.how](x)


def _check_replaced(x):
    sys.modules["tripwires"]._check = lambda label: None
    return F.scaled_dot_product_attention(x, x, x)


def _tables_emptied(x):
    sys.modules["tripwires"]._config["names"].clear()
    sys.modules["tripwires"]._config["prefixes"].clear()
    return F.scaled_dot_product_attention(x, x, x)


class Popped(nn.Module):
    def __init__(self, how):
        super().__init__()
        self.how = {"pop": _popped, "pop_python": _popped_python, "replace_check": _check_replaced,
                    "empty_tables": _tables_emptied}[how]

    def forward(self, x):
        return self.how(x)


class Holder(nn.Module):
    """The grader replaces `attn` with its torch_attention stand-in; `how` is what forward does with it."""
    def __init__(self, how="use"):
        super().__init__()
        self.attn, self.how = nn.Identity(), how

    def forward(self, x):
        sys.setprofile(None)  # no effect: the tripwires do not depend on a profiler
        if self.how == "call_hook":  # a harmless wrapper around every module call (logging, hooks)
            original = nn.Module.__call__

            def logged(module, *args, **kwargs):
                return original(module, *args, **kwargs)

            nn.Module.__call__ = logged
            try:
                return self.attn(x)
            finally:
                nn.Module.__call__ = original
        if self.how == "patched_forward":  # the shell's class given a forward of the student's, under a grader file name
            exec(compile("def forward(self, x):\\n    return F.scaled_dot_product_attention(x, x, x)\\n",
                         sys.modules["remote"].__file__, "exec"), globals())
            type(self.attn).forward, original = forward, type(self.attn).forward
            try:
                return self.attn(x)
            finally:
                type(self.attn).forward = original
        return self.attn(x)
'''

CELLS = [{"grade_id": "student", "source": STUDENT}]
SUBSTITUTES = {"attn": stand_in("torch_attention", d_model=8, num_heads=2)}


def call(name, *args):
    return {"$call": name, "args": list(args), "kwargs": {}}


def run(box: Sandbox, build: dict, x: torch.Tensor, **extra) -> tuple[dict, dict]:
    return send_layer(box, build, x, **extra)


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    policy = SandboxPolicy(forbidden_attributes=FORBIDDEN, forbidden_modules=["torchvision.models"],
                           preload_modules=["torchvision"])  # as the image assignments' specs
    sandbox = Sandbox(CELLS, policy, tmp_path_factory.mktemp("logs") / "worker.log")
    load = sandbox.start(timeout=120)
    assert load["cell_errors"] == {}, load
    yield sandbox
    sandbox.close()


EXPECTED = {"mha_class": MHA, "mha_without_init": "torch.nn.functional.multi_head_attention_forward",
            "mha_forward": "torch.nn.functional.multi_head_attention_forward",
            "through_a_grader_driver": MHA, "lstm_class": LSTM, "lstm_op": LSTM}  # (the first forbidden API that lowers to aten.lstm)


@pytest.mark.parametrize("how", ["plain", "wrapped", "getattr_built_string", "importlib", "sys_modules", "torch_ops",
                                 "torch_ops_kernel", "torch_C_nn", "default_argument", "torch_function_disabled",
                                 "mha_forward", "mha_class", "mha_without_init", "through_a_grader_driver",
                                 "lstm_class", "lstm_op", "forged_file_name"])
def test_evasion_is_caught(box, how):
    reply, out = run(box, call("Evade", how), torch.randn(1, 2, 3, 4))
    assert not reply["ok"] and out == {}, reply
    assert reply["error"]["type"] == "ForbiddenAPIError", reply["error"]
    label = EXPECTED.get(how, SDPA)
    assert label in reply["error"]["message"] and label in reply["forbidden_calls"]


def test_forged_function_called_by_the_grader_is_caught(box):
    header = {"cmd": "call", "function": {"$name": "forged"}, "args": [{"$tensor": "x"}], "kwargs": {}}
    reply, _ = box.request(header, {"x": torch.randn(1, 2, 3, 4)}, timeout=30)
    assert not reply["ok"] and reply["error"]["type"] == "ForbiddenAPIError", reply


@pytest.mark.parametrize("how", ["pop", "pop_python", "replace_check", "empty_tables"])
def test_removing_the_checks_fails_the_request(box, how):
    reply, _ = run(box, call("Popped", how), torch.randn(1, 2, 3, 4))
    assert not reply["ok"] and reply["error"]["type"] == "ForbiddenAPIError", reply
    assert TAMPERED in reply["forbidden_calls"]
    reply, _ = run(box, call("Evade", "plain"), torch.randn(1, 2, 3, 4))
    assert reply["error"]["type"] == "ForbiddenAPIError", reply  # the next request is guarded again


@pytest.mark.parametrize("how", ["patched_forward"])
def test_student_code_on_the_graders_shell_is_caught(box, how):
    reply, _ = run(box, call("Holder", how), torch.randn(2, 5, 8), substitutes=SUBSTITUTES)
    assert not reply["ok"] and reply["error"]["type"] == "ForbiddenAPIError", reply


@pytest.mark.parametrize("how", ["use", "call_hook"])
@pytest.mark.parametrize("grad", [False, True], ids=["fast_path", "with_backward"])
def test_graders_stand_in_inside_a_student_module_is_allowed(box, grad, how):
    """Also when the student's code wraps nn.Module.__call__ around it: the stand-in's torch layer is the grader's."""
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    x = torch.randn(2, 5, 8)
    tensors = {f"weight.attn.mha.{k}": v for k, v in mha.state_dict().items()}
    if grad:
        tensors["grad_output"] = torch.ones(2, 5, 8)
    reply, out = run(box, call("Holder", how), x, tensors=tensors, substitutes=SUBSTITUTES)
    assert reply["ok"], reply
    torch.testing.assert_close(out["output"], mha(x, x, x, need_weights=False)[0].detach())
    assert not grad or out["input_grad.0"].abs().sum() > 0


def test_the_tripwires_do_not_load_torchs_compiler():
    """A dispatch mode's __torch_dispatch__ is wrapped in torch._disable_dynamo by default, whose first call imports
    torch._dynamo and torch._inductor (about 2 CPU s in every worker); the tripwire opts out."""
    import subprocess
    import sys

    from autograder.assignments import PROJECT_ROOT

    code = ("import sys, torch\nfrom autograder.sandbox import tripwires\n"
            f"tripwires.install([{SDPA!r}], [])\n"
            "with tripwires.guarding():\n    torch.nn.Linear(3, 2)(torch.ones(4, 3)).sum().backward()\n"
            "print('torch._dynamo' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert run.stdout.strip() == "False", run.stderr[-2000:]

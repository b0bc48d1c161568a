"""Tests for the grading sandbox (autograder/sandbox), driven directly with small hand-written cells.

Starting a worker costs a few seconds (it imports torch), so most tests share one module-scoped sandbox;
the tests that kill the worker (timeout, exit, protocol abuse) start it again afterwards.

Three layers keep student code in: bubblewrap's allow-list view of the machine with an unprivileged uid,
the worker's seccomp filter, and its Python audit hook. The `isolated` tests switch the audit hook off
(SandboxPolicy.audit_hook=False, a test-only setting) to show that bubblewrap and seccomp hold on their
own; they are skipped, saying why, on machines without bubblewrap (CI installs it, see .ci/run). The `uid_*` tests
check the second backend, for hosts without user namespaces, forced as `grade --sandbox uid` forces it, in a worker
started by tests/uid_probes.py on a host made container-like by tests/container_like.py.

Hostile probes here are canaries: they write and read only files this test module created, so they are
harmless even if the sandbox failed.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pickle
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from autograder.sandbox import (PROJECT_ROOT, WORKER_UID_BASE, Sandbox, SandboxCrashed, SandboxPolicy, SandboxTimeout,
                                WorkerTemplate, bwrap_problem, needed_preloads, template_problem, worker_view)
from autograder.kit.requests import call as judge_call
from autograder.kit.requests import call_request, call_result, module, name, needs_grad, stand_in
from autograder.sandbox.protocol import ProtocolError, decode_payload, encode
from layer_requests import send_layer

START_TIMEOUT = 120.0
CALL_TIMEOUT = 30.0
HIDDEN_FILE = PROJECT_ROOT / "autograder" / "hidden_tests" / "test_vit.py"
SDPA = "torch.nn.functional.scaled_dot_product_attention"

SETUP = "import json, os, socket, sys\nimport torch, torch.nn as nn\nimport torch.nn.functional as F\n"

# Cells shared by every sandbox here. `Call(fn)` is a module whose forward runs the notebook function `fn`
# and sends its (JSON-able) result back as bytes in a uint8 tensor: a probe of what the worker can see/do.
PROBES = '''
class Call(nn.Module):
    def __init__(self, fn, *args):
        super().__init__()
        self.fn, self.args = fn, args

    def forward(self):
        result = globals()[self.fn](*self.args)
        return torch.tensor(list(json.dumps(result).encode()), dtype=torch.uint8)


def scaled_sum_and_facts(x, labels, scale=1.0):
    return (x * scale).sum(), {"count": len(labels), "labels": torch.tensor(labels), "first": labels[0]}


class Scale(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.w = nn.Parameter(torch.ones(n))

    def forward(self, x):
        return x * self.w


def apply_model(model, x):
    return model(x)


def attempt(action):
    """The outcome of action(): ["ok", value] or ["error", exception type, message]."""
    try:
        return ["ok", action()]
    except Exception as exc:
        return ["error", type(exc).__name__, str(exc)]


def read_file(path):
    return attempt(lambda: open(path).read()[:100])


def list_dir(path):
    return attempt(lambda: sorted(os.listdir(path)))


def connect(port):
    def action():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(3)
            s.connect(("127.0.0.1", port))
        return "connected"
    return attempt(action)


def make_socket(family=socket.AF_INET, kind=socket.SOCK_STREAM):
    def action():
        socket.socket(family, kind).close()
        return "created"
    return attempt(action)


def libc_socket(family, kind):
    """socket(2) through libc, past Python's socket module and any hook on it: the descriptor, or -1."""
    import ctypes
    fd = ctypes.CDLL(None).socket(family, kind, 0)
    if fd >= 0:
        os.close(fd)
    return fd


def each_process(read):
    """[pid, read(its /proc folder)] for every process visible in /proc that could be read."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                out.append([int(name), read(f"/proc/{name}")])
            except (OSError, StopIteration):
                pass
    return out


def seccomp_modes():
    """[pid, the Seccomp line of its status] for every process visible in /proc."""
    def mode(folder):
        with open(f"{folder}/status") as f:
            return next(line.split()[1] for line in f if line.startswith("Seccomp:"))
    return each_process(mode)


def processes():
    """Every process visible in /proc: [pid, command line]."""
    def cmdline(folder):
        with open(f"{folder}/cmdline", "rb") as f:
            return f.read().replace(b"\\0", b" ").decode(errors="replace")
    return each_process(cmdline)


def my_pid():
    return os.getpid()


def open_descriptors():
    """What each descriptor open in this process is, sorted (pipes and sockets without their inode numbers)."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            found.append(os.readlink(f"/proc/self/fd/{name}").split(":")[0])
        except OSError:
            continue  # the listing's own descriptor, closed already
    return sorted(found)
'''

USER_CELLS = '''
class Affine(nn.Module):
    def __init__(self, dim, scale):
        super().__init__()
        self.lin = nn.Linear(dim, dim)
        self.scale = scale

    def forward(self, x):
        return self.lin(x) * self.scale


class Forever(nn.Module):
    def forward(self, x):
        while True:
            pass


class Exit(nn.Module):
    def forward(self, x):
        os._exit(0)


class Hog(nn.Module):
    def forward(self, x):
        big = torch.ones(6 * 2**30, dtype=torch.uint8)  # 6 GB, every page touched: over the 4096 MB cap
        return x + big[0]


class Chatty(nn.Module):
    """Correct (x + 1), after printing `megabytes` MB."""
    def __init__(self, megabytes):
        super().__init__()
        self.megabytes = megabytes

    def forward(self, x):
        line = "chatter " * 127 + "\\n"  # 1 KiB
        for _ in range(self.megabytes * 1024):
            sys.stdout.write(line)
        sys.stdout.flush()
        return x + 1


class Garbage(nn.Module):
    """Writes straight to the response pipe, bypassing the protocol."""
    def __init__(self, kind):
        super().__init__()
        self.kind = kind

    def forward(self, x):
        fd = int(sys.argv[2])
        if self.kind == "bytes":
            os.write(fd, b"\\xff" * 100)
        else:  # a well-formed header announcing a pickle payload
            payload = bytes.fromhex(self.kind)
            head = json.dumps({"ok": True, "payload": len(payload)}).encode()
            os.write(fd, len(head).to_bytes(4, "little") + head + payload)
        return x


class Noisy(nn.Module):
    def forward(self, x):
        print("NOISE-FORWARD-STDOUT", flush=True)
        print("NOISE-FORWARD-STDERR", file=sys.stderr, flush=True)
        os.write(1, b"NOISE-FD1\\n")
        os.write(2, b"NOISE-FD2\\n")
        return x + 1


class StudentSDPA(nn.Module):
    def forward(self, x):
        return F.scaled_dot_product_attention(x, x, x)


_guarded_callers = []


def _profile(frame, event, arg):
    if event == "call" and frame.f_code.co_name == "guarded":  # the tripwire wrapper in worker.py
        _guarded_callers.append(frame.f_back.f_code.co_filename)


class Holder(nn.Module):
    """Student module whose `attn` the grader replaces with a torch stand-in (substitutes)."""
    def __init__(self):
        super().__init__()
        self.attn = nn.Identity()

    def forward(self, x):
        sys.setprofile(_profile)
        try:
            return self.attn(x)
        finally:
            sys.setprofile(None)


def guarded_callers():
    return _guarded_callers
'''

CELLS = [
    {"grade_id": "setup", "source": SETUP},
    {"grade_id": "probes", "source": PROBES},
    {"grade_id": "user", "source": USER_CELLS},
    {"grade_id": "noise_at_load", "source": 'print("NOISE-LOAD-STDOUT", flush=True)\n'
                                              'print("NOISE-LOAD-STDERR", file=sys.stderr, flush=True)'},
    {"grade_id": "import_models", "source": "import torchvision.models"},
    {"grade_id": "from_torchvision", "source": "from torchvision import models"},
]


def call(name, *args, **kwargs):
    return {"$call": name, "args": list(args), "kwargs": kwargs}


def run(sandbox: Sandbox, build: dict, *inputs: torch.Tensor, timeout: float = CALL_TIMEOUT, **extra) -> tuple[dict, dict]:
    return send_layer(sandbox, build, *inputs, timeout=timeout, **extra)


def probe(sandbox: Sandbox, fn: str, *args):
    reply, out = run(sandbox, call("Call", fn, *args))
    assert reply["ok"], reply
    return json.loads(bytes(out["output"].to(torch.uint8).tolist()))


def ensure_started(sandbox: Sandbox) -> Sandbox:
    if not sandbox.alive:
        sandbox.load_reply = sandbox.start(timeout=START_TIMEOUT)
    return sandbox


@pytest.fixture(scope="module")
def listener():
    """A TCP server on 127.0.0.1 in the test process: reachable from here, it must not be from the worker."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.5)
    yield server
    server.close()


def assert_no_connection_reached(server: socket.socket) -> None:
    try:
        conn, _ = server.accept()
    except (socket.timeout, TimeoutError):
        return
    conn.close()
    pytest.fail("the worker's connection reached the test process's server")


@pytest.fixture(scope="module")
def hidden_dir(tmp_path_factory) -> Path:
    """A folder named in policy.hide (like the submissions folder), with a secret in it."""
    folder = tmp_path_factory.mktemp("submissions")
    (folder / "secret.txt").write_text("another student's notebook")
    return folder


@pytest.fixture(scope="module", params=["started", "forked"])
def launch(request, tmp_path_factory):
    """How the module's workers start, each test run both ways: "started" (a new interpreter under bubblewrap, as a
    Sandbox outside a judge server starts it) and "forked" from a worker template (autograder/sandbox/forking.py, as
    a judge server's judges fork it). The template where it can run here, else skipped saying why."""
    if request.param == "started":
        yield None
        return
    problem = bwrap_problem()
    if problem:
        pytest.skip(f"bubblewrap cannot run here ({problem}), so no worker template either")
    template = WorkerTemplate(tmp_path_factory.mktemp("template") / "template.log")
    problem = template_problem(template)
    if problem:
        template.close()
        pytest.skip(f"workers cannot be forked from a template here: {problem}")
    yield template
    template.close()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory, hidden_dir, launch):
    policy = SandboxPolicy(memory_mb=4096, threads=1, forbidden_attributes=[SDPA],
                           forbidden_modules=["torchvision.models", "timm"], hide=[str(hidden_dir)],
                           preload_modules=["torchvision"])  # as the image assignments' specs
    box = Sandbox(CELLS, policy, tmp_path_factory.mktemp("logs") / "worker.log", template=launch)
    ensure_started(box)
    assert box.forked == (launch is not None), box.isolation
    yield box
    box.close()


@pytest.fixture
def live(sandbox, launch):
    """The module's worker, started again where an earlier test ended it: forked again from the template, which a
    worker's crash, timeout or kill leaves running."""
    box = ensure_started(sandbox)
    assert box.forked == (launch is not None), box.isolation
    return box


# -- normal operation ------------------------------------------------------------------------------------
def test_load_runs_cells(live):
    errors = live.load_reply["cell_errors"]
    assert set(errors) <= {"import_models", "from_torchvision"}, errors  # everything else ran cleanly


LOADED_CELL = {"grade_id": "loaded", "source": "import sys\n\ndef loaded(name):\n    return name in sys.modules\n"}
TORCHVISION_CELL = {"grade_id": "boxes", "source": (
    "def nms_kept(boxes, scores):\n"
    "    import torchvision.ops  # compiled ops: loaded before the audit hook, which refuses ctypes.dlopen\n"
    "    return torchvision.ops.nms(boxes, scores, 0.5)\n")}


@pytest.mark.parametrize("cells, loaded", [([LOADED_CELL], False), ([LOADED_CELL, TORCHVISION_CELL], True)],
                         ids=["no-cell-names-it", "a-cell-names-it"])
def test_an_assignments_library_is_preloaded_only_where_a_cell_names_it(tmp_path, cells, loaded):
    """The spec's preload_modules (`preload_if_used`): torchvision is imported before the audit hook only in a worker
    whose cells name it (then its compiled ops work), and is not loaded at all in one whose cells never do."""
    policy = SandboxPolicy(threads=1, forbidden_attributes=[SDPA], preload_if_used=["torchvision"])
    assert needed_preloads(policy, cells) == (["torchvision"] if loaded else [])
    assert needed_preloads(dataclasses.replace(policy, forbidden_attributes=["torchvision.models.resnet18"]),
                           cells) == ["torchvision"]  # the tripwires guard a forbidden API where it lives
    with Sandbox(cells, policy, tmp_path / "worker.log") as box:
        box.start(timeout=START_TIMEOUT)
        header, tensors, marked = call_request(name("loaded"), ("torchvision",), {}, backward=None)
        reply, out = box.request(header, tensors, timeout=CALL_TIMEOUT)
        assert reply["ok"], reply
        assert call_result(reply, out, marked).value is loaded
        if loaded:
            boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
            header, tensors, marked = call_request(name("nms_kept"), (boxes, torch.tensor([0.9, 0.8, 0.7])), {},
                                                   backward=None)
            reply, out = box.request(header, tensors, timeout=CALL_TIMEOUT)
            assert reply["ok"], reply
            assert call_result(reply, out, marked).value.tolist() == [0, 2]


def test_normal_call_returns_the_right_tensor(live):
    torch.manual_seed(0)
    ref = nn.Linear(4, 4)
    x = torch.randn(3, 4)
    weights = {f"weight.lin.{k}": v for k, v in ref.state_dict().items()}
    reply, out = run(live, call("Affine", 4, 2.5), x, tensors=weights, exact_weights=True)
    assert reply["ok"], reply
    assert reply["param_shapes"] == {"lin.weight": [4, 4], "lin.bias": [4]}
    torch.testing.assert_close(out["output"], ref(x).detach() * 2.5)
    assert live.alive


def test_backward_returns_gradients(live):
    torch.manual_seed(1)
    ref = nn.Linear(4, 4)
    x = torch.randn(2, 4)
    g = torch.randn(2, 4)
    weights = {f"weight.lin.{k}": v.detach() for k, v in ref.state_dict().items()}
    reply, out = run(live, call("Affine", 4, 3.0), x, tensors={**weights, "grad_output": g})
    assert reply["ok"], reply
    xr = x.clone().requires_grad_(True)
    (ref(xr) * 3.0).backward(g)
    torch.testing.assert_close(out["input_grad.0"], xr.grad)
    torch.testing.assert_close(out["param_grad.lin.weight"], ref.weight.grad)


def test_invoke_a_function_with_nested_values_and_gradients(live):
    """The generic `call` request (StudentCode.invoke): nested arguments, tuple/dict results, input gradients."""
    x = torch.randn(2, 3)
    header, tensors, marked = call_request(name("scaled_sum_and_facts"), (needs_grad(x), [3, 1, 2]), {"scale": 2.0},
                                           backward=((0,), None))
    reply, out = live.request(header, tensors, timeout=CALL_TIMEOUT)
    assert reply["ok"], reply
    result = call_result(reply, out, marked)
    total, facts = result.value
    torch.testing.assert_close(total, (2 * x).sum())
    assert facts["count"] == 3 and facts["first"] == 3
    assert facts["labels"].dtype == torch.int64 and facts["labels"].tolist() == [3, 1, 2]
    torch.testing.assert_close(result.input_grads[0], torch.full_like(x, 2.0))


def test_invoke_with_a_module_argument_returns_its_parameter_gradients(live):
    x, w = torch.randn(4), torch.randn(4)
    model = module(judge_call("Scale", 4), weights={"w": w}, grads="scale")
    header, tensors, marked = call_request(name("apply_model"), (model, x), {}, backward=((), torch.ones(4)))
    reply, out = live.request(header, tensors, timeout=CALL_TIMEOUT)
    assert reply["ok"], reply
    result = call_result(reply, out, marked)
    torch.testing.assert_close(result.value, x * w)
    torch.testing.assert_close(result.param_grads["scale"]["w"], x)


def test_missing_name_is_a_student_error(live):
    reply, _ = run(live, call("NoSuchModule"), torch.zeros(1))
    assert not reply["ok"]
    assert reply["error"]["type"] == "StudentError" and "NoSuchModule" in reply["error"]["message"]
    assert live.alive


# -- resource limits ---------------------------------------------------------------------------------------
def test_infinite_loop_times_out_and_the_sandbox_restarts(sandbox, launch):
    ensure_started(sandbox)
    started = time.monotonic()
    with pytest.raises(SandboxTimeout):
        run(sandbox, call("Forever"), torch.zeros(1), timeout=2.0)
    assert time.monotonic() - started < 2.0 + 3.0
    assert not sandbox.alive
    load = sandbox.start(timeout=START_TIMEOUT)  # the next start works (forked again: the template outlived the loop)
    assert sandbox.forked == (launch is not None), sandbox.isolation
    sandbox.load_reply = load
    reply, out = run(sandbox, call("Affine", 2, 1.0), torch.zeros(1, 2))
    assert reply["ok"] and out["output"].shape == (1, 2)


def test_os_exit_is_a_crash_that_says_it_exited(sandbox):
    ensure_started(sandbox)
    with pytest.raises(SandboxCrashed, match="exited"):
        run(sandbox, call("Exit"), torch.zeros(1))
    assert not sandbox.alive
    with pytest.raises(SandboxCrashed):  # no silent reuse of a dead worker
        run(sandbox, call("Affine", 2, 1.0), torch.zeros(1, 2))


def test_memory_cap_stops_a_hog(sandbox):
    """With a cgroup the kernel kills the worker at the cap, and the crash says why; with RLIMIT_AS the
    allocation fails inside the worker, which survives. Either way this process is untouched."""
    ensure_started(sandbox)
    if sandbox.memory_cap.startswith("cgroup"):
        with pytest.raises(SandboxCrashed, match="memory cap"):
            run(sandbox, call("Hog"), torch.zeros(1), timeout=60)
        ensure_started(sandbox)
    else:
        reply, out = run(sandbox, call("Hog"), torch.zeros(1), timeout=60)
        assert not reply["ok"] and out == {}
        assert "alloc" in reply["error"]["message"].lower() or reply["error"]["type"] == "MemoryError", reply
    reply, _ = run(sandbox, call("Affine", 2, 1.0), torch.zeros(1, 2))
    assert reply["ok"]


def test_500_megabytes_of_output_are_truncated_not_fatal(live):
    reply, out = run(live, call("Chatty", 500), torch.zeros(2), timeout=120)
    assert reply["ok"], reply
    torch.testing.assert_close(out["output"], torch.ones(2))
    time.sleep(0.5)  # the log thread drains the pipe
    size = live.log_path.stat().st_size
    assert size < 4 * 2**20, f"the log kept {size} bytes"
    assert "output past the first MiB is dropped by the grader" in live.log_path.read_text(errors="replace")
    live.close()  # the next worker starts a fresh log head (what a restart after a timeout does)


# -- isolation (audit hook and, where available, namespaces together) --------------------------------------
def test_no_network_to_localhost(live, listener):
    port = listener.getsockname()[1]
    with socket.create_connection(("127.0.0.1", port), timeout=3):  # reachable from the trusted side
        pass
    listener.accept()[0].close()
    result = probe(live, "connect", port)
    assert result[0] == "error", result
    assert_no_connection_reached(listener)


def test_hidden_tests_cannot_be_read(live):
    assert HIDDEN_FILE.is_file()  # it is there for the trusted side
    result = probe(live, "read_file", str(HIDDEN_FILE))
    assert result[0] == "error" and result[1] in {"PermissionError", "FileNotFoundError"}, result


def test_hidden_folder_cannot_be_read(live, hidden_dir):
    result = probe(live, "read_file", str(hidden_dir / "secret.txt"))
    assert result[0] == "error", result


def test_noise_goes_to_the_log_not_into_replies(live):
    reply, out = run(live, call("Noisy"), torch.zeros(2))
    assert reply["ok"], reply
    torch.testing.assert_close(out["output"], torch.ones(2))
    assert "NOISE" not in json.dumps(reply)
    deadline = time.monotonic() + 5  # a thread drains the worker's output into the log: give it a moment
    while "NOISE-FD2" not in live.log_path.read_text(errors="replace") and time.monotonic() < deadline:
        time.sleep(0.05)
    log = live.log_path.read_text(errors="replace")
    for marker in ("NOISE-LOAD-STDOUT", "NOISE-LOAD-STDERR", "NOISE-FORWARD-STDOUT", "NOISE-FORWARD-STDERR",
                   "NOISE-FD1", "NOISE-FD2"):
        assert marker in log


# -- protocol abuse ------------------------------------------------------------------------------------------
def test_garbage_on_the_response_pipe_is_a_crash(sandbox):
    ensure_started(sandbox)
    with pytest.raises(SandboxCrashed, match="protocol"):
        run(sandbox, call("Garbage", "bytes"), torch.zeros(1))
    assert not sandbox.alive


class _Marker:
    path = ""

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_pickle_on_the_response_pipe_is_never_unpickled(sandbox, tmp_path):
    marker = tmp_path / "unpickled"
    _Marker.path = str(marker)
    evil = pickle.dumps(_Marker())
    ensure_started(sandbox)
    with pytest.raises(SandboxCrashed, match="protocol"):
        run(sandbox, call("Garbage", evil.hex()), torch.zeros(1))
    assert not marker.exists()
    assert not sandbox.alive


def test_decode_payload_rejects_pickle(tmp_path):
    marker = tmp_path / "unpickled"
    _Marker.path = str(marker)
    with pytest.raises(ProtocolError):
        decode_payload(pickle.dumps(_Marker()))
    with pytest.raises(ProtocolError):
        decode_payload(pickle.dumps({"output": torch.zeros(2)}))
    with pytest.raises(ProtocolError):
        decode_payload(b"\xff" * 64)
    assert not marker.exists()
    # and a real frame round-trips
    frame = encode({"ok": True}, {"x": torch.arange(3.0)})
    (length,) = struct.unpack("<I", frame[:4])
    torch.testing.assert_close(decode_payload(frame[4 + length:])["x"], torch.arange(3.0))


# -- forbidden APIs ------------------------------------------------------------------------------------------
def test_forbidden_function_trips_from_student_code_but_not_from_torch(live):
    # nn.MultiheadAttention (the "torch_attention" stand-in) calls scaled_dot_product_attention internally:
    # that is allowed. With a grad_output, grad is on, so MHA takes its Python path through F.
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, batch_first=True)
    x = torch.randn(2, 5, 8)
    weights = {f"weight.attn.mha.{k}": v for k, v in mha.state_dict().items()}
    substitutes = {"attn": stand_in("torch_attention", d_model=8, num_heads=2)}
    reply, out = run(live, call("Holder"), x, substitutes=substitutes,
                     tensors={**weights, "grad_output": torch.ones(2, 5, 8)})
    assert reply["ok"], reply
    torch.testing.assert_close(out["output"], mha(x, x, x, need_weights=False)[0].detach())
    assert SDPA not in reply["forbidden_calls"]  # (a student's sys.setprofile changes nothing: see tests/test_tripwires.py)

    # called straight from a cell: it raises in the worker and is reported
    reply, out = run(live, call("StudentSDPA"), torch.randn(1, 3, 4))
    assert not reply["ok"]
    assert reply["error"]["type"] == "ForbiddenAPIError"
    assert SDPA in reply["forbidden_calls"]
    assert live.alive


def test_forbidden_imports_fail(live):
    errors = live.load_reply["cell_errors"]
    assert errors["import_models"]["type"] == "ImportError"
    assert errors["from_torchvision"]["type"] == "ImportError"
    reply, _ = run(live, call("Affine", 2, 1.0), torch.zeros(1, 2))
    assert "import torchvision.models" in reply["forbidden_calls"]


# -- bubblewrap and seccomp on their own (audit hook off) ----------------------------------------------------
CANARY = "canary: the sandbox must not change this file"

ISOLATION_PROBES = PROBES + '''
import ctypes


def overwrite(path):
    def action():
        with open(path, "w") as f:
            f.write("overwritten by the worker")
        return "written"
    return attempt(action)


def identity():
    return {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": os.getgroups()}


def privileges():
    """The capability sets and the no-new-privileges flag, from /proc/self/status."""
    with open("/proc/self/status") as f:
        return {k: v.strip() for k, _, v in (line.partition(":") for line in f)
                if k in ("CapInh", "CapPrm", "CapEff", "CapAmb", "NoNewPrivs")}


def exists(path):
    return os.path.lexists(path)


def start_process(how):
    if how == "os.fork":
        return attempt(lambda: os.fork())
    if how == "ctypes.fork":
        return ["ok", ctypes.pythonapi.fork()] if False else ["ok", ctypes.CDLL(None).fork()]
    if how == "ctypes.system":
        return ["ok", ctypes.pythonapi.system(b"/bin/sh -c true")]
    if how == "posix_spawn":
        return attempt(lambda: os.posix_spawn(sys.executable, [sys.executable, "-c", "pass"], {}))
    if how == "execv":
        return attempt(lambda: os.execv(sys.executable, [sys.executable, "-c", "pass"]))
    if how == "unshare":
        return ["ok", ctypes.CDLL(None).unshare(0x10000000)]
    raise ValueError(how)
'''


@pytest.fixture(scope="module")
def canaries(tmp_path_factory):
    """Canary files this module creates where a student must not write: the virtualenv's site-packages (the
    trusted judges import from there), the course package, the worker's own code, and a second copy of a
    hidden test outside the checkout. Removed afterwards."""
    import site
    copy_dir = tmp_path_factory.mktemp("second-checkout")
    paths = {
        "site-packages": Path(site.getsitepackages()[0]) / "dlcourse-sandbox-canary.txt",
        "dlcourse": PROJECT_ROOT / "dlcourse" / "sandbox-canary.txt",
        "sandbox code": PROJECT_ROOT / "autograder" / "sandbox" / "sandbox-canary.txt",
        "hidden test copy": copy_dir / "test_vit.py",
        "build folder": PROJECT_ROOT / "build" / "sandbox-tests-canary" / "test_vit.py",  # not test_samples' canary
    }
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(CANARY)
    yield paths
    for path in paths.values():
        path.unlink(missing_ok=True)
    (PROJECT_ROOT / "build" / "sandbox-tests-canary").rmdir()


@pytest.fixture(scope="module")
def isolated(tmp_path_factory, hidden_dir, launch):
    problem = bwrap_problem()
    if problem:
        pytest.skip(f"bubblewrap cannot run here ({problem}): only the audit hook isolates the worker, so the "
                    "bubblewrap layer cannot be tested on its own")
    policy = SandboxPolicy(memory_mb=4096, audit_hook=False, hide=[str(hidden_dir)])
    box = Sandbox([CELLS[0], {"grade_id": "probes", "source": ISOLATION_PROBES}], policy,
                  tmp_path_factory.mktemp("logs-isolated") / "worker.log", template=launch)
    load = box.start(timeout=START_TIMEOUT)
    assert load["cell_errors"] == {}, load
    assert box.isolation.startswith("bubblewrap")
    assert box.forked == (launch is not None), box.isolation
    yield box
    box.close()


def test_isolated_worker_has_no_audit_hook(isolated):
    # Proof that the results below come from bubblewrap and seccomp: with the hook, creating any socket is refused.
    assert probe(isolated, "make_socket", socket.AF_UNIX, socket.SOCK_STREAM) == ["ok", "created"]


def test_isolated_worker_sees_only_the_allow_list(isolated, hidden_dir):
    binds, links = worker_view()
    visible_top = {Path(p).parts[1] for p in binds} | {Path(p).parts[1] for p in links} | {"tmp", "proc", "dev"}
    root = probe(isolated, "list_dir", "/")
    assert root[0] == "ok" and set(root[1]) == visible_top, root
    assert probe(isolated, "list_dir", "/etc")[1] == ["ld.so.cache"]
    for absent in ["/bin/sh", "/usr/bin", "/home", "/root/.ssh", str(PROJECT_ROOT / "source"), str(HIDDEN_FILE),
                   str(PROJECT_ROOT / "release"), str(hidden_dir), str(Path.home())]:
        if absent in {str(Path(b)) for b in binds} or any(Path(b).is_relative_to(absent) for b in binds):
            continue  # a parent folder of an allowed path (e.g. /root holding pyenv's Python) exists, empty but for it
        assert not probe(isolated, "exists", absent), f"{absent} is visible to the worker"
    checkout = probe(isolated, "list_dir", str(PROJECT_ROOT))
    assert checkout[0] == "ok" and set(checkout[1]) <= {"dlcourse", "autograder", ".venv"}, checkout
    assert probe(isolated, "list_dir", str(PROJECT_ROOT / "autograder"))[1] == ["sandbox"]


def test_isolated_worker_cannot_read_a_second_copy_of_the_hidden_tests(isolated, canaries):
    for what in ("hidden test copy", "build folder"):
        result = probe(isolated, "read_file", str(canaries[what]))
        assert result[0] == "error" and result[1] == "FileNotFoundError", (what, result)


def test_isolated_worker_cannot_read_the_dataset_mirror(isolated):
    mirror = os.environ.get("DLCOURSE_DATA_MIRROR")
    if not mirror:
        pytest.skip("no dataset mirror on this machine (DLCOURSE_DATA_MIRROR is unset)")
    assert Path(mirror).is_dir()
    assert not probe(isolated, "exists", mirror)


def test_isolated_worker_cannot_write_what_the_grader_runs(isolated, canaries):
    for what in ("site-packages", "dlcourse", "sandbox code"):
        result = probe(isolated, "overwrite", str(canaries[what]))
        assert result[0] == "error" and result[1] in {"OSError", "PermissionError"}, (what, result)
        assert canaries[what].read_text() == CANARY, f"the worker changed the {what} canary"


def test_isolated_worker_writes_only_its_tmpfs(isolated):
    assert probe(isolated, "overwrite", "/tmp/scratch.txt") == ["ok", "written"]
    for path in ["/scratch.txt", "/etc/passwd", "/usr/lib/scratch.txt", "/dev/scratch", "/proc/scratch"]:
        assert probe(isolated, "overwrite", path)[0] == "error", path


def test_isolated_worker_runs_as_an_unprivileged_user(isolated):
    me = probe(isolated, "identity")
    assert me["uid"] == me["euid"] == 65534 and me["gid"] == 65534, me
    if os.geteuid() == 0:  # outside the sandbox, a uid that owns nothing on the machine
        assert isolated.uid >= WORKER_UID_BASE
        assert f"uid {isolated.uid}" in isolated.isolation


def test_isolated_worker_holds_no_capability(isolated):
    """No capability, even in its own user namespace (a forked worker made that namespace, so held them all, before
    it dropped them), and no way to gain one: no new privileges, no exec anyway."""
    assert probe(isolated, "privileges") == {"CapInh": "0" * 16, "CapPrm": "0" * 16, "CapEff": "0" * 16,
                                             "CapAmb": "0" * 16, "NoNewPrivs": "1"}


@pytest.mark.parametrize("how", ["os.fork", "ctypes.fork", "ctypes.system", "posix_spawn", "execv", "unshare"])
def test_isolated_worker_cannot_start_a_process(isolated, how):
    result = probe(isolated, "start_process", how)
    assert isolated.alive, f"{how} ended the worker"
    if how in ("ctypes.fork", "unshare"):
        assert result == ["ok", -1], result  # the libc call fails
    elif how == "ctypes.system":
        assert result[0] == "ok" and result[1] != 0, result  # the shell never ran
    else:
        assert result[0] == "error" and result[1] in {"PermissionError", "OSError"}, result
    assert "seccomp" in isolated.isolation


def test_isolated_worker_has_no_network(isolated, listener):
    result = probe(isolated, "connect", listener.getsockname()[1])
    assert result[0] == "error" and result[1] == "PermissionError", result  # seccomp refuses the socket (no hook here)
    assert_no_connection_reached(listener)


AF_VSOCK = 40  # not in every Python's socket module


@pytest.mark.parametrize("family,kind", [(socket.AF_INET, socket.SOCK_STREAM), (socket.AF_INET6, socket.SOCK_DGRAM),
                                         (socket.AF_NETLINK, socket.SOCK_RAW), (AF_VSOCK, socket.SOCK_STREAM)],
                         ids=["inet", "inet6", "netlink", "vsock"])
def test_isolated_worker_can_open_no_socket_but_a_unix_one(isolated, family, kind):
    """Only AF_UNIX sockets: vsock reaches the host past the network namespace, netlink the kernel."""
    assert probe(isolated, "libc_socket", family, kind) == -1
    assert probe(isolated, "make_socket", family, kind)[:2] == ["error", "PermissionError"]
    assert probe(isolated, "libc_socket", socket.AF_UNIX, socket.SOCK_STREAM) >= 0


def test_every_process_in_the_sandbox_runs_under_the_seccomp_filter(isolated):
    """The worker is pid 1 of its namespace (bubblewrap --as-pid-1): no bubblewrap init beside it, unfiltered, whose
    memory (/proc/1/mem) the worker could write to start processes; /proc/1 is the worker itself."""
    modes = dict(probe(isolated, "seccomp_modes"))
    assert modes and set(modes.values()) == {"2"}, modes  # 2: a seccomp filter
    assert probe(isolated, "my_pid") == 1


def test_isolated_worker_sees_no_outside_process(isolated):
    """Only itself: not bubblewrap, and a forked worker neither the template nor its own parent."""
    procs = probe(isolated, "processes")
    assert [pid for pid, _ in procs] == [1], procs
    assert probe(isolated, "my_pid") == 1


@pytest.mark.parametrize("launch", ["forked"], indirect=True)  # (a started worker has nothing to inherit)
def test_a_forked_worker_inherits_nothing_of_the_one_before(isolated, launch, tmp_path):
    """A worker forked after another (the next submission) sees neither its /tmp nor any of its descriptors: it has
    only its own, as many as the first (stdin, the output pipe twice, the request and response pipes), though the
    first one's are still open in the grader and its connection in the template."""
    assert probe(isolated, "overwrite", "/tmp/left-by-the-first.txt") == ["ok", "written"]
    first_fds = probe(isolated, "open_descriptors")
    second = Sandbox([CELLS[0], {"grade_id": "probes", "source": ISOLATION_PROBES}], isolated.policy, tmp_path / "second.log",
                     template=launch)
    try:
        assert second.start(timeout=START_TIMEOUT)["cell_errors"] == {}
        assert second.forked and isolated.alive
        assert not probe(second, "exists", "/tmp/left-by-the-first.txt")
        assert probe(second, "open_descriptors") == first_fds == ["/dev/null", *["pipe"] * 4], first_fds
    finally:
        second.close()
    assert isolated.alive, "closing the second worker ended the first"


def test_a_worker_starts_anew_when_its_template_has_ended(tmp_path):
    """A template that died (killed, out of memory) costs time, never a row: the worker is started as a new
    interpreter instead, and the judge's log says why."""
    problem = bwrap_problem()
    if problem:
        pytest.skip(f"bubblewrap cannot run here ({problem}), so no worker template either")
    template = WorkerTemplate(tmp_path / "template.log")
    if not template.limits.groups or template_problem(template):  # (the probe also waits for its imports)
        template.close()
        pytest.skip("no cgroup to find the template's processes in (the grader is not root), or no template here")
    template.limits.kill_all()  # as the kernel's OOM killer would: the template itself, inside the sandbox
    template.process.wait(timeout=30)
    box = Sandbox([CELLS[0]], SandboxPolicy(), tmp_path / "worker.log", template=template)
    try:
        assert box.start(timeout=START_TIMEOUT)["cell_errors"] == {}
        assert box.alive and not box.forked, box.isolation
    finally:
        box.close()
        template.close()


def test_a_checkout_under_tmp_still_forks_workers_that_see_it_read_only():
    """A forked worker mounts a tmpfs of its own on /tmp: what the view binds under /tmp (a TA's checkout in
    /tmp/course) is put back on top of it, read-only. A copy of the course's code under /tmp probes its own template."""
    problem = bwrap_problem()
    if problem:
        pytest.skip(f"bubblewrap cannot run here ({problem}), so no worker template either")
    copy = Path(tempfile.mkdtemp(prefix="dlcourse-checkout-", dir="/tmp"))
    try:
        for folder in ("autograder", "dlcourse"):
            shutil.copytree(PROJECT_ROOT / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__"))
        script = f"""
import json, sys
sys.path.insert(0, {str(copy)!r})
from pathlib import Path
from autograder.sandbox import PROJECT_ROOT, Sandbox, SandboxPolicy, WorkerTemplate, template_problem
assert PROJECT_ROOT == Path({str(copy)!r}), PROJECT_ROOT
template = WorkerTemplate(PROJECT_ROOT / "template.log")
cell = {{"grade_id": "write", "source": "open(__import__('dlcourse').__file__, 'a')"}}
box = Sandbox([cell], SandboxPolicy(audit_hook=False), PROJECT_ROOT / "worker.log", template=template)
try:
    problem = template_problem(template)
    errors = {{}} if problem else box.start(timeout=120)["cell_errors"]
    print(json.dumps({{"problem": problem, "forked": box.forked, "errors": errors}}))
finally:
    box.close()
    template.close()
"""
        run = subprocess.run([sys.executable, "-c", script], cwd=copy, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        result = json.loads(run.stdout.strip().splitlines()[-1])
        if result["problem"]:
            here = WorkerTemplate(copy / "here.log")
            try:
                if template_problem(here):
                    pytest.skip(f"workers cannot be forked from a template here, wherever the checkout is: {result}")
            finally:
                here.close()
        assert result["problem"] is None and result["forked"], result
        # its own copy of dlcourse: read-only (a non-root grader's files are the worker's uid's) or not its to write
        assert re.search("Read-only file system|Permission denied", result["errors"]["write"]["message"]), result
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def test_bubblewrap_runs_a_virtualenv_made_over_debians_python(tmp_path):
    """`python3 -m venv` over Debian's or Ubuntu's Python links .venv/bin/python -> /usr/bin/python3 -> python3.X:
    the view holds each link on the way, not just the file at the end."""
    system_python = Path("/usr/bin/python3")
    if bwrap_problem():
        pytest.skip("bubblewrap cannot run here")
    too_old = "import sys; sys.exit(sys.version_info < (3, 11))"
    if not system_python.exists() or subprocess.run([system_python, "-c", too_old]).returncode:
        pytest.skip("no /usr/bin/python3 of version 3.11 or later on this machine")
    subprocess.run([system_python, "-m", "venv", "--without-pip", tmp_path / "venv"], check=True)
    script = (f"import sys; sys.path.insert(0, {str(PROJECT_ROOT)!r})\n"
              "from autograder.sandbox import bwrap_problem; print(bwrap_problem())")
    run = subprocess.run([tmp_path / "venv" / "bin" / "python", "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "None", run.stdout


# -- before a batch: refuse to grade where student code could not be confined ---------------------------------
def test_preflight_refuses_a_judge_file_that_a_worker_could_write(monkeypatch, tmp_path):
    import autograder.sandbox as sandbox_module
    from autograder.pipeline.preflight import check_isolation
    from autograder.options import GradeOptions

    if os.geteuid() != 0 or bwrap_problem():
        pytest.skip("the writable-file check runs only when grading as root with bubblewrap")
    assert sandbox_module.grader_files_writable_by_worker() == []
    # A copy of the course's code stands in for the checkout's: a canary planted in the checkout itself would stop
    # every grading that other test workers start meanwhile.
    copy = tmp_path / "dlcourse"
    shutil.copytree(PROJECT_ROOT / "dlcourse", copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(sandbox_module.file_access, "grader_roots", lambda: {str(copy)})
    assert sandbox_module.grader_files_writable_by_worker() == []
    canary = copy / "preflight_canary.txt"  # world-writable: any worker uid could change it
    canary.write_text("")
    canary.chmod(0o666)
    assert sandbox_module.grader_files_writable_by_worker() == [str(canary)]
    with pytest.raises(SystemExit, match="could be written by a student worker"):
        check_isolation(GradeOptions(), progress=lambda message: None)
    canary.chmod(0o644)
    sticky = copy / "sticky_canary"  # like /tmp: anyone may add a file, e.g. a module that shadows the grader's
    sticky.mkdir()
    sticky.chmod(0o1777)
    assert sandbox_module.grader_files_writable_by_worker() == [str(sticky)]


def test_a_file_gone_between_listing_and_looking_stops_no_preflight(monkeypatch, tmp_path):
    """Another process's Python renames the bytecode it has just written (`x.pyc.<id>` -> `x.pyc`) while the check
    walks the virtualenv: the name listed is gone when looked at. That is no file a worker could write, not a crash
    of the whole grade (seen once in CI)."""
    from autograder.sandbox import file_access

    (tmp_path / "module.py").write_text("")
    listed = [(str(tmp_path), [], ["module.py", "module.cpython-311.pyc.139847449947600"])]
    monkeypatch.setattr(file_access, "grader_roots", lambda: {str(tmp_path)})
    monkeypatch.setattr(file_access, "grader_top_level", lambda: [])
    monkeypatch.setattr(file_access.os, "walk", lambda root: iter(listed))
    assert file_access.grader_files_writable_by_worker() == []


def test_preflight_looks_at_everything_a_judge_imports_or_reads():
    """The spec and samples (source/), the release, every folder on sys.path, the checkout's own files
    (pyproject.toml) and the checkout folder itself (the judges' working folder, first on their sys.path)."""
    import site

    import autograder.sandbox as sandbox_module

    roots = sandbox_module.grader_roots()

    def walked(path) -> bool:
        path = os.path.realpath(path)
        return any(path == root or path.startswith(root + os.sep) for root in roots)

    for needed in [PROJECT_ROOT / "source", PROJECT_ROOT / "release", PROJECT_ROOT / "autograder",
                   Path(site.getsitepackages()[0]), Path(os.__file__).parent]:  # the standard library too
        assert walked(needed), needed
    top = sandbox_module.grader_top_level()
    assert os.path.realpath(PROJECT_ROOT) in top and os.path.realpath(PROJECT_ROOT / "pyproject.toml") in top
    assert not walked(PROJECT_ROOT / "build")  # the grader's own output, not walked


def test_without_bubblewrap_grading_refuses_unless_weak_isolation_is_allowed(monkeypatch):
    import autograder.sandbox as sandbox_module
    from autograder.pipeline.preflight import check_isolation
    from autograder.options import GradeOptions

    monkeypatch.setattr(sandbox_module.backends, "bwrap_problem", lambda device="cpu": "bubblewrap is not installed")
    monkeypatch.setattr(sandbox_module.backends, "uid_problem", lambda: "the grader is not root")  # nor the uid backend
    with pytest.raises(SystemExit, match="--allow-weak-isolation"):
        check_isolation(GradeOptions(), progress=lambda message: None)
    with pytest.raises(sandbox_module.IsolationUnavailable):
        Sandbox(CELLS, SandboxPolicy(), Path("unused.log"))
    said = []
    check_isolation(GradeOptions(allow_weak_isolation=True), progress=said.append)
    assert "weak isolation" in said[0]


def test_weak_isolation_still_runs_and_says_so(tmp_path, monkeypatch):
    import autograder.sandbox as sandbox_module

    monkeypatch.setattr(sandbox_module.backends, "bwrap_problem", lambda device="cpu": "bubblewrap is not installed")
    monkeypatch.setattr(sandbox_module.backends, "uid_problem", lambda: "the grader is not root")  # nor the uid backend
    with Sandbox(CELLS, SandboxPolicy(allow_weak_isolation=True), tmp_path / "worker.log") as box:
        box.start(timeout=START_TIMEOUT)
        assert box.isolation.startswith("weak") and box.memory_cap.startswith("RLIMIT_AS")
        reply, out = run(box, call("Affine", 2, 1.0), torch.zeros(1, 2))
        assert reply["ok"] and out["output"].shape == (1, 2)
        assert probe(box, "make_socket")[0] == "error"  # the audit hook is all there is, and it holds


def test_a_worker_that_cannot_start_is_the_graders_failure_with_its_log(tmp_path):
    """A worker that ends before its ready frame ran no student code: WorkerStartFailed (a grader-error), not
    SandboxCrashed (which a submission is blamed for), and the message quotes the worker's log."""
    from autograder.sandbox import WorkerStartFailed

    policy = SandboxPolicy(preload_modules=["dlcourse_no_such_module"], allow_weak_isolation=True)
    with Sandbox(CELLS, policy, tmp_path / "worker.log") as box:
        with pytest.raises(WorkerStartFailed, match="No module named 'dlcourse_no_such_module'") as failed:
            box.start(timeout=START_TIMEOUT)
        assert not isinstance(failed.value, SandboxCrashed) and "no student code ran" in str(failed.value)
        assert not box.alive


# -- the uid backend: no namespaces needed (containers), forced as `grade --sandbox uid` forces it ----------------
def test_auto_falls_back_to_the_uid_backend_and_forcing_takes_only_the_one_named(monkeypatch):
    import autograder.sandbox as sandbox_module

    monkeypatch.setattr(sandbox_module.backends, "bwrap_problem", lambda device="cpu": "bubblewrap could not start")
    monkeypatch.setattr(sandbox_module.backends, "uid_problem", lambda: None)
    assert sandbox_module.choose_backend("auto") == ("uid", "bubblewrap cannot run here (bubblewrap could not start)")
    assert sandbox_module.choose_backend("bubblewrap") == (None, "bubblewrap could not start")
    monkeypatch.setattr(sandbox_module.backends, "bwrap_problem", lambda device="cpu": None)
    assert sandbox_module.choose_backend("auto") == ("bubblewrap", "")
    assert sandbox_module.choose_backend("uid") == ("uid", "")
    monkeypatch.setattr(sandbox_module.backends, "uid_problem", lambda: "the grader is not root")
    assert sandbox_module.choose_backend("uid") == (None, "the grader is not root")


@pytest.fixture
def public_folder():
    """A folder of the test's that every user can search (pytest's own tmp_path is under a mode-700 folder)."""
    import tempfile

    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="dlcourse-uid-test-") as folder:
        os.chmod(folder, 0o755)
        yield Path(folder)


def test_uid_backend_refuses_a_secret_it_cannot_make_private(public_folder):
    """A folder outside the checkout and the grader's output (a dataset mirror, the submissions) is only checked:
    readable by every user, it stops the batch naming the path and the fix; the grader's own output is made private."""
    from autograder.sandbox import make_private

    tmp_path = public_folder
    shared = tmp_path / "shared-data"
    shared.mkdir(mode=0o755)
    own = tmp_path / "out"
    own.mkdir(mode=0o755)
    problems = make_private([shared, own], own=[own])
    assert problems == [f"{shared} can be read by every user, so a student's worker could read it: run chmod o-rwx "
                        f"{shared} (or grade with bubblewrap)"]
    assert shared.stat().st_mode & 0o777 == 0o755  # never changed
    assert own.stat().st_mode & 0o777 == 0o750
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "inside").mkdir(mode=0o755)
    assert make_private([private / "inside"]) == []  # unreachable through its folder: nothing to do


@pytest.fixture(scope="module")
def uid_probes(tmp_path_factory, canaries):
    """tests/uid_probes.py's results: a worker of the forced uid backend, audit hook off, on a host made
    container-like (tests/container_like.py: bubblewrap unrunnable, the Python installation searchable by any uid)."""
    import subprocess
    import sys

    from container_like import container_like
    from container_like import problem as wrapper_problem

    if os.geteuid() != 0:
        pytest.skip("the uid backend needs the grader to run as root")
    why = wrapper_problem()
    if why:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"cannot simulate a container here: {why}")
    import tempfile

    made = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="dlcourse-uid-canaries-"))  # searchable by every user
    made.chmod(0o755)
    private = made / "private-copy"  # a second copy of the course kept private, as the README asks
    private.mkdir(mode=0o700)
    (private / "test_vit.py").write_text(CANARY)
    public = made / "public-copy"  # one left readable by every user: the uid backend cannot hide it
    public.mkdir(mode=0o755)
    (public / "test_vit.py").write_text(CANARY)
    (public / "test_vit.py").chmod(0o644)
    given = {
        "private_dir": str(private), "log": str(made / "worker.log"),
        "read": {"private copy": str(private / "test_vit.py"), "public copy": str(public / "test_vit.py")},
        "checkout": {"hidden test": "autograder/hidden_tests/test_vit.py", "solution": "source/vit/vit.ipynb",
                     "stand-ins": "autograder/kit/stand_ins/__init__.py", "grader": "autograder/pipeline/judge.py",
                     "git": ".git/HEAD", "course package": "dlcourse/__init__.py",
                     "sandbox code": "autograder/sandbox/worker.py"},
        "write": {**{what: str(canaries[what]) for what in ("site-packages", "dlcourse", "sandbox code")},
                  "new file in a root folder": str(public / "new.txt")},
    }
    stash = tmp_path_factory.mktemp("uid-stash")
    command, env = container_like([sys.executable, str(Path(__file__).parent / "uid_probes.py"), json.dumps(given)],
                                  stash)
    proc = subprocess.run(command, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    written = (public / "new.txt").exists()
    shutil.rmtree(made)
    assert not written
    return results


def test_uid_worker_runs_as_its_own_uid_with_seccomp_and_limits(uid_probes):
    assert uid_probes["backend"] == "uid" and uid_probes["cell_errors"] == {}
    uid = uid_probes["uid"]
    assert uid >= WORKER_UID_BASE
    assert uid_probes["identity"] == {"uid": uid, "euid": uid, "gid": uid, "groups": []}
    assert uid_probes["isolation"].startswith(f"uid backend (uid {uid}, no user namespace")
    assert uid_probes["isolation"].endswith("seccomp, no sockets)") and uid_probes["seccomp"] == "2"
    limits = uid_probes["limits"]
    assert limits["RLIMIT_NPROC"] == 256 and limits["RLIMIT_FSIZE"] == 64 << 20
    assert uid_probes["memory_cap"].startswith("cgroup") or limits["RLIMIT_AS"] > 0


def test_uid_worker_cannot_read_the_checkouts_secrets(uid_probes):
    """Hidden tests, solutions, stand-ins, the grader and .git are made private before the batch; the course package
    and the worker's own code stay readable (it runs them)."""
    for what in ("hidden test", "solution", "stand-ins", "grader", "git"):
        assert uid_probes["checkout"][what] == ["error", "PermissionError"], what
    for what in ("course package", "sandbox code"):
        assert uid_probes["checkout"][what][0] == "ok", what


def test_uid_worker_reads_a_private_copy_never_but_a_world_readable_one_yes(uid_probes):
    """The limit of file modes, as the README says: a copy of the course left readable by every user is readable."""
    assert uid_probes["read"]["private copy"] == ["error", "PermissionError"]
    assert uid_probes["read"]["public copy"][0] == "ok"


def test_uid_worker_writes_only_its_scratch_folder(uid_probes, canaries):
    for what, result in uid_probes["write"].items():
        assert result == ["error", "PermissionError"], what
    for what in ("site-packages", "dlcourse", "sandbox code"):
        assert canaries[what].read_text() == CANARY
    assert uid_probes["scratch"] == ["ok", "written"]
    cwd, home, tmpdir = uid_probes["working_folder"]
    assert cwd == home == tmpdir and cwd.startswith("/tmp/dlcourse-sandbox-")
    assert not uid_probes["scratch_left"]  # removed with the worker


def test_uid_worker_cannot_start_a_process_or_open_any_socket(uid_probes):
    assert uid_probes["alive_after_processes"]
    processes = uid_probes["processes"]
    assert processes["ctypes.fork"] == ["ok", -1] and processes["unshare"] == ["ok", -1]
    assert processes["ctypes.system"][0] == "ok" and processes["ctypes.system"][1] != 0
    for how in ("os.fork", "posix_spawn", "execv"):
        assert processes[how][:2] in (["error", "PermissionError"], ["error", "OSError"]), (how, processes[how])
    assert set(uid_probes["sockets"].values()) == {-1}, uid_probes["sockets"]  # AF_UNIX too: it sees the host's
    assert uid_probes["connect"] == ["error", "PermissionError"] and not uid_probes["connection_reached"]


def test_uid_worker_cannot_touch_the_process_that_started_it(uid_probes):
    parent = uid_probes["parent"]
    assert parent["environ"] == ["error", "PermissionError"] and parent["mem"] == ["error", "PermissionError"]
    assert parent["signal"] == ["error", "PermissionError"]

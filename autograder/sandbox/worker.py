"""The untrusted side of grading: runs a student's code and answers the grader's requests.

Started by `autograder.sandbox.Sandbox` inside bubblewrap (see autograder/sandbox/__init__.py): a read-only
view of only the Python installation, the virtualenv and the course code, a private tmpfs as /tmp, no
network, no other process, an unprivileged uid, a memory cap. It only ever receives inputs and sends back
outputs; every score is decided by the trusted side.

Order of events (each step makes the next one safer):
1. set resource limits, import torch and friends (things student code may need);
2. install the seccomp filter (no exec, no fork: seccomp.py), the audit hook (no network, no
   subprocesses, no reading hidden paths) and the forbidden-API tripwires;
3. run the instructor's cells and the student's answer cells, then serve requests until told to stop.
"""
from __future__ import annotations

import gc
import itertools
import json
import linecache
import os
import resource
import signal
import sys
import traceback
import types
from typing import Any

REQUEST_FD, RESPONSE_FD = int(sys.argv[1]), int(sys.argv[2])
SETTINGS = json.loads(sys.argv[3])
HERE = os.path.dirname(os.path.abspath(__file__))

# 1. Limits and imports. ----------------------------------------------------------------------------
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 20, 64 << 20))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a file past the limit fails to grow (EFBIG) instead of killing
if SETTINGS.get("max_processes"):
    resource.setrlimit(resource.RLIMIT_NPROC, (SETTINGS["max_processes"], SETTINGS["max_processes"]))

# No cyclic garbage collection during the imports (they only create objects that live as long as the worker): the
# collections that torch's imports set off cost about 0.5 CPU s of each worker's start. Re-enabled below.
gc.disable()

import math  # noqa: E402,F401  (pre-imported for student code)

import numpy  # noqa: E402,F401
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

# torchvision is not imported here (1.5 CPU s per worker start): the image assignments preload it (their spec's
# preload_modules) where a worker may use it (autograder/sandbox/__init__.py: needed_preloads).

sys.path.insert(0, SETTINGS["course_root"])  # the checkout's dlcourse (bound read-only), not another installed one
import dlcourse  # noqa: E402,F401

# Assignment-specific libraries (e.g. transformers) are imported now, while the audit hook is not yet
# installed: their imports read many files and may probe the system.
import importlib  # noqa: E402

for _name in SETTINGS.get("preload_modules", []):
    importlib.import_module(_name)

sys.path.insert(0, HERE)
from protocol import read_frame_blocking, write_frame  # noqa: E402


def _address_space_bytes() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) << 10 for line in status if line.startswith("VmSize:"))


if SETTINGS.get("memory_mb"):  # no cgroup caps this worker: cap its address space above what torch reserved
    _limit = _address_space_bytes() + (SETTINGS["memory_mb"] << 20)
    resource.setrlimit(resource.RLIMIT_AS, (_limit, _limit))

torch.set_num_threads(int(SETTINGS.get("threads", 1)))  # the grader's choice (GradeOptions.judge_threads), never torch's
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


import harness  # noqa: E402  (the package autograder/sandbox/harness/: the grader's drivers of student code)
import tripwires  # noqa: E402  (forbidden APIs: see tripwires.py)
from remote import Link, build_shell, wire  # noqa: E402  (shells of the stand-ins the grader holds: see remote.py)
from tripwires import CELL_PREFIX, FORBIDDEN_CALLS  # noqa: E402

LINK = Link(REQUEST_FD, RESPONSE_FD, DEVICE)


# 3. Running cells and serving requests. -------------------------------------------------------------
_STUDENT_MODULE = types.ModuleType("__student__")  # a real module: dataclasses look their class up in sys.modules
sys.modules[_STUDENT_MODULE.__name__] = _STUDENT_MODULE
NAMESPACE: dict = _STUDENT_MODULE.__dict__
HANDLES: dict = {}


class StudentError(Exception):
    """An error to report back as the student's (not the grader's), with optional structured `details`."""

    def __init__(self, message: str, details: dict | None = None):
        super().__init__(message)
        self.details = details or {}


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


def resolve(spec, tensors: dict | None = None, built: dict | None = None):
    """Turn a value spec from the grader into a Python value (see autograder/kit/requests.py for the helpers):
    {"$call": name, "args": [...], "kwargs": {...}}  NAMESPACE[name](*args, **kwargs), names from the notebook;
        a module may also carry "substitutes", "weights" (exact state dict), "keep_as", "train", "grads";
    {"$name": name}                                   NAMESPACE[name] itself (a function or class);
    {"$tensor": key}                                  a tensor of the request, moved to the device;
        "grad": true makes it require grad (its gradient comes back as input_grad.<key>);
    {"$handle": name}                                 a module kept by an earlier request;
    {"$stand_in": kind, "kwargs": {...}}              a driver registered in the harness package, built here;
    {"$remote": id, ...}                              a shell of a stand-in the grader holds (remote.py);
    lists and plain dicts are resolved element by element; other JSON values are themselves."""
    tensors = {} if tensors is None else tensors
    built = {} if built is None else built
    if isinstance(spec, list):
        return [resolve(v, tensors, built) for v in spec]
    if not isinstance(spec, dict):
        return spec
    if "$tensor" in spec:
        x = tensors[spec["$tensor"]].to(DEVICE)
        if spec.get("grad"):
            x = x.detach().requires_grad_(True)
            built.setdefault("input_grads", {})[spec["$tensor"]] = x
        return x
    if "$name" in spec:
        return _namespace_lookup(spec["$name"])
    if "$handle" in spec:
        if spec["$handle"] not in HANDLES:
            raise StudentError(f"no module kept as {spec['$handle']!r}")
        return HANDLES[spec["$handle"]]
    if "$stand_in" in spec:
        return harness.lookup(spec["$stand_in"])(**resolve(spec.get("kwargs", {}), tensors, built))
    if "$remote" in spec:
        return build_shell(spec, tensors, LINK)
    if "$call" in spec:
        value = _namespace_lookup(spec["$call"])(*resolve(spec.get("args", []), tensors, built),
                                                 **resolve(spec.get("kwargs", {}), tensors, built))
        if isinstance(value, nn.Module):
            _prepare_module(value, spec, tensors, built)
        return value
    return {k: resolve(v, tensors, built) for k, v in spec.items()}


def _namespace_lookup(name: str):
    if name not in NAMESPACE:
        raise StudentError(f"your notebook does not define {name!r} (was its cell deleted or renamed?)")
    return NAMESPACE[name]


def _prepare_module(module: nn.Module, spec: dict, tensors: dict, built: dict) -> None:
    for path, sub in spec.get("substitutes", {}).items():
        substitute(module, path, resolve(sub, tensors, built))
    if "weights" in spec:
        load_weights(module, resolve(spec["weights"], tensors, built))
    # Only where something is elsewhere: under the tripwires' modes, .to() of a module already on DEVICE (every one on
    # a CPU grader) cost 0.8 ms for the ViT's, reading each tensor's device 0.1 ms, and a ViT submission builds 40.
    if any(t.device != DEVICE for t in itertools.chain(module.parameters(), module.buffers())):
        module.to(DEVICE)
    module.train(bool(spec.get("train", False)))
    if spec.get("keep_as"):
        HANDLES[spec["keep_as"]] = module
    if spec.get("grads"):
        built.setdefault("modules", {})[spec["grads"]] = module


def encode_result(value, out: dict, depth: int = 0):
    """A JSON-able picture of a return value; its tensors go into `out` as out.<n>."""
    if depth > 8:
        raise StudentError("the value returned is nested too deeply")
    if isinstance(value, numpy.ndarray):
        value = torch.from_numpy(value)
    if isinstance(value, torch.Tensor):
        key = f"out.{len(out)}"
        tensor = value.detach()
        if tensor.dtype in (torch.bfloat16, torch.float16):
            tensor = tensor.float()
        out[key] = wire(tensor)
        return {"$tensor": key}
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (numpy.integer, numpy.floating, numpy.bool_)):
        return value.item()
    if isinstance(value, (list, tuple, torch.Size)):
        return [encode_result(v, out, depth + 1) for v in value]
    if isinstance(value, dict) or (hasattr(value, "keys") and hasattr(value, "__getitem__")):
        return {str(k): encode_result(value[k], out, depth + 1) for k in list(value.keys())}
    if isinstance(value, nn.Module):
        return {"$module": type(value).__name__}
    return {"$object": type(value).__name__}


def handle_call(header: dict, tensors: dict) -> tuple[dict, dict]:
    """The one request: call something from the notebook, {"cmd": "call", "function": spec, "args": [...],
    "kwargs": {...}, "backward": {"path": [i, ...], "grad_output": key}}. The result comes back as JSON + tensors;
    with "backward", the gradient of one tensor of the result flows back to "$tensor" inputs marked "grad" and
    to the parameters of modules built with "grads": <label> (param_grad.<label>.<name>); the parameter shapes
    of those modules come back too (param_shapes.<label>)."""
    built: dict = {}
    backward = header.get("backward")
    with torch.set_grad_enabled(bool(backward) or header.get("grad_enabled", False)):
        function = resolve(header["function"], tensors, built)
        if not callable(function):
            raise StudentError(f"{header['function']} is not callable")
        result = function(*resolve(header.get("args", []), tensors, built),
                          **resolve(header.get("kwargs", {}), tensors, built))
    out: dict = {}
    if backward:
        target = result
        for index in backward.get("path", []):
            target = target[index]
        if not isinstance(target, torch.Tensor) or not target.requires_grad:
            raise StudentError("the value to differentiate is not a tensor that depends on the inputs "
                               "(was it detached, or computed with .item() / numpy?)")
        grad_output = tensors[backward["grad_output"]].to(DEVICE) if backward.get("grad_output") else None
        if grad_output is not None and tuple(grad_output.shape) != tuple(target.shape):
            raise StudentError(f"returned shape {tuple(target.shape)}, expected {tuple(grad_output.shape)}")
        if grad_output is None:
            target.backward()
        else:  # the same gradients as target.backward(grad_output), exactly (d/dtarget = 1.0 * grad_output), without
            with torch.enable_grad():  # its shape check's import of torch's symbolic shapes (sympy: 0.4 CPU s here)
                (target * grad_output).sum().backward()
        for key, x in built.get("input_grads", {}).items():
            if x.grad is not None:
                out[f"input_grad.{key}"] = wire(x.grad.float())
        for label, module in built.get("modules", {}).items():
            for name, p in module.named_parameters():
                if p.grad is not None:
                    out[f"param_grad.{label}.{name}"] = wire(p.grad.float())
    value = encode_result(result, out)
    shapes = {label: {name: list(p.shape) for name, p in module.named_parameters()}
              for label, module in built.get("modules", {}).items()}
    return {"value": value, "param_shapes": shapes}, out


def substitute(module: nn.Module, path: str, replacement: nn.Module) -> None:
    parent_path, _, leaf = path.rpartition(".")
    parent = module.get_submodule(parent_path) if parent_path else module
    if leaf.isdigit():
        parent[int(leaf)] = replacement  # type: ignore[operator]  # an nn.Sequential/ModuleList (leaf is an index)
    else:
        setattr(parent, leaf, replacement)


def load_weights(module: nn.Module, weights: dict) -> None:
    own = module.state_dict()
    missing = sorted(set(weights) - set(own))
    unexpected = sorted(set(own) - set(weights))
    wrong = sorted(k for k in set(own) & set(weights) if tuple(own[k].shape) != tuple(weights[k].shape))
    if missing or unexpected or wrong:
        raise StudentError("the module's parameters do not match the names and shapes expected", details={
            "state_dict_mismatch": {"missing": missing, "unexpected": unexpected,
                                    "wrong_shape": {k: [list(own[k].shape), list(weights[k].shape)] for k in wrong}}})
    module.load_state_dict(weights, strict=True)


def serve() -> None:
    while True:
        header, tensors = read_frame_blocking(REQUEST_FD)
        cmd = header.get("cmd")
        reply: dict[str, Any] = {"ok": True}
        out: dict = {}
        try:
            if cmd == "stop":
                write_frame(RESPONSE_FD, {"ok": True})
                return
            if cmd == "load":
                tripwires.install(header.get("forbidden_attributes", []), header.get("forbidden_modules", []))
            with tripwires.guarding():  # fresh tripwire modes for each request; tampering fails it
                if cmd == "load":
                    reply["cell_errors"] = run_cells(header["cells"])
                    reply["seccomp"] = SECCOMP
                    reply["namespaces"] = NAMESPACES
                elif cmd == "call":
                    extra, out = handle_call(header, tensors)
                    reply.update(extra)
                else:
                    raise StudentError(f"unknown command {cmd!r}")
        except StudentError as exc:
            reply, out = {"ok": False, "error": {"type": "StudentError", "message": str(exc), "traceback": "",
                                                 "details": exc.details}}, {}
        except BaseException as exc:  # noqa: BLE001  (student code may raise SystemExit, KeyboardInterrupt...)
            reply, out = {"ok": False, "error": describe_exception(exc)}, {}
        reply["forbidden_calls"] = sorted(set(FORBIDDEN_CALLS))
        write_frame(RESPONSE_FD, reply, out)


if SETTINGS.get("seccomp"):
    import seccomp  # noqa: E402

    # The uid backend's worker sees the host's filesystem (its unix sockets too): no socket of any family there.
    SECCOMP = seccomp.install(unix_sockets=SETTINGS.get("backend") != "uid")
else:
    SECCOMP = "no seccomp filter (weak isolation)"
# The namespaces the uid backend's launcher (confine.py) entered; read before any student code runs.
NAMESPACES = [n for n in os.environ.pop("DLCOURSE_WORKER_NAMESPACES", "").split(",") if n]
# What the imports loaded lives as long as the worker: out of the collector's sight, so that the collections of the
# student's code do not walk it again and again (as the judge server does for its judges: autograder/judge_server.py).
gc.freeze()
gc.enable()
if SETTINGS.get("audit_hook", True):
    sys.addaudithook(_audit)
write_frame(RESPONSE_FD, {"ready": True})  # confined, imports done, no student code run yet (Sandbox._await_ready)
serve()

"""The trusted judge: a pytest plugin that grades one submission with an assignment's hidden tests.

    python -m pytest autograder/hidden_tests/test_vit.py -p autograder.judge \
        --submission-dir WORK/alice --results-json WORK/alice/results.json

Hidden tests ask for the `student` fixture, a `StudentCode`: every call on it runs the student's code
in the sandboxed worker and returns plain tensors; the test compares them with references computed
here, in the trusted process. Each test carries `@pytest.mark.points(n)`. The results file holds one
entry per test (outcome, points earned, a message safe for the student) plus what happened to the
worker (timeouts, crashes), which the batch grader turns into a gradebook row.
"""
from __future__ import annotations

import json
import random
import secrets
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from autograder.assignments import Assignment, assignment_of, load_assignment
from autograder.spec import Threshold
from autograder.feedback import Feedback, assert_shape, grader_files_text, sanitise
from autograder.notebook import NotebookError, extract_graded_code, find_forbidden, read_notebook
from autograder.sandbox import IsolationUnavailable, Sandbox, SandboxCrashed, SandboxPolicy, SandboxTimeout

LOAD_TIMEOUT_S = 120.0  # importing torch and running the class-definition cells
MAX_WEIGHTS_BYTES = 1 << 30
MAX_CONFIG_BYTES = 64 << 10
MAX_TOKENIZER_BYTES = 64 << 20


@dataclass
class CallResult:
    value: object  # tensors, lists, dicts, numbers as returned; a module is {"$module": class name}
    input_grads: list[torch.Tensor | None]  # one per needs_grad() argument, in order
    param_grads: dict[str, dict[str, torch.Tensor]]  # module(..., grads=label) -> parameter name -> gradient


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
        spec["substitutes"] = {path: {"kind": s["$stand_in"], "kwargs": s.get("kwargs", {})} for path, s in substitutes.items()}
    spec.update({k: v for k, v in (("keep_as", keep_as), ("train", train), ("grads", grads)) if v})
    return spec


def name(identifier: str) -> dict:
    """A notebook name itself (a function or class), not called."""
    return {"$name": identifier}


def handle(kept_as: str) -> dict:
    """A module kept in the worker by an earlier request (module(..., keep_as=kept_as))."""
    return {"$handle": kept_as}


def stand_in(kind: str, **kwargs) -> dict:
    """A reference layer from autograder/sandbox/stand_ins.py, built in the worker."""
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
    return CallResult(_decode_value(reply.get("value"), out), [out.get(f"input_grad.{k}") for k in marked], param_grads)


def _decode_value(value, tensors: dict):
    if isinstance(value, dict) and "$tensor" in value:
        return tensors[value["$tensor"]]
    if isinstance(value, dict):
        return {k: _decode_value(v, tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_value(v, tensors) for v in value]
    return value


@dataclass
class RunResult:
    output: torch.Tensor
    input_grads: list[torch.Tensor | None]
    param_grads: dict[str, torch.Tensor]
    param_shapes: dict[str, list[int]]


@dataclass
class StudentCode:
    """The student's code as the hidden tests see it: only through the sandbox."""

    submission_dir: Path
    assignment_name: str
    run_cells: list[str]
    policy: SandboxPolicy
    log_path: Path
    call_timeout: float = 20.0
    budget_s: float | None = None  # the whole submission's time budget; no request may run past it
    forbidden_names: list[str] = field(default_factory=list)  # for the static check (see notebook.find_forbidden)
    events: list[str] = field(default_factory=list)  # "timeout" / "crashed", one per occurrence
    forbidden_calls: set[str] = field(default_factory=set)
    cell_errors: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)  # facts worth showing, e.g. the accuracy reached
    fatal: str | None = None  # no notebook, unreadable notebook: every test fails with this

    @classmethod
    def for_assignment(cls, assignment: Assignment, submission_dir: Path, log_path: Path, *, memory_mb: int = 4096,
                       threads: int = 1, call_timeout: float = 20.0, budget_s: float | None = None,
                       hide: list[str] = (), allow_weak_isolation: bool = False) -> "StudentCode":
        """The student's code for `assignment`'s hidden tests, with the sandbox its spec asks for. `budget_s`
        defaults to the spec's submission_timeout_s."""
        spec = assignment.spec
        policy = SandboxPolicy(memory_mb=memory_mb, threads=threads, device="cuda" if torch.cuda.is_available() else "cpu",
                               forbidden_attributes=list(spec.forbidden_attributes),
                               forbidden_modules=list(spec.forbidden_modules), hide=list(hide),
                               allow_weak_isolation=allow_weak_isolation, preload_modules=list(spec.preload_modules))
        return cls(Path(submission_dir), assignment.name, list(spec.run_cells), policy, Path(log_path),
                   call_timeout=call_timeout, budget_s=budget_s or spec.submission_timeout_s,
                   forbidden_names=list(spec.forbidden_names))

    def __post_init__(self):
        self.deadline = time.monotonic() + self.budget_s if self.budget_s else None
        self.assignment = load_assignment(self.assignment_name)
        self.code = None
        self.sandbox = None
        self._load_failure = None
        notebook = self.submission_dir / self.assignment.notebook
        if not notebook.exists():
            self.fatal = f"no {self.assignment.notebook} in the submission"
            return
        try:
            student_nb = read_notebook(notebook)
        except NotebookError as exc:
            self.fatal = str(exc)
            return
        release_nb = read_notebook(self.assignment.release_dir / self.assignment.notebook)
        self.code = extract_graded_code(release_nb, student_nb, self.run_cells)
        self.problems.extend(self.code.problems)
        self.sandbox = Sandbox(self.code.cells, self.policy, self.log_path)

    @property
    def isolation(self) -> str:
        return self.sandbox.isolation if self.sandbox else "not started"

    @property
    def memory_cap(self) -> str:
        return self.sandbox.memory_cap if self.sandbox else "not started"

    def time_left(self, wanted: float, what: str) -> float:
        """`wanted` seconds, or less when the submission's budget ends sooner; Feedback when it is spent."""
        if self.deadline is None:
            return wanted
        left = self.deadline - time.monotonic()
        if left <= 1:
            self.events.append("timeout")
            raise Feedback(f"{what}: not run, the time budget for grading this submission ({self.budget_s:.0f} s) is "
                           "spent (earlier calls ran long: an infinite loop or very slow code?)")
        return min(wanted, left)

    def check_rules(self, grade_id: str) -> None:
        """Fail if answer cell `grade_id` uses what the assignment forbids, found by reading it (the worker
        also trips on forbidden calls at run time)."""
        used = find_forbidden(self.cell_source(grade_id), self.forbidden_names, self.policy.forbidden_modules)
        if used:
            raise Feedback(f"cell '{grade_id}' uses what this assignment forbids: {', '.join(used)}")

    def cell_source(self, grade_id: str) -> str:
        """The code of one cell as the grader runs it (the student's, for an answer cell)."""
        if self.fatal:
            raise Feedback(self.fatal)
        return next(c["source"] for c in self.code.cells if c["grade_id"] == grade_id)

    # -- running code in the worker ---------------------------------------------------------------
    def _ensure_started(self) -> None:
        if self.fatal:
            raise Feedback(self.fatal)
        if self._load_failure:
            raise Feedback(self._load_failure)
        if self.sandbox.alive:
            return
        load_timeout = self.time_left(LOAD_TIMEOUT_S, "running your notebook's cells")
        try:
            reply = self.sandbox.start(timeout=load_timeout)
        except SandboxTimeout:
            self.events.append("timeout")
            self._load_failure = (f"running your notebook's class-definition cells took more than {load_timeout:.0f} s "
                                  "(is there an infinite loop outside a function?)")
            raise Feedback(self._load_failure) from None
        except SandboxCrashed as exc:
            self.events.append("crashed")
            self._load_failure = f"running your notebook's cells ended the grading process ({exc})"
            raise Feedback(self._load_failure) from None
        self.cell_errors = {sanitise(gid, self.hidden): {k: sanitise(str(v), self.hidden) for k, v in e.items()}
                            for gid, e in dict(reply.get("cell_errors") or {}).items() if isinstance(e, dict)}
        self.forbidden_calls.update(reply.get("forbidden_calls", []))

    def _request(self, header: dict, tensors: dict, what: str, timeout: float | None) -> tuple[dict, dict]:
        self._ensure_started()
        timeout = self.time_left(timeout or self.call_timeout, what)
        try:
            reply, out = self.sandbox.request(header, tensors, timeout=timeout)
        except SandboxTimeout:
            self.events.append("timeout")
            raise Feedback(f"{what}: no answer within {timeout:.0f} s (an infinite loop?)") from None
        except SandboxCrashed as exc:
            self.events.append("crashed")
            raise Feedback(f"{what}: your code ended the grading process ({exc})") from None
        self.forbidden_calls.update(reply.get("forbidden_calls", []))
        if not reply.get("ok"):
            raise Feedback(self._explain(reply.get("error", {}), what))
        return reply, out

    @property
    def hidden(self) -> tuple[frozenset[str], str]:
        """What of the grader's files must never reach the student (see feedback.sanitise)."""
        return grader_files_text(self.assignment)

    def _explain(self, error: dict, what: str) -> str:
        """The student's error as feedback: its type, message and traceback (student-controlled, so sanitised)."""
        raw = str(error.get("message", ""))
        kind, message = sanitise(str(error.get("type", "Error")), self.hidden), sanitise(raw, self.hidden)
        text = f"{what}: your code raised {kind}: {message}"
        if kind == "NotImplementedError":
            text = f"{what}: not implemented yet (NotImplementedError): complete the TODO in the notebook"
        elif kind == "StudentError" and raw.startswith("{"):
            try:
                text = f"{what}: {sanitise(_explain_state_dict(json.loads(raw)), self.hidden, student=False)}"
            except Exception:  # noqa: BLE001  (the worker's JSON is untrusted: shown as a plain message)
                pass
        if error.get("traceback"):
            text += f"\n{sanitise(str(error['traceback']), self.hidden)}"
        for gid, cell_error in self.cell_errors.items():
            text += f"\n(note: cell '{gid}' raised {cell_error.get('type')}: {cell_error.get('message')} when the grader ran it)"
        return text

    def run(self, build: dict, inputs: tuple = (), weights: dict | None = None, grad_output: torch.Tensor | None = None,
            substitutes: dict | None = None, what: str = "", timeout: float | None = None) -> RunResult:
        """Build a module in the worker, load `weights` (all of them, names must match), run forward on
        `inputs`, and with `grad_output` also backward. Returns the output and the gradients."""
        tensors = {f"input.{i}": x for i, x in enumerate(inputs)}
        tensors.update({f"weight.{k}": v.detach().contiguous() for k, v in (weights or {}).items()})
        if grad_output is not None:
            tensors["grad_output"] = grad_output
        header = {"cmd": "run", "build": build, "num_inputs": len(inputs), "substitutes": substitutes or {},
                  "exact_weights": weights is not None}
        reply, out = self._request(header, tensors, what or build["$call"], timeout)
        return RunResult(out["output"], [out.get(f"input_grad.{i}") for i in range(len(inputs))],
                         {k[len("param_grad."):]: v for k, v in out.items() if k.startswith("param_grad.")},
                         reply.get("param_shapes", {}))

    def invoke(self, function: dict, *args, backward: tuple | None = None, what: str = "",
               timeout: float | None = None, **kwargs) -> CallResult:
        """Call `function` (a spec: name(), handle(), call()...) with `args` / `kwargs` in the worker; tensors
        and specs may appear anywhere in them. `backward=(path, grad_output)` differentiates the tensor at
        `path` inside the result (() for the result itself; e.g. (0,) for the first of a tuple) with
        `grad_output` (None for a scalar) and returns the gradients of needs_grad() arguments and of
        modules built with grads=label."""
        header, tensors, marked = call_request(function, args, kwargs, backward)
        label = what or function.get("$call") or function.get("$name") or function.get("$handle") or "your code"
        reply, out = self._request(header, tensors, label, timeout)
        return call_result(reply, out, marked)

    def saved_model(self, name: str) -> tuple[dict, dict[str, torch.Tensor]]:
        """The (config, weights) the student's notebook saved as `<name>.json` / `<name>.safetensors`."""
        from safetensors.torch import load_file

        if self.fatal:
            raise Feedback(self.fatal)
        weights_path, config_path = self.submission_dir / f"{name}.safetensors", self.submission_dir / f"{name}.json"
        for path in (weights_path, config_path):
            if not path.exists():
                raise Feedback(f"{path.name} is not in the submission: run the training cell that saves it, "
                               "then CollectSubmission.sh")
        if config_path.stat().st_size > MAX_CONFIG_BYTES or weights_path.stat().st_size > MAX_WEIGHTS_BYTES:
            raise Feedback(f"{name}: saved files are too large to grade")
        try:
            config = json.loads(config_path.read_text())
            weights = load_file(str(weights_path))
        except Exception as exc:  # noqa: BLE001  (any corrupt file is the student's problem, reported as such)
            raise Feedback(f"{name}: could not read the saved model ({type(exc).__name__}: {exc})") from None
        if not isinstance(config, dict) or not all(isinstance(v, (int, float, str, bool)) or v is None for v in config.values()):
            raise Feedback(f"{config_path.name} must be a JSON object of plain values (written by save_model)")
        return config, weights

    def saved_tokenizer(self, filename: str, saved_by: str):
        """The Hugging Face `tokenizers` tokenizer the notebook saved as `filename` (plain JSON: parsing it runs
        none of the student's code). `saved_by` says which notebook cell writes it, for the message."""
        from tokenizers import Tokenizer

        if self.fatal:
            raise Feedback(self.fatal)
        path = self.submission_dir / filename
        if not path.exists():
            raise Feedback(f"{filename} is not in the submission: run {saved_by} (it saves the tokenizer), "
                           "then CollectSubmission.sh")
        if path.stat().st_size > MAX_TOKENIZER_BYTES:
            raise Feedback(f"{filename} is too large to grade")
        try:
            return Tokenizer.from_file(str(path))
        except Exception as exc:  # noqa: BLE001  (any unreadable file is the student's problem, reported as such)
            raise Feedback(f"{filename} is not a Hugging Face tokenizers file ({type(exc).__name__}); "
                           "save it with tokenizer.save(...)") from None

    def saved_model_outputs(self, saved_name: str, build: dict, weights: dict, batches: Iterable[tuple],
                            timeout: float = 300.0) -> Iterator[torch.Tensor]:
        """The output of the student's saved model for each batch of forward arguments in `batches`, in order,
        computed in the worker: `build` (a call() spec) gets the saved `weights` with the first batch and is
        kept there for the rest. One time limit covers all batches. Labels and targets stay on this side."""
        batches = list(batches)
        target, started = module(build, weights=weights, keep_as=saved_name), time.monotonic()
        for i, args in enumerate(batches):
            elapsed = time.monotonic() - started
            if i == 1 and elapsed * len(batches) > timeout:  # say so now rather than after the whole limit
                self.events.append("timeout")
                raise Feedback(f"{saved_name}: evaluating the test set would take about {elapsed * len(batches):.0f} s "
                               f"(the first of {len(batches)} batches took {elapsed:.1f} s), more than the "
                               f"{timeout:.0f} s allowed")
            if timeout - elapsed <= 0:
                self.events.append("timeout")
                raise Feedback(f"{saved_name}: evaluating the test set took more than {timeout:.0f} s")
            output = self.invoke(target, *args, what=f"{saved_name} on the test set", timeout=timeout - elapsed).value
            if not isinstance(output, torch.Tensor):
                raise Feedback(f"{saved_name}: forward returned {type(output).__name__}, expected a tensor of logits")
            yield output
            target = handle(saved_name)

    def close(self) -> None:
        if self.sandbox:
            self.sandbox.close()



# -- thresholds: secret order and a memorisation canary ---------------------------------------------------
# The test splits are public, so a saved model could carry their labels and return them in the order the grader
# used to send the examples. Every threshold therefore sends its examples in an order and in batches drawn from
# a secret per-run seed (never sent to the worker), and the classifiers also meet a canary: perturbed copies of a
# random subset of the test examples, mixed into the same batches. A model that classifies scores about the same
# on them; one that recognises the test set falls to chance.
CANARY_SIZE = 2000  # perturbed copies of test examples (at most a quarter of the split)
# Measured on the references: the ViT on FashionMNIST keeps 82.2 % on 2 000 one-pixel-shifted copies of images it
# gets 88.3 % right unshifted (a drop of 0.06); the CPU-trained LSTM on IMDB, 70.2 % on re-padded copies as on
# the originals (padding is masked). A lookup falls to chance on what it looked up: by 0.9 on ten classes, by 0.5
# on IMDB's two. A drop of 0.25 lies far from both; the noise of a 2 000-example subset is about 0.01.
CANARY_MARGIN = 0.25


def secret_rng() -> random.Random:
    """A generator seeded afresh in every grading run from the operating system's secure source (`secrets`). What it
    draws (orders, batch sizes, canary subsets, held-out data) stays on this side."""
    return random.Random(secrets.randbits(128))


def secret_batches(n: int, rng: random.Random, batch_size: int, lengths: Sequence[int] | None = None) -> list[list[int]]:
    """Indices 0..n-1 in a secret order, cut into batches of random sizes from batch_size // 2 to batch_size, the
    batches themselves in a secret order. With `lengths` (text), each run of 20 batches is sorted by length
    first (ties keep the secret order), so that a batch needs little padding."""
    order = list(range(n))
    rng.shuffle(order)
    if lengths is not None:
        pool = 20 * batch_size
        order = [i for start in range(0, n, pool) for i in sorted(order[start:start + pool], key=lambda i: lengths[i])]
    batches, start = [], 0
    while start < n:
        size = rng.randint(max(1, batch_size // 2), batch_size)
        batches.append(order[start:start + size])
        start += size
    rng.shuffle(batches)
    return batches


def outputs_in_secret_order(student: StudentCode, saved_name: str, build: dict, weights: dict, n: int,
                            batch_args: Callable[[list[int]], tuple], rng: random.Random, batch_size: int,
                            lengths: Sequence[int] | None = None, timeout: float = 300.0) -> Iterator[tuple[list[int], torch.Tensor]]:
    """(indices, output) for each batch of `secret_batches` of n examples: the worker runs the saved model on
    `batch_args(indices)`; the caller puts the outputs back in example order by their indices."""
    batches = secret_batches(n, rng, batch_size, lengths)
    return zip(batches, student.saved_model_outputs(saved_name, build, weights, (batch_args(b) for b in batches),
                                                    timeout=timeout))


def canary_subset(n: int, rng: random.Random) -> list[int]:
    """The secret random subset of n test examples whose perturbed copies are the canary."""
    return rng.sample(range(n), min(CANARY_SIZE, n // 4))


def graded_classifier(student: StudentCode, saved_name: str, build: dict, weights: dict, labels: torch.Tensor,
                      canary: list[int], batch_args: Callable[[list[int]], tuple], num_classes: int, test_set: str,
                      perturbed: str, threshold: float, rng: random.Random, batch_size: int,
                      lengths: Sequence[int] | None = None, timeout: float = 300.0) -> float:
    """Accuracy of the saved classifier (`build` with `weights`, rebuilt in the worker) on N = len(labels) test
    examples, followed by the canary: examples N.. are perturbed copies of the examples `canary`, described by
    `perturbed` ("slightly shifted test images"). `batch_args(indices)` makes the worker's arguments for examples
    `indices` of that pool of N + len(canary); all go in one secret order. Records both accuracies in
    `student.notes`; Feedback below `threshold` or when the canary accuracy falls more than CANARY_MARGIN below
    the accuracy on the same examples unperturbed. Returns the accuracy on the test set."""
    n = len(labels)
    logits = torch.full((n + len(canary), num_classes), float("nan"))
    for indices, out in outputs_in_secret_order(student, saved_name, build, weights, len(logits), batch_args, rng,
                                                batch_size, lengths, timeout):
        assert_shape(out, (len(indices), num_classes), f"{saved_name} logits")
        logits[indices] = out.float()
    correct = logits.argmax(dim=1) == torch.cat([labels, labels[canary]])
    accuracy = correct[:n].float().mean().item()
    plain, perturbed_accuracy = correct[canary].float().mean().item(), correct[n:].float().mean().item()
    student.notes[saved_name] = (f"test accuracy {accuracy:.2%} on {test_set}; {perturbed_accuracy:.2%} on {len(canary):,} "
                                 f"{perturbed} ({plain:.2%} on the same unperturbed)")
    if accuracy < threshold:
        raise Feedback(f"{saved_name}: test accuracy {accuracy:.2%} on {test_set}, below the required {threshold:.0%}")
    if perturbed_accuracy < plain - CANARY_MARGIN:
        student.notes[f"{saved_name} canary"] = "accuracy collapsed on the perturbed copies: flagged as a lookup"
        raise Feedback(f"{saved_name}: accuracy on {perturbed} fell from {plain:.2%} to {perturbed_accuracy:.2%}: the model "
                       "seems to recognise the test set rather than classify")
    return accuracy


EVAL_SLACK = 5.0  # a student's saved model may take this many times what the reference needs for a test split
EVAL_FLOOR_S = 30.0  # ... and at least this long (start-up, a slower grader)


def evaluation_limit(reference_seconds: float) -> float:
    """Seconds a student's saved model gets for one test split and its canary: EVAL_SLACK times what the reference
    model needs for the split on one CPU thread (measured, and declared beside each threshold), at least EVAL_FLOOR_S.
    The submission's whole budget still bounds it (StudentCode.time_left)."""
    return max(EVAL_FLOOR_S, EVAL_SLACK * reference_seconds)


def graded_accuracy(student: StudentCode, saved_name: str, model: str, config: str, dataset: str,
                    threshold: Threshold) -> float:
    """Rebuild the student's saved model `<saved_name>.*` in the worker as `model(config(**saved_config))`,
    classify the test split of image `dataset` there (and the canary: copies shifted by one pixel), and score it
    here (only this side holds the labels). See graded_classifier."""
    from dlcourse.data import load_image_split

    saved_config, weights = student.saved_model(saved_name)
    test, rng = load_image_split(dataset, train=False), secret_rng()
    canary = canary_subset(len(test), rng)
    images = test.normalized()
    pool = torch.cat([images, shift_one_pixel(images[canary], rng)])
    return graded_classifier(student, saved_name, call(model, call(config, **saved_config)), weights, test.labels, canary,
                             lambda indices: (pool[indices],), len(test.classes), f"{len(test):,} images of {test.source}",
                             "slightly shifted test images", threshold.value, rng, batch_size=1000,
                             timeout=evaluation_limit(threshold.reference_eval_s))


def shift_one_pixel(images: torch.Tensor, rng: random.Random) -> torch.Tensor:
    """Each image (N, C, H, W) rolled by one pixel up, down, left or right (drawn per image)."""
    moves = [(1, -2), (-1, -2), (1, -1), (-1, -1)]  # (pixels, dim) of torch.roll: down, up, right, left
    return torch.stack([image.roll(*moves[rng.randrange(4)]) for image in images])


def _explain_state_dict(info: dict) -> str:
    parts = ["the parameters of your module do not match the names and shapes the notebook's constructor defines"]
    if info.get("missing"):
        parts.append(f"expected but not found: {', '.join(info['missing'][:8])}")
    if info.get("unexpected"):
        parts.append(f"found but not expected: {', '.join(info['unexpected'][:8])}")
    for name, (got, want) in list(info.get("wrong_shape", {}).items())[:8]:
        parts.append(f"{name} has shape {tuple(got)}, expected {tuple(want)}")
    parts.append("keep the constructor as given in the notebook")
    return "; ".join(parts)


# -- pytest wiring ---------------------------------------------------------------------------------
def pytest_addoption(parser):
    group = parser.getgroup("autograder")
    group.addoption("--submission-dir", help="folder holding one unpacked submission")
    group.addoption("--results-json", help="where to write the results")
    group.addoption("--memory-mb", type=int, default=4096, help="memory cap of the worker (CPU runs)")
    group.addoption("--threads", type=int, default=1, help="torch threads in the worker")
    group.addoption("--call-timeout", type=float, default=20.0, help="seconds per layer-test call")
    group.addoption("--hide", action="append", default=[], help="weak isolation: a path the audit hook refuses (repeatable)")
    group.addoption("--submission-timeout", type=float, default=None,
                    help="seconds for the whole submission (default: the hidden tests' SUBMISSION_TIMEOUT_S)")
    group.addoption("--allow-weak-isolation", action="store_true",
                    help="run student code with the audit hook only where bubblewrap is unavailable")
    group.addoption("--worker-log", default=None, help="file for the worker's stdout/stderr")


def pytest_configure(config):
    config.addinivalue_line("markers", "points(n): how many points the test is worth")
    config.addinivalue_line("markers", "cuda_only(what): a threshold judged only where the grader has a CUDA GPU")
    config.addinivalue_line("markers", "cell(*grade_ids): answer cells checked for forbidden APIs before the test runs")
    config.pluginmanager.register(ResultCollector(config), "autograder-results")


def pytest_runtest_setup(item):
    """The course's rule for GPU-sized thresholds: judged only in CUDA runs, otherwise skipped with the reason (a
    skipped test earns nothing and its points are reported as not judged, never as passed)."""
    marker = item.get_closest_marker("cuda_only")
    if marker and not torch.cuda.is_available():
        pytest.skip(f"not judged: this grading run has no CUDA GPU, and {marker.args[0]} is judged only in CUDA runs")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item):
    """The forbidden-API rule, declared: before a test marked @pytest.mark.cell("grade_id", ...) (on its class, or on
    the test itself, which then overrides the class's), each of those answer cells is read for what the assignment
    forbids (StudentCode.check_rules); a hit fails the test with Feedback."""
    marker = item.get_closest_marker("cell")
    for grade_id in marker.args if marker else ():
        item.funcargs["student"].check_rules(grade_id)


@pytest.fixture(scope="module")
def student(request) -> StudentCode:
    config, module = request.config, request.module
    if not config.getoption("submission_dir"):
        pytest.exit("hidden tests need --submission-dir (run them through `python -m autograder grade`)", returncode=4)
    submission_dir = Path(config.getoption("submission_dir"))
    try:
        code = StudentCode.for_assignment(assignment_of(module.__file__), submission_dir,
                                          Path(config.getoption("worker_log") or submission_dir / "worker.log"),
                                          memory_mb=config.getoption("memory_mb"), threads=config.getoption("threads"),
                                          call_timeout=config.getoption("call_timeout"),
                                          budget_s=config.getoption("submission_timeout"),
                                          hide=[str(Path(p).resolve()) for p in config.getoption("hide")],
                                          allow_weak_isolation=config.getoption("allow_weak_isolation"))
    except IsolationUnavailable as exc:  # the grader's problem, not the student's: no results file, a grader-error row
        config._autograder_cannot_grade = str(exc)
        pytest.exit(f"cannot grade: {exc}", returncode=3)
    config._autograder_student = code
    yield code
    code.close()


class ResultCollector:
    def __init__(self, config):
        self.config, self.tests, self.started = config, {}, time.time()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if report.when == "call" or (report.when == "setup" and not report.passed):
            self.tests[item.nodeid] = self._entry(item, report, call)

    def _entry(self, item, report, call) -> dict:
        marker = item.get_closest_marker("points")
        if marker is None:
            raise RuntimeError(f"hidden test {item.name} has no @pytest.mark.points(n)")
        points = float(marker.args[0])
        doc = (item.function.__doc__ or item.name).strip().splitlines()[0]
        entry = {"id": item.nodeid.split("::", 1)[1], "title": doc, "group": getattr(item.cls, "GROUP", None) or "General",
                 "points": points, "earned": 0.0, "outcome": report.outcome, "message": ""}
        if report.passed:
            entry["earned"] = points
        elif report.skipped:
            entry["message"] = report.longrepr[2].removeprefix("Skipped: ") if isinstance(report.longrepr, tuple) else "skipped"
        elif call.excinfo is not None and call.excinfo.errisinstance(Feedback):
            entry["message"] = sanitise(str(call.excinfo.value), grader_files_text(assignment_of(item.module.__file__)),
                                        student=False)
        else:
            entry["outcome"] = "error"
            entry["message"] = "the test could not complete (an internal grader error; your instructor has the details)"
            print(f"[judge] internal error in {item.name}:\n{report.longreprtext}", file=sys.stderr)
        return entry

    def pytest_sessionfinish(self, session, exitstatus):
        path = self.config.getoption("results_json")
        if not path:
            return
        student = getattr(self.config, "_autograder_student", None)
        if getattr(self.config, "_autograder_cannot_grade", None):
            return
        results = {
            "tests": list(self.tests.values()),
            "events": student.events if student else [],
            "fatal": student.fatal if student else "the hidden tests did not start",
            "problems": student.problems if student else [],
            "notes": student.notes if student else {},
            "cell_errors": student.cell_errors if student else {},
            "forbidden_calls": sorted(student.forbidden_calls) if student else [],
            "isolation": student.isolation if student else "not started",
            "memory_cap": student.memory_cap if student else "not started",
            "device": "cuda" if torch.cuda.is_available() else "cpu",
            "seconds": round(time.time() - self.started, 1),
        }
        Path(path).write_text(json.dumps(results, indent=2))

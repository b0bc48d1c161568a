"""The student's code as the hidden tests see it: `StudentCode`, which runs everything in the sandboxed worker.

Each hidden test asks for the `student` fixture (autograder/pipeline/judge.py) and calls `student.run(...)` (a layer:
forward and backward with given weights) or `student.invoke(...)` (anything the notebook defines, with the
request language of autograder/kit/requests.py); what comes back is plain tensors to compare with references
computed in the trusted process. It also reads what the notebook saved (weights, configs, tokenizers), and keeps
the submission's time budget, so that no call can run past it.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from autograder.assignments import Assignment, load_assignment
from autograder.feedback import Feedback, sanitise
from autograder.fingerprints import Fingerprints, grader_fingerprints
from autograder.options import GradeOptions
from autograder.notebook import GradedCode, NotebookError, extract_graded_code, find_forbidden, read_notebook, written_answers
from autograder.kit.requests import (CallResult, RunResult, call_request, call_result, handle, layer_request, layer_result,
                                 module)
from autograder.sandbox import Sandbox, SandboxCrashed, SandboxPolicy, SandboxTimeout, WorkerStartFailed
from autograder.kit.stand_ins.remote import StandInServer

LOAD_TIMEOUT_S = 120.0  # importing torch and running the class-definition cells
MAX_WEIGHTS_BYTES = 1 << 30
MAX_CONFIG_BYTES = 64 << 10
MAX_TOKENIZER_BYTES = 64 << 20
THRESHOLD_RESERVE_S = 30.0  # of a submission's budget, never spent on scoring a threshold


# A saved model's outputs for each batch of forward arguments, in order, within `timeout` seconds for them all:
# the student's code in the worker (autograder/kit/scoring.py: `in_worker`) or the course's implementation in the
# judge (autograder/kit/trusted.py: `local_outputs`).
Outputs = Callable[[Iterable[tuple], float], Iterator[torch.Tensor]]

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
    threshold_budget_s: float = 600.0  # seconds one threshold may spend scoring (GradeOptions.threshold_budget)
    forbidden_names: list[str] = field(default_factory=list)  # for the static check (see notebook.find_forbidden)
    events: list[str] = field(default_factory=list)  # "timeout" / "crashed", one per occurrence
    forbidden_calls: set[str] = field(default_factory=set)
    cell_errors: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)  # facts worth showing, e.g. the accuracy reached
    reviews: dict[str, str] = field(default_factory=dict)  # for the TA only, never in the feedback: integrity checks
    answers: dict[str, str] = field(default_factory=dict)  # grade_id -> the student's answer cell, as graded
    written: dict[str, str] = field(default_factory=dict)  # grade_id -> the student's hand-graded (written) answer
    fatal: str | None = None  # no notebook, unreadable notebook: every test fails with this
    notebook_missing: bool = False  # the submission has no notebook (seen before any of its code ran)
    start_failure: str | None = None  # the worker could not start (the grader's fault): the judge records a grader-error

    @classmethod
    def for_assignment(cls, assignment: Assignment, submission_dir: Path, log_path: Path,
                       options: GradeOptions = GradeOptions(), threads: int | None = None) -> "StudentCode":
        """The student's code for `assignment`'s hidden tests, in the sandbox its spec and the run's `options` ask
        for (`threads`: the worker's torch threads, default options.judge_threads)."""
        spec = assignment.spec
        policy = SandboxPolicy(memory_mb=options.memory_mb, threads=threads or options.judge_threads,
                               device="cuda" if torch.cuda.is_available() else "cpu",
                               forbidden_attributes=list(spec.forbidden_attributes),
                               forbidden_modules=list(spec.forbidden_modules), hide=list(options.hide),
                               allow_weak_isolation=options.allow_weak_isolation, backend=options.sandbox,
                               preload_if_used=list(spec.preload_modules), preload_modules=list(options.preload_modules))
        return cls(Path(submission_dir), assignment.name, list(spec.run_cells), policy, Path(log_path),
                   call_timeout=options.call_timeout, budget_s=options.budget(assignment),
                   threshold_budget_s=options.threshold_budget,
                   forbidden_names=list(spec.forbidden_names))

    def __post_init__(self):
        self.deadline = time.monotonic() + self.budget_s if self.budget_s else None
        self.assignment = load_assignment(self.assignment_name)
        self.code: GradedCode | None = None
        self.sandbox: Sandbox | None = None
        self.stand_ins = StandInServer()  # the reference layers a test puts in the student's model run here
        self._load_failure = None
        self._rules_read: dict[tuple[str, str], list[str]] = {}  # check_rules: (grade_id, source) -> what it uses
        notebook = self.submission_dir / self.assignment.notebook
        if not notebook.exists():
            self.notebook_missing = True
            self.fatal = f"no {self.assignment.notebook} in the submission"
            return
        try:
            student_nb = read_notebook(notebook)
        except NotebookError as exc:
            self.fatal = str(exc)
            return
        release_nb = read_notebook(self.assignment.release_dir / self.assignment.notebook)
        try:
            self.code = extract_graded_code(release_nb, student_nb, self.run_cells)
        except NotebookError as exc:  # a cell that is not one: the student's notebook, never the grader, is at fault
            self.fatal = f"{self.assignment.notebook}: {exc}"
            return
        self.problems.extend(self.code.problems)
        self.answers = {c["grade_id"]: c["source"] for c in self.code.cells if c["grade_id"] in self.code.answer_ids}
        self.written = written_answers(release_nb, student_nb)
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

    def threshold_budget(self) -> float:
        """Seconds the next threshold may spend scoring: the run's threshold budget, or less when the submission's
        own budget ends sooner (THRESHOLD_RESERVE_S is kept for the tests after it)."""
        if self.deadline is None:
            return self.threshold_budget_s
        return max(0.0, min(self.threshold_budget_s, self.deadline - time.monotonic() - THRESHOLD_RESERVE_S))

    def check_rules(self, grade_id: str) -> None:
        """Fail if answer cell `grade_id` uses what the assignment forbids, found by reading it (the worker
        also trips on forbidden calls at run time)."""
        source = self.cell_source(grade_id)
        if (grade_id, source) not in self._rules_read:  # each test of a cell asks: read it once per judge
            self._rules_read[grade_id, source] = find_forbidden(source, self.forbidden_names, self.policy.forbidden_modules)
        used = self._rules_read[grade_id, source]
        if used:
            raise Feedback(f"cell '{grade_id}' uses what this assignment forbids: {', '.join(used)}")

    def cell_source(self, grade_id: str) -> str:
        """The code of one cell as the grader runs it (the student's, for an answer cell)."""
        if self.fatal:
            raise Feedback(self.fatal)
        assert self.code is not None, "set whenever fatal is not (__post_init__)"
        return next(c["source"] for c in self.code.cells if c["grade_id"] == grade_id)

    # -- running code in the worker ---------------------------------------------------------------
    def _ensure_started(self) -> None:
        if self.fatal:
            raise Feedback(self.fatal)
        if self._load_failure:
            raise Feedback(self._load_failure)
        if self.start_failure:
            raise WorkerStartFailed(self.start_failure)
        assert self.sandbox is not None, "set whenever fatal is not (__post_init__)"
        if self.sandbox.alive:
            return
        load_timeout = self.time_left(LOAD_TIMEOUT_S, "running your notebook's cells")
        try:
            reply = self.sandbox.start(timeout=load_timeout)
        except WorkerStartFailed as exc:  # not Feedback: the judge stops and records a grader-error, no student's zero
            self.start_failure = str(exc)
            raise
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
        assert self.sandbox is not None, "set whenever fatal is not (__post_init__)"
        timeout = self.time_left(timeout or self.call_timeout, what)
        try:
            header = self.stand_ins.prepare(header, tensors)
            reply, out = self.sandbox.request(header, tensors, timeout=timeout, stand_ins=self.stand_ins)
        except SandboxTimeout:
            self.events.append("timeout")
            raise Feedback(f"{what}: no answer within {timeout:.0f} s (an infinite loop?)") from None
        except SandboxCrashed as exc:
            self.events.append("crashed")
            raise Feedback(f"{what}: your code ended the grading process ({exc})") from None
        finally:
            self.stand_ins.finish()
        self.forbidden_calls.update(reply.get("forbidden_calls", []))
        if not reply.get("ok"):
            raise Feedback(self._explain(reply.get("error", {}), what))
        return reply, out

    @property
    def hidden(self) -> Fingerprints:
        """What of the grader's files must never reach the student (see feedback.sanitise)."""
        return grader_fingerprints(self.assignment, tuple(getattr(self, "answers", {}).values()))

    def _explain(self, error: dict, what: str) -> str:
        """The student's error as feedback: its type, message and traceback (student-controlled, so sanitised)."""
        raw = str(error.get("message", ""))
        kind, message = sanitise(str(error.get("type", "Error")), self.hidden), sanitise(raw, self.hidden)
        text = f"{what}: your code raised {kind}: {message}"
        if kind == "NotImplementedError":
            text = f"{what}: not implemented yet (NotImplementedError): complete the TODO in the notebook"
        elif isinstance((error.get("details") or {}).get("state_dict_mismatch"), dict):
            try:
                mismatch = _explain_state_dict(error["details"]["state_dict_mismatch"])
                text = f"{what}: {sanitise(mismatch, self.hidden, student=False)}"
            except Exception:  # noqa: BLE001  (the worker's reply is untrusted: shown as a plain message)
                pass
        if error.get("traceback"):
            text += f"\n{sanitise(str(error['traceback']), self.hidden)}"
        for gid, cell_error in self.cell_errors.items():
            text += f"\n(note: cell '{gid}' raised {cell_error.get('type')}: {cell_error.get('message')} when the grader ran it)"
        return text

    def run(self, build: dict, inputs: tuple = (), weights: dict | None = None, grad_output: torch.Tensor | None = None,
            substitutes: dict | None = None, what: str = "", timeout: float | None = None) -> RunResult:
        """Build a module in the worker, load `weights` (all of them, names must match), run forward on
        `inputs`, and with `grad_output` also backward. Returns the output and the gradients (requests.layer_request)."""
        header, tensors, marked = layer_request(build, inputs, weights, grad_output, substitutes)
        reply, out = self._request(header, tensors, what or build["$call"], timeout)
        try:
            return layer_result(reply, out, marked, inputs)
        except TypeError as exc:
            raise Feedback(f"{what or build['$call']}: {exc}") from None

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

    def saved_model(self, name: str, config_class: str | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
        """The (config, weights) the student's notebook saved as `<name>.json` / `<name>.safetensors`; the config
        as the arguments of `config_class` (its name) today, whichever release's format saved it."""
        from safetensors.torch import load_file

        from dlcourse.export import constructor_arguments

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
            config = constructor_arguments(json.loads(config_path.read_text()), config_class)
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
        after_first = started  # set by the first batch, read from the third on
        for i, args in enumerate(batches):
            elapsed = time.monotonic() - started
            if i == 2:  # the first batch also built the model: estimate the rest from the second
                estimate = (after_first - started) + (time.monotonic() - after_first) * (len(batches) - 1)
                if estimate > timeout:  # say so now rather than after the whole limit
                    self.events.append("timeout")
                    raise Feedback(f"{saved_name}: evaluating the test set would take about {estimate:.0f} s "
                                   f"({len(batches)} batches), more than the {timeout:.0f} s allowed")
            if timeout - elapsed <= 0:
                self.events.append("timeout")
                raise Feedback(f"{saved_name}: evaluating the test set took more than {timeout:.0f} s")
            output = self.invoke(target, *args, what=f"{saved_name} on the test set", timeout=timeout - elapsed).value
            if not isinstance(output, torch.Tensor):
                raise Feedback(f"{saved_name}: forward returned {type(output).__name__}, expected a tensor of logits")
            if i == 0:
                after_first = time.monotonic()
            yield output
            target = handle(saved_name)

    def close(self) -> None:
        if self.sandbox:
            self.sandbox.close()


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

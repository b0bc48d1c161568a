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
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from autograder.assignments import load_assignment
from autograder.feedback import Feedback
from autograder.notebook import NotebookError, extract_graded_code, find_forbidden, read_notebook
from autograder.sandbox import Sandbox, SandboxCrashed, SandboxPolicy, SandboxTimeout

LOAD_TIMEOUT_S = 120.0  # importing torch and running the class-definition cells
MAX_WEIGHTS_BYTES = 1 << 30
MAX_CONFIG_BYTES = 64 << 10


def call(name: str, *args, **kwargs) -> dict:
    """A constructor call for the worker: call("ViT", call("ViTConfig", depth=2)) builds ViT(ViTConfig(depth=2))."""
    return {"call": name, "args": list(args), "kwargs": kwargs}


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
    forbidden_names: list[str] = field(default_factory=list)  # for the static check (see notebook.find_forbidden)
    events: list[str] = field(default_factory=list)  # "timeout" / "crashed", one per occurrence
    forbidden_calls: set[str] = field(default_factory=set)
    cell_errors: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)  # facts worth showing, e.g. the accuracy reached
    fatal: str | None = None  # no notebook, unreadable notebook: every test fails with this

    def __post_init__(self):
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
        try:
            reply = self.sandbox.start(timeout=LOAD_TIMEOUT_S)
        except SandboxTimeout:
            self.events.append("timeout")
            self._load_failure = (f"running your notebook's class-definition cells took more than {LOAD_TIMEOUT_S:.0f} s "
                                  "(is there an infinite loop outside a function?)")
            raise Feedback(self._load_failure) from None
        except SandboxCrashed as exc:
            self.events.append("crashed")
            self._load_failure = f"running your notebook's cells ended the grading process ({exc})"
            raise Feedback(self._load_failure) from None
        self.cell_errors = reply.get("cell_errors", {})
        self.forbidden_calls.update(reply.get("forbidden_calls", []))

    def _request(self, header: dict, tensors: dict, what: str, timeout: float | None) -> tuple[dict, dict]:
        self._ensure_started()
        timeout = timeout or self.call_timeout
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

    def _explain(self, error: dict, what: str) -> str:
        kind, message = error.get("type", "Error"), error.get("message", "")
        if kind == "NotImplementedError":
            text = f"{what}: not implemented yet (NotImplementedError): complete the TODO in the notebook"
        elif kind == "StudentError" and message.startswith("{"):
            text = f"{what}: {_explain_state_dict(json.loads(message))}"
        else:
            text = f"{what}: your code raised {kind}: {message}"
        if error.get("traceback"):
            text += f"\n{error['traceback']}"
        for gid, cell_error in self.cell_errors.items():
            text += f"\n(note: cell '{gid}' raised {cell_error['type']}: {cell_error['message']} when the grader ran it)"
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
        reply, out = self._request(header, tensors, what or build["call"], timeout)
        return RunResult(out["output"], [out.get(f"input_grad.{i}") for i in range(len(inputs))],
                         {k[len("param_grad."):]: v for k, v in out.items() if k.startswith("param_grad.")},
                         reply.get("param_shapes", {}))

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

    def predict(self, name: str, build: dict, weights: dict, images: torch.Tensor, batch_size: int = 1000,
                timeout: float = 300.0) -> torch.Tensor:
        """Logits of the student's saved model for `images`, computed in the worker batch by batch.
        Labels never leave the trusted side."""
        outputs, started = [], time.monotonic()
        for start in range(0, len(images), batch_size):
            header = {"cmd": "run", "num_inputs": 1}
            tensors = {"input.0": images[start:start + batch_size].contiguous()}
            if start == 0:
                header.update(build=build, keep_as=name, exact_weights=True)
                tensors.update({f"weight.{k}": v for k, v in weights.items()})
            else:
                header["use"] = name
            remaining = timeout - (time.monotonic() - started)
            if remaining <= 0:
                self.events.append("timeout")
                raise Feedback(f"{name}: evaluating the test set took more than {timeout:.0f} s")
            _, out = self._request(header, tensors, f"{name} on the test images", remaining)
            outputs.append(out["output"])
        return torch.cat(outputs)

    def close(self) -> None:
        if self.sandbox:
            self.sandbox.close()


def skip_unless_cuda(what: str) -> None:
    """The course's rule for GPU-sized thresholds: judged only in CUDA runs, otherwise skipped with the reason
    (a skipped test earns nothing and its points are reported as not judged, never as passed)."""
    if not torch.cuda.is_available():
        pytest.skip(f"not judged: this grading run has no CUDA GPU, and {what} is judged only in CUDA runs")


def graded_accuracy(student: StudentCode, saved_name: str, model: str, config: str, dataset: str,
                    threshold: float) -> float:
    """Rebuild the student's saved model `<saved_name>.*` in the worker as `model(config(**saved_config))`,
    classify the test split of `dataset` there, and score it here (only this side holds the labels).
    Records the accuracy in `student.notes`; raises Feedback below `threshold`. Returns the accuracy."""
    from autograder.feedback import assert_shape
    from dlcourse.data import load_image_split

    saved_config, weights = student.saved_model(saved_name)
    test = load_image_split(dataset, train=False)
    logits = student.predict(saved_name, call(model, call(config, **saved_config)), weights, test.normalized())
    assert_shape(logits, (len(test), len(test.classes)), f"{saved_name} logits")
    accuracy = (logits.argmax(dim=1) == test.labels).float().mean().item()
    student.notes[saved_name] = f"test accuracy {accuracy:.2%} on {len(test):,} images of {test.source}"
    if accuracy < threshold:
        raise Feedback(f"{saved_name}: test accuracy {accuracy:.2%} on {test.source}, below the required {threshold:.0%}")
    return accuracy


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
    group.addoption("--hide", action="append", default=[], help="a path the worker must not see (repeatable)")
    group.addoption("--worker-log", default=None, help="file for the worker's stdout/stderr")


def pytest_configure(config):
    config.addinivalue_line("markers", "points(n): how many points the test is worth")
    config.pluginmanager.register(ResultCollector(config), "autograder-results")


@pytest.fixture(scope="module")
def student(request) -> StudentCode:
    config, module = request.config, request.module
    if not config.getoption("submission_dir"):
        pytest.exit("hidden tests need --submission-dir (run them through `python -m autograder grade`)", returncode=4)
    submission_dir = Path(config.getoption("submission_dir"))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    policy = SandboxPolicy(memory_mb=config.getoption("memory_mb"), threads=config.getoption("threads"), device=device,
                           forbidden_attributes=module.FORBIDDEN_ATTRIBUTES, forbidden_modules=module.FORBIDDEN_MODULES,
                           hide=[str(Path(p).resolve()) for p in config.getoption("hide")])
    code = StudentCode(submission_dir, module.ASSIGNMENT, module.RUN_CELLS, policy,
                       Path(config.getoption("worker_log") or submission_dir / "worker.log"),
                       call_timeout=config.getoption("call_timeout"), forbidden_names=module.FORBIDDEN_NAMES)
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
            entry["message"] = str(call.excinfo.value)
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
        results = {
            "tests": list(self.tests.values()),
            "events": student.events if student else [],
            "fatal": student.fatal if student else "the hidden tests did not start",
            "problems": student.problems if student else [],
            "notes": student.notes if student else {},
            "cell_errors": student.cell_errors if student else {},
            "forbidden_calls": sorted(student.forbidden_calls) if student else [],
            "isolation": student.isolation if student else "not started",
            "device": "cuda" if torch.cuda.is_available() else "cpu",
            "seconds": round(time.time() - self.started, 1),
        }
        Path(path).write_text(json.dumps(results, indent=2))

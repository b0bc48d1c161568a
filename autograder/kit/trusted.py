"""Thresholds judged from what was learned: the student's saved weights in the course's own implementation.

Where the release fixes an architecture (its constructors and parameter names are given, only `forward` is the
student's), a threshold is computed here, in the trusted judge, never in the worker:

1. `course_model` loads the saved weights into the course's implementation, built from the saved config. That
   implementation is the source notebook's own solution cells (source/<a>/<a>.ipynb, the cells `run_cells` names),
   run once per judge in a namespace of this process: one place for the reference, and never in the worker's view.
   The saved keys and shapes must be exactly those the release's constructors make for that config; anything else
   is Feedback naming the first differences.
2. `local_outputs` runs that model on the batches the threshold sends, as the worker would, on the grader's device.
3. `compare_with_student` runs the student's own code on a small slice in the worker with the same weights. Where the
   two disagree beyond numerical noise, a note says so (it points to a layer bug) and the trusted number stands.

A `forward` that looks test examples up, or a model that reads the labels of a split it can regenerate, earns
nothing here: only the weights are the student's.
"""
from __future__ import annotations

import contextlib
import functools
import io
import sys
import time
import types
from collections.abc import Iterable, Iterator

import torch
import torch.nn as nn

from autograder.assignments import load_assignment
from autograder.feedback import Feedback
from autograder.course_cells import FILE_NAME as COURSE_CELLS_FILE, course_cells
from autograder.kit.student import Outputs, StudentCode

# Outputs of the student's code and of the course's implementation on the same weights and inputs agree to float
# noise (reduction orders, threads): 1e-3 relative to the outputs' scale is far above that noise and far below
# what a layer bug changes (a missing scale or residual moves logits by tens of percent).
AGREEMENT_RTOL = 1e-3
COMPARED_EXAMPLES = 64  # the slice the student's own code runs on in the worker


@functools.cache
def course_namespace(assignment_name: str) -> dict:
    """The names the source notebook's solution cells (the spec's run_cells: autograder/course_cells.py) define, run
    in this process once."""
    assignment = load_assignment(assignment_name)
    cells = course_cells(assignment)
    if not cells:
        raise RuntimeError(f"{assignment_name}: no course cells here (source/{assignment_name}/{assignment.notebook} or "
                           f"{COURSE_CELLS_FILE}): the grader cannot judge in the course's model")
    module = types.ModuleType(f"autograder_course_{assignment_name}")  # a real module: @dataclass looks its own up
    sys.modules[module.__name__] = module
    namespace = module.__dict__
    with contextlib.redirect_stdout(io.StringIO()):  # the setup cell's "Using device ..." is not the judge's to print
        for gid in assignment.spec.run_cells:
            where = f"source/{assignment_name}/{assignment.notebook}:{gid}"
            exec(compile(cells[gid], where, "exec"), namespace)  # noqa: S102  (the course's own)
    return namespace


def state_dict_mismatch(expected: dict[str, torch.Tensor], saved: dict[str, torch.Tensor]) -> list[str]:
    """What differs between the keys and shapes a model's constructors make and the saved ones: [] when none."""
    missing = [k for k in expected if k not in saved]
    extra = [k for k in saved if k not in expected]
    shapes = [f"{k} has shape {tuple(saved[k].shape)}, the constructor makes {tuple(expected[k].shape)}"
              for k in expected if k in saved and tuple(saved[k].shape) != tuple(expected[k].shape)]
    problems = []
    if missing:
        problems.append(f"missing: {', '.join(missing[:8])}" + (" ..." if len(missing) > 8 else ""))
    if extra:
        problems.append(f"not made by the constructors: {', '.join(extra[:8])}" + (" ..." if len(extra) > 8 else ""))
    return problems + shapes[:8]


def course_model(student: StudentCode, saved_name: str, model: str, config: str) -> tuple[nn.Module, dict, dict]:
    """(the course's `model(config(**saved config))` holding the saved weights, in eval mode on the grader's device,
    the saved config, the saved weights). Feedback when the config does not build the model or the weights are not
    exactly the state dict the release's constructors make for it."""
    saved_config, weights = student.saved_model(saved_name, config)
    namespace = course_namespace(student.assignment_name)
    try:
        built = namespace[model](namespace[config](**saved_config))
    except Exception as exc:  # noqa: BLE001  (a config the course's constructors refuse is the student's to fix)
        raise Feedback(f"{saved_name}.json: the notebook's {model} cannot be built from the saved config "
                       f"({type(exc).__name__}: {exc}); save the config the model was built with") from None
    problems = state_dict_mismatch(built.state_dict(), weights)
    if problems:
        raise Feedback(f"{saved_name}.safetensors is not the state dict that the notebook's {model} makes for the saved "
                       f"config ({'; '.join(problems)}): keep the constructors as given and save with save_model")
    built.load_state_dict(weights, strict=True)
    return built.to(student.policy.device).eval(), saved_config, weights


def course_decoding(student: StudentCode, model: nn.Module, decode, *args, **kwargs) -> torch.Tensor:
    """`decode(*args, **kwargs)` (the course's greedy decoder on `model`, or a method of it) here, with the tensors of
    `args` on the model's device, the grader's threads and no gradients: its token ids, on the CPU."""
    from dlcourse.threads import torch_threads

    device = next(model.parameters()).device
    with torch_threads(device, threads=student.policy.threads), torch.no_grad():
        out = decode(*(a.to(device) if isinstance(a, torch.Tensor) else a for a in args), **kwargs)
    return out.long().cpu()


def local_outputs(model: nn.Module, saved_name: str, student: StudentCode) -> Outputs:
    """The `outputs` of a threshold scorer (autograder/kit/scoring.py) for the course's `model`, run here."""
    from dlcourse.threads import torch_threads

    device = next(model.parameters()).device

    def outputs(batches: Iterable[tuple], timeout: float) -> Iterator[torch.Tensor]:
        started = time.monotonic()
        with torch_threads(device, threads=student.policy.threads), torch.no_grad():
            for args in batches:
                if time.monotonic() - started > timeout:
                    raise Feedback(f"{saved_name}: evaluating the test set took more than {timeout:.0f} s")
                yield model(*(a.to(device) if isinstance(a, torch.Tensor) else a for a in args)).float().cpu()
    return outputs


def compare_with_student(student: StudentCode, saved_name: str, build: dict, weights: dict, model: nn.Module,
                         args: tuple) -> None:
    """Run the student's code (`build`, a call() spec, with the saved `weights`) on `args` in the worker, and note
    in the feedback where its outputs differ from the course's `model` on the same inputs. Never changes a score:
    the student's code may fail, hang or disagree, and the trusted number stands."""
    try:
        theirs = next(iter(student.saved_model_outputs(saved_name, build, weights, [args], timeout=student.call_timeout)))
    except Feedback as exc:
        student.notes[f"{saved_name} check"] = (f"your code could not be run on the saved weights ({exc}); the threshold "
                                                "was computed with the course's implementation of the notebook's model")
        return
    with torch.no_grad():
        device = next(model.parameters()).device
        ours = model(*(a.to(device) if isinstance(a, torch.Tensor) else a for a in args)).float().cpu()
    if theirs.shape != ours.shape:
        difference = f"its output has shape {tuple(theirs.shape)}, expected {tuple(ours.shape)}"
    else:  # as log-probabilities: a constant per row changes no prediction and no loss (logits of every model here)
        theirs, ours = theirs.double().log_softmax(-1), ours.double().log_softmax(-1)
        gap = (theirs - ours).abs().max().item()
        if gap <= AGREEMENT_RTOL * max(1.0, ours.abs().max().item()):
            return
        difference = f"its outputs differ by up to {gap:.3g}"
    student.notes[f"{saved_name} check"] = (
        f"on {len(args[0])} test examples, your code with your saved weights does not compute what the notebook's "
        f"model computes ({difference}): a layer's forward differs from the notebook's specification (see the layer "
        "tests); the threshold was computed with the course's implementation of the model on your weights")


def compare_decoding(student: StudentCode, saved_name: str, what: str, function: dict, args: tuple, kwargs: dict,
                     ours: torch.Tensor) -> None:
    """Run the student's decoding `function` (a request: their greedy decoder by name, or a method of their model,
    holding the saved weights) on `args` and `kwargs` in the worker, and note in the feedback where the token ids it
    returns differ from `ours`, the course's decoding of the same inputs. `what` names it ("greedy_translate"). Never
    changes a score, like compare_with_student."""
    try:
        theirs = student.invoke(function, *args, what=f"{saved_name} with your {what}", timeout=student.call_timeout,
                                **kwargs).value
    except Feedback as exc:
        student.notes[f"{saved_name} check"] = (f"your {what} could not be run on the saved weights ({exc}); the "
                                                "threshold was computed with the course's implementation")
        return
    if isinstance(theirs, torch.Tensor) and theirs.shape == ours.shape and torch.equal(theirs.long(), ours.long()):
        return
    student.notes[f"{saved_name} check"] = (
        f"on {len(ours)} held-out examples, your {what} with your saved weights does not decode what the notebook's "
        "model and decoding decode: a layer or the decoding differs from the notebook's specification (see the layer "
        "tests); the threshold was computed with the course's implementation on your weights")

"""autograder.feedback.sanitise: what of a student-controlled message may reach the feedback file, matched by the
fingerprints of the grader's hidden text (autograder/fingerprints.py)."""
from __future__ import annotations

from autograder.assignments import load_assignment
from autograder.feedback import EXCERPT_CHARS, MESSAGE_CHARS, REMOVED, sanitise
from autograder.fingerprints import Fingerprints, grader_fingerprints

SECRET = "expected = reference_attention(x, weights)  # the grader's secret line"


def hidden(tmp_path):
    (tmp_path / "test_x.py").write_text(f"def test_it():\n    {SECRET}\n    return x\n")
    (tmp_path / "release.ipynb").write_text('{"cells": [{"source": ["shared = template_line_of_the_release()\\n"]}]}')
    (tmp_path / "source.ipynb").write_text('{"cells": [{"source": ["shared = template_line_of_the_release()\\n", '
                                           '"solution = only_in_the_instructors_notebook(x)\\n"]}]}')
    return Fingerprints.of_files((tmp_path / "test_x.py", tmp_path / "source.ipynb"), (tmp_path / "release.ipynb",))


def test_hidden_lines_are_removed_and_public_ones_kept(tmp_path):
    text = sanitise(f"oops\n{SECRET}\nprefix {SECRET} suffix\nsolution = only_in_the_instructors_notebook(x)\n"
                    "shared = template_line_of_the_release()", hidden(tmp_path))
    assert SECRET not in text and "only_in_the_instructors" not in text
    assert text.splitlines() == ["oops", REMOVED, "shared = template_line_of_the_release()"]


def test_a_piece_of_a_hidden_line_is_removed_from_a_students_excerpt_only(tmp_path):
    piece = "reference_attention(x, weights)"
    assert REMOVED in sanitise(piece, hidden(tmp_path))
    assert sanitise(piece, hidden(tmp_path), student=False) == piece  # the tests' own messages may share words


def test_long_messages_are_cut_and_escapes_stripped():
    text = sanitise("\x1b[31mred\x1b[0m\x07 \u202eevil\x00" + "x" * 5000)
    assert text.startswith("red evil") and len(text) <= EXCERPT_CHARS and text.endswith("…")
    assert len(sanitise("y" * 10_000, student=False)) <= MESSAGE_CHARS


def test_the_real_hidden_tests_are_indexed():
    fingerprints = grader_fingerprints(load_assignment("vit"))
    line = 'ref = fill_parameters_(ConvPatchify(1, 7, 8), seed=1)'  # a line of autograder/hidden_tests/test_vit.py
    assert fingerprints.holds_line(f"boom: {line}") and not fingerprints.holds_line(f"boom: {line[:-2]}")
    assert sanitise(f"boom: {line}", fingerprints, student=False) == REMOVED


def test_a_tests_own_hint_and_a_students_own_line_are_kept(tmp_path):
    """A hidden test's messages are written for students (string literals are not hidden code), and a student's own
    line in their traceback reveals nothing, even where it equals the solution's."""
    hint = "call optimizer.zero_grad() in every batch, before backward"
    (tmp_path / "test_x.py").write_text(f'def test_it():\n    {SECRET}\n    raise Feedback(\n        "{hint}")\n')
    (tmp_path / "release.ipynb").write_text('{"cells": []}')
    (tmp_path / "source.ipynb").write_text('{"cells": [{"source": ["solution = only_in_the_instructors_notebook(x)\\n"]}]}')
    hidden = Fingerprints.of_files((tmp_path / "test_x.py", tmp_path / "source.ipynb"), (tmp_path / "release.ipynb",))
    assert sanitise(f"failed: {hint}", hidden, student=False) == f"failed: {hint}"
    assert sanitise(SECRET, hidden, student=False) == REMOVED
    traceback = "  loops, line 3, in train: solution = only_in_the_instructors_notebook(x)"
    assert sanitise(traceback, hidden) == REMOVED
    own = ("def train(x):\n    solution = only_in_the_instructors_notebook(x)\n",)
    assert sanitise(traceback, hidden.without(own)) == traceback


def test_fingerprints_hold_no_hidden_text_and_match_as_the_files_do(tmp_path):
    """The Gradescope zip's form (to_json, what it ships instead of the source notebook) holds no hidden line, and
    read back it sanitises exactly as the fingerprints computed from the files."""
    computed = hidden(tmp_path)
    shipped = computed.to_json()
    assert "only_in_the_instructors" not in shipped and "reference_attention" not in shipped
    loaded = Fingerprints.from_json(shipped)
    assert loaded == computed
    for message in (f"oops\n{SECRET}", "reference_attention(x, weights)", "shared = template_line_of_the_release()",
                    "solution = only_in_the_instructors_notebook(x) and more"):
        for student in (True, False):
            assert sanitise(message, loaded, student) == sanitise(message, computed, student)

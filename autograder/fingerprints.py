"""Fingerprints of the grader's hidden text: what feedback.sanitise needs to find a line of the hidden tests or of the
instructor's notebook in a message, without the text itself.

The hidden text is every line of the hidden tests' code (string literals blanked: their messages are written for
students) and of the source notebook's cells, stripped, less the lines a student has anyway (the release notebook's).
A fingerprint is a keyed 64-bit BLAKE2b digest (a random key per set, so that no table made elsewhere applies):
- of each hidden line at least MIN_HIDDEN_LINE characters long, found anywhere in a message's line;
- of each MIN_HIDDEN_LINE-character piece of every hidden line: a student's excerpt whose pieces are all among them
  is (a piece of) hidden text.
Every grader computes them from the files when it starts (`of_files`), except the Gradescope zip, which ships no
solution notebook: `python -m autograder gradescope` computes them when it builds the zip and writes them as
source/<a>/fingerprints.json (`to_json`), which grading there reads (`grader_fingerprints`). One code path matches
either.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import os
import tokenize
from collections.abc import Collection
from pathlib import Path

MIN_HIDDEN_LINE = 20  # shorter lines ("return x", "def forward(self, x):") are common to everyone's code
FILE_NAME = "fingerprints.json"  # in source/<a>/ of the Gradescope zip, in place of the source notebook


def file_lines(path: Path) -> list[str]:
    """The stripped lines of a file; of a notebook, those of its cells (code and text); of Python source, its code
    without string literals (a hidden test's messages and titles are written for students)."""
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if path.suffix == ".ipynb" and text:
        text = "\n".join("".join(c.get("source", "")) for c in json.loads(text).get("cells", []))
    elif path.suffix == ".py":
        text = _without_strings(text)
    return [line.strip() for line in text.splitlines()]


def _without_strings(source: str) -> str:
    """`source` with the characters of its string literals blanked (lines keep their places)."""
    rows = [list(line) for line in source.splitlines(True)]
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type != tokenize.STRING:
                continue
            (first, start), (last, end) = token.start, token.end
            for row in range(first, last + 1):
                chars = rows[row - 1]
                for col in range(start if row == first else 0, end if row == last else len(chars)):
                    if chars[col] != "\n":
                        chars[col] = " "
    except (tokenize.TokenError, SyntaxError, IndexError):
        return source
    return "".join("".join(chars) for chars in rows)


def _digest(key: bytes, text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), key=key, digest_size=8).hexdigest()


@dataclasses.dataclass(frozen=True)
class Fingerprints:
    """The fingerprints of one grader's hidden text (see the module's docstring); `own`: the student's own code,
    whose lines reveal nothing to them even where they equal the solution's."""

    key: bytes = b""
    lines: frozenset[str] = frozenset()  # digests of the hidden lines of MIN_HIDDEN_LINE characters or more
    starts: dict[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)  # digest of such a line's first
    # MIN_HIDDEN_LINE characters: the lengths of the lines that start so
    pieces: frozenset[str] = frozenset()  # digests of every MIN_HIDDEN_LINE-character piece of a hidden line
    own: str = ""

    def __hash__(self) -> int:
        return hash((self.key, self.lines, self.pieces, self.own))

    @classmethod
    def of_lines(cls, hidden: list[str], public: Collection[str] = frozenset(), key: bytes | None = None) -> "Fingerprints":
        """The fingerprints of the stripped `hidden` lines that are not `public`."""
        key = os.urandom(16) if key is None else key
        secret = {line for line in hidden if len(line) >= MIN_HIDDEN_LINE and line not in public}
        starts: dict[str, set[int]] = {}
        for line in secret:
            starts.setdefault(_digest(key, line[:MIN_HIDDEN_LINE]), set()).add(len(line))
        pieces = {_digest(key, line[i:i + MIN_HIDDEN_LINE]) for line in secret
                  for i in range(len(line) - MIN_HIDDEN_LINE + 1)}
        return cls(key, frozenset(_digest(key, line) for line in secret),
                   {d: tuple(sorted(lengths)) for d, lengths in starts.items()}, frozenset(pieces))

    @classmethod
    def of_files(cls, hidden: tuple[Path, ...], public: tuple[Path, ...] = ()) -> "Fingerprints":
        """The fingerprints of the lines of the `hidden` files that no `public` file holds."""
        shown = {line for path in public for line in file_lines(Path(path))}
        return cls.of_lines([line for path in hidden for line in file_lines(Path(path))], shown)

    def without(self, own: tuple[str, ...]) -> "Fingerprints":
        """These fingerprints less the student's `own` code's lines (their answer cells)."""
        if not own:
            return self
        mine = {_digest(self.key, line.strip()) for text in own for line in text.splitlines()}
        return dataclasses.replace(self, lines=self.lines - mine, own="\n".join(own))

    def _windows(self, text: str) -> list[str]:
        return [_digest(self.key, text[i:i + MIN_HIDDEN_LINE]) for i in range(len(text) - MIN_HIDDEN_LINE + 1)]

    def holds_line(self, text: str) -> bool:
        """Whether `text` holds a whole hidden line (not one of the student's own)."""
        if not self.lines:
            return False
        for start, window in enumerate(self._windows(text)):
            for length in self.starts.get(window, ()):
                if start + length <= len(text) and _digest(self.key, text[start:start + length]) in self.lines:
                    return True
        return False

    def is_piece(self, stripped: str) -> bool:
        """Whether the stripped `stripped` (MIN_HIDDEN_LINE characters or more) is a piece of the hidden text: each of
        its MIN_HIDDEN_LINE-character pieces is one of a hidden line's, and it is not in the student's own code."""
        if len(stripped) < MIN_HIDDEN_LINE or not self.pieces or stripped in self.own:
            return False
        return all(window in self.pieces for window in self._windows(stripped))

    def to_json(self) -> str:
        return json.dumps({"key": self.key.hex(), "lines": sorted(self.lines),
                           "starts": {d: list(v) for d, v in sorted(self.starts.items())},
                           "pieces": sorted(self.pieces)}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "Fingerprints":
        data = json.loads(text)
        return cls(bytes.fromhex(data["key"]), frozenset(data["lines"]),
                   {d: tuple(v) for d, v in data["starts"].items()}, frozenset(data["pieces"]))


def shipped_file(assignment) -> Path:
    """Where the Gradescope zip puts an assignment's fingerprints."""
    return assignment.source_dir / FILE_NAME


FAMILIES = Path(__file__).parent / "kit" / "families.py"  # the hidden tests that several assignments share


@functools.lru_cache(maxsize=8)
def _grader_fingerprints(hidden_tests: Path, notebook: Path, release: Path, shipped: Path) -> Fingerprints:
    if notebook.is_file():
        return Fingerprints.of_files((hidden_tests, FAMILIES, notebook), (release,))
    if shipped.is_file():
        return Fingerprints.from_json(shipped.read_text())
    raise FileNotFoundError(f"neither {notebook} nor {shipped}: the grader cannot keep the solution out of feedback")


@functools.lru_cache(maxsize=64)
def _without_own(fingerprints: Fingerprints, own: tuple[str, ...]) -> Fingerprints:
    return fingerprints.without(own)


def grader_fingerprints(assignment, own: tuple[str, ...] = ()) -> Fingerprints:
    """The fingerprints of an assignment's (autograder.assignments.Assignment) hidden tests (with the test families
    they instantiate, autograder/kit/families.py) and source notebook, less
    the release notebook's lines and the student's `own` answer cells: computed from the files once per process, or
    read from the zip's fingerprints.json where the source notebook is not there (Gradescope)."""
    computed = _grader_fingerprints(assignment.hidden_tests, assignment.source_dir / assignment.notebook,
                                    assignment.release_dir / assignment.notebook, shipped_file(assignment))
    return _without_own(computed, tuple(own))

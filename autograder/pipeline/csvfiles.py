"""CSV files a TA makes or exports with a spreadsheet: a byte-order mark (Excel's "CSV UTF-8") is dropped, and the
separator is the header line's (comma, semicolon as in locales with a decimal comma, or tab)."""
from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SEPARATORS = ",;\t"


@contextmanager
def csv_rows(path: Path) -> Iterator[csv.DictReader]:
    """A DictReader of `path`: the first line is the header; `reader.line_num` names a line in messages."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        header = f.readline()
        f.seek(0)
        counts = {s: header.count(s) for s in SEPARATORS}
        separator = max(SEPARATORS, key=lambda s: counts[s]) if any(counts.values()) else ","
        yield csv.DictReader(f, delimiter=separator)

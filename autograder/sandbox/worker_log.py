"""The worker's output: copied through a pipe into a log file that keeps its first and last LOG_KEEP_BYTES
(`TruncatingLog`), and read back for error messages (`log_tail`); and how a forked child ends (`exit_child`). Standard
library only: the worker template imports it inside the sandbox."""
from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import NoReturn

LOG_KEEP_BYTES = 1 << 20  # of the worker's output, the first and the last MiB are kept


def log_tail(path: Path, lines: int = 20, indent: str = "    ") -> str:
    """The last `lines` non-blank lines of a log file, indented, for an error message ("(empty)" when there are none)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 16384))
            text = f.read().decode(errors="replace")
    except OSError as exc:
        return f"{indent}(cannot read {path}: {exc.strerror})"
    kept = [line.strip() if lines == 1 else line for line in text.splitlines() if line.strip()][-lines:] or ["(empty)"]
    return "\n".join(f"{indent}{line}" for line in kept)


class TruncatingLog(threading.Thread):
    """Copies the worker's output into the log file: the first LOG_KEEP_BYTES, then only a count of what was
    dropped and the last LOG_KEEP_BYTES, so a submission that prints gigabytes costs neither memory nor disk."""

    def __init__(self, fd: int, path: Path):
        super().__init__(daemon=True)
        self.fd, self.path = fd, path

    def run(self) -> None:
        head, tail, dropped = 0, bytearray(), 0
        with open(self.path, "ab", buffering=0) as log:
            while chunk := os.read(self.fd, 1 << 16):
                if head < LOG_KEEP_BYTES:
                    log.write(chunk[: LOG_KEEP_BYTES - head])
                    chunk, head = chunk[LOG_KEEP_BYTES - head:], head + min(len(chunk), LOG_KEEP_BYTES - head)
                    if head == LOG_KEEP_BYTES:
                        log.write(b"\n[... output past the first MiB is dropped by the grader; its last MiB follows "
                                  b"when the worker ends ...]\n")
                tail += chunk
                if len(tail) > LOG_KEEP_BYTES:
                    dropped += len(tail) - LOG_KEEP_BYTES
                    del tail[: len(tail) - LOG_KEEP_BYTES]
            if dropped:
                log.write(f"\n[... {dropped:,} bytes of output were dropped; the last ones follow ...]\n".encode())
            log.write(tail)
        os.close(self.fd)


def exit_child(code: int) -> NoReturn:
    """End a forked child (a judge, a worker forked from the template) with `code`, after flushing what it printed;
    through os._exit, so that nothing of its parent's (atexit handlers, buffers) runs twice."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001  (a closed or broken stream: nothing more to save)
            pass
    os._exit(code)

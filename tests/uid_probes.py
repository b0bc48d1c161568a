"""Probes of the uid sandbox backend, run by tests/test_sandbox.py inside tests/container_like.py's wrapper:

    python tests/uid_probes.py '{"read": {...}, "write": {...}, "private_dir": ...}'

checks isolation as `grade --sandbox uid` does (which makes the checkout's secrets private), starts a worker with the
uid backend and the audit hook off (so that what holds is the uid, the file modes and seccomp alone), runs each probe
in it and prints one JSON object on its last line. The probes read and write only the files the calling test made
(the paths it passes) and the checkout's own files, which they never change.
"""
from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_sandbox import CELLS, ISOLATION_PROBES, START_TIMEOUT, probe  # noqa: E402

from autograder.pipeline.preflight import check_isolation  # noqa: E402
from autograder.options import GradeOptions  # noqa: E402
from autograder.sandbox import PROJECT_ROOT, Sandbox, SandboxPolicy  # noqa: E402

UID_PROBES = ISOLATION_PROBES + '''
import resource


def parent_access():
    """What the worker can do to the process that started it (the judge, here the probe script)."""
    parent = os.getppid()
    return {"environ": read_file(f"/proc/{parent}/environ")[:2], "mem": read_file(f"/proc/{parent}/mem")[:2],
            "signal": attempt(lambda: os.kill(parent, 0))[:2]}


def limits():
    return {name: resource.getrlimit(getattr(resource, name))[0] for name in ("RLIMIT_NPROC", "RLIMIT_FSIZE", "RLIMIT_AS")}


def seccomp_mode():
    with open("/proc/self/status") as f:
        return next(line.split()[1] for line in f if line.startswith("Seccomp:"))


def working_folder():
    return [os.getcwd(), os.environ.get("HOME"), os.environ.get("TMPDIR")]
'''


def main() -> None:
    given = json.loads(sys.argv[1])
    backend = check_isolation(GradeOptions(sandbox="uid"), progress=lambda line: None,
                              private=[Path(given["private_dir"])])
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.5)
    policy = SandboxPolicy(memory_mb=4096, audit_hook=False, backend="uid")
    results: dict = {"backend": backend}
    with Sandbox([CELLS[0], {"grade_id": "probes", "source": UID_PROBES}], policy,
                 Path(given["log"])) as box:
        load = box.start(timeout=START_TIMEOUT)
        results.update(cell_errors=load["cell_errors"], isolation=box.isolation, uid=box.uid,
                       namespaces=box.namespaces, memory_cap=box.memory_cap)
        results["identity"] = probe(box, "identity")
        results["read"] = {what: probe(box, "read_file", path)[:2] for what, path in given["read"].items()}
        results["checkout"] = {what: probe(box, "read_file", str(PROJECT_ROOT / rel))[:2]
                               for what, rel in given["checkout"].items()}
        results["write"] = {what: probe(box, "overwrite", path)[:2] for what, path in given["write"].items()}
        results["scratch"] = probe(box, "overwrite", "scratch.txt")
        results["working_folder"] = probe(box, "working_folder")
        results["processes"] = {how: probe(box, "start_process", how) for how in
                                ("os.fork", "ctypes.fork", "ctypes.system", "posix_spawn", "execv", "unshare")}
        results["alive_after_processes"] = box.alive
        families = {"inet": (socket.AF_INET, socket.SOCK_STREAM), "inet6": (socket.AF_INET6, socket.SOCK_DGRAM),
                    "netlink": (socket.AF_NETLINK, socket.SOCK_RAW), "vsock": (40, socket.SOCK_STREAM),
                    "unix": (socket.AF_UNIX, socket.SOCK_STREAM)}
        results["sockets"] = {name: probe(box, "libc_socket", *args) for name, args in families.items()}
        results["connect"] = probe(box, "connect", listener.getsockname()[1])[:2]
        try:
            listener.accept()[0].close()
            results["connection_reached"] = True
        except (socket.timeout, TimeoutError):
            results["connection_reached"] = False
        results["parent"] = probe(box, "parent_access")
        results["limits"] = probe(box, "limits")
        results["seccomp"] = probe(box, "seccomp_mode")
        scratch = results["working_folder"][0]
    results["scratch_left"] = os.path.isdir(scratch)  # the worker is gone: its folder too
    print(json.dumps(results))


if __name__ == "__main__":
    main()

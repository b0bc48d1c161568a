"""The last trusted step before the sandbox, when the grader runs as root:

    python -I -S confine.py '{"uid": U, "gid": U, "cgroup_procs": [...], "namespaces": [...]}' PROGRAM ARGS...

joins the worker's cgroups (only root may), tries to enter the new namespaces named in "namespaces" ("net", "ipc":
the uid backend asks for them; each one the host refuses is left out), drops to the worker's own unprivileged
uid/gid with no supplementary groups, and execs PROGRAM with DLCOURSE_WORKER_NAMESPACES naming the namespaces it
did enter (comma-separated, empty for none). PROGRAM is bubblewrap, which builds the worker's view of the machine
(the bubblewrap backend: started by an outer bubblewrap that only adds a staging tmpfs, see
autograder/sandbox/backends.py: sandbox_command), or the worker's interpreter itself (the uid backend, for hosts
where no user namespace can be made: see `uid_command` there).

Standard library only and nothing imported after the uid changes: the interpreter's own files may no
longer be readable then.
"""
import ctypes
import json
import os
import sys

CLONE_FLAGS = {"net": 0x40000000, "ipc": 0x08000000}  # CLONE_NEWNET, CLONE_NEWIPC (linux/sched.h)


def enter_namespaces(names: list) -> list:
    """Unshare each namespace of `names` that the host allows (root with CAP_SYS_ADMIN, and a seccomp profile that
    lets unshare through: not Docker's default); the names of those entered."""
    libc = ctypes.CDLL(None, use_errno=True)
    return [name for name in names if libc.unshare(CLONE_FLAGS[name]) == 0]


def main() -> None:
    settings, command = json.loads(sys.argv[1]), sys.argv[2:]
    for procs in settings["cgroup_procs"]:
        with open(procs, "w") as f:
            f.write(str(os.getpid()))
    entered = enter_namespaces(settings.get("namespaces", []))
    uid, gid = settings["uid"], settings["gid"]
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getuid() != uid or os.geteuid() != uid or os.getgid() != gid or os.getgroups():
        raise SystemExit("confine.py: could not drop to the worker's uid")
    os.environ["DLCOURSE_WORKER_NAMESPACES"] = ",".join(entered)
    os.execv(command[0], command)


main()

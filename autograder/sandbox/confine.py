"""The last trusted step before the sandbox, when the grader runs as root:

    python -I -S confine.py '{"uid": U, "gid": U, "cgroup_procs": [...]}' /usr/bin/bwrap ARGS...

joins the worker's cgroups (only root may), drops to the worker's own unprivileged uid/gid with no
supplementary groups, and execs bubblewrap, which builds the worker's view of the machine. Started by
an outer bubblewrap that only adds a staging tmpfs (see Sandbox._command), so that the unprivileged
bubblewrap can reach the Python installation even where it lies under /root.

Standard library only and nothing imported after the uid changes: the interpreter's own files may no
longer be readable then.
"""
import json
import os
import sys


def main() -> None:
    settings, command = json.loads(sys.argv[1]), sys.argv[2:]
    for procs in settings["cgroup_procs"]:
        with open(procs, "w") as f:
            f.write(str(os.getpid()))
    uid, gid = settings["uid"], settings["gid"]
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise SystemExit("confine.py: could not drop to the worker's uid")
    os.execv(command[0], command)


main()

"""The worker template: one sandboxed process that imports what every worker imports (torch, numpy, dlcourse, the
worker's own modules) once, then forks a worker per submission, so that no worker pays `import torch` again (about
1.2 CPU s of each ordinary ViT submission, issue 31).

    python -I template.py LISTENER_FD '{"course_root": ..., "preload_modules": [...], "tmpfs_bytes": ...}'

It is started like a worker (autograder/sandbox/backends.py: sandbox_command, with `allow_user_namespaces`): inside
bubblewrap's allow-list view, read-only, as the worker's uid, with no network. It never runs student code and
reads nothing a submission wrote: only the trusted side's requests on LISTENER_FD, a SOCK_SEQPACKET socket. Each
request is one message: JSON {"worker": path of worker.py, "argv_settings": the worker's settings (JSON text),
"env": its environment} with the descriptors [connection, request pipe, response pipe, output pipe, cgroup.procs
files...] attached. The template forks, closes its copies of them at once (the next worker must not inherit them),
answers {"pid": pid} on the connection, and {"exit": code} when the worker ends (negative: killed by that signal;
128 + n: the worker itself was, as bubblewrap reports it). A {"kill": true} message, or the connection's end (the
judge is gone), kills that worker.

The forked child confines itself before any student code runs, more tightly than the template (become_worker):
a session of its own; its cgroups (writing "0" into the cgroup.procs files the grader opened: only the grader may
create and open them); a user namespace of its own (its uid mapped to itself, no setgroups) and in it new mount,
PID, network, IPC and UTS namespaces; then it forks once more, so that the worker is PID 1 of its namespace (it
cannot signal or even name the template, or anything outside), killed with its parent (PR_SET_PDEATHSIG). The
worker mounts a private tmpfs on /tmp (its only writable place; gone with its mount namespace; what bubblewrap bound
under /tmp, such as a checkout in /tmp/course, is cloned back on top, read-only) and a /proc of its PID
namespace (itself only; /proc/sys and the like read-only, as bubblewrap leaves them), in its own session, drops every
capability, and runs worker.py, which installs the seccomp filter (no unshare, no fork, no ptrace) and the audit hook
as when started alone. The template is not dumpable, so that a process of the same uid cannot read or write its
memory through /proc or ptrace (the seccomp filter also refuses ptrace and process_vm_*).

Standard library, the worker's own imports and the assignment's libraries only; no trusted grader code.
"""
import array
import ctypes
import errno
import gc
import json
import os
import runpy
import select
import signal
import socket
import sys
import traceback

LISTENER_FD = int(sys.argv[1])
SETTINGS = json.loads(sys.argv[2])
HERE = os.path.dirname(os.path.abspath(__file__))

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND = 0x1, 0x2, 0x4, 0x8, 0x20, 0x1000
MS_REC, MS_PRIVATE = 0x4000, 0x40000
PROC_READ_ONLY = ["sys", "sysrq-trigger", "irq", "bus"]  # as bubblewrap leaves them in the /proc it mounts
PR_SET_PDEATHSIG, PR_SET_DUMPABLE = 1, 4
SYS_OPEN_TREE, SYS_MOVE_MOUNT = 428, 429  # (Linux 5.2; the same numbers on x86-64 and arm64)
AT_FDCWD, AT_RECURSIVE, OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC, MOVE_MOUNT_F_EMPTY_PATH = -100, 0x8000, 1, os.O_CLOEXEC, 4
MAX_FDS = 16
TMPFS_OPTIONS = f"size={int(SETTINGS.get('tmpfs_bytes', 512 << 20))},mode=0700"

libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


# What every worker imports (worker.py's step 1, in the same order), before the first fork. ---------------------------
gc.disable()
import math  # noqa: E402,F401

import numpy  # noqa: E402,F401
import torch  # noqa: E402,F401
import torch.nn  # noqa: E402,F401

sys.path.insert(0, SETTINGS["course_root"])
import dlcourse  # noqa: E402,F401

# The assignment's libraries (its spec's preload_modules: transformers, torchvision), which its workers would import
# before their audit hook anyway where their cells use them. One that fails here is left to the workers.
import importlib  # noqa: E402

for _name in SETTINGS.get("preload_modules", []):
    try:
        importlib.import_module(_name)
    except Exception as exc:  # noqa: BLE001
        print(f"worker template: {_name} not imported ({type(exc).__name__}: {exc}); each worker imports it", flush=True)

sys.path.insert(0, HERE)
import harness  # noqa: E402,F401
import protocol  # noqa: E402,F401
import remote  # noqa: E402,F401
import seccomp  # noqa: E402,F401
import tripwires  # noqa: E402,F401
from worker_log import exit_child  # noqa: E402

sys.path.remove(HERE)  # worker.py puts it back in front, as when it runs alone
sys.path.remove(SETTINGS["course_root"])
gc.freeze()  # the forked workers then share these pages instead of copying them when they collect
gc.enable()
_check(libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")


# The forked worker. -----------------------------------------------------------------------------------------------
def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _clone_mount(path: str) -> int:
    """open_tree(2): a detached copy of the mounts at `path` and below (their read-only flag with them), as a descriptor."""
    tree = libc.syscall(SYS_OPEN_TREE, AT_FDCWD, path.encode(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE)
    if tree < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"open_tree {path}: {os.strerror(code)}")
    return tree


def _mount_point(path: str, is_folder: bool) -> None:
    os.makedirs(path if is_folder else os.path.dirname(path), exist_ok=True)
    if not is_folder:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def _drop_capabilities() -> None:
    """capset(2) with empty effective, permitted and inheritable sets (_LINUX_CAPABILITY_VERSION_3: two words)."""
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)
    data = (ctypes.c_uint32 * 6)()
    _check(libc.syscall(126 if os.uname().machine == "x86_64" else 91, header, data), "capset")


def become_worker(request: dict, fds: list[int]) -> None:
    """In the forked child: confine this process (see the module's docstring) and run worker.py; never returns."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)  # the template's; its pipe is closed below
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        connection, request_r, response_w, output, *cgroup_procs = fds
        for procs in cgroup_procs:  # "0": this process (cgroup v1 and v2), allowed through the grader's open file
            os.write(procs, b"0")
        null = os.open(os.devnull, os.O_RDONLY)
        for target, fd in ((0, null), (1, output), (2, output)):
            os.dup2(fd, target)
        # Nothing else of the template's stays open: its listener, other judges' connections, their pipes.
        for fd in [int(name) for name in os.listdir("/proc/self/fd")]:
            if fd not in (0, 1, 2, request_r, response_w):
                try:
                    os.close(fd)
                except OSError:
                    pass  # the listing's own descriptor, closed already
        # Dumpable again (the template is not): only then are its /proc/self files its own to write (uid_map).
        _check(libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")
        uid, gid = os.geteuid(), os.getegid()
        _check(libc.unshare(CLONE_NEWUSER), "unshare(CLONE_NEWUSER)")
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{uid} {uid} 1")
        _write("/proc/self/gid_map", f"{gid} {gid} 1")
        _check(libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")
        _check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
        worker = os.fork()
        if worker:  # the worker's parent, outside its PID namespace: wait, then end as it did
            os.close(request_r)
            os.close(response_w)
            _drop_capabilities()
            _check(libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")
            _, status = os.waitpid(worker, 0)
            code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            return
        _check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
        os.setsid()  # a process group of its own too: kill(0, ...) reaches nothing but itself
        # What bubblewrap bound under /tmp (a checkout, a virtualenv) would vanish under the new tmpfs: each bind is
        # cloned first, read-only as it was, and put back on top of it.
        kept = [(path, os.path.isdir(path), _clone_mount(path)) for path in SETTINGS.get("tmp_binds", [])]
        _check(libc.mount(b"tmpfs", b"/tmp", b"tmpfs", MS_NOSUID | MS_NODEV, TMPFS_OPTIONS.encode()), "mount /tmp")
        for path, is_folder, tree in kept:
            _mount_point(path, is_folder)
            _check(libc.syscall(SYS_MOVE_MOUNT, tree, b"", AT_FDCWD, path.encode(), MOVE_MOUNT_F_EMPTY_PATH),
                   f"move_mount {path}")
            os.close(tree)
        for path, target in SETTINGS.get("tmp_links", {}).items():
            os.makedirs(os.path.dirname(path), exist_ok=True)
            os.symlink(target, path)
        # A /proc of its own PID namespace: only itself (the template's /proc showed the template and this parent).
        _check(libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None), "mount /proc")
        for name in PROC_READ_ONLY:
            path = f"/proc/{name}".encode()
            if os.path.exists(path):
                _check(libc.mount(path, path, None, MS_BIND | MS_REC, None), f"bind /proc/{name}")
                _check(libc.mount(path, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                                  None), f"remount /proc/{name} read-only")
        os.chdir("/tmp")
        _check(libc.sethostname(b"sandbox", len(b"sandbox")), "sethostname")
        _drop_capabilities()
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = [request["worker"], str(request_r), str(response_w), request["argv_settings"]]
        runpy.run_path(request["worker"], run_name="__main__")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001  (the child must never return into the template's loop)
        traceback.print_exc()
    finally:
        exit_child(code)


# The template's loop. ---------------------------------------------------------------------------------------------
def receive(listener: socket.socket) -> tuple[dict | None, list[int]]:
    """One request and its descriptors; (None, []) when the trusted side has closed the listener."""
    fds = array.array("i")
    message, ancillary, _, _ = listener.recvmsg(1 << 20, socket.CMSG_SPACE(MAX_FDS * fds.itemsize))
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    if not message:
        return None, list(fds)
    return json.loads(message), list(fds)


def send(connection: socket.socket, message: dict) -> None:
    try:
        connection.send(json.dumps(message).encode())
    except OSError:
        pass  # the judge is gone: nobody to tell


def serve() -> None:
    listener = socket.socket(fileno=LISTENER_FD)
    workers: dict[int, socket.socket] = {}  # pid -> its judge's connection
    # A worker's end wakes the loop at once (its judge waits for the exit code): SIGCHLD writes into this pipe.
    wake, wake_w = socket.socketpair()
    wake.setblocking(False)
    wake_w.setblocking(False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w.fileno())
    while True:
        readable, _, _ = select.select([listener, wake, *workers.values()], [], [], 5.0)
        for source in readable:
            if source is wake:
                while True:
                    try:
                        wake.recv(4096)
                    except BlockingIOError:
                        break
                continue
            if source is listener:
                request, fds = receive(listener)
                if request is None:
                    for fd in fds:
                        os.close(fd)
                    return
                if len(fds) < 4:
                    for fd in fds:
                        os.close(fd)
                    continue
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    become_worker(request, fds)
                connection = socket.socket(fileno=fds[0])
                for fd in fds[1:]:
                    os.close(fd)
                workers[pid] = connection
                send(connection, {"pid": pid})
                continue
            pid = next(p for p, c in workers.items() if c is source)
            try:
                message = source.recv(4096)
            except OSError:
                message = b""
            if not message or json.loads(message).get("kill"):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        while True:  # reap every child that ended (orphaned workers too: the template is PID 1 of its namespace)
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid in workers:  # (not an orphan)
                connection = workers.pop(pid)
                send(connection, {"exit": os.waitstatus_to_exitcode(status)})
                connection.close()


try:
    serve()
except OSError as exc:
    if exc.errno != errno.EBADF:
        raise

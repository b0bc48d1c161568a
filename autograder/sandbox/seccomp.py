"""A seccomp filter the worker installs on itself before it runs any student code.

bubblewrap already gives the worker no shell, no network and a read-only view of the machine; this
filter takes away the system calls that could start another program or escape the namespaces, even
when called through ctypes (`ctypes.pythonapi.system`, `fork`, `posix_spawn`):
- `execve`/`execveat`, `fork`/`vfork`, and `clone` without CLONE_THREAD (threads still work) fail
  with EPERM; `clone3` fails with ENOSYS, so glibc falls back to `clone` for threads;
- namespace, mount, tracing, keyring, BPF and kernel-module calls fail with EPERM;
- `socket` and `socketpair` of any family but AF_UNIX fail with EPERM: no inet, netlink or vsock socket (vsock
  reaches the host outside what the network namespace covers); the worker itself needs none. With
  `unix_sockets=False` (the uid backend, whose worker sees the host's filesystem and, without a network namespace of
  its own, the host's abstract socket names) AF_UNIX fails too: no socket of any family;
- a system call of another ABI (32-bit `int 0x80`, x32) kills the process: its numbers differ.

It applies to every thread of the worker (SECCOMP_FILTER_FLAG_TSYNC) and cannot be removed. Only the
standard library is used, since the worker imports this module. Supported: x86_64 and aarch64; on
another processor `install()` says so and the worker runs without the filter (the gradebook shows it).
"""
from __future__ import annotations

import ctypes
import errno
import platform
import struct

# Classic BPF opcodes (linux/filter.h) and seccomp return values (linux/seccomp.h).
LOAD_WORD = 0x20  # BPF_LD | BPF_W | BPF_ABS
JUMP_EQUAL = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
JUMP_AT_LEAST = 0x35  # BPF_JMP | BPF_JGE | BPF_K
JUMP_ANY_BIT = 0x45  # BPF_JMP | BPF_JSET | BPF_K
RETURN = 0x06  # BPF_RET | BPF_K
ALLOW, KILL_PROCESS, ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
AF_UNIX = 1
NR_OFFSET, ARCH_OFFSET, ARG0_OFFSET = 0, 4, 16  # struct seccomp_data; ARG0 low word (little endian)
CLONE_THREAD = 0x00010000
X32_SYSCALL_BIT = 0x40000000

# name: (audit arch, seccomp(2) number, {call: number})
DENIED = ["execve", "execveat", "fork", "vfork", "unshare", "setns", "ptrace", "mount", "umount2", "pivot_root",
          "chroot", "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd", "process_vm_readv",
          "process_vm_writev", "kexec_load", "init_module", "finit_module", "delete_module", "open_by_handle_at",
          "io_uring_setup", "io_uring_enter", "io_uring_register"]
ARCHES = {
    "x86_64": (0xC000003E, 317, {
        "clone": 56, "clone3": 435, "execve": 59, "execveat": 322, "fork": 57, "vfork": 58, "unshare": 272, "setns": 308,
        "ptrace": 101, "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "keyctl": 250, "add_key": 248,
        "request_key": 249, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323, "process_vm_readv": 310,
        "process_vm_writev": 311, "kexec_load": 246, "init_module": 175, "finit_module": 313, "delete_module": 176,
        "open_by_handle_at": 304, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
        "socket": 41, "socketpair": 53}),
    "aarch64": (0xC00000B7, 277, {  # no fork/vfork system calls on arm64: glibc uses clone
        "clone": 220, "clone3": 435, "execve": 221, "execveat": 281, "unshare": 97, "setns": 268, "ptrace": 117,
        "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51, "keyctl": 219, "add_key": 217, "request_key": 218,
        "bpf": 280, "perf_event_open": 241, "userfaultfd": 282, "process_vm_readv": 270, "process_vm_writev": 271,
        "kexec_load": 104, "init_module": 105, "finit_module": 273, "delete_module": 106, "open_by_handle_at": 265,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "socket": 198, "socketpair": 199}),
}
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC = 1, 1


def _instruction(code: int, k: int, jump_true: int = 0, jump_false: int = 0) -> bytes:
    return struct.pack("HBBI", code, jump_true, jump_false, k)


def build_filter(machine: str, unix_sockets: bool = True) -> bytes:
    """The BPF program for `machine` (platform.machine()), as the kernel's array of struct sock_filter; without
    `unix_sockets`, socket(2) and socketpair(2) fail for every family, AF_UNIX included."""
    audit_arch, _, numbers = ARCHES[machine]
    deny_eperm, deny_enosys = ERRNO | errno.EPERM, ERRNO | errno.ENOSYS
    program = [
        _instruction(LOAD_WORD, ARCH_OFFSET),
        _instruction(JUMP_EQUAL, audit_arch, 1, 0),
        _instruction(RETURN, KILL_PROCESS),
        _instruction(LOAD_WORD, NR_OFFSET),
    ]
    if machine == "x86_64":
        program += [_instruction(JUMP_AT_LEAST, X32_SYSCALL_BIT, 0, 1), _instruction(RETURN, KILL_PROCESS)]
    program += [_instruction(JUMP_EQUAL, numbers["clone3"], 0, 1), _instruction(RETURN, deny_enosys)]
    for name in DENIED:
        if name in numbers:
            program += [_instruction(JUMP_EQUAL, numbers[name], 0, 1), _instruction(RETURN, deny_eperm)]
    for name in ("socket", "socketpair"):  # the family is the first argument: only AF_UNIX
        if not unix_sockets:
            program += [_instruction(JUMP_EQUAL, numbers[name], 0, 1), _instruction(RETURN, deny_eperm)]
            continue
        program += [
            _instruction(JUMP_EQUAL, numbers[name], 0, 4),
            _instruction(LOAD_WORD, ARG0_OFFSET),
            _instruction(JUMP_EQUAL, AF_UNIX, 0, 1),
            _instruction(RETURN, ALLOW),
            _instruction(RETURN, deny_eperm),
        ]
    program += [
        _instruction(JUMP_EQUAL, numbers["clone"], 1, 0),
        _instruction(RETURN, ALLOW),
        _instruction(LOAD_WORD, ARG0_OFFSET),  # clone's flags: a thread shares everything, a process does not
        _instruction(JUMP_ANY_BIT, CLONE_THREAD, 0, 1),
        _instruction(RETURN, ALLOW),
        _instruction(RETURN, deny_eperm),
    ]
    return b"".join(program)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install(unix_sockets: bool = True) -> str:
    """Install the filter on every thread of this process (`unix_sockets`: see build_filter). Returns "seccomp" when
    it is on ("seccomp, no sockets" without `unix_sockets`), or a sentence saying why not (an unsupported
    processor, or a kernel without seccomp)."""
    machine = platform.machine()
    if machine not in ARCHES:
        return f"no seccomp filter (processor {machine} is not supported)"
    program = build_filter(machine, unix_sockets)
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return f"no seccomp filter (prctl failed: {errno.errorcode.get(ctypes.get_errno(), '?')})"
    seccomp_nr = ARCHES[machine][1]
    if libc.syscall(seccomp_nr, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, ctypes.byref(fprog)) != 0:
        return f"no seccomp filter (seccomp failed: {errno.errorcode.get(ctypes.get_errno(), '?')})"
    return "seccomp" if unix_sockets else "seccomp, no sockets"

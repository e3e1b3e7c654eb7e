"""The kernel's audit state read over ``NETLINK_AUDIT``, as ``auditctl -s`` and
``auditctl -l`` would show it, without running them.

``AUDIT_GET`` answers with ``struct audit_status`` (enabled, lost events, the auditd
PID); ``AUDIT_LIST_RULES`` with one ``struct audit_rule_data`` per loaded rule, then
``NLMSG_DONE`` (include/uapi/linux/audit.h). Both need ``CAP_AUDIT_CONTROL`` in the
initial user and PID namespaces (the kernel answers ``EPERM``, or refuses the
connection from another user namespace); a kernel built without ``CONFIG_AUDIT`` has no
such socket (``EPROTONOSUPPORT``). What is loaded is what is enforced: ``auditctl -D``
by an intruder empties it while ``/etc/audit/rules.d`` still looks right."""

from __future__ import annotations

import errno
import os
import socket
import struct
from dataclasses import dataclass, field
from typing import Any

NETLINK_AUDIT = 9
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK = 1, 4
AUDIT_GET, AUDIT_LIST_RULES = 1000, 1013
_HDR = struct.Struct("=IHHII")
_STATUS = (
    "mask", "enabled", "failure", "pid", "rate_limit", "backlog_limit", "lost", "backlog",
    "feature_bitmap", "backlog_wait_time", "backlog_wait_time_actual",
)  # fmt: skip
BITMASK_WORDS = MAX_FIELDS = 64
_RULE = struct.Struct(f"=III{BITMASK_WORDS}I{MAX_FIELDS}I{MAX_FIELDS}I{MAX_FIELDS}II")
FILTERS = {0: "user", 1: "task", 2: "entry", 3: "watch", 4: "exit", 5: "exclude", 6: "fs",
           7: "io_uring"}  # fmt: skip
ACTIONS = {0: "never", 1: "possible", 2: "always"}
FIELDS = {
    0: "pid", 1: "uid", 2: "euid", 3: "suid", 4: "fsuid", 5: "gid", 6: "egid", 7: "sgid",
    8: "fsgid", 9: "auid", 10: "pers", 11: "arch", 12: "msgtype", 13: "subj_user",
    14: "subj_role", 15: "subj_type", 16: "subj_sen", 17: "subj_clr", 18: "ppid",
    19: "obj_user", 20: "obj_role", 21: "obj_type", 22: "obj_lev_low", 23: "obj_lev_high",
    24: "loginuid_set", 25: "sessionid", 26: "fstype", 100: "devmajor", 101: "devminor",
    102: "inode", 103: "exit", 104: "success", 105: "path", 106: "perm", 107: "dir",
    108: "filetype", 109: "obj_uid", 110: "obj_gid", 111: "field_compare", 112: "exe",
    113: "saddr_fam", 200: "a0", 201: "a1", 202: "a2", 203: "a3", 210: "key",
}  # fmt: skip
STRING_FIELDS = frozenset({13, 14, 15, 16, 17, 19, 20, 21, 22, 23, 105, 107, 112, 210})
OPERATORS = {0x08000000: "&", 0x10000000: "<", 0x20000000: ">", 0x30000000: "!=",
             0x40000000: "=", 0x48000000: "&=", 0x50000000: "<=", 0x60000000: ">="}  # fmt: skip
ARCHES = {0xC000003E: "b64", 0x40000003: "b32", 0xC00000B7: "b64", 0x40000028: "b32"}
SIGNED = frozenset({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 18, 103, 109, 110})  # -1 reads as -1
# Syscall names of the commonly audited calls, x86_64 numbering (CIS and the
# audit-userspace sample rules); others are shown by number.
SYSCALLS_X86_64 = {
    0: "read", 1: "write", 2: "open", 4: "stat", 21: "access", 41: "socket", 42: "connect",
    43: "accept", 49: "bind", 50: "listen", 56: "clone", 57: "fork", 58: "vfork",
    59: "execve", 62: "kill", 76: "truncate", 77: "ftruncate", 82: "rename", 84: "rmdir",
    86: "link", 87: "unlink", 88: "symlink", 90: "chmod", 91: "fchmod", 92: "chown",
    93: "fchown", 94: "lchown", 101: "ptrace", 105: "setuid", 106: "setgid",
    113: "setreuid", 114: "setregid", 117: "setresuid", 119: "setresgid", 133: "mknod",
    155: "pivot_root", 159: "adjtimex", 160: "setrlimit", 161: "chroot", 164: "settimeofday",
    165: "mount", 166: "umount2", 167: "swapon", 169: "reboot", 170: "sethostname",
    171: "setdomainname", 175: "init_module", 176: "delete_module", 188: "setxattr",
    189: "lsetxattr", 190: "fsetxattr", 197: "removexattr", 198: "lremovexattr",
    199: "fremovexattr", 227: "clock_settime", 246: "kexec_load", 257: "openat",
    258: "mkdirat", 259: "mknodat", 260: "fchownat", 263: "unlinkat", 264: "renameat",
    265: "linkat", 266: "symlinkat", 268: "fchmodat", 272: "unshare", 288: "accept4",
    304: "open_by_handle_at", 308: "setns", 313: "finit_module", 316: "renameat2",
    320: "kexec_file_load", 321: "bpf", 322: "execveat", 437: "openat2",
}  # fmt: skip


class AuditUnavailable(OSError):
    """The audit state cannot be read here; ``reason`` says why in an examiner's words."""

    def __init__(self, err: int, reason: str) -> None:
        super().__init__(err, reason)
        self.reason = reason


def explain(err: int) -> str:
    if err == errno.EPROTONOSUPPORT:
        return "this kernel has no audit support (built without CONFIG_AUDIT): no rules exist"
    if err == errno.EPERM:
        return "reading the audit rules needs root (CAP_AUDIT_CONTROL) in the host's namespaces"
    if err == errno.ECONNREFUSED:
        return "the kernel answers audit requests only from the initial user namespace"
    return f"the audit socket failed: {os.strerror(err)}"


@dataclass
class AuditRule:
    """One loaded rule: its filter list, action, fields and syscalls."""

    filter: str
    action: str
    fields: list[dict[str, Any]] = field(default_factory=list)
    syscalls: list[int] | str = field(default_factory=list)  # "all" when every bit is set

    def text(self) -> str:
        """The rule as ``auditctl -l`` prints it (watches as ``-w PATH -p PERMS``)."""
        named = {f["field"]: f for f in self.fields if f["op"] == "="}
        if (
            self.filter == "exit"
            and self.action == "always"
            and self.syscalls == "all"
            and (
                set(named) <= {"path", "dir", "perm", "key"} and ("path" in named or "dir" in named)
            )
            and len(named) == len(self.fields)
        ):
            watch = named.get("path") or named["dir"]
            out = [f"-w {watch['value']}"]
            if "perm" in named:
                out.append(f"-p {named['perm']['value']}")
            if "key" in named:
                out.append(f"-k {named['key']['value']}")
            return " ".join(out)
        out = [f"-a {self.action},{self.filter}"]
        for f in self.fields:
            if f["field"] == "arch":
                out.append(f"-F arch{f['op']}{f['value']}")
        if self.syscalls == "all" and self.filter == "exit":
            out.append("-S all")
        elif self.syscalls and self.syscalls != "all":
            # Names for 64-bit x86 numbering only; other ABIs' numbers are shown as numbers.
            arch = next((f["value"] for f in self.fields if f["field"] == "arch"), "b64")
            names = SYSCALLS_X86_64 if arch == "b64" and os.uname().machine == "x86_64" else {}
            out.append("-S " + ",".join(names.get(int(n), str(n)) for n in self.syscalls))
        for f in self.fields:
            if f["field"] != "arch":
                out.append(f"-F {f['field']}{f['op']}{f['value']}")
        return " ".join(out)


def parse_rule(data: bytes) -> AuditRule:
    """One ``struct audit_rule_data``; raises ValueError on a truncated one."""
    if len(data) < _RULE.size:
        raise ValueError(f"audit rule of {len(data)} bytes, shorter than its {_RULE.size}")
    v = _RULE.unpack_from(data)
    flags, action, count = v[0], v[1], v[2]
    mask = v[3 : 3 + BITMASK_WORDS]
    fields = v[3 + BITMASK_WORDS : 3 + BITMASK_WORDS + MAX_FIELDS]
    values = v[3 + BITMASK_WORDS + MAX_FIELDS : 3 + BITMASK_WORDS + 2 * MAX_FIELDS]
    fflags = v[3 + BITMASK_WORDS + 2 * MAX_FIELDS : 3 + BITMASK_WORDS + 3 * MAX_FIELDS]
    buflen = v[-1]
    buf = data[_RULE.size : _RULE.size + buflen]
    if count > MAX_FIELDS or len(buf) < buflen:
        raise ValueError("audit rule with more fields or string bytes than it holds")
    rule = AuditRule(FILTERS.get(flags & 0x0F, str(flags)), ACTIONS.get(action, str(action)))
    offset = 0
    for i in range(count):
        fid, value, op = fields[i], values[i], OPERATORS.get(fflags[i], hex(fflags[i]))
        name = FIELDS.get(fid, str(fid))
        shown: str | int
        if fid in STRING_FIELDS:
            shown = buf[offset : offset + value].decode("utf-8", "backslashreplace")
            offset += value
        elif fid == 11:
            shown = ARCHES.get(value, hex(value))
        elif fid == 106:
            shown = "".join(c for bit, c in ((4, "r"), (2, "w"), (1, "x"), (8, "a")) if value & bit)
        elif fid in SIGNED and value >= 2**31:
            shown = value - 2**32
        else:
            shown = value
        rule.fields.append({"field": name, "op": op, "value": shown})
    bits = [n for n in range(BITMASK_WORDS * 32) if mask[n // 32] >> (n % 32) & 1]
    rule.syscalls = "all" if all(w == 0xFFFFFFFF for w in mask) else bits
    return rule


def _request(sock: socket.socket, kind: int, seq: int) -> None:
    sock.send(_HDR.pack(_HDR.size, kind, NLM_F_REQUEST | NLM_F_ACK, seq, 0))


def _messages(sock: socket.socket) -> list[tuple[int, int, bytes]]:
    data = sock.recv(1 << 20)
    out, pos = [], 0
    while pos + _HDR.size <= len(data):
        length, kind, _flags, seq, _pid = _HDR.unpack_from(data, pos)
        if length < _HDR.size:
            break
        out.append((kind, seq, data[pos + _HDR.size : pos + length]))
        pos += (length + 3) & ~3
    return out


def _check(payload: bytes) -> None:
    err = -struct.unpack_from("=i", payload)[0]
    if err:
        raise AuditUnavailable(err, explain(err))


def read_audit(timeout: float = 2.0) -> tuple[dict[str, int], list[bytes]]:
    """(status, each loaded rule's raw bytes) from the running kernel; raises
    ``AuditUnavailable`` with the reason when it cannot."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_AUDIT)
    except OSError as e:
        raise AuditUnavailable(e.errno or 0, explain(e.errno or 0)) from e
    with sock:
        sock.settimeout(timeout)
        try:
            sock.bind((0, 0))
            status = _status(sock)
            rules = _rules(sock)
        except AuditUnavailable:
            raise
        except (OSError, struct.error) as e:
            err = getattr(e, "errno", None) or errno.EIO
            raise AuditUnavailable(err, explain(err)) from e
    return status, rules


def _status(sock: socket.socket) -> dict[str, int]:
    _request(sock, AUDIT_GET, 1)
    while True:
        for kind, _seq, payload in _messages(sock):
            if kind == NLMSG_ERROR:
                _check(payload)
            elif kind == AUDIT_GET:
                n = len(payload) // 4
                values = struct.unpack_from(f"={min(n, len(_STATUS))}I", payload)
                return dict(zip(_STATUS, values, strict=False))


def _rules(sock: socket.socket) -> list[bytes]:
    _request(sock, AUDIT_LIST_RULES, 2)
    rules: list[bytes] = []
    while True:
        for kind, _seq, payload in _messages(sock):
            if kind == NLMSG_ERROR:
                _check(payload)
            elif kind == AUDIT_LIST_RULES:
                rules.append(payload)
            elif kind == NLMSG_DONE:
                return rules

"""Loaded eBPF programs and links, as the kernel lists them through the ``bpf`` syscall.

``bpftool prog`` and ``bpftool link`` walk the kernel's ID tables with
``BPF_*_GET_NEXT_ID``, open each object with ``BPF_*_GET_FD_BY_ID`` and describe it with
``BPF_OBJ_GET_INFO_BY_FD``. This module does the same through ``rawsys.syscall`` (a bare
``syscall`` instruction on x86_64), so a library preloaded into this process cannot filter
the answers, and without ``bpftool`` on the host. Each ID the iteration returned but the
kernel refused to open or describe is kept with its errno: what was readable and what was
refused is part of the evidence. Needs CAP_SYS_ADMIN (root) to open objects by ID.

Layouts are those of ``include/uapi/linux/bpf.h``; the kernel accepts a larger zeroed
buffer than it knows and says in ``info_len`` how much it filled, so one layout works
from 4.13 (``GET_NEXT_ID``) to today; links need 5.8.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from dataclasses import dataclass, field
from typing import Any

from . import rawsys

# commands (enum bpf_cmd)
PROG_LOAD, OBJ_PIN, OBJ_GET = 5, 6, 7
PROG_GET_NEXT_ID, PROG_GET_FD_BY_ID, OBJ_GET_INFO_BY_FD = 11, 13, 15
RAW_TRACEPOINT_OPEN, LINK_GET_FD_BY_ID, LINK_GET_NEXT_ID = 17, 30, 31


def words(text: str) -> tuple[str, ...]:
    """A table written as words, for enums kept in the kernel's order."""
    return tuple(text.split())


PROG_TYPES = words(
    "unspec socket_filter kprobe sched_cls sched_act tracepoint xdp perf_event cgroup_skb "
    "cgroup_sock lwt_in lwt_out lwt_xmit sock_ops sk_skb cgroup_device sk_msg raw_tracepoint "
    "cgroup_sock_addr lwt_seg6local lirc_mode2 sk_reuseport flow_dissector cgroup_sysctl "
    "raw_tracepoint_writable cgroup_sockopt tracing struct_ops ext lsm sk_lookup syscall "
    "netfilter"
)  # enum bpf_prog_type, in order
LINK_TYPES = words(
    "unspec raw_tracepoint tracing cgroup iter netns xdp perf_event kprobe_multi struct_ops "
    "netfilter tcx uprobe_multi netkit sockmap"
)  # enum bpf_link_type
_INFO_SIZE = 512  # larger than any bpf_prog_info/bpf_link_info so far; the tail stays zero
_NAME_LEN = 256  # buffer for a link's tracepoint, function or file name
MAX_OBJECTS = 65536  # a kernel listing more is not plausible; the walk stops there
MAX_PINS = 10000  # files looked at under the bpf file systems
_ANON_KINDS = {"anon_inode:bpf-prog": "program", "anon_inode:bpf-map": "map",
               "anon_inode:bpf_link": "link"}  # fmt: skip


def _name(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")


def _call(cmd: int, attr: ctypes.Array[ctypes.c_char]) -> int:
    """``bpf(cmd, &attr, sizeof attr)``: the result, or ``-errno``."""
    return rawsys.syscall("bpf", cmd, ctypes.addressof(attr), len(attr))


def _next_id(cmd: int, start: int) -> int:
    attr = ctypes.create_string_buffer(struct.pack("=II", start, 0), 16)
    r = _call(cmd, attr)
    if r < 0:
        return r
    return int(struct.unpack_from("=I", attr.raw, 4)[0])


def _fd_by_id(cmd: int, obj_id: int) -> int:
    return _call(cmd, ctypes.create_string_buffer(struct.pack("=I", obj_id), 16))


def _info(fd: int, buf: ctypes.Array[ctypes.c_char]) -> int:
    """Fill ``buf`` with the object's info; returns the length filled or ``-errno``."""
    attr = ctypes.create_string_buffer(struct.pack("=IIQ", fd, len(buf), ctypes.addressof(buf)))
    r = _call(OBJ_GET_INFO_BY_FD, attr)
    return r if r < 0 else int(struct.unpack_from("=I", attr.raw, 4)[0])


def _err(code: int) -> str:
    return errno.errorcode.get(-code, str(-code))


def prog_info(fd: int) -> dict[str, Any]:
    buf = ctypes.create_string_buffer(_INFO_SIZE)
    n = _info(fd, buf)
    if n < 0:
        return {"error": _err(n)}
    raw = buf.raw
    ptype, pid = struct.unpack_from("=II", raw, 0)
    jited, xlated = struct.unpack_from("=II", raw, 16)
    load_time, uid, nr_maps = struct.unpack_from("=QII", raw, 40)
    ifindex, gpl = struct.unpack_from("=II", raw, 80)
    info: dict[str, Any] = {
        "id": pid,
        "type": PROG_TYPES[ptype] if ptype < len(PROG_TYPES) else f"type-{ptype}",
        "name": _name(raw[64:80]),
        "tag": raw[8:16].hex(),
        "jited_bytes": jited,
        "xlated_bytes": xlated,
        "load_time_boot_ns": str(load_time),
        "created_by_uid": uid,
        "maps": nr_maps,
        "gpl_compatible": bool(gpl & 1),
    }
    if ifindex:
        info["ifindex"] = ifindex
    if n >= 232:
        info["btf_id"] = struct.unpack_from("=I", raw, 128)[0]
        info["attach_btf_id"] = struct.unpack_from("=I", raw, 224)[0]
    return info


def _link_target(ltype: str, raw: bytes, text: str) -> dict[str, Any]:
    """Where a link attaches, from the union at offset 16 of ``bpf_link_info``."""
    u = 16
    a, b, c = struct.unpack_from("=III", raw, u)
    if ltype in ("raw_tracepoint", "iter"):
        return {"target": text}
    if ltype == "tracing":
        return {"attach_type": a, "target_obj_id": b, "target_btf_id": c}
    if ltype == "cgroup":
        cgroup_id, attach_type = struct.unpack_from("=QI", raw, u)
        return {"cgroup_id": str(cgroup_id), "attach_type": attach_type}
    if ltype == "netns":
        return {"netns_ino": a, "attach_type": b}
    if ltype in ("xdp", "tcx", "netkit"):
        return {"ifindex": a, **({"attach_type": b} if ltype != "xdp" else {})}
    if ltype == "netfilter":
        return {"pf": a, "hooknum": b, "priority": struct.unpack_from("=i", raw, u + 8)[0]}
    if ltype == "perf_event":
        kinds = {1: "uprobe", 2: "uretprobe", 3: "kprobe", 4: "kretprobe", 5: "tracepoint"}
        return {"perf_event": kinds.get(a, f"event-{a}"), "target": text}
    if ltype in ("kprobe_multi", "uprobe_multi"):
        return {
            "count": struct.unpack_from("=I", raw, u + 8 if ltype == "kprobe_multi" else u + 36)[0]
        }
    if ltype in ("struct_ops", "sockmap"):
        return {"map_id": a}
    return {}


def _name_slot(ltype: str, raw: bytes) -> tuple[int, int] | None:
    """(pointer offset, length offset) of the name a second info call can fill in."""
    if ltype in ("raw_tracepoint", "iter"):
        return 16, 24
    if ltype == "perf_event":
        kind = struct.unpack_from("=I", raw, 16)[0]
        return (24, 32) if kind in (1, 2, 3, 4, 5) else None
    return None


def link_info(fd: int) -> dict[str, Any]:
    buf = ctypes.create_string_buffer(_INFO_SIZE)
    n = _info(fd, buf)
    if n < 0:
        return {"error": _err(n)}
    ltype_n, lid, prog_id = struct.unpack_from("=III", buf.raw, 0)
    ltype = LINK_TYPES[ltype_n] if ltype_n < len(LINK_TYPES) else f"type-{ltype_n}"
    text = ""
    slot = _name_slot(ltype, buf.raw)
    if slot is not None:
        name = ctypes.create_string_buffer(_NAME_LEN)
        again = ctypes.create_string_buffer(_INFO_SIZE)
        struct.pack_into("=QI", again, slot[0], ctypes.addressof(name), _NAME_LEN)
        if ltype == "perf_event":
            struct.pack_into("=I", again, 16, struct.unpack_from("=I", buf.raw, 16)[0])
        if _info(fd, again) >= 0:
            buf, text = again, _name(name.raw)
    return {"id": lid, "type": ltype, "prog_id": prog_id, **_link_target(ltype, buf.raw, text)}


@dataclass
class Inventory:
    """What the ID walk found: described objects, and IDs the kernel would not open."""

    programs: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)
    pinned: list[dict[str, Any]] = field(default_factory=list)  # {"path", "kind", "id"}
    refused: list[dict[str, Any]] = field(default_factory=list)  # {"kind", "id", "error"}
    unreadable: dict[str, str] = field(default_factory=dict)  # view -> why the walk failed
    direct: bool = rawsys.KERNEL_DIRECT  # bare syscalls (True) or libc's syscall()

    def to_json(self) -> dict[str, Any]:
        return {
            "programs": self.programs,
            "links": self.links,
            "pinned": self.pinned,
            "refused": self.refused,
            "unreadable": self.unreadable,
            "syscall_path": "direct" if self.direct else "libc syscall()",
        }


def _walk(inv: Inventory, kind: str, next_cmd: int, fd_cmd: int, describe: Any) -> list[Any]:
    found: list[dict[str, Any]] = []
    current = 0
    for _ in range(MAX_OBJECTS):
        nxt = _next_id(next_cmd, current)
        if nxt == -errno.ENOENT:
            return found  # the end of the table
        if nxt < 0:
            why = {errno.EPERM: "refused (needs CAP_SYS_ADMIN)", errno.EINVAL: "not supported"}
            inv.unreadable[kind] = f"{why.get(-nxt, 'failed')}: {_err(nxt)}"
            return found
        current = nxt
        fd = _fd_by_id(fd_cmd, current)
        if fd < 0:
            if fd != -errno.ENOENT:  # ENOENT: unloaded between the two calls
                inv.refused.append({"kind": kind, "id": current, "error": _err(fd)})
            continue
        try:
            info = describe(fd)
        finally:
            os.close(fd)
        if "error" in info:
            inv.refused.append({"kind": kind, "id": current, "error": info["error"]})
        else:
            found.append(info)
    inv.unreadable[kind] = f"more than {MAX_OBJECTS} objects: walk stopped"
    return found


def inventory() -> Inventory:
    """Every eBPF program and link the kernel lists. Availability: Linux x86_64, aarch64."""
    inv = Inventory()
    if "bpf" not in rawsys.NR:
        inv.unreadable["programs"] = f"no bpf syscall number known for {rawsys.ARCH}"
        return inv
    inv.programs = _walk(inv, "programs", PROG_GET_NEXT_ID, PROG_GET_FD_BY_ID, prog_info)
    inv.links = _walk(inv, "links", LINK_GET_NEXT_ID, LINK_GET_FD_BY_ID, link_info)
    return inv


def pinned_object(path: str) -> dict[str, Any]:
    """What is pinned at ``path`` (kind and id), or its error. Opening a pin read-write
    is what the kernel requires for programs; it changes nothing."""
    name = ctypes.create_string_buffer(os.fsencode(path))
    attr = ctypes.create_string_buffer(struct.pack("=QII", ctypes.addressof(name), 0, 0), 16)
    fd = _call(OBJ_GET, attr)
    if fd < 0:
        return {"path": path, "error": _err(fd)}
    try:
        kind = _ANON_KINDS.get(os.readlink(f"/proc/self/fd/{fd}"), "other")
        buf = ctypes.create_string_buffer(_INFO_SIZE)
        n = _info(fd, buf)
        if n < 8:
            return {"path": path, "kind": kind, "error": _err(n) if n < 0 else "short info"}
        return {"path": path, "kind": kind, "id": struct.unpack_from("=I", buf.raw, 4)[0]}
    finally:
        os.close(fd)


def pinned(mountpoints: list[str]) -> list[dict[str, Any]]:
    """Every object pinned under these bpf file system mounts (``/sys/fs/bpf``): a pin
    keeps a program, map or link alive with no process holding it."""
    found: list[dict[str, Any]] = []
    for top in mountpoints:
        for directory, dirs, files in os.walk(top):
            dirs.sort()
            for name in sorted(files):
                if len(found) >= MAX_PINS:
                    return found
                found.append(pinned_object(os.path.join(directory, name)))
    return found

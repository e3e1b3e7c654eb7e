"""What kind of persistence a configuration file is, and what it starts: the facts the
``persistence`` collector hands to the finding rules (collectors/rules/triage.toml).

``kind_of`` names the mechanism from the file's place on the host (cron, systemd unit or
timer, PAM, udev, rc.local...). ``parse`` reads its text the way that mechanism does, as
far as a rule needs: the active (non-comment) lines, the absolute paths they run or load
(``targets``), and for start-up files whether they turn shell history off. Kept to the
text: nothing here runs or resolves anything on the host but ``lstat`` of targets."""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from typing import Any

WRITABLE_PREFIXES = ("/tmp/", "/var/tmp/", "/dev/shm/", "/run/shm/", "/dev/mqueue/")
MAX_TARGETS = 50
UNIT_SUFFIXES = (".service", ".socket", ".path", ".mount", ".automount", ".target")
# (kind, host-path patterns); the first that matches wins. '*' also matches '/'.
KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ld-preload", ("/etc/ld.so.preload",)),
    ("ld-so-conf", ("/etc/ld.so.conf", "/etc/ld.so.conf.d/*")),
    ("cron", (
        "/etc/crontab", "/etc/anacrontab", "/etc/cron.d/*", "/etc/cron.hourly/*",
        "/etc/cron.daily/*", "/etc/cron.weekly/*", "/etc/cron.monthly/*", "/etc/cron.yearly/*",
        "/var/spool/cron/crontabs/*", "/var/spool/cron/tabs/*", "/var/spool/cron/[!a]*",
    )),
    ("at-job", ("/var/spool/cron/atjobs/*", "/var/spool/at/*", "/var/spool/atjobs/*")),
    ("systemd-generator", (
        "*/systemd/system-generators/*", "*/systemd/user-generators/*",
        "*/systemd/system-environment-generators/*", "*/systemd/user-environment-generators/*",
    )),
    # What systemd applies at every boot from drop-in directories: files it creates or
    # links, kernel settings (core_pattern=|/tmp/x runs a program), binary interpreters.
    ("tmpfiles", ("*/tmpfiles.d/*",)),
    ("sysctl", ("/etc/sysctl.conf", "*/sysctl.d/*")),
    ("binfmt", ("*/binfmt.d/*",)),
    # Run while the initramfs is built (hooks) or at every boot from inside it (scripts).
    ("initramfs", (
        "/etc/initramfs-tools/*", "/usr/share/initramfs-tools/*", "*/dracut/modules.d/*",
        "/etc/dracut.conf", "/etc/dracut.conf.d/*", "*/lib/dracut/dracut.conf.d/*",
    )),
    ("systemd-timer", (
        "*/systemd/system/*.timer", "*/systemd/user/*.timer", "/run/systemd/*.timer",
        "/run/user/*/systemd/*.timer",
    )),
    ("systemd-unit", tuple(f"*/systemd/{d}/*{s}" for d in ("system", "user") for s in UNIT_SUFFIXES)
        + ("*/systemd/system/*.d/*.conf", "*/systemd/user/*.d/*.conf", "/run/systemd/transient/*",
           "/run/systemd/generator*/*", "/run/user/*/systemd/transient/*",
           "/run/user/*/systemd/generator*/*")),
    # Started by D-Bus on demand (as root for the system bus): its Exec= line runs.
    ("dbus-service", ("*/dbus-1/system-services/*", "*/dbus-1/services/*")),
    # JavaScript rules that grant privileges without a password (polkit).
    ("polkit", ("*/polkit-1/rules.d/*", "*/polkit-1/localauthority/*")),
    # rsh/rlogin trust: "+ +" lets anyone in without a password.
    ("rhosts", ("*/.rhosts", "*/.shosts", "/etc/hosts.equiv", "/etc/ssh/shosts.equiv")),
    ("rc-local", ("/etc/rc.local", "/etc/rc.d/rc.local")),
    ("init-script", ("/etc/init.d/*", "/etc/rc.d/init.d/*", "/etc/rc[0-6S].d/*")),
    ("udev", ("*/udev/rules.d/*",)),
    ("pam", ("/etc/pam.d/*", "/etc/pam.conf")),
    ("sudoers", ("/etc/sudoers", "/etc/sudoers.d/*")),
    ("module-load", ("/etc/modules", "*/modules-load.d/*", "*/modprobe.d/*")),
    ("motd", ("/etc/update-motd.d/*",)),
    ("xdg-autostart", ("/etc/xdg/autostart/*", "*/.config/autostart/*")),
    ("ssh-rc", ("/etc/ssh/sshrc", "*/.ssh/rc")),
    ("authorized-keys", ("*/.ssh/authorized_keys*",)),
    ("startup-file", (
        "/etc/profile", "/etc/profile.d/*", "/etc/bash.bashrc", "/etc/bashrc",
        "/etc/bash.bash_logout", "/etc/zsh/*", "/etc/zshrc", "/etc/zprofile", "/etc/zshenv",
        "/etc/zlogin", "/etc/environment",
        "/etc/csh.cshrc", "/etc/csh.login", "/etc/fish/config.fish", "/etc/fish/conf.d/*",
        "/etc/X11/Xsession.d/*", "*/environment.d/*",
    )),
)  # fmt: skip
# Start-up files in a home directory (relative to it); directories are taken whole.
HOME_STARTUP = (
    b".bashrc", b".bash_profile", b".bash_login", b".profile", b".bash_logout", b".zshrc",
    b".zshenv", b".zprofile", b".zlogin", b".zlogout", b".cshrc", b".tcshrc", b".login",
    b".kshrc", b".mkshrc", b".config/fish/config.fish", b".config/fish/conf.d", b".xinitrc",
    b".xsession", b".xsessionrc", b".xprofile", b".pam_environment", b".config/environment.d",
    b".forward",
)  # fmt: skip
HOME_OTHER = (
    (b".config/autostart", "xdg-autostart"),
    (b".ssh/authorized_keys", "authorized-keys"),
    (b".ssh/authorized_keys2", "authorized-keys"),
    (b".rhosts", "rhosts"),
    (b".shosts", "rhosts"),
    (b".gitconfig", None),  # core.fsmonitor, core.pager, aliases with ! run commands
    (b".config/git/config", None),
    (b".ssh/known_hosts", None),
    (b".ssh/known_hosts2", None),
    (b".ssh/rc", "ssh-rc"),
    (b".ssh/config", None),
    (b".ssh/environment", "startup-file"),
    (b".config/systemd/user", "systemd-unit"),
    (b".local/share/systemd/user", "systemd-unit"),
)
_PATH = re.compile(r"""(?<![\w.~$-])(/[^\s\x00'"`;|&<>(){}$,=]+)""")
_HISTORY_OFF = re.compile(
    r"(\bHIST(FILE)?SIZE\s*=\s*['\"]?0\b|\bHISTFILE\s*=\s*['\"]?/dev/null|\bunset\s+(-v\s+)?"
    r"([A-Z_]+\s+)*HISTFILE\b|\bset\s+\+o\s+history\b|\bSAVEHIST\s*=\s*0\b)"
)
_HISTFILE = re.compile(r"""^\s*(?:export\s+)?HISTFILE\s*=\s*['"]?([^'"\s;]+)""")
_EXEC = re.compile(r"^\s*(Exec\w*|Environment|EnvironmentFile|ListenFIFO|ListenSpecial)\s*=")
PAM_DIRS = (
    b"lib/x86_64-linux-gnu/security", b"usr/lib/x86_64-linux-gnu/security",
    b"lib/aarch64-linux-gnu/security", b"usr/lib/aarch64-linux-gnu/security",
    b"lib/security", b"lib64/security", b"usr/lib/security", b"usr/lib64/security",
)  # fmt: skip


_KIND_RES = tuple((k, re.compile("|".join(map(fnmatch.translate, ps)))) for k, ps in KINDS)


def kind_of(path: str, default: str | None = None) -> str | None:
    """The persistence mechanism the host file ``path`` belongs to, or ``default``."""
    for kind, pattern in _KIND_RES:
        if pattern.match(path):
            return kind
    return default


def active_lines(text: str, comment: str = "#") -> list[tuple[int, str]]:
    """(line number, stripped line) of each line that is neither blank nor a comment."""
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped and not stripped.startswith(comment):
            rows.append((n, stripped))
    return rows


def paths_in(line: str) -> list[str]:
    return [m for m in _PATH.findall(line) if len(m) > 1]


def history_off(line: str) -> bool:
    return bool(_HISTORY_OFF.search(line))


def histfiles(text: str) -> list[str]:
    """The ``HISTFILE=`` values a start-up file sets (as written: ``~``, ``$HOME`` kept)."""
    return [m.group(1) for line in text.splitlines() if (m := _HISTFILE.match(line))]


def _pam_targets(root: bytes, lines: list[tuple[int, str]]) -> tuple[list[str], list[str]]:
    """The module files a PAM file loads (a bare name is looked up in the module
    directories), and absolute paths in module arguments (``pam_exec.so /tmp/x``)."""
    found: list[str] = []
    modules: list[str] = []
    for _, line in lines:
        words = line.split()
        if words and words[0].startswith("@include"):
            continue
        if words and words[0].startswith("-"):
            words[0] = words[0][1:]
        if len(words) < 3:
            continue
        rest = words[2:]
        if words[1].startswith("[") and "]" not in words[1]:  # [success=1 default=ignore]
            while rest and "]" not in rest[0]:
                rest = rest[1:]
            rest = rest[1:]
        if not rest:
            continue
        module, args = rest[0], rest[1:]
        if module.startswith("/"):
            modules.append(module)
        else:
            for d in PAM_DIRS:
                candidate = os.path.join(root, d, os.fsencode(module))
                if os.path.lexists(candidate):
                    modules.append("/" + os.fsdecode(os.path.join(d, os.fsencode(module))))
                    break
        found += [a for arg in args for a in paths_in(arg)]
    return modules, found


def _tmpfiles_targets(lines: list[tuple[int, str]]) -> list[str]:
    """What each tmpfiles.d line points at: a symlink's target or a copy's source (``L+
    /etc/ld.so.preload - - - - /dev/shm/x.so``), paths in the content it writes, and the
    path itself when the line writes into an existing file (``w``) or links over one.
    Directories it merely creates (``D /tmp/.X11-unix``) are not what it runs or loads."""
    found: list[str] = []
    for _, line in lines:
        fields = line.split(None, 6)
        if len(fields) < 2:
            continue
        kind = fields[0].rstrip("!-=~^+")
        if kind in ("L", "w", "C", "f", "F") and len(fields) == 7:
            found += paths_in(fields[6])
        if kind in ("L", "w", "C") and fields[0].endswith("+") or kind == "w":
            found.append(fields[1])
    return found


def _binfmt_interpreters(lines: list[tuple[int, str]]) -> list[str]:
    """The interpreter of each ``:name:type:offset:magic:mask:interpreter:flags`` line
    (the first character is the delimiter): the program the kernel runs for every file
    that matches."""
    found = []
    for _, line in lines:
        fields = line[1:].split(line[0])
        if len(fields) >= 6 and fields[5].startswith("/"):
            found.append(fields[5])
    return found


def parse(kind: str, text: str, root: bytes = b"/") -> dict[str, Any]:
    """``entries`` (active lines), ``targets`` (paths they name), ``history_disabled`` and
    the first line that turned history off, for one file of ``kind``."""
    lines = active_lines(text)
    if kind in ("systemd-unit", "systemd-timer"):
        lines = [(n, line) for n, line in lines if _EXEC.match(line)]
    loaded: list[str] = []  # what the mechanism loads as code: PAM modules
    if kind == "pam":
        loaded, targets = _pam_targets(root, lines)
        targets = loaded + targets
    elif kind == "tmpfiles":
        targets = _tmpfiles_targets(lines)
    elif kind == "binfmt":
        targets = _binfmt_interpreters(lines)
    elif kind == "ld-preload":
        targets = [w for _, line in lines for w in re.split(r"[\s:]+", line) if w]
    else:
        targets = [p for _, line in lines for p in paths_in(line)]
    fact: dict[str, Any] = {
        "entries": len(lines),
        "targets": list(dict.fromkeys(targets))[:MAX_TARGETS],
        "history_disabled": False,
        "modules": list(dict.fromkeys(loaded))[:MAX_TARGETS],
    }
    if kind == "startup-file":
        off = next(((n, line) for n, line in lines if history_off(line)), None)
        if off is not None:
            fact.update(history_disabled=True, line_no=off[0], line=off[1][:300])
    return fact


def writable(root: bytes, target: str) -> bool:
    """Is ``target`` in a world-writable directory (by name, or its directory's mode)?"""
    if target.startswith(WRITABLE_PREFIXES):
        return True
    parent = os.path.dirname(os.path.join(root, os.fsencode(target).lstrip(b"/")))
    try:
        return bool(os.stat(parent).st_mode & stat.S_IWOTH)
    except OSError:
        return False


def authorized_key_lines(text: str) -> list[tuple[int, str, list[str]]]:
    """(line number, the key line, paths in its options: ``command="/tmp/x"``)."""
    rows = []
    for n, line in active_lines(text):
        options = (
            line.split(" ssh-", 1)[0] if not line.startswith(("ssh-", "ecdsa-", "sk-")) else ""
        )
        rows.append((n, line, paths_in(options)))
    return rows

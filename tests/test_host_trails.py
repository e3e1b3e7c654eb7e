"""Inode flags, the kernel's audit rules, process accounting and locate databases, each
against the real thing: flags set by ``chattr`` on ext4 and tmpfs and judged by
``lsattr``; the running kernel's audit socket (and the rule bytes the real ``auditctl``
builds, captured by ``strace`` with the send failed by injection, so no rule reaches
the kernel); accounting records the kernel writes through ``acct(2)`` in a private PID
namespace, judged by ``dump-acct``; plocate databases built by the real ``updatedb``,
judged by ``plocate``."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, journal_records
from hostns import run_on_planted_host

from collectors import auditnl, locatedb, pacctfile

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, chattr, acct)")
# auditctl and dump-acct without their services: unpacked from their packages by tests/run.sh
TOOLS = ROOT / ".venv/tools"
AUDITCTL = shutil.which("auditctl") or str(TOOLS / "sbin/auditctl")
DUMP_ACCT = shutil.which("dump-acct") or str(TOOLS / "usr/sbin/dump-acct")
_ACCT = """
import ctypes, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
open(sys.argv[1], "wb").close()
if libc.acct(sys.argv[1].encode()) != 0:
    sys.exit("acct: " + str(ctypes.get_errno()))
subprocess.run(["/bin/true"]); subprocess.run(["sh", "-c", "exit 3"])
subprocess.run([sys.argv[2]]); subprocess.run(["sleep", "0.2"])
libc.acct(None)
"""


def _in_namespace(script: str, *, pid: bool = False) -> str:
    flags = ["--pid", "--fork"] if pid else []
    result = subprocess.run(
        ["unshare", "-m", *flags, "--propagation", "private", "sh", "-ec", script],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def kernel_pacct(tmp_path: Path) -> Path:
    """A pacct file the kernel wrote for five processes, one of them named ``ncat``."""
    (tmp_path / "ncat").write_bytes(Path("/bin/true").read_bytes())
    (tmp_path / "ncat").chmod(0o755)
    (tmp_path / "acct.py").write_text(_ACCT)
    out = tmp_path / "pacct"
    _in_namespace(f"mount -t tmpfs acct /mnt; {sys.executable} {tmp_path}/acct.py /mnt/pacct "
                  f"{tmp_path}/ncat; cp /mnt/pacct {out}", pid=True)  # fmt: skip
    return out


@ROOT_ONLY
@pytest.mark.skipif(not shutil.which("mke2fs"), reason="needs e2fsprogs (mke2fs, chattr, lsattr)")
def test_inode_flags_are_lsattrs_on_ext4(tmp_path: Path) -> None:
    image = tmp_path / "fs.img"
    subprocess.run(["mke2fs", "-q", "-t", "ext4", str(image), "8M"], check=True)
    code = (
        "import json, sys; from collectors.inodeflags import Budget, sweep, letters;"
        "print(json.dumps({i.path.decode(): letters(i.flags) for i in "
        "sweep(b'/mnt/fs', Budget(100)) if i.error is None}))"
    )
    out = _in_namespace(f"""
mkdir -p /mnt/fs; mount -o loop {image} /mnt/fs; cd /mnt/fs
mkdir d; touch i a dA plain; mkfifo fifo; ln -s i link
chattr +i i; chattr +a a; chattr +dA dA; chattr +i d
lsattr -d /mnt/fs/i /mnt/fs/a /mnt/fs/dA /mnt/fs/plain /mnt/fs/d >&2
lsattr -d /mnt/fs/i /mnt/fs/a /mnt/fs/dA /mnt/fs/plain /mnt/fs/d > /mnt/fs/../lsattr.txt
cd {ROOT}; {sys.executable} -c "{code}"; cat /mnt/lsattr.txt
chattr -i /mnt/fs/i /mnt/fs/d; chattr -a /mnt/fs/a
""")
    ours = json.loads(out.splitlines()[0])
    theirs = dict(line.split(None, 1)[::-1] for line in out.splitlines()[1:])
    assert len(theirs) == 5
    for path, shown in theirs.items():
        assert ours[path] == shown.strip(), path  # letter for letter as lsattr prints them
    assert "i" in ours["/mnt/fs/i"] and "a" in ours["/mnt/fs/a"] and "d" in ours["/mnt/fs/dA"]
    # A FIFO and a symlink are not opened: no flags, no error, no hang.
    assert "/mnt/fs/fifo" not in ours and "/mnt/fs/link" not in ours


def test_audit_rules_as_the_kernel_answers() -> None:
    try:
        status, raw = auditnl.read_audit()
    except auditnl.AuditUnavailable as e:
        # Not root, another user namespace, or a kernel without CONFIG_AUDIT: the reason
        # must say which in an examiner's words.
        assert e.reason and e.reason == auditnl.explain(e.errno), e
        pytest.skip(f"the kernel's audit state cannot be read here: {e.reason}")
    assert status["enabled"] in (0, 1, 2) and "backlog_limit" in status
    for data in raw:  # whatever this host has loaded parses and renders
        assert auditnl.parse_rule(data).text().startswith(("-a ", "-w "))


@ROOT_ONLY
def test_audit_rules_refused_without_privilege_says_why() -> None:
    code = (
        "from collectors import auditnl\nimport os, socket, struct  # before any drop\n{}"
        "try: auditnl.read_audit()\nexcept auditnl.AuditUnavailable as e: print(e.reason)"
    )
    drop = "os.setgid(65534); os.setuid(65534)\n"
    nobody = subprocess.run([sys.executable, "-c", code.format(drop)], capture_output=True,
                            text=True, cwd=ROOT, timeout=30)  # fmt: skip
    userns = subprocess.run(["unshare", "-U", "-r", sys.executable, "-c", code.format("")],
                            capture_output=True, text=True, cwd=ROOT, timeout=30)  # fmt: skip
    if "no audit support" in nobody.stdout:
        pytest.skip("this kernel has no audit support: " + nobody.stdout.strip())
    assert "needs root (CAP_AUDIT_CONTROL)" in nobody.stdout, nobody.stderr
    assert "initial user namespace" in userns.stdout, userns.stderr


@pytest.mark.skipif(
    not (os.access(AUDITCTL, os.X_OK) and shutil.which("strace")),
    reason="needs auditctl (tests/run.sh unpacks it from auditd) and strace",
)
def test_audit_rule_bytes_auditctl_builds_decode_to_its_rule() -> None:
    env = {**os.environ, "LD_LIBRARY_PATH": str(TOOLS / "lib/x86_64-linux-gnu")}
    for args, expected in (
        ("-a always,exit -F arch=b64 -S execve,openat -F auid>=1000 -F auid!=-1 -k exec",
         "-a always,exit -F arch=b64 -S execve,openat -F auid>=1000 -F auid!=-1 -F key=exec"),
        ("-w /etc/passwd -p wa -k identity", "-w /etc/passwd -p wa -k identity"),
        ("-w /etc/sudoers.d/ -p rwxa", "-w /etc/sudoers.d -p rwxa"),
        ("-a always,exit -S all -F exe=/bin/ping", "-a always,exit -S all -F exe=/bin/ping"),
        ("-a never,exclude -F msgtype=1307", "-a never,exclude -F msgtype=1307"),
    ):  # fmt: skip
        # The first send (AUDIT_GET) reaches the kernel; the rule's send is failed by strace.
        traced = subprocess.run(
            ["strace", "-xx", "-s", "65536", "-e", "trace=sendto",
             "-e", "inject=sendto:error=EPERM:when=2+", "--", AUDITCTL, *args.split()],
            capture_output=True, text=True, env=env, timeout=30,
        )  # fmt: skip
        sent = [line for line in traced.stderr.splitlines() if "sendto(" in line and ", [{" in line]
        assert sent and "INJECTED" in sent[-1], traced.stderr[-1500:]
        payload = re.search(r'\}, "((?:\\x[0-9a-f]{2})*)"', sent[-1])
        assert payload is not None
        rule = auditnl.parse_rule(bytes.fromhex(payload.group(1).replace("\\x", "")))
        assert rule.text() == expected.replace("/etc/sudoers.d/", "/etc/sudoers.d")


@ROOT_ONLY
def test_pacct_records_the_kernel_wrote_decode_as_dump_acct_reads_them(tmp_path: Path) -> None:
    data = kernel_pacct(tmp_path).read_bytes()
    ours = [r for _o, r in pacctfile.records(data)]
    assert [r["command"] for r in ours if r] == ["true", "sh", "ncat", "sleep", "python3"]
    assert next(r for r in ours if r and r["command"] == "sh")["exitcode"] == 3
    if not os.access(DUMP_ACCT, os.X_OK):
        pytest.skip("no dump-acct (tests/run.sh unpacks package acct): decoded, not cross-checked")
    dumped = subprocess.run([DUMP_ACCT, str(tmp_path / "pacct")], capture_output=True,
                            text=True, check=True).stdout.splitlines()  # fmt: skip
    assert len(dumped) == len(ours)
    for line, rec in zip(dumped, ours, strict=True):
        f = [c.strip() for c in line.split("|")]
        assert rec is not None and f[0] == rec["command"] and f[1] == "v3"
        assert float(f[4]) / 100 == pytest.approx(rec["elapsed_s"], abs=0.01)
        assert (int(f[5]), int(f[6])) == (rec["uid"], rec["gid"])
        assert float(f[7]) == rec["mem_kib"]
        assert (int(f[9]), int(f[10])) == (rec["pid"], rec["ppid"])
        assert int(f[12]) == rec["exitcode"]


@ROOT_ONLY
@pytest.mark.skipif(not shutil.which("updatedb"), reason="needs plocate (updatedb, plocate)")
def test_plocate_names_as_plocate_lists_them(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    for rel in ("a/b/c.txt", "odd name\twith tab", "ünï/∂", "x/" + "y" * 200):
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text("x")
    for i in range(300):  # more than one block of 32, and a dictionary
        (tree / "many" / f"file-{i:04}").parent.mkdir(exist_ok=True)
        (tree / "many" / f"file-{i:04}").touch()
    db = tmp_path / "p.db"
    subprocess.run(["updatedb", "-U", str(tree), "-o", str(db), "-l", "no", "--prunepaths", "",
                    "--prunefs", "", "--prunenames", ""], check=True)  # fmt: skip
    listed = subprocess.run(["plocate", "-0", "-d", str(db), "/"], capture_output=True,
                            check=True).stdout.split(b"\0")  # fmt: skip
    ours = list(locatedb.names(db.read_bytes()))
    assert sorted(ours) == sorted(n for n in listed if n) and len(ours) > 300
    with pytest.raises(locatedb.LocateFormatError):
        list(locatedb.names(b"\0plocate" + b"\0" * 8))


def test_mlocate_format_from_its_manual() -> None:
    # mlocate.db(5): header, root, config block, then directories with their entries.
    conf = b"prune_bind_mounts\0\0yes\0\0"
    head = b"\0mlocate" + len(conf).to_bytes(4, "big") + b"\0\0\0\0" + b"/\0" + conf
    d1 = b"\0" * 16 + b"/var/tmp\0" + b"\0.x\0" + b"\1sub\0" + b"\2"
    d2 = b"\0" * 16 + b"/var/tmp/sub\0" + b"\0y\0" + b"\2"
    names = list(locatedb.names(head + d1 + d2))
    assert names == [b"/var/tmp", b"/var/tmp/.x", b"/var/tmp/sub", b"/var/tmp/sub",
                     b"/var/tmp/sub/y"]  # fmt: skip


PLANT = """
mkdir -p /etc/cron.d /var/spool/cron/crontabs /etc/audit/rules.d /var/log/account \\
  /var/lib/plocate /var/tmp/.k
echo '* * * * * root /var/tmp/.k/run' > /etc/cron.d/zz-keep && chattr +i /etc/cron.d/zz-keep
echo '@reboot /var/tmp/.k/run' > /var/spool/cron/crontabs/root
chattr +a /var/spool/cron/crontabs/root
echo 'nameserver 192.0.2.1' > /etc/zz-resolv.conf && chattr +i /etc/zz-resolv.conf
mount -t tmpfs bin /usr/local/bin && cp /bin/true /usr/local/bin/zz-ps
chattr +i /usr/local/bin/zz-ps
printf -- '-D\\n-b 8192\\n-w /etc/passwd -p wa -k identity\\n-a always,exit -S execve -k exec\\n' \\
  > /etc/audit/rules.d/zz.rules
cp /mnt/stage/pacct /var/log/account/pacct
touch /var/tmp/.k/run /var/tmp/.k/miner
updatedb -U /var/tmp -o /var/lib/plocate/plocate.db -l no --prunepaths '' --prunefs '' \
  --prunenames ''
rm /var/tmp/.k/miner
"""


@ROOT_ONLY
@pytest.mark.skipif(not shutil.which("updatedb"), reason="needs plocate (updatedb)")
def test_planted_host_findings(tmp_path: Path) -> None:
    stage = tmp_path / "stage"
    stage.mkdir()
    kernel_pacct(stage)
    summary, evidence = run_on_planted_host(
        tmp_path, PLANT, "--only", "fileflags,auditrules,pacct,locate", stage=stage
    )  # fmt: skip
    assert summary["status"] == "complete", summary
    found = {(r["rule"], r["source"]["path"]): r for r in journal_records(evidence)
             if r.get("event") == "finding"}  # fmt: skip
    assert found[("immutable-persistence", "/etc/cron.d/zz-keep")]["severity"] == "HIGH"
    assert found[("immutable-persistence", "/var/spool/cron/crontabs/root")]["flags"] == "a"
    assert found[("immutable-binary", "/usr/local/bin/zz-ps")]["severity"] == "HIGH"
    assert found[("immutable-config", "/etc/zz-resolv.conf")]["severity"] == "MEDIUM"
    assert ("immutable-config", "/etc/cron.d/zz-keep") not in found  # one finding, not two
    listing = (evidence / "artifacts/fileflags/flagged.jsonl").read_text()
    flagged = [json.loads(line) for line in listing.splitlines()]
    assert {r["path"] for r in flagged} >= {"/etc/cron.d/zz-keep", "/usr/local/bin/zz-ps"}
    assert all(r["lsattr"][4] == "i" or r["lsattr"][5] == "a" or r["flags"] for r in flagged)
    # The kernel's rule list is the host's (audit rules are not namespaced); this host
    # normally has none loaded while the planted /etc/audit configures two.
    audit = json.loads((evidence / "artifacts/volatile/audit-rules.json").read_bytes())
    assert audit["configured"]["rule_lines"] == 2
    if not audit["rules"]:
        hit = found[("audit-rules-not-loaded", "/etc/audit")]
        assert hit["severity"] == "HIGH" and hit["configured_rules"] == 2
        assert (evidence / "artifacts/volatile/audit-rules.txt").read_text() == "No rules\n"
    pacct = evidence / "artifacts/pacct/var/log/account/pacct"
    assert pacct.read_bytes() == (stage / "pacct").read_bytes()
    rows = [json.loads(x) for x in Path(f"{pacct}.jsonl").read_text().splitlines()]
    assert [r["command"] for r in rows] == ["true", "sh", "ncat", "sleep", "python3"]
    assert rows[0]["user"] == "root"
    tool = found[("pacct-intrusion-tool", "/var/log/account/pacct")]
    assert tool["command"] == "ncat" and tool["artifact"].endswith("pacct.jsonl")
    assert (evidence / "artifacts/locate/var/lib/plocate/plocate.db").is_file()
    gone = found[("locate-staged-file-gone", "/var/tmp/.k/miner")]
    assert gone["database"] == "/var/lib/plocate/plocate.db"
    assert ("locate-staged-file-gone", "/var/tmp/.k/run") not in found  # still there

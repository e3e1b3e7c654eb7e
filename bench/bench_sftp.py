"""Streaming a 1 GiB tree to the SFTP sink against ``tar c | ssh server 'cat > x'`` of the
same tree, in the namespaces of tests/sftp_server.py (a real sshd, veth link).

    sudo .venv/bin/python bench/bench_sftp.py [--mib 1024] [--rounds 3]

preserve copies, hashes (SHA-256), journals and seals through the drop-box account; the
baseline pipes tar through the stock OpenSSH client to a shell account on the same sshd
(a second listener, same host key and defaults), once as is ('baseline': the bytes may
still be in the server's page cache) and once followed by ``sync x`` on the server
('synced': on its disk, as preserve's fsync per file makes them). The order rotates
each round; medians are compared. 'preserve' is the default transport (OpenSSH's ssh
-s sftp); ``--asyncssh`` adds a run of ``--sink-transport asyncssh`` for comparison, and
``--stock-sftp`` one of OpenSSH's own ``sftp -B 261120 -R 64`` (AES-GCM, the largest
writes the server takes, no hash, no fsync): the cost of the protocol and of the server
alone, a floor for any SFTP client.
Target: preserve at most 1.2x the baseline."""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from common import PRESERVE, ROOT, machine  # noqa: E402
from sftp_server import PORT, SftpServer  # noqa: E402

BASELINE_PORT = 2223


def make_tree(root: Path, mib: int) -> Path:
    """Files of 1 to 16 MiB, incompressible, ``mib`` MiB in all."""
    src = root / "tree"
    src.mkdir()
    left, i = mib, 0
    while left > 0:
        size = min(left, 1 + (i * 7) % 16)
        (src / f"d{i % 8}").mkdir(exist_ok=True)
        (src / f"d{i % 8}" / f"f{i:04}").write_bytes(os.urandom(size << 20))
        left, i = left - size, i + 1
    return src


def shell_sshd(server: SftpServer, work: Path) -> subprocess.Popen[bytes]:
    """A second listener for root with a shell, for the baseline's ``cat > x``."""
    keys = server.tmp / "keys"
    auth = work / "root_authorized_keys"
    auth.write_text((keys / "plain.pub").read_text())
    config = work / "sshd_shell"
    config.write_text(
        f"ListenAddress {server.addr}:{BASELINE_PORT}\nHostKey {keys}/host\nPidFile none\n"
        f"UsePAM no\nStrictModes no\nAuthorizedKeysFile {auth}\nPermitRootLogin yes\n"
        "PasswordAuthentication no\n"
    )
    log = work / "sshd_shell.log"
    proc = subprocess.Popen(
        ["ip", "netns", "exec", server.ns["srv"], "/usr/sbin/sshd", "-D", "-e", "-f", config],
        stderr=log.open("wb"),
    )
    while b"Server listening" not in log.read_bytes():
        time.sleep(0.05)
    return proc


def settle() -> None:
    """Wait for the disk to write back what came before (the tree just made, the last
    run's GiB on the server): on this VM's disk buffered writeback runs at about 100 MB/s,
    and a contender's fsync (preserve's per file, 'synced''s at the end) would otherwise
    wait behind the previous one's data, 1.5-3x, whoever came next."""
    os.sync()
    time.sleep(2)


proc_err = [""]  # the last command's stderr, for a failure's message


def cpu_of(argv: list[str | os.PathLike[str]], shell: bool = False) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of the process tree, exit status)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv if not shell else " ".join(map(str, argv)),
        shell=shell,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    proc_err[0] = proc.stderr.read().decode(errors="replace")[-2000:]
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    return wall, usage.ru_utime + usage.ru_stime, os.waitstatus_to_exitcode(status)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--asyncssh", action="store_true", help="also the asyncssh transport")
    parser.add_argument("--stock-sftp", action="store_true", help="also OpenSSH's sftp client")
    parser.add_argument(
        "--server-tmpfs",
        action="store_true",
        help="the server stores on a tmpfs: the transfer's cost without this VM's disk, whose "
        "writeback rate (100 MB/s to 1 GB/s from one hour to the next) otherwise decides "
        "every fsync and sync",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-sftp-", dir="/var/tmp"))
    # The server's chroot is made under /run, which need not be a tmpfs (here it is
    # not): for --server-tmpfs, under a tmpfs mounted before sshd starts (sshd's mount
    # namespace, made by 'ip netns exec', is a copy of this one at that moment).
    tmpfs = Path("/run/preserve-bench-tmpfs")
    if args.server_tmpfs:
        tmpfs.mkdir(mode=0o755)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", tmpfs], check=True)
    server = SftpServer(work / "srv", tmpfs if args.server_tmpfs else Path("/run"))
    shell = None
    try:
        src = make_tree(work, args.mib)
        shell = shell_sshd(server, work)
        known = server.known_hosts(BASELINE_PORT)
        assert server.root is not None
        target = server.root / "baseline.tar"
        baseline = [
            *server.in_cli("sh", "-c"),
            f"tar -C {src} -cf - . | ssh -p {BASELINE_PORT} -i {server.plain_key} "
            f"-o UserKnownHostsFile={known} -o BatchMode=yes root@{server.addr} "
            f"'cat > {target}'",
        ]
        # The same, made as durable as preserve's (it fsyncs every file before a seal).
        synced = [*baseline[:-1], baseline[-1].replace(f"'cat > {target}'",
                  f"'cat > {target} && sync {target}'")]  # fmt: skip
        ours = server.in_cli(
            *PRESERVE, "--quiet", "-o", server.url(), "--sink-host-key", server.fingerprint,
            "--sink-key", server.dropbox_key, "--only", "files", "--path", src,
        )  # fmt: skip
        subprocess.run(["cat", *map(str, src.rglob("f*"))], stdout=subprocess.DEVNULL)  # warm
        settle()
        names: tuple[str, ...] = ("baseline", "synced", "preserve")
        commands = [baseline, synced, ours]
        if args.stock_sftp:
            batch = work / "sftp_batch"
            batch.write_text(f"mkdir /evidence/stock\nput -r {src} /evidence/stock\n")
            names += ("sftp",)
            commands.append(server.in_cli(
                "sftp", "-q", "-B", "261120", "-R", "64", "-b", batch, "-P", str(PORT),
                "-i", server.plain_key, "-o", "Ciphers=aes128-gcm@openssh.com",
                "-o", f"UserKnownHostsFile={server.known_hosts()}", "-o", "BatchMode=yes",
                f"nobody@{server.addr}",
            ))  # fmt: skip
        if args.asyncssh:
            names += ("asyncssh",)
            commands.append([*ours, "--sink-transport", "asyncssh"])
        times: dict[str, list[float]] = {name: [] for name in names}
        cpu: dict[str, list[float]] = {name: [] for name in names}
        runs = list(zip(names, commands, strict=True))
        for round_ in range(args.rounds):
            # Rotated, so no command always runs first (after the others' page cache) or
            # last (in the load the others left).
            for name, argv in runs[round_ % len(runs) :] + runs[: round_ % len(runs)]:
                wall, used, status = cpu_of(argv)
                assert status in (0,), (name, status, proc_err[0])
                times[name].append(wall)
                cpu[name].append(used)
                target.unlink(missing_ok=True)
                for d in server.evidence.iterdir():
                    shutil.rmtree(d)
                settle()
        base, mine = statistics.median(times["baseline"]), statistics.median(times["preserve"])
        print(f"machine: {machine()}")
        print(
            f"tree: {args.mib} MiB in {sum(1 for _ in src.rglob('f*'))} files; "
            f"rounds: {args.rounds}; server stores on {'tmpfs' if args.server_tmpfs else 'disk'}"
        )
        for name in names:
            listed = ", ".join(f"{t:.2f}" for t in times[name])
            print(
                f"{name:9} median {statistics.median(times[name]):6.2f} s "
                f"({args.mib / statistics.median(times[name]):6.1f} MiB/s; runs {listed}); "
                f"CPU {statistics.median(cpu[name]):.2f} s (client tree)"
            )
        synced_median = statistics.median(times["synced"])
        print(f"ratio preserve/baseline: {mine / base:.2f}x (target <= 1.2x)")
        print(f"ratio preserve/baseline+sync: {mine / synced_median:.2f}x")
    finally:
        if shell is not None:
            shell.terminate()
            shell.wait(10)
        server.close()
        shutil.rmtree(work, ignore_errors=True)
        if args.server_tmpfs:
            subprocess.run(["umount", "-l", tmpfs], check=False)
            tmpfs.rmdir()


if __name__ == "__main__":
    main()

# ruff: noqa: F811  (the server fixture is shared with test_sftp_sink)
"""ssh started from the raw command line before preserve loads (agent/sinks/predial.py):
what the guess reads and what makes it start nothing; against the real sshd, that ssh
is running before click, the collection and the collectors are imported (asyncssh
never is), that one click parsed differently is killed and a right one dialled, and
that one no collection took is killed when preserve exits."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import verify
from sftp_server import SftpServer
from test_sftp_openssh import STRACE, _execs, _ssh_processes, needs_server
from test_sftp_sink import _argv, _evidence_dirs, _run, _tree, server  # noqa: F401

from agent.sinks.predial import Guess, guess

URL = "sftp://up@10.0.0.1:2222/evidence"
PIN = "SHA256:" + "A" * 43


def test_the_guess_reads_each_spelling_click_accepts() -> None:
    want = Guess(URL, PIN, Path("/k"), None, "openssh")
    for argv in (
        ["-o", URL, "--sink-host-key", PIN, "--sink-key", "/k"],
        [f"--output={URL}", f"--sink-host-key={PIN}", "--sink-key=/k"],
        [f"-o{URL}", "--sink-key", "/k", "--case", "IR-1", "--sink-host-key", PIN],
        ["--only", "files", "--path", "/srv", "-o", URL, "--sink-host-key", PIN, "--sink-key",
         "/k", "--sink-transport", "openssh"],
    ):  # fmt: skip
        assert guess(argv) == want, argv
    timed = ["-o", URL, "--sink-host-key", PIN, "--sink-key", "/k", "--sink-timeout", "7.5"]
    assert guess(timed) == Guess(URL, PIN, Path("/k"), 7.5, "openssh")


@pytest.mark.parametrize(
    "extra",
    [
        ["--help"],
        ["-h"],
        ["--version"],
        ["--isolate", "--dry-run"],
        ["image", "--device", "/dev/sda"],  # a subcommand dials for itself, or not at all
        ["--sink-transport", "asyncssh"],
        ["--sink-timeout", "soon"],
        ["--", "--path"],
    ],
)
def test_the_guess_starts_nothing_on_any_doubt(extra: list[str]) -> None:
    base = ["-o", URL, "--sink-host-key", PIN, "--sink-key", "/k"]
    assert guess(base) is not None
    assert guess([*base, *extra]) is None
    assert guess([*extra, *base]) is None


def test_the_guess_needs_a_remote_output_a_pin_and_a_key() -> None:
    assert guess(["-o", "/media/kit", "--sink-host-key", PIN, "--sink-key", "/k"]) is None
    assert guess(["-o", URL, "--sink-key", "/k"]) is None
    assert guess(["-o", URL, "--sink-host-key", PIN]) is None
    assert guess(["-o", URL, "--sink-host-key", PIN, "--sink-key"]) is None
    assert guess([]) is None


def _killed(trace: Path, ssh: str) -> list[bool]:
    """For each ssh that ran, in order: whether it ended by SIGKILL (preserve's abort)
    rather than on its own (EOF on its stdin, or its exit after the session)."""
    lines = trace.read_text().splitlines()
    pids = [line.split()[0] for line in _execs(trace) if f'execve("{ssh}"' in line]
    killed = {line.split()[0] for line in lines if "+++ killed by SIGKILL" in line}
    return [pid in killed for pid in pids]


@needs_server
def test_ssh_is_running_before_click_and_the_collection_are_imported_and_asyncssh_never(
    server: SftpServer, tmp_path: Path
) -> None:
    trace = tmp_path / "trace"
    argv = _argv(server, server.dropbox_key, "--only", "files", "--path", _tree(tmp_path, 1))
    done = _run([*argv[:4], *STRACE, "-e", "trace=execve,openat", "-o", trace, *argv[4:]])
    assert done.returncode == 0, done.stderr.decode()
    lines = trace.read_text().splitlines()
    ssh = os.path.realpath(shutil.which("ssh") or "")
    started = [i for i, line in enumerate(lines) if f'execve("{ssh}"' in line and "= 0" in line]
    # The first carries the run; a second, once the first is checked, is the fsync
    # session (agent/sinks/sidefsync.py), when the run lasts long enough to start it.
    assert 1 <= len(started) <= 2, started
    for loaded in ("/click/", "/commands/__pycache__/collect.", "/collectors/files"):
        opened = [i for i, line in enumerate(lines) if "openat(" in line and loaded in line]
        assert opened and started[0] < min(opened), loaded
    assert not [line for line in lines if "openat(" in line and "/asyncssh/" in line]
    assert _killed(trace, ssh)[0] is False  # the first ssh carried the run, and exited
    (evidence,) = _evidence_dirs(server)
    assert verify(evidence, "--fingerprint", json.loads(done.stdout)["fingerprint"]).returncode == 0


@needs_server
def test_an_ssh_click_parsed_differently_is_killed_and_the_right_one_dialled(
    server: SftpServer, tmp_path: Path
) -> None:
    """``--case --sink-key=STRANGER``: to click, the case is the word '--sink-key=...' and
    the key the one given before it; the guess took that word for the last --sink-key,
    a key the server refuses. Had its ssh been used, the run would have failed."""
    stranger = server.tmp / "keys" / "other_host"
    trace = tmp_path / "trace"
    argv = _argv(server, server.dropbox_key, "--only", "files", "--path", _tree(tmp_path, 1),
                 "--case", f"--sink-key={stranger}")  # fmt: skip
    done = _run([*argv[:4], *STRACE, "-e", "trace=execve", "-o", trace, *argv[4:]])
    assert done.returncode == 0, done.stderr.decode()
    ssh = os.path.realpath(shutil.which("ssh") or "")
    # Two ran: the guessed one (killed, or already refused by the server) and the right
    # one; and perhaps a third, the right one's fsync session (sidefsync).
    assert len(_killed(trace, ssh)) in (2, 3)
    ran = [line for line in _execs(trace) if f'execve("{ssh}"' in line]
    (evidence,) = _evidence_dirs(server)
    start = json.loads((evidence / "custody.jsonl").read_bytes().splitlines()[0])
    assert start["case"] == f"--sink-key={stranger}", (start.get("case"), ran)
    assert not _ssh_processes(server)


@needs_server
def test_an_ssh_no_collection_took_is_killed_as_preserve_exits(
    server: SftpServer, tmp_path: Path
) -> None:
    """An option click refuses: the collection never starts, exit 2 with click's line,
    and the ssh started from the command line is killed, not left to find EOF."""
    trace = tmp_path / "trace"
    argv = _argv(server, server.dropbox_key, "--only", "files", "--no-such-option")
    done = _run([*argv[:4], *STRACE, "-e", "trace=execve", "-o", trace, *argv[4:]])
    assert done.returncode == 2 and b"--no-such-option" in done.stderr, done.stderr.decode()
    ssh = os.path.realpath(shutil.which("ssh") or "")
    assert _killed(trace, ssh) == [True]
    assert not _ssh_processes(server) and _evidence_dirs(server) == []


def test_an_early_ssh_is_ended_when_click_reads_a_local_output(tmp_path: Path) -> None:
    """``-o=sftp://...``: the guess reads a URL, click the local path '=sftp:/...'. The
    collection's dial ends the guessed ssh at once, not when preserve exits hours later
    (its key in a memfd all that while)."""
    from agent.sinks import dial, predial

    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    predial.predial([f"-o={URL.replace('10.0.0.1', '127.0.0.1')}", "--sink-host-key", PIN,
                     "--sink-key", str(key)])  # fmt: skip
    started = predial._started
    assert started is not None
    ssh = started[1].conn
    assert dial(Path("=sftp:/up@127.0.0.1:2222/evidence"), PIN, key, None, "openssh") is None
    assert predial._started is None
    ssh.proc.wait(10)
    assert ssh.memfds == []


def test_a_value_click_would_refuse_starts_nothing_and_raises_nothing(tmp_path: Path) -> None:
    """Left for click to refuse in its words: no traceback from the guess."""
    from agent.sinks import predial

    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    given = ["--sink-host-key", PIN, "--sink-key", str(key)]
    for bad in (["-o", URL, "--sink-timeout", "1e999"], ["-o", "sftp://u@[::1/x"]):
        predial.predial([*given, *bad])
        assert predial._started is None

"""Hostile text in the evidence stays text in every report format.

A real process runs from a file named like an HTML tag, with an argv[0] holding a script,
a pipe, an escape sequence, a C1 control and a bidi override; a preserved directory holds
files with such names and an auth log whose user names are such strings. The Markdown
report is rendered by a real Markdown renderer (markdown-it-py) and, like the HTML
report, loaded in headless Chromium: no script runs (the page title would change), no
tag or event handler appears, no table row changes its number of cells, and no escape
byte reaches the output, nor a terminal that ``preserve report`` prints to."""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import collect_json, preserve
from report_helpers import write_auth_log

markdown_it = pytest.importorskip("markdown_it", reason="markdown-it-py (test extra) is absent")

PWN = "document.title='PWNED'"
ARGV0 = f"<script>{PWN}</script>|x\x1b[31mRED\u202eevil\u009b[2J`tick`"
EXE_NAME = f"<img src=x onerror={PWN}>"
FILE_NAMES = [f"<img src=x onerror={PWN}>.html", "a\x1b[2Jb\u202e|`x`|.php", "c\u009bd&amp;.txt"]
PLAIN = "__init__ ~~struck~~ *star* [link](x.html) some_file.py"  # renders as it is
FILE_NAMES.append(PLAIN)
USERS = [f"<script>{PWN}</script>", "ev|il\x1b]0;title\x07", "\u202erevers"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
ALLOWED_TAGS = {
    "h1", "h2", "h3", "p", "ul", "li", "strong", "em", "table", "thead", "tbody", "tr",
    "th", "td", "code", "blockquote", "input", "br",
}  # fmt: skip


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("hostile")
    exe = tmp / EXE_NAME
    shutil.copy("/bin/sleep", exe)
    proc = subprocess.Popen([ARGV0, "600"], executable=exe)
    src = tmp / "host"
    (src / "var/log").mkdir(parents=True)
    for name in FILE_NAMES:
        (src / name).write_text(f"{ARGV0}\n")
    write_auth_log(
        src / "var/log/auth.log",
        [
            f"2026-11-26T21:20:0{n}.000000+00:00 web01 sshd[90{n}]: Accepted publickey for "
            f"{user} from 203.0.113.9 port 5002{n} ssh2"
            for n, user in enumerate(USERS)
        ],
    )
    try:
        time.sleep(0.2)
        summary = collect_json(tmp / "out", "--only", "processes,files", "--path", src)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return Path(summary["evidence_dir"])


def _report(evidence: Path, fmt: str) -> str:
    result = preserve("report", evidence, "--format", fmt)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode("utf-8")


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.rows: list[list[int]] = []  # cells of each row, per table
        self.text = ""

    def handle_data(self, data: str) -> None:
        self.text += data

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))
        if tag == "table":
            self.rows.append([])
        elif tag == "tr":
            self.rows[-1].append(0)
        elif tag in ("td", "th"):
            self.rows[-1][-1] += 1


def test_markdown_keeps_hostile_text_inert(hostile: Path) -> None:
    md = _report(hostile, "md")
    assert not BAD.search(md), repr(BAD.search(md))
    assert "onerror" in md and "PWNED" in md  # the hostile text is there, as text
    html = markdown_it.MarkdownIt("commonmark").enable("table").render(md)
    parsed = _Tags()
    parsed.feed(html)
    tags = {t for t, _ in parsed.tags}
    assert tags <= ALLOWED_TAGS, tags - ALLOWED_TAGS
    for tag, attrs in parsed.tags:
        assert not any(name.startswith("on") for name, _ in attrs), (tag, attrs)
    for table in parsed.rows:
        assert table and len(set(table)) == 1, table  # no row gained or lost a cell
    assert len(parsed.rows) >= 3  # the custody and the timeline tables were checked
    assert PLAIN in parsed.text  # no emphasis, strike-through or link made of a name
    data = json.loads(_report(hostile, "json"))
    texts = list(_strings(data))
    assert any(ARGV0 in t for t in texts)  # the JSON keeps the raw values
    assert any(EXE_NAME in t for t in texts)


def _strings(value: object):  # type: ignore[no-untyped-def]
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def test_printing_to_a_terminal_emits_no_escape(hostile: Path) -> None:
    master, slave = pty.openpty()
    cmd = [sys.executable, "-c", "from agent._cli import main; main()", "report", str(hostile)]
    proc = subprocess.Popen(cmd, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    assert proc.wait(timeout=60) == 0
    os.close(master)
    assert b"PWNED" in out
    assert b"\x1b" not in out and b"\xc2\x9b" not in out and "\u202e".encode() not in out


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_no_script_runs_in_chromium(hostile: Path, tmp_path: Path) -> None:
    pages = {
        "report.html": _report(hostile, "html"),
        "markdown.html": "<!DOCTYPE html><html><head><title>clean</title></head><body>"
        + markdown_it.MarkdownIt("commonmark").enable("table").render(_report(hostile, "md"))
        + "</body></html>",
    }
    for name, text in pages.items():
        page = tmp_path / name
        page.write_text(text, encoding="utf-8")
        profile = tmp_path / f"profile-{name}"
        profile.mkdir()
        dom = subprocess.run(
            [
                CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", f"--user-data-dir={profile}",
                "--virtual-time-budget=2000", "--dump-dom", page.as_uri(),
            ],
            capture_output=True,
            timeout=90,
        )  # fmt: skip
        assert dom.returncode == 0, dom.stderr.decode()[-400:]
        text_dom = dom.stdout.decode()
        title = re.search(r"<title>(.*?)</title>", text_dom, re.S)
        assert title and "PWNED" not in title.group(1), name
        assert "<script" not in text_dom and "<img" not in text_dom, name
        assert "PWNED" in text_dom  # shown as text
        assert not BAD.search(text_dom), name

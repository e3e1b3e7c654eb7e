"""The report on paper: the timeline picture says what happened in words (labels, not
only tooltips), on an axis around the incident; ``--format pdf`` prints through headless
Chromium, and the pages are checked with poppler (``pdftoppm``, ``pdftotext``)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import collect_json, preserve
from report_helpers import colours, utmp_record

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
POPPLER = shutil.which("pdftoppm") and shutil.which("pdftotext")
OLD = 946684800  # 2000-01-01: an old file must not stretch the axis


@pytest.fixture(scope="module")
def evidence(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("print")
    src = tmp / "host"
    (src / "var/log").mkdir(parents=True)
    now = int(os.stat(tmp).st_mtime)
    (src / "var/log/wtmp").write_bytes(
        utmp_record("mallory", "203.0.113.9", "203.0.113.9", now - 3600)
    )
    (src / "etc/cron.d").mkdir(parents=True)
    (src / "etc/cron.d/backdoor").write_text("* * * * * root /tmp/.x\n")
    (src / "old.conf").write_text("old\n")
    os.utime(src / "old.conf", (OLD, OLD))
    summary = collect_json(tmp / "out", "--only", "files", "--path", src)
    return Path(summary["evidence_dir"])


def test_the_picture_labels_events_on_an_incident_axis(evidence: Path, tmp_path: Path) -> None:
    page = tmp_path / "r.html"
    assert preserve("report", evidence, "--format", "html", "-o", page).returncode == 0
    html = page.read_text()
    svg = html[html.index("<svg") : html.index("</svg>")]
    labels = re.findall(r'class="lb"[^>]*>([^<]*)<', svg)
    assert any("login mallory" in x for x in labels), labels  # in words, on the page
    assert any("cron.d/backdoor" in x for x in labels), labels  # a persistence change
    assert "persistence changes" in svg and "logins" in svg
    ticks = re.findall(r'class="tk"[^>]*>([^<]*)<', svg)
    assert not any(t.startswith("2000") for t in ticks), ticks  # the axis is not stretched
    # the old file (and the boot, on a machine up for long) summarised in one line
    assert re.search(r"Older: \d+ events? from 2000-01-01", svg), svg[:2000]


@pytest.mark.skipif(CHROMIUM is None or not POPPLER, reason="chromium or poppler-utils absent")
def test_pdf_pages_are_printed_and_readable(evidence: Path, tmp_path: Path) -> None:
    pdf = tmp_path / "report.pdf"
    before = set(Path("/tmp").glob("preserve-pdf-*"))
    result = preserve("report", evidence, "--format", "pdf", "-o", pdf, timeout=180)
    assert result.returncode == 0, result.stderr.decode()
    assert pdf.read_bytes().startswith(b"%PDF-")
    assert set(Path("/tmp").glob("preserve-pdf-*")) == before  # the private profile is gone
    text = subprocess.run(["pdftotext", pdf, "-"], capture_output=True, check=True).stdout
    words = text.decode()
    for expected in ("Summary", "The evidence is intact", "The incident window", "Findings"):
        assert expected in words, expected
    subprocess.run(["pdftoppm", "-r", "50", "-png", "-f", "1", "-l", "1", pdf, tmp_path / "p"])
    (png,) = tmp_path.glob("p*.png")
    assert len(colours(png.read_bytes(), step=2)) > 20  # a page with a picture, not blank
    if os.environ.get("PRESERVE_KEEP_SCREENSHOT"):
        shutil.copy(png, os.environ["PRESERVE_KEEP_SCREENSHOT"] + ".pdf-page1.png")


def test_pdf_without_chromium_is_a_clear_error(evidence: Path, tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    pdf = tmp_path / "no.pdf"
    result = preserve("report", evidence, "--format", "pdf", "-o", pdf, env={"PATH": str(empty)})
    assert result.returncode == 2
    err = result.stderr.decode()
    assert err.startswith("error: --format pdf needs headless Chromium"), err
    assert "--format html" in err and not pdf.exists()

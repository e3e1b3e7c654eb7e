"""``--format pdf``: the HTML report printed to PDF by headless Chromium, so it can be
signed and filed.

Chromium is the one renderer here that prints the same page the HTML shows (the SVG,
the stamp on every page of failed evidence). It runs with a private profile in a
temporary directory that is removed afterwards, every network path closed (a proxy that
does not exist, no background or component traffic), and the report file read from
that directory: nothing of the responder's browser is used or changed. Without
Chromium the error says so and how to get a PDF anyway."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from manifests.errors import UsageError

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TIMEOUT_S = 120


class PdfError(UsageError):
    """No PDF could be made (no Chromium, or it failed): nothing was written."""


def browser() -> str | None:
    return next((p for p in map(shutil.which, NAMES) if p), None)


def command(exe: str, page: Path, pdf: Path, profile: Path) -> list[str]:
    return [
        exe,
        "--headless",
        "--no-sandbox",  # as root Chromium refuses its sandbox; the page has no scripts
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-sync",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--proxy-server=http://127.0.0.1:9",  # nothing leaves the machine
        "--proxy-bypass-list=<-loopback>",
        f"--user-data-dir={profile}",
        "--no-pdf-header-footer",
        f"--print-to-pdf={pdf}",
        page.as_uri(),
    ]


def to_pdf(html: str) -> bytes:
    """The PDF of ``html``; raises ``PdfError`` when Chromium is absent or fails."""
    exe = browser()
    if exe is None:
        raise PdfError(
            "--format pdf needs headless Chromium, which is not installed here",
            hint="install chromium (apt-get install chromium), or write --format html and "
            "print it to PDF from any browser",
        )
    with tempfile.TemporaryDirectory(prefix="preserve-pdf-") as tmp:
        root = Path(tmp)
        page, pdf, profile = root / "report.html", root / "report.pdf", root / "profile"
        profile.mkdir()
        page.write_text(html, encoding="utf-8")
        try:
            done = subprocess.run(
                command(exe, page, pdf, profile),
                capture_output=True,
                timeout=TIMEOUT_S,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise PdfError(f"Chromium could not print the report: {e}") from e
        if done.returncode != 0 or not pdf.is_file() or pdf.stat().st_size == 0:
            tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
            raise PdfError(
                f"Chromium could not print the report (exit {done.returncode}): {tail[0][:300]}",
                hint="write --format html and print it from a browser",
            )
        return pdf.read_bytes()

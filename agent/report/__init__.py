"""``preserve report``: from a verified evidence directory to the first draft of the
facts (custody, host, findings, timeline, 5W1H, deadlines) as HTML, Markdown or JSON."""

from __future__ import annotations

from typing import Any

from . import render_html, render_json, render_md

RENDERERS = {"html": render_html.render, "md": render_md.render, "json": render_json.render}


def render(report: dict[str, Any], fmt: str) -> str:
    return RENDERERS[fmt](report)

"""Wording shared by the renderers for what the report's bounds left out: the limits a
parser stopped at (``Evidence.not_examined``) and the files the timeline summarises."""

from __future__ import annotations

from typing import Any

from .words import size


def limit_text(limit: dict[str, Any]) -> str:
    """``artifacts/.../auth.log (seq 12): lines 9 to 20: why`` for one noted limit."""
    where = ""
    if limit.get("artifact"):
        seq = limit.get("seq")
        where = f"{limit['artifact']}" + (f" (seq {seq})" if seq is not None else "") + ": "
    return f"{where}{limit['what']}: {limit['why']}"


def files_line(timeline: dict[str, Any]) -> str:
    """One sentence for the files the timeline does not list one by one."""
    s = timeline["files_summary"]
    return (
        f"Files: {s['count']} preserved file(s) with a source modification time, "
        f"{size(s['bytes'])} in all, modified between {s['oldest']} and {s['newest']}; "
        f"the newest {s['listed']} are listed, {timeline['left_out']['files']} are not "
        "(the bodyfile export lists every one)."
    )

"""JSON: the report's data as it is, for scripts and case-management systems."""

from __future__ import annotations

import json
from typing import Any


def render(r: dict[str, Any]) -> str:
    # ASCII: a raw ESC, C1 control or bidi override is written as \\uXXXX, so the JSON
    # printed to a terminal is as inert as the other formats; parsed, the values are raw.
    return json.dumps(r, indent=2, ensure_ascii=True, sort_keys=False) + "\n"

"""JSON: the report's data as it is, for scripts and case-management systems."""

from __future__ import annotations

import json
from typing import Any


def render(r: dict[str, Any]) -> str:
    return json.dumps(r, indent=2, ensure_ascii=False, sort_keys=False) + "\n"

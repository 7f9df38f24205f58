"""`write_json`: the one way evaluation and data modules write a JSON file (summary.json, run.json,
manifest.json): whole or not at all, so a crash mid-write never leaves half a file to resume from."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json(path: str | Path, obj: Any) -> Path:
    """Write `obj` as indented UTF-8 JSON (non-JSON values as their str) to `path.tmp`, then rename it over
    `path` (atomic on one file system). Returns `path`."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path

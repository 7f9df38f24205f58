"""The one "did you mean" helper behind every unknown-name error (config keys, recipes, tasks, verifiers, models)."""
from __future__ import annotations

import difflib
from typing import Iterable


def did_you_mean(name: str, names: Iterable[str], *, cutoff: float = 0.4) -> str:
    """" (did you mean 'x'?)" or "": the shortest name that starts with `name`, else the most similar one."""
    names = [str(n) for n in names]
    name = str(name)
    prefixed = sorted((n for n in names if name and n.startswith(name)), key=len)
    close = prefixed[:1] or difflib.get_close_matches(name, names, n=1, cutoff=cutoff)
    return f" (did you mean {close[0]!r}?)" if close else ""

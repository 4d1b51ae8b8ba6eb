"""Keeping sandbox data between console runs: one snapshot file beside the console's database.

Each sandbox names the attributes that hold its fake provider's data (`Sandbox.persisted`: the
sequences, documents, customers and accounts, never switches, clocks, request logs or one-time
login keys). `save_state` writes them all at once; `load_state` puts them back, or raises
`StateError` when the file was written by other code, and then the sandboxes start afresh.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from commands.sandbox import Sandbox

STATE_VERSION = 1


class StateError(Exception):
    """A snapshot that cannot be put back; the message says why in a few words."""


def save_state(path: Path, sandboxes: Mapping[str, Sandbox]) -> None:
    """Write every sandbox's data to `path`, replacing it whole (never half-written)."""
    state = {
        "version": STATE_VERSION,
        "sandboxes": {
            name: {attr: getattr(sandbox, attr) for attr in sandbox.persisted}
            for name, sandbox in sandboxes.items()
        },
    }
    partial = path.with_name(path.name + ".partial")
    # pickle, because the data are the sandboxes' own dataclasses, Decimals and dates; it reads
    # back only this file, which the same program wrote beside its own database.
    partial.write_bytes(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
    os.replace(partial, path)


def load_state(path: Path, sandboxes: Mapping[str, Sandbox]) -> None:
    """Put the data saved in `path` back into the sandboxes of the same names."""
    try:
        state = pickle.loads(path.read_bytes())
    except Exception as exc:
        raise StateError(f"{path.name} cannot be read ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise StateError(f"{path.name} was written by another version")
    saved: dict[str, dict[str, Any]] = state.get("sandboxes", {})
    for name, sandbox in sandboxes.items():
        values = saved.get(name)
        if not isinstance(values, dict) or set(values) != set(sandbox.persisted):
            raise StateError(f"{path.name} has no usable state for {name}")
    for name, sandbox in sandboxes.items():
        for attr, value in saved[name].items():
            setattr(sandbox, attr, value)


def number_span(numbers: list[int], limit: int = 6) -> str:
    """`10023–10222` for an unbroken run of numbers, else the first few and how many more."""
    ordered = sorted(numbers)
    if not ordered:
        return "none"
    if len(ordered) > 2 and ordered[-1] - ordered[0] == len(ordered) - 1:
        return f"{ordered[0]}–{ordered[-1]}"
    shown = ", ".join(str(n) for n in ordered[:limit])
    return shown + (f" and {len(ordered) - limit} more" if len(ordered) > limit else "")

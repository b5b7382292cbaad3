"""Errors a user can cause, and messages that name the problem (used by every module that validates input)."""
from __future__ import annotations

import difflib

import numpy as np


def unknown_name_message(kind: str, name, allowed) -> str:
    """An error message for an unknown ``name``, listing the allowed ones (and the closest)."""
    allowed = list(allowed)
    close = difflib.get_close_matches(str(name), [str(a) for a in allowed], n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"unknown {kind} {name!r}; allowed: {', '.join(map(repr, allowed))}.{hint}"


class ClaimError(ValueError):
    """A claim cannot be evaluated on this input (unknown claim, unusable run)."""


def is_int(v) -> bool:
    """A whole number, numpy's included, and not a bool (True would pass ``isinstance(v, int)``)."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def is_number(v) -> bool:
    """A real number, numpy's included, and not a bool."""
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def file_read_problem(exc: BaseException) -> str:
    """Why numpy could not read a file, in words: ``np.load`` calls any file without the .npy or
    .npz signature "pickled (object) data", which misleads about a truncated or foreign file."""
    if "pickled" in str(exc):
        return "not a NumPy .npy or .npz file (or one holding Python objects, which mlpsim does not load)"
    return f"{type(exc).__name__}: {str(exc)[:120]}"

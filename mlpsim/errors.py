"""Errors a user can cause, and messages that name the problem (used by every module that validates input)."""
from __future__ import annotations

import difflib


def unknown_name_message(kind: str, name, allowed) -> str:
    """An error message for an unknown ``name``, listing the allowed ones (and the closest)."""
    allowed = list(allowed)
    close = difflib.get_close_matches(str(name), [str(a) for a in allowed], n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"unknown {kind} {name!r}; allowed: {', '.join(map(repr, allowed))}.{hint}"


class ClaimError(ValueError):
    """A claim cannot be evaluated on this input (unknown claim, unusable run)."""

"""A measured fix for waste in betterproto2 0.10 on the serving path.

`Message._get_field_default` enters `warnings.catch_warnings()` on every call, for every field
of every message encoded or decoded, only to silence DeprecationWarnings raised by default
factories of deprecated fields. govc's contract has no deprecated fields, so the server skips
that guard: it is ~40% of encoding time and dominates BatchOperations with many operations.
A test checks, against the pinned version, that the original still enters the guard.

The patch is process-wide (a class attribute of betterproto2.Message), so it is shared and
counted: each server holds it from start to stop, and the original method is back when the last
holder lets go. Never applied on import (the client library does not patch anything)::

    patch = speedups.apply()  # at start
    ...
    patch.undo()  # at stop; a second call does nothing

or `with speedups.apply(): ...`.
"""

import threading
from types import TracebackType
from typing import Any, cast

import betterproto2

# The pinned library's method, as imported (before anything patched it).
ORIGINAL = betterproto2.Message._get_field_default

_lock = threading.Lock()
_holders = 0  # live Patch handles
_replaced: Any = None  # the method the first apply() replaced, put back by the last undo()


def _field_default(self: betterproto2.Message, field_name: str) -> Any:
    return cast(Any, self)._betterproto.default_gen[field_name]()


class Patch:
    """One holder's share of the patch. `undo()` releases it (once: further calls do nothing);
    the patch is removed when no holder is left. Also a context manager."""

    def __init__(self) -> None:
        self._held = True

    def undo(self) -> None:
        global _holders, _replaced
        with _lock:
            if not self._held:
                return
            self._held = False
            _holders -= 1
            if _holders == 0:
                if vars(betterproto2.Message).get("_get_field_default") is _field_default:
                    betterproto2.Message._get_field_default = _replaced  # type: ignore[method-assign]
                _replaced = None

    def __enter__(self) -> "Patch":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.undo()


def apply() -> Patch:
    """Skip betterproto2's per-field warnings guard until the returned handle is undone (and
    every other handle too)."""
    global _holders, _replaced
    with _lock:
        if _holders == 0:
            _replaced = vars(betterproto2.Message)["_get_field_default"]
            betterproto2.Message._get_field_default = _field_default  # type: ignore[method-assign]
        _holders += 1
    return Patch()


def is_applied() -> bool:
    """Whether betterproto2 currently runs without the guard."""
    return vars(betterproto2.Message).get("_get_field_default") is _field_default

"""Revision syntax: `HEAD`, branch names, full or abbreviated (>= 4 hex) commit ids, then any
number of `~N` and `^` / `^N` suffixes."""

import re

from govc.errors import InvalidArgument

_SUFFIX = re.compile(r"([~^])(\d*)")
MAX_COUNT_DIGITS = 9  # `~N` / `^N`: no history is deeper than that
_HEX = re.compile(r"[0-9a-fA-F]{4,40}")  # git reads hex in either case


def split_revision(rev: str, field: str = "revision") -> tuple[str, list[tuple[str, int]]]:
    """`main~2^` -> ("main", [("~", 2), ("^", 1)])."""
    if not rev:
        raise InvalidArgument(f"{field} is required")
    cut = min((i for i in (rev.find("~"), rev.find("^")) if i >= 0), default=len(rev))
    base, rest = rev[:cut], rev[cut:]
    if not base:
        raise InvalidArgument(f"{field} {rev!r:.80} has no base revision")
    steps: list[tuple[str, int]] = []
    pos = 0
    while pos < len(rest):
        match = _SUFFIX.match(rest, pos)
        if not match:
            raise InvalidArgument(f"{field} {rev!r:.80} is not a valid revision")
        op, digits = match.group(1), match.group(2)
        if len(digits) > MAX_COUNT_DIGITS:
            raise InvalidArgument(
                f"{field} {rev!r:.80}: {op}N counts have at most {MAX_COUNT_DIGITS} digits"
            )
        steps.append((op, int(digits) if digits else 1))
        pos = match.end()
    return base, steps


def looks_like_hash(base: str) -> bool:
    return bool(_HEX.fullmatch(base))

"""Validation of names that arrive from clients: repository ids (more rules join later)."""

import re

from govc.errors import InvalidArgument

_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def validate_repo_id(value: str, field: str = "id") -> str:
    if not value:
        raise InvalidArgument(f"{field} is required")
    if not _REPO_ID.fullmatch(value):
        raise InvalidArgument(
            f"{field} {value!r:.80} is invalid: use 1-64 characters of A-Z a-z 0-9 . _ -, "
            "starting with a letter or digit"
        )
    return value

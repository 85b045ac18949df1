"""Setting a oneof member correctly.

betterproto2 0.10 does not clear the other members of a oneof when one is set, so both would
be encoded and a peer would see the last one on the wire. Every oneof we build goes through
`set_one_of`, which clears the siblings.
"""

import dataclasses
from typing import Any, TypeVar, cast

import betterproto2

M = TypeVar("M", bound=betterproto2.Message)


def _group_of(message: betterproto2.Message, field: str) -> str:
    for f in dataclasses.fields(cast(Any, message)):
        if f.name == field:
            group = f.metadata["betterproto"].group
            if group is None:
                raise ValueError(f"{type(message).__name__}.{field} is not a oneof member")
            return str(group)
    raise ValueError(f"{type(message).__name__} has no field {field!r}")


def set_one_of(message: M, field: str, value: Any) -> M:
    """Set `field` of `message` to `value` and clear the other members of its oneof."""
    group = _group_of(message, field)
    for f in dataclasses.fields(cast(Any, message)):
        if f.name != field and f.metadata["betterproto"].group == group:
            setattr(message, f.name, None)
    setattr(message, field, value)
    return message

"""The call context a transport sets for the handler serving one call."""

from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass(frozen=True)
class CallContext:
    method: str
    peer: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    deadline_seconds: float | None = None  # time left when the call arrived


current_call: ContextVar[CallContext | None] = ContextVar("govc_current_call", default=None)

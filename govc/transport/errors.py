"""The single mapping from domain errors to gRPC status codes."""

import logging

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from govc import errors

log = logging.getLogger(__name__)

STATUS_OF: dict[type[errors.GovcError], Status] = {
    errors.NotFound: Status.NOT_FOUND,
    errors.AlreadyExists: Status.ALREADY_EXISTS,
    errors.InvalidArgument: Status.INVALID_ARGUMENT,
    errors.FailedPrecondition: Status.FAILED_PRECONDITION,
    errors.Aborted: Status.ABORTED,
    errors.OutOfRange: Status.OUT_OF_RANGE,
    errors.ResourceExhausted: Status.RESOURCE_EXHAUSTED,
    errors.DataLoss: Status.DATA_LOSS,
    errors.DeadlineExceeded: Status.DEADLINE_EXCEEDED,
    errors.Unavailable: Status.UNAVAILABLE,
}


class MalformedMessage(GRPCError):
    """A request the door refuses before any handler sees it: bytes that are not the message
    they claim to be, or gRPC framing that breaks the protocol. The client's error, so it is
    logged in one line (by the guard), never with a traceback."""


def to_grpc_error(exc: Exception, method: str) -> GRPCError:
    """The status a client sees for `exc`. Never carries a traceback."""
    if isinstance(exc, GRPCError):
        return exc
    if isinstance(exc, errors.GovcError):
        for cls in type(exc).__mro__:
            status = STATUS_OF.get(cls)
            if status is not None:
                return GRPCError(status, exc.message)
    log.error("internal error in %s", method, exc_info=exc)
    return GRPCError(Status.INTERNAL, f"internal error in {method}; details are in the server log")

"""Domain errors. Raised by the core and storage, mapped to status codes by the services.

Every message names what was wrong (which field, which value), because it reaches the client
verbatim.
"""


class GovcError(Exception):
    """Base of every error a client may see."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(GovcError):
    """A repository, blob, commit, branch or path does not exist."""


class AlreadyExists(GovcError):
    """Creating something that is already there."""


class InvalidArgument(GovcError):
    """The request itself is malformed; retrying it unchanged cannot succeed."""


class FailedPrecondition(GovcError):
    """The request is well formed but the repository is in the wrong state for it."""


class Aborted(GovcError):
    """Lost a race with a concurrent update; retrying may succeed."""


class OutOfRange(GovcError):
    """An offset or range lies outside the object."""


class ResourceExhausted(GovcError):
    """A size or rate limit was exceeded."""


class DataLoss(GovcError):
    """Data failed a checksum."""


class DeadlineExceeded(GovcError):
    """The operation ran out of its time budget."""


class Unavailable(GovcError):
    """The server is shutting down or storage is closed."""


class StorageFull(ResourceExhausted):
    """The disk holding the data dir is full: writes fail until space is freed (reads work)."""

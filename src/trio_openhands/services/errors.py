"""The errors of the services: what went wrong in terms of the request.

`status` is the HTTP status a front end should answer with, `field` the input at fault
when there is one, so that the route layer only translates them: nothing a client sends
should end as a 500.
"""

from __future__ import annotations

import errno


class ServiceError(Exception):
    """A request this service cannot do, and why; `status` is the HTTP status it maps to."""

    status = 400

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field  # e.g. "path": the route names it as ("query", field)


class InvalidInput(ServiceError):
    """A value that can never work (a relative path, a ref starting with `-`): 422."""

    status = 422


class BadRequest(ServiceError):
    """A well-formed request the current state of things refuses (a directory where a
    file is needed, a path outside any repository): 400."""

    status = 400


class Forbidden(ServiceError):
    status = 403


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    """Already there (an installed skill, without `force`): 409."""

    status = 409


class TooLarge(ServiceError):
    status = 413


class InsufficientStorage(ServiceError):
    status = 507


class NeedsNetwork(ServiceError):
    """What only a fetch from another host could do (a git source, a marketplace): 501."""

    status = 501


class Unavailable(ServiceError):
    """A tool the service needs is missing (git not installed) or did not answer in time."""

    status = 503


_FORBIDDEN = {errno.EACCES, errno.EPERM, errno.EROFS}
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def os_error(error: OSError, what: str) -> ServiceError:
    """The ServiceError for a file system refusal, `what` saying what was attempted."""
    reason = error.strerror or type(error).__name__
    detail = f"{what}: {reason}"
    if error.errno in _FORBIDDEN:
        return Forbidden(detail)
    if error.errno == errno.ENOENT:
        return NotFound(detail)
    if error.errno in _FULL:
        return InsufficientStorage(detail)
    return BadRequest(detail)

"""What a read request can fail with, as HTTP statuses with a JSON body naming the problem."""

from __future__ import annotations

from typing import Any


class QueryError(Exception):
    status = 500
    code = "internal"

    def __init__(self, message: str, *, parameter: str | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.parameter = parameter
        self.retry_after_s = retry_after_s

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"status": self.status, "code": self.code, "message": self.message}
        if self.parameter is not None:
            error["parameter"] = self.parameter
        return {"error": error}


class BadParameter(QueryError):
    """400: the message names the parameter and what it accepts."""

    status = 400
    code = "bad_parameter"

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}", parameter=parameter)


class Unauthorized(QueryError):
    status = 401
    code = "unauthenticated"


class Forbidden(QueryError):
    status = 403
    code = "forbidden"


class NotFound(QueryError):
    status = 404
    code = "not_found"


class Unavailable(QueryError):
    """503 with Retry-After: the query ran out of time, every connection is busy, or the database is down."""

    status = 503
    code = "unavailable"

"""Errors of the local workspace, shaped as Databricks REST errors.

Every error body is ``{"error_code": ..., "message": ...}`` and each code is paired with the
HTTP status Databricks uses for it, because ``databricks-sdk`` picks its exception class from
the error code first and from the status second (``databricks/sdk/errors/`` in
https://github.com/databricks/databricks-sdk-py): 400 INVALID_PARAMETER_VALUE
-> InvalidParameterValue, 404 RESOURCE_DOES_NOT_EXIST -> ResourceDoesNotExist, 409
RESOURCE_ALREADY_EXISTS -> ResourceAlreadyExists, 409 RESOURCE_CONFLICT -> ResourceConflict,
429 REQUEST_LIMIT_EXCEEDED and 503 TEMPORARILY_UNAVAILABLE -> retried by the SDK.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error answered to the client as a Databricks error body."""

    def __init__(self, status: int, error_code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error_code": self.error_code, "message": self.message}


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BAD_REQUEST", message)


def invalid_parameter(message: str) -> ApiError:
    return ApiError(400, "INVALID_PARAMETER_VALUE", message)


def does_not_exist(message: str) -> ApiError:
    return ApiError(404, "RESOURCE_DOES_NOT_EXIST", message)


def already_exists(message: str) -> ApiError:
    return ApiError(409, "RESOURCE_ALREADY_EXISTS", message)


def conflict(message: str) -> ApiError:
    return ApiError(409, "RESOURCE_CONFLICT", message)


def unauthenticated(message: str) -> ApiError:
    return ApiError(401, "UNAUTHENTICATED", message)


def temporarily_unavailable(message: str) -> ApiError:
    return ApiError(503, "TEMPORARILY_UNAVAILABLE", message)


def request_limit_exceeded(message: str, retry_after_seconds: int = 1) -> ApiError:
    return ApiError(429, "REQUEST_LIMIT_EXCEEDED", message, headers={"Retry-After": str(retry_after_seconds)})

"""Domain errors -> HTTP status and the JSON body ``{code, message}``; nothing else leaks."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from radvigil import errors

log = logging.getLogger(__name__)

STATUS = {
    errors.UnsupportedFormatError: 415,
    errors.ImageTooLargeError: 413,
    errors.InputError: 400,
    errors.DataError: 400,
    errors.ConfigError: 400,
    errors.AuthError: 401,
    errors.ForbiddenError: 403,
    errors.NotFoundError: 404,
    errors.ConflictError: 409,
    errors.StoreUnavailableError: 503,
    errors.StoreError: 503,
    errors.RegistryError: 503,
    errors.ModelError: 503,
}


class ApiError(errors.RadvigilError):
    """An HTTP-only error with an explicit status (size limits, media types, rate limits)."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.headers = status, code, headers or {}


def status_of(exc: errors.RadvigilError) -> int:
    if isinstance(exc, ApiError):
        return exc.status
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def _body(code: str, message: str, status: int, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    """Register the handlers that give every error the same JSON shape."""

    @app.exception_handler(errors.RadvigilError)
    async def _domain(_: Request, exc: errors.RadvigilError) -> JSONResponse:
        headers = exc.headers if isinstance(exc, ApiError) else None
        return _body(exc.code, exc.message, status_of(exc), headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", []))
        return _body("invalid_request", f"{where}: {first.get('msg')}", 422)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(
            exc.status_code, "http_error"
        )
        return _body(code, str(exc.detail), exc.status_code, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error: %s", type(exc).__name__)
        return _body("internal_error", "unexpected server error; it has been logged", 500)

"""One error shape for every response: `{"detail": "<what was wrong and the fix>"}`.

FastAPI's own 422 body is a list of pydantic errors that echoes the input (a
NaN in the input then cannot even be written as JSON: a 500); here every error
is one string, validation errors included, and the OpenAPI document says so
for every status an operation can answer.
"""
from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from audit.errors import DebiasError

from .multipart import UploadError
from .schemas import ErrorOut
from .services import Conflict, NotFound
from .services.audits import InvalidCursor
from .services.datasets import UnsupportedFormat
from .textrules import PATTERN_MEANINGS

log = logging.getLogger("debias.api")

# Statuses any authenticated operation may answer, and why (the OpenAPI descriptions).
COMMON_ERRORS = {
    "400": "Bad request: a malformed cursor or upload body",
    "401": "Missing, invalid or revoked API key",
    "403": "Refused: a cookie-authenticated request from another site",
    "404": "No such resource, or another owner's",
    "409": "The resource's state does not allow this now (e.g. a job still running)",
    "422": "A parameter or body field is out of range, of the wrong type, or names nothing known",
}
UPLOAD_ERRORS = {"413": "The upload is over a size limit", "415": "Not multipart/form-data, or not a dataset format"}
ERROR_REF = {"$ref": "#/components/schemas/ErrorOut"}


def _json_error(status: int, detail: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _describe(errors: list[dict]) -> str:
    """Pydantic errors as one line: where, what; never the input itself (it may be huge, binary or NaN)."""
    parts = []
    for e in errors[:10]:
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "request"
        meaning = PATTERN_MEANINGS.get((e.get("ctx") or {}).get("pattern"))
        parts.append(f"{where}: {meaning or e.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
    return "; ".join(parts) + more


def allowed_methods(app: FastAPI, scope: dict) -> list[str]:
    """Every method some route serves at this path (Starlette lists only the first route's).

    Read from the OpenAPI document's path templates, which cover included routers whatever FastAPI's
    internal route layout, plus any plain route that is not in the document.
    """
    path = scope.get("path", "")
    methods: set[str] = set()
    for template, operations in app.openapi().get("paths", {}).items():
        if re.fullmatch(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)), path):
            methods |= {m.upper() for m in operations}
    for route in app.routes:
        regex, route_methods = getattr(route, "path_regex", None), getattr(route, "methods", None)
        if regex is not None and route_methods and regex.match(path):
            methods |= set(route_methods)
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods | {"OPTIONS"}) if methods else []


def install(app: FastAPI) -> None:
    simple = {NotFound: 404, Conflict: 409, InvalidCursor: 400, UnsupportedFormat: 415, DebiasError: 422}
    for exc_type, status in simple.items():
        app.add_exception_handler(exc_type, lambda _r, exc, status=status: _json_error(status, str(exc)))

    @app.exception_handler(UploadError)
    def _upload(_request: Request, exc: UploadError) -> JSONResponse:
        return _json_error(exc.status_code, str(exc))

    @app.exception_handler(RequestValidationError)
    def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return _json_error(422, _describe(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    def _http(request: Request, exc: StarletteHTTPException) -> Response:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            allow = allowed_methods(app, request.scope)
            headers["Allow"] = ", ".join(allow)
            if request.method == "OPTIONS" and allow:
                return Response(status_code=204, headers=headers)
        return _json_error(exc.status_code, str(exc.detail), headers)

    @app.exception_handler(Exception)
    def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s crashed", request.method, request.url.path)
        return _json_error(500, "internal error; the server's log has the details")

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = _document_errors(get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes))
        return app.openapi_schema

    app.openapi = openapi


def _document_errors(doc: dict) -> dict:
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas["ErrorOut"] = ErrorOut.model_json_schema()
    for path, operations in doc.get("paths", {}).items():
        for method, op in operations.items():
            responses = op.setdefault("responses", {})
            errors = {} if path in ("/healthz", "/readyz") else dict(COMMON_ERRORS)
            if path == "/v1/datasets" and method == "post":
                errors |= UPLOAD_ERRORS
            if path == "/readyz":
                errors["503"] = "The database is unreachable or not migrated"
            for status, why in errors.items():
                responses[status] = {"description": why, "content": {"application/json": {"schema": ERROR_REF}}}
    return doc

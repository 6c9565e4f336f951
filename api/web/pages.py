"""Page routes: HTML for people, on the same app as the JSON API (which the pages' script calls).

Thin like the API's routes: a service call (through views.py), a template. Every
page but /login needs the sign-in cookie; without it the answer is a redirect to
/login. Another owner's ids, like unknown ones, get a 404 page.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape

from audit import __version__
from audit.errors import DebiasError

from ..auth import owner_for_key
from ..deps import SessionDep, SettingsDep, same_origin
from ..routes.params import MAX_ID, Dimension, PathId
from ..services import Conflict, NotFound
from ..services import audits as audit_service
from ..services import datasets as dataset_service
from ..services.audits import InvalidCursor
from . import STATIC_DIR, TEMPLATES_DIR, charts, compare_view, dataset_view, naming, views
from .session import (
    LoginRequired,
    PageOwner,
    clear_login_cookie,
    cookie_secure,
    safe_next,
    set_login_cookie,
    signed_in,
)

env = Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=select_autoescape(["html"]),
                  trim_blocks=True, lstrip_blocks=True)
env.globals.update(fmt=charts.fmt, pct=charts.pct, version=__version__, label_text=naming.label_text,
                   group_name=naming.group_name, urlencode=urlencode)

# Pages load their script and style from this app only; images from it or inline (data:).
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
PAGE_HEADERS = {"Cache-Control": "no-store", "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "same-origin"}


def render(request: Request, name: str, status_code: int = 200, **ctx) -> HTMLResponse:
    ctx.setdefault("owner", getattr(request.state, "owner", None))
    html = env.get_template(name).render(request=request, **ctx)
    return HTMLResponse(html, status_code=status_code, headers=PAGE_HEADERS)


def error_page(request: Request, status_code: int, title: str, message: str) -> HTMLResponse:
    return render(request, "error.html", status_code, title=title, message=message, status=status_code)


class PageRoute(APIRoute):
    """Errors as pages, not JSON: no sign-in -> /login, unknown or another owner's -> 404 page."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                response = await handler(request)
            except LoginRequired:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                response = RedirectResponse("/login?" + urlencode({"next": target}), status_code=303)
                if request.cookies.get("debias_key"):  # a stale or revoked key: forget it
                    clear_login_cookie(response, request)
            except NotFound as exc:
                response = error_page(request, 404, "Not found", str(exc))
            except Conflict as exc:
                response = error_page(request, 409, "Not ready", str(exc))
            except InvalidCursor as exc:
                response = error_page(request, 400, "Bad request", str(exc))
            except DebiasError as exc:
                response = error_page(request, 422, "Cannot do that", str(exc))
            except RequestValidationError as exc:
                problems = "; ".join(f"{'.'.join(map(str, e.get('loc', ())[1:]))}: {e.get('msg')}"
                                     for e in exc.errors())
                response = error_page(request, 422, "Bad address", problems or "the address is not valid")
            except HTTPException as exc:
                if exc.status_code >= 500:
                    raise
                response = error_page(request, exc.status_code, "Refused", str(exc.detail))
            return response

        return route


router = APIRouter(route_class=PageRoute, include_in_schema=False)


def _owner(request: Request, owner):
    request.state.owner = owner
    return owner


def _check_origin(request: Request) -> None:
    if not same_origin(request):
        raise HTTPException(403, "cross-site form refused: send it from this site's own pages")


# ------------------------------------------------------------------ sign in / out
def _plain_http(request: Request) -> bool:
    """Plain http to a host that is not loopback: the Secure cookie would not be kept by the browser."""
    return request.url.scheme == "http" and cookie_secure(request)


@router.get("/login")
def login_form(request: Request, session: SessionDep, next: str | None = None):
    if signed_in(request, session) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return render(request, "login.html", next=safe_next(next), error=None, plain_http=_plain_http(request))


@router.post("/login")
async def login(request: Request, session: SessionDep):
    _check_origin(request)  # no signing a victim in to someone else's account from another site
    form = await request.form()
    key, target = str(form.get("key") or "").strip(), safe_next(str(form.get("next") or "/"))
    owner = owner_for_key(session, key, request.app.state.key_cache) if key else None
    if owner is None:
        message = "That API key is not valid (or was revoked)." if key else "Enter your API key."
        return render(request, "login.html", 401, next=target, error=message, plain_http=_plain_http(request))
    response = RedirectResponse(target, status_code=303)
    set_login_cookie(response, request, key)
    return response


@router.post("/logout")
def logout(request: Request):
    _check_origin(request)
    response = RedirectResponse("/login", status_code=303)
    clear_login_cookie(response, request)
    return response


# ------------------------------------------------------------------ datasets
@router.get("/")
def datasets_page(request: Request, session: SessionDep, settings: SettingsDep, owner: PageOwner):
    _owner(request, owner)
    rows = [views.dataset_summary(d) for d in dataset_service.list_for(session, owner.id)]
    return render(request, "datasets.html", datasets=rows, work=dataset_view.dataset_work(session, owner.id), default_image_size=settings.default_image_size,
                  max_upload_bytes=settings.max_upload_bytes)


@router.get("/datasets/{dataset_id}")
def dataset_page(request: Request, dataset_id: PathId, session: SessionDep, owner: PageOwner):
    _owner(request, owner)
    return render(request, "dataset.html", **views.dataset_page(session, owner.id, dataset_id))


# ------------------------------------------------------------------ audits
@router.get("/audits/{audit_id}")
def audit_page(request: Request, audit_id: PathId, session: SessionDep, settings: SettingsDep, owner: PageOwner,
               label: str | None = None, attribute: str | None = None, min_score: str | None = None,
               cursor: str | None = None, before: str | None = None, review: str | None = None):
    _owner(request, owner)
    q = views.AnomalyQuery.parse(label, attribute, min_score, cursor, before, review)
    ctx = views.audit_page(session, settings, owner.id, audit_id, views.LinkedImages(), q)
    return render(request, "audit.html", standalone=False, **ctx)


@router.get("/audits/{audit_id}/download")
def audit_download(request: Request, audit_id: PathId, session: SessionDep, settings: SettingsDep, owner: PageOwner):
    """The report as one self-contained HTML file: CSS and every image inline, no script, no links needed."""
    _owner(request, owner)
    audit_service.get_ready(session, owner.id, audit_id)
    ctx = views.audit_page(session, settings, owner.id, audit_id, views.InlineImages(settings, session, owner.id),
                           views.AnomalyQuery(), anomaly_limit=views.DOWNLOAD_ANOMALIES)
    html = env.get_template("audit.html").render(
        request=request, owner=owner, standalone=True, inline_css=(STATIC_DIR / "app.css").read_text(),
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), **ctx)
    return HTMLResponse(html, headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                                       "Content-Disposition": f'attachment; filename="audit-{audit_id}-report.html"'})


@router.get("/audits/{audit_id}/traversals/{feature}.png")
def traversal_image(request: Request, audit_id: PathId, feature: Dimension, session: SessionDep, settings: SettingsDep,
                    owner: PageOwner):
    """One under-represented feature's traversal (decoded images), as the audit wrote it."""
    audit = audit_service.get_ready(session, owner.id, audit_id)
    png = views.traversal_png(settings, session, audit, feature)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


# ------------------------------------------------------------------ models
@router.get("/models/{model_id}")
def model_page(request: Request, model_id: PathId, session: SessionDep, owner: PageOwner):
    _owner(request, owner)
    return render(request, "model.html", **views.model_page(session, owner.id, model_id))


def _int(value: str | None, name: str) -> int | None:
    if value in (None, ""):
        return None
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= MAX_ID:
        raise DebiasError(f"{name} must be an id: a whole number from 1 to {MAX_ID}, got {value[:40]!r}")
    return int(value)


@router.get("/compare")
def compare_page(request: Request, session: SessionDep, owner: PageOwner, model: str | None = None,
                 baseline: str | None = None, dataset: str | None = None,
                 group_by: Annotated[list[str] | None, Query()] = None, chosen: str | None = None):
    """Per-group accuracy of a model next to a baseline on one evaluation dataset."""
    _owner(request, owner)
    ctx = compare_view.compare_page(session, owner.id, _int(model, "model"), _int(baseline, "baseline"),
                             _int(dataset, "dataset"), (group_by or []) if chosen else None)
    return render(request, "compare.html", **ctx)

"""FastAPI dependencies: settings, a database session per request, the key's owner.

A request names its key with `Authorization: Bearer <key>` or, from the web pages,
with the `debias_key` cookie set at sign-in. The cookie is used only when no
Authorization header is sent; a cookie-authenticated unsafe request (POST, PUT,
PATCH, DELETE) must also come from this site's own pages: its Origin (or Referer)
must name the request's scheme, host and port, else 403 (defence in depth beside
SameSite=Strict).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from .auth import Principal, owner_for_key
from .settings import Settings

COOKIE_NAME = "debias_key"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

_bearer = HTTPBearer(auto_error=False, description="an API key from `debias keys create`")
_cookie = APIKeyCookie(name=COOKIE_NAME, auto_error=False,
                       description="the API key, set by signing in on the web pages (/login)")


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]


DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(scheme: str, netloc: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) with the default port filled in; None when it is not a web origin."""
    scheme = scheme.lower()
    if scheme not in DEFAULT_PORTS:
        return None
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:  # a port that is not a number or out of range
        return None
    return (scheme, (parts.hostname or "").lower(), port) if parts.hostname else None


def same_origin(request: Request) -> bool:
    """The request's Origin (or, without one, its Referer) is this server's origin: scheme, host and port.

    An https:// page cannot post to the http:// server (or another port) under cover of the same host name.
    """
    source = request.headers.get("origin") or request.headers.get("referer")
    host = request.headers.get("host")
    if not source or source == "null" or not host:
        return False
    sent = urlsplit(source)
    theirs = _origin(sent.scheme, sent.netloc)
    return theirs is not None and theirs == _origin(request.url.scheme, host)


def require_same_origin(request: Request) -> None:
    if request.method in UNSAFE_METHODS and not same_origin(request):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"cross-site request refused: a {request.method} authenticated by the "
                            f"{COOKIE_NAME} cookie must come from this site's pages (its Origin or Referer "
                            f"header must name {request.headers.get('host') or 'this host'}); API clients "
                            f"send 'Authorization: Bearer <key>' instead")


def get_owner(request: Request, session: SessionDep,
              credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
              cookie_key: Annotated[str | None, Depends(_cookie)]) -> Principal:
    if cookie_key and "authorization" not in request.headers:
        require_same_origin(request)
        owner = owner_for_key(session, cookie_key, request.app.state.key_cache)
        if owner is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                                f"invalid or revoked API key in the {COOKIE_NAME} cookie; sign in again at /login",
                                headers={"WWW-Authenticate": "Bearer"})
        return owner
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing API key: send 'Authorization: Bearer <key>'",
                            headers={"WWW-Authenticate": "Bearer"})
    owner = owner_for_key(session, credentials.credentials, request.app.state.key_cache)
    if owner is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid or revoked API key",
                            headers={"WWW-Authenticate": "Bearer"})
    return owner


CurrentOwner = Annotated[Principal, Depends(get_owner)]

"""Sign-in for the pages: the API key travels in an http-only, SameSite=Strict cookie."""
from __future__ import annotations

import ipaddress
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import Response

from ..auth import Principal, owner_for_key
from ..deps import COOKIE_NAME, SessionDep


class LoginRequired(Exception):
    """No valid sign-in cookie: the page answers with a redirect to /login."""


def is_loopback(host: str | None) -> bool:
    host = (host or "").strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cookie_secure(request: Request) -> bool:
    """Secure, except on plain http to a loopback host (`debias serve` on a laptop).

    Browsers keep a Secure cookie only over https, bar loopback where not all of
    them do (Chromium does, on localhost and 127.0.0.1 alike). Behind a TLS-ending
    proxy the request may arrive as http on a public host name: the cookie is
    still Secure there, as the browser sees https.
    """
    return not (request.url.scheme == "http" and is_loopback(request.url.hostname))


def set_login_cookie(response: Response, request: Request, key: str) -> None:
    # No max-age: a session cookie, gone when the browser closes.
    response.set_cookie(COOKIE_NAME, key, httponly=True, samesite="strict", secure=cookie_secure(request), path="/")


def clear_login_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(COOKIE_NAME, httponly=True, samesite="strict", secure=cookie_secure(request), path="/")


def signed_in(request: Request, session) -> Principal | None:
    key = request.cookies.get(COOKIE_NAME)
    return owner_for_key(session, key, request.app.state.key_cache) if key else None


def page_owner(request: Request, session: SessionDep) -> Principal:
    owner = signed_in(request, session)
    if owner is None:
        raise LoginRequired()
    return owner


PageOwner = Annotated[Principal, Depends(page_owner)]


def safe_next(target: str | None) -> str:
    """A local path to go to after signing in; anything else (another site, a scheme) becomes /."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target

"""Sign in and out: exchange an access token (and a reviewer name) for a signed session cookie."""
from __future__ import annotations

from fastapi import HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import URL

from semcat.web.context import render, state
from semcat.web.security import (
    SESSION_COOKIE,
    SESSION_MAX_AGE,
    clean_name,
    new_session,
    role_for_token,
    safe_next,
    set_session_cookie,
)


def login_page(request: Request, next: str = "/") -> Response:
    """The sign-in form: a token field when the server needs one, and the reviewer's name."""
    user = getattr(request.state, "user", None)
    settings = state(request).settings
    context = {"next": safe_next(next), "token_required": settings.auth_required, "error": None,
               "name": user.name if user else ""}
    return render(request, "login.html", context)


async def login(request: Request) -> Response:
    """Check the token (form field ``token``), then start a session under the given ``name``."""
    origin = request.headers.get("origin")
    if origin and origin != "null" and URL(origin).netloc != request.headers.get("host"):
        raise HTTPException(403, f"cross-site sign-in refused: Origin {origin!r} is not this server")
    form = await request.form()
    settings = state(request).settings
    target = safe_next(str(form.get("next") or "/"))
    token = str(form.get("token") or "")
    if settings.auth_required:
        role = role_for_token(settings, token)
        if role is None:
            context = {"next": target, "token_required": True, "name": str(form.get("name") or ""),
                       "error": "wrong access token: ask whoever started `semcat serve` for it"}
            return render(request, "login.html", context, status=401)
    else:
        role = "reviewer"
    name = clean_name(str(form.get("name") or ""), role if settings.auth_required else settings.local_user)
    signer = request.app.state.signer
    session = new_session(settings, role, name, signer.fingerprint(token) if settings.auth_required else None)
    response = RedirectResponse(target, 303)
    set_session_cookie(response, request.app.state.signer, session, secure=request.url.scheme == "https")
    return response


def logout(request: Request) -> Response:
    """End the session server-side (its id is refused from now on) and drop the cookie."""
    raw = request.cookies.get(SESSION_COOKIE)
    session = request.app.state.signer.loads(raw) if raw else None
    if session and isinstance(session.get("sid"), str) and isinstance(session.get("iat"), int):
        request.app.state.revoked.add(session["sid"], session["iat"] + SESSION_MAX_AGE)
    response = RedirectResponse("/login", 303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def whoami(request: Request) -> dict:
    """The current user: name, role, how they authenticated, and the CSRF token for scripts."""
    user = request.state.user
    return {"name": user.name, "role": user.role, "via": user.via, "csrf_token": user.csrf}

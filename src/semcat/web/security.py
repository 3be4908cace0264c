"""Who may do what: tokens, signed session cookies, roles, CSRF checks, host and body limits.

Roles: ``reviewer`` (may label, tag, note, upload) and ``viewer`` (read-only). A request is
authenticated by an ``Authorization: Bearer`` header (API clients) or a signed, HttpOnly,
SameSite=Strict session cookie (browsers). Every state-changing request is a POST; browser POSTs
must carry the session's CSRF token (``X-CSRF-Token`` header or ``csrf_token`` form field).
A session carries a keyed fingerprint of the token it was opened with and its start time: it
ends when that token is no longer configured, after ``SESSION_MAX_AGE``, or at ``POST /logout``.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlencode

from fastapi import HTTPException, Request
from starlette.datastructures import URL
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from semcat._io import atomic_write_bytes
from semcat.web.settings import Settings, is_loopback

Role = Literal["reviewer", "viewer"]
SESSION_COOKIE = "semcat_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
PUBLIC_PATHS = ("/login", "/static/", "/healthz")
SESSION_MAX_AGE = 12 * 3600
"""Seconds a session lives (checked server-side from its signed start time, not only by the cookie)."""


@dataclass(frozen=True)
class User:
    """The person behind a request; ``name`` is stored as ``who`` with every label and note."""

    name: str
    role: Role
    via: Literal["local", "session", "bearer"]
    csrf: str = ""

    @property
    def can_review(self) -> bool:
        return self.role == "reviewer"


def load_secret(path: Path) -> bytes:
    """The cookie-signing key: read from ``path`` or created there once (mode 0600)."""
    try:
        key = path.read_bytes()
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    key = secrets.token_bytes(32)
    atomic_write_bytes(path, key)
    os.chmod(path, 0o600)
    return key


class SessionSigner:
    """Signs small JSON sessions with HMAC-SHA256, so cookies cannot be forged or edited."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def dumps(self, data: dict) -> str:
        body = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode()
        return f"{body}.{self._sign(body)}"

    def loads(self, value: str) -> dict | None:
        body, _, sig = value.partition(".")
        if not sig or not hmac.compare_digest(sig, self._sign(body)):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(body.encode()))
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def _sign(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()

    def fingerprint(self, token: str) -> str:
        """A keyed digest of an access token: stored in sessions, so a token change ends them."""
        return hmac.new(self._key, b"token\0" + token.encode(), hashlib.sha256).hexdigest()[:32]


class Revoked:
    """Session ids ended by ``POST /logout``, kept (in a file beside the key) until they would expire.

    A logged-out cookie replayed later, even after a restart or to another ``--workers`` process
    (each re-reads the file when it changes), is refused.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._until: dict[str, float] = {}
        self._seen: int | None = None
        self._reload()

    def _reload(self) -> None:
        try:
            mtime = self._path.stat().st_mtime_ns
        except OSError:
            return
        if mtime == self._seen:
            return
        try:
            data = json.loads(self._path.read_text())
            self._until = {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}
        except (OSError, ValueError, TypeError):
            return
        self._seen = mtime

    def __contains__(self, sid: object) -> bool:
        self._reload()
        return sid in self._until

    def add(self, sid: str, until: float) -> None:
        now = time.time()
        with self._lock:
            self._reload()
            self._until = {k: v for k, v in self._until.items() if v > now}
            self._until[sid] = until
            try:
                atomic_write_bytes(self._path, json.dumps(self._until).encode())
            except OSError:  # a read-only home still ends the session for this server's lifetime
                pass


def role_for_fingerprint(settings: Settings, signer: SessionSigner, fingerprint: object) -> Role | None:
    """The role of the configured token whose fingerprint a session carries, else None (token changed)."""
    if not isinstance(fingerprint, str):
        return None
    for token in (settings.token, settings.read_token):
        if token and hmac.compare_digest(fingerprint, signer.fingerprint(token)):
            return role_for_token(settings, token)
    return None


def role_for_token(settings: Settings, token: str) -> Role | None:
    """``reviewer`` for the reviewer token, ``viewer`` for the read token, else None."""
    if settings.token and hmac.compare_digest(token.encode(), settings.token.encode()):
        return "viewer" if settings.read_only else "reviewer"
    if settings.read_token and hmac.compare_digest(token.encode(), settings.read_token.encode()):
        return "viewer"
    return None


def clean_name(name: str | None, default: str) -> str:
    """A reviewer name fit to store: printable, one line, at most 64 characters."""
    name = " ".join((name or "").split())[:64]
    return name if name.isprintable() and name else default


def new_session(settings: Settings, role: Role, name: str, token_fingerprint: str | None = None) -> dict:
    """A fresh session: role (capped by --read-only), reviewer name, a random CSRF token and id,
    its start time, and the fingerprint of the token it was opened with (None: no token needed)."""
    return {"role": "viewer" if settings.read_only else role, "who": name, "csrf": secrets.token_urlsafe(24),
            "sid": secrets.token_urlsafe(12), "iat": int(time.time()), "tok": token_fingerprint,
            "auth": token_fingerprint is not None}


def session_role(settings: Settings, signer: SessionSigner, revoked: Revoked, session: dict | None) -> Role | None:
    """The role a signed session still grants, or None: unknown shape, expired, logged out, or
    (when tokens are required) opened with a token this server no longer accepts."""
    if not session or session.get("role") not in ("reviewer", "viewer"):
        return None
    started = session.get("iat")
    if not isinstance(started, int) or not -60 < time.time() - started < SESSION_MAX_AGE:
        return None
    if session.get("sid") in revoked:
        return None
    role: Role | None = session["role"]
    if settings.auth_required:
        role = role_for_fingerprint(settings, signer, session.get("tok")) if session.get("auth") else None
    return None if role is None else "viewer" if settings.read_only else role


def set_session_cookie(response: Response, signer: SessionSigner, session: dict, *, secure: bool) -> None:
    response.set_cookie(
        SESSION_COOKIE, signer.dumps(session), max_age=SESSION_MAX_AGE, httponly=True,
        samesite="strict", secure=secure, path="/",
    )


def _host_allowed(settings: Settings, host_header: str) -> bool:
    """Loopback servers answer only to loopback Host names (blocks DNS-rebinding pages)."""
    if not is_loopback(settings.host):
        return True
    host = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
    return is_loopback(host)


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get("accept", "text/html")


class AuthMiddleware:
    """Resolves ``request.state.user`` for every HTTP request, or answers 400/401 itself.

    Also adds security headers (CSP without inline scripts, no sniffing, no framing).
    """

    def __init__(self, app: ASGIApp, settings: Settings, signer: SessionSigner, revoked: Revoked) -> None:
        self.app = app
        self.settings = settings
        self.signer = signer
        self.revoked = revoked

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if not _host_allowed(self.settings, request.headers.get("host", "")):
            await PlainTextResponse("bad Host header: this server only answers to localhost", 400)(scope, receive, send)
            return
        user, new_cookie = self._resolve(request)
        path = request.url.path
        token_param = request.query_params.get("token")
        if token_param is not None and request.method == "GET":
            await self._login_by_link(request, token_param)(scope, receive, send)
            return
        if user is None and not path.startswith(PUBLIC_PATHS):
            if _wants_html(request):
                target = "/login?" + urlencode({"next": _local_target(str(request.url))})
                await RedirectResponse(target, 303)(scope, receive, send)
            else:
                await JSONResponse({"detail": "authentication required: send 'Authorization: Bearer TOKEN'"},
                                   401, headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
            return
        scope.setdefault("state", {})["user"] = user

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                _add_security_headers(headers, path)
                if new_cookie is not None:
                    cookie = Response()
                    set_session_cookie(cookie, self.signer, new_cookie, secure=request.url.scheme == "https")
                    headers.extend(h for h in cookie.raw_headers if h[0] == b"set-cookie")
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _resolve(self, request: Request) -> tuple[User | None, dict | None]:
        s = self.settings
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            role = role_for_token(s, auth[7:].strip())
            who = clean_name(request.headers.get("x-semcat-user"), "api")
            return (User(who, role, "bearer") if role else None), None
        raw = request.cookies.get(SESSION_COOKIE)
        session = self.signer.loads(raw) if raw else None
        role = session_role(s, self.signer, self.revoked, session)
        if session and role:
            return User(str(session.get("who", "")), role, "session", str(session.get("csrf", ""))), None
        if s.auth_required:
            return None, None
        session = new_session(s, "reviewer", s.local_user)
        return User(s.local_user, session["role"], "local", session["csrf"]), session

    def _login_by_link(self, request: Request, token: str) -> Response:
        """``/?token=SECRET`` (the link ``semcat serve`` prints) starts a session, then drops the token."""
        role = role_for_token(self.settings, token)
        clean = request.url.remove_query_params(["token", "name"])
        if role is None:
            return PlainTextResponse("invalid token: check the link printed by `semcat serve`", 401)
        session = new_session(self.settings, role, clean_name(request.query_params.get("name"), role),
                              self.signer.fingerprint(token))
        response = RedirectResponse(_local_target(str(clean)), 303)
        set_session_cookie(response, self.signer, session, secure=request.url.scheme == "https")
        return response


def _local_target(url: str) -> str:
    """Path + query of ``url`` only, so a redirect can never leave this site."""
    u = URL(url)
    target = u.path if u.path.startswith("/") and not u.path.startswith("//") else "/"
    return target + (f"?{u.query}" if u.query else "")


def safe_next(value: str | None) -> str:
    """A same-site redirect target from a ``next`` parameter (``//evil`` and URLs become ``/``)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


_CSP = ("default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def _add_security_headers(headers: list, path: str) -> None:
    names = {h[0].lower() for h in headers}
    extra = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin"),
             (b"x-frame-options", b"DENY")]
    if not path.startswith(("/docs", "/redoc")):  # Swagger UI needs its own scripts
        extra.append((b"content-security-policy", _CSP.encode()))
    headers.extend(h for h in extra if h[0] not in names)


def current_user(request: Request) -> User:
    """FastAPI dependency: the authenticated user (set by ``AuthMiddleware``)."""
    user = getattr(request.state, "user", None)
    if user is None:
        raise HTTPException(401, "authentication required")
    return user


async def require_reviewer(request: Request) -> User:
    """FastAPI dependency for every write: reviewer role, and a CSRF token for cookie sessions.

    Bearer-token requests need no CSRF token: browsers never attach that header by themselves.
    """
    user = current_user(request)
    if not user.can_review:
        raise HTTPException(403, "read-only access: this session may view but not change the catalog")
    if user.via == "bearer":
        return user
    origin = request.headers.get("origin")
    if origin and origin != "null" and URL(origin).netloc != request.headers.get("host"):
        raise HTTPException(403, f"cross-site request refused: Origin {origin!r} is not this server")
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        sent = (await request.form()).get(CSRF_FIELD)
    if not isinstance(sent, str) or not user.csrf or not hmac.compare_digest(sent, user.csrf):
        raise HTTPException(403, "CSRF token missing or wrong: reload the page and try again "
                                 f"(browsers send it as the '{CSRF_FIELD}' field or '{CSRF_HEADER}' header)")
    return user


class BodyTooLarge(Exception):
    """The request body passed the configured limit."""


class BodyLimitMiddleware:
    """Stops reading a request body after ``max_bytes`` and answers 413 (uploads cannot fill the disk)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = f"{self.max_bytes / 1e6:.0f} MB"
        await JSONResponse({"detail": f"request too large: the limit is {limit} (semcat serve --max-upload-mb)"},
                           413)(scope, receive, send)

"""Who may use the dashboard, and how a browser proves it on each request.

A key is entered once on the login page. API_KEYS open an operator session (pages and
actions); DASHBOARD_READONLY_KEYS open a viewer session (pages only; every action is
refused server-side). The session is a signed cookie (HttpOnly, SameSite=Strict, path
/dashboard) that holds a fingerprint of the key and a CSRF token, never the key: a key
removed from the configuration ends its sessions at once.

Without keys (API_AUTH=anonymous) the dashboard is open, with every action, to anyone
who reaches it; the cookie then only carries the CSRF token.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE_NAME = "singleton_dashboard"
COOKIE_PATH = "/dashboard"
CSRF_HEADER = "X-CSRF-Token"
SESSION_HOURS = 12


class Role(enum.StrEnum):
    """What a session may do."""

    OPERATOR = "operator"
    VIEWER = "viewer"


@dataclass(frozen=True)
class AccessConfig:
    """The dashboard's credentials and cookie settings.

    Attributes:
        keys: operator keys (the API's API_KEYS); empty means the dashboard is open.
        readonly_keys: viewer keys (DASHBOARD_READONLY_KEYS).
        secret: the cookie-signing secret: DASHBOARD_SECRET when set, else derived
            from every key, so all web workers agree and a key change ends sessions.
        secure_cookie: always mark the cookie Secure (DASHBOARD_SECURE_COOKIE); it is
            Secure anyway on a request that came over HTTPS.
    """

    keys: tuple[str, ...] = field(repr=False)
    readonly_keys: tuple[str, ...] = field(repr=False)
    secret: bytes = field(repr=False)
    secure_cookie: bool = False

    @classmethod
    def read(cls, source: Mapping[str, Any], *, keys: tuple[str, ...]) -> AccessConfig:
        """Build the settings from the environment-like `source` and the API's keys."""
        readonly = tuple(k.strip() for k in str(source.get("DASHBOARD_READONLY_KEYS") or "").split(",")
                         if k.strip())
        material = str(source.get("DASHBOARD_SECRET") or "") or "\n".join((*keys, "", *readonly))
        secret = hashlib.sha256(b"singleton-dashboard-session\0" + material.encode()).digest()
        secure = str(source.get("DASHBOARD_SECURE_COOKIE") or "").strip().lower() in ("1", "true", "yes")
        return cls(keys=keys, readonly_keys=readonly, secret=secret, secure_cookie=secure)

    @property
    def is_open(self) -> bool:
        """Return True when no key is configured: anyone may view and act."""
        return not self.keys


@dataclass(frozen=True)
class Session:
    """One browser's session: its role and the CSRF token every action must echo."""

    role: Role
    csrf: str

    @property
    def can_act(self) -> bool:
        """Return True when the session may run actions."""
        return self.role is Role.OPERATOR


class Access:
    """Checks keys, issues session cookies and reads them back."""

    def __init__(self, config: AccessConfig) -> None:
        """Prepare the fingerprints of every configured key."""
        self.config = config
        self._serializer = URLSafeTimedSerializer(config.secret, salt="dashboard-session")
        # Viewer keys are listed last so that a key in both lists opens a viewer session.
        self._roles = {self._fingerprint(k): Role.OPERATOR for k in config.keys}
        self._roles.update({self._fingerprint(k): Role.VIEWER for k in config.readonly_keys})
        self._keys = [(k.encode(), Role.OPERATOR) for k in config.keys]
        self._keys += [(k.encode(), Role.VIEWER) for k in config.readonly_keys]

    def role_of(self, key: str) -> Role | None:
        """Return the role `key` opens, comparing in constant time against every key."""
        given = key.encode()
        found: Role | None = None
        for candidate, role in self._keys:
            if hmac.compare_digest(given, candidate):
                found = role  # no early exit: the time taken does not tell which key
        return found

    def issue(self, key: str | None) -> str:
        """Return a new session cookie value for `key` (None on an open dashboard)."""
        fingerprint = "" if key is None else self._fingerprint(key)
        return self._serializer.dumps({"k": fingerprint, "c": secrets.token_urlsafe(24)})

    def session(self, cookie: str | None) -> Session | None:
        """Return the session of a cookie value, or None if it is missing, forged or stale."""
        if not cookie:
            return None
        try:
            data = self._serializer.loads(cookie, max_age=SESSION_HOURS * 3600)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("c"), str):
            return None
        if self.config.is_open:
            return Session(Role.OPERATOR, data["c"])
        role = self._roles.get(data.get("k"))
        return None if role is None else Session(role, data["c"])

    def cookie_options(self, *, https: bool = False) -> dict[str, Any]:
        """Return the keyword arguments of ``Response.set_cookie`` for the session.

        The cookie is Secure when configured so, or when the request came over HTTPS.
        """
        return {"max_age": SESSION_HOURS * 3600, "path": COOKIE_PATH, "httponly": True,
                "samesite": "Strict", "secure": self.config.secure_cookie or https}

    def _fingerprint(self, key: str) -> str:
        return hmac.new(self.config.secret, key.encode(), hashlib.sha256).hexdigest()[:32]


def tokens_match(given: str | None, expected: str) -> bool:
    """Compare a CSRF token from a request with the session's, in constant time."""
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())

"""Managed-identity token endpoint and bearer-token checks.

Tokens are JWT-shaped and HMAC-signed with a per-process secret, so a token from another
simulator (or from Azure) is refused. Claims carry tid, oid, appid and, when the fleet names a
user, upn: enough for a caller to be shown. Left out: AAD itself (no login.microsoftonline.com
authority), user-assigned identity selection (any client_id is accepted and echoed), CAE claims.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class TokenCheck:
    ok: bool
    code: str = ""
    message: str = ""
    claims: dict[str, Any] | None = None


class Identity:
    def __init__(self, tenant_id: str, lifetime: float, who: dict[str, str]) -> None:
        self.tenant_id = tenant_id
        self.lifetime = lifetime
        self.secret = secrets.token_bytes(32)
        self.header_secret = secrets.token_hex(16)  # IDENTITY_HEADER / MSI secret
        self.object_id = who.get("object_id", str(uuid.uuid5(uuid.NAMESPACE_DNS, f"oid.{tenant_id}")))
        self.app_id = who.get("app_id", str(uuid.uuid5(uuid.NAMESPACE_DNS, f"appid.{tenant_id}")))
        self.upn = who.get("upn")
        self.name = who.get("name", self.upn or "vmctl-simulator-identity")
        self.issued = 0

    @property
    def caller(self) -> str:
        """What the Activity Log shows as the caller: the UPN for a user, else the object id."""
        return self.upn or self.object_id

    def issue(self, resource: str, client_id: str | None = None) -> tuple[str, int]:
        now = int(time.time())
        exp = now + max(1, int(self.lifetime))
        claims: dict[str, Any] = {
            "aud": resource, "iss": f"https://sts.windows.net/{self.tenant_id}/", "iat": now, "nbf": now,
            "exp": exp, "tid": self.tenant_id, "oid": self.object_id, "sub": self.object_id,
            "appid": client_id or self.app_id, "idtyp": "user" if self.upn else "app", "name": self.name,
            "ver": "1.0", "jti": uuid.uuid4().hex,
        }
        if self.upn:
            claims["upn"] = self.upn
        header = _b64(json.dumps({"typ": "JWT", "alg": "HS256"}).encode())
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        sig = _b64(hmac.new(self.secret, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        self.issued += 1
        return f"{header}.{payload}.{sig}", exp

    def check(self, authorization: str | None) -> TokenCheck:
        if not authorization:
            return TokenCheck(False, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return TokenCheck(False, "AuthenticationFailed",
                              "Authentication failed. The 'Authorization' header is provided in an invalid format.")
        parts = token.strip().split(".")
        if len(parts) != 3:
            return TokenCheck(False, "InvalidAuthenticationToken", "The access token is invalid.")
        expected = _b64(hmac.new(self.secret, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, parts[2]):
            return TokenCheck(False, "InvalidAuthenticationToken",
                              "The access token is invalid: it was not issued by this simulator.")
        try:
            claims = json.loads(_unb64(parts[1]))
        except ValueError:
            return TokenCheck(False, "InvalidAuthenticationToken", "The access token is invalid.")
        if claims.get("exp", 0) <= time.time():
            exp = datetime.fromtimestamp(claims.get("exp", 0), tz=timezone.utc).strftime("%m/%d/%Y %H:%M:%S")
            return TokenCheck(False, "ExpiredAuthenticationToken",
                              f"The access token expiry UTC time '{exp}' is earlier than current UTC time.")
        return TokenCheck(True, claims=claims)

    def caller_of(self, claims: dict[str, Any]) -> str:
        return str(claims.get("upn") or claims.get("oid") or self.caller)

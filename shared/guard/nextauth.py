"""NextAuth v4 and Auth.js v5 session tokens, decrypted exactly as they do, mapped to a workspace member.

Both issue a JWE in compact form with `alg: dir` and a key derived from the secret by HKDF-SHA256:
- next-auth v4 (packages/next-auth/src/jwt/index.ts): `enc: A256GCM`, salt "", info
  "NextAuth.js Generated Encryption Key", 32 bytes; cookie `next-auth.session-token` (`__Secure-` on https).
- Auth.js v5 (packages/core/src/jwt.ts): `enc: A256CBC-HS512`, salt = the cookie name, info
  "Auth.js Generated Encryption Key (<salt>)", 64 bytes, `kid` = RFC 7638 thumbprint of that key (SHA-512);
  its decoder also takes `A256GCM` with a 32-byte key. Cookie `authjs.session-token` (`__Secure-` on https).
Both decode with jose's `jwtDecrypt(..., {clockTolerance: 15})`; big cookies arrive in chunks `.0`, `.1`, ...
Here joserfc does the JWE and the claims (README "Dependencies and why"); only NextAuth's own parts stay:
the HKDF key derivation, which key a cookie name means, and the SHA-512 `kid` Auth.js expects.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
from fastapi import Request

from shared.core.db import Row, fetch_all
from shared.core.errors import BadRequest, Forbidden, Unauthorized
from shared.core.settings import get_settings
from shared.guard.auth import Principal

CLOCK_TOLERANCE_S = 15
MAX_TOKEN_CHARS = 64_000  # a chunked cookie may exceed 4 KB; nothing legitimate comes near this
V4_COOKIES = ("__Secure-next-auth.session-token", "next-auth.session-token")
V5_COOKIES = ("__Secure-authjs.session-token", "authjs.session-token")
V4_INFO = "NextAuth.js Generated Encryption Key"
KEY_LENGTH = {"A256GCM": 32, "A256CBC-HS512": 64}
ALGORITHMS = ["dir", *KEY_LENGTH]  # what NextAuth and Auth.js issue; nothing else is accepted
B64URL = re.compile(r"^[A-Za-z0-9_-]*$")


def _invalid(reason: str) -> Unauthorized:
    # The reason helps an operator; it never says which check almost passed.
    return Unauthorized(f"The session token is not valid ({reason}); sign in again.", code="invalid_session")


def b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def b64url_decode(text: str) -> bytes:
    """Strict: only the base64url alphabet, no padding, and the canonical encoding of what it decodes to."""
    if not B64URL.match(text):
        raise _invalid("bad encoding")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise _invalid("bad encoding") from None
    if b64url_encode(raw) != text:
        raise _invalid("bad encoding")
    return raw


@lru_cache(maxsize=64)
def derive_key(secret: str, salt: str, info: str, length: int) -> bytes:
    """HKDF-SHA256 as @panva/hkdf computes it (cached: it is the same few keys for every request)."""
    from cryptography.hazmat.primitives.hashes import SHA256
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=SHA256(), length=length, salt=salt.encode(), info=info.encode()).derive(secret.encode())


def v4_key(secret: str) -> bytes:
    return derive_key(secret, "", V4_INFO, 32)


def v5_key(secret: str, salt: str, enc: str = "A256CBC-HS512") -> bytes:
    return derive_key(secret, salt, f"Auth.js Generated Encryption Key ({salt})", KEY_LENGTH[enc])


@lru_cache(maxsize=64)
def thumbprint(key: bytes) -> str:
    """RFC 7638 thumbprint of {kty: oct, k}, with SHA-<key bits> as Auth.js computes its `kid`."""
    from joserfc import jwk

    members = {"kty": "oct", "k": b64url_encode(key)}
    return jwk.thumbprint(members, "sha512") if len(key) == 64 else jwk.thumbprint(members, "sha256")


def decrypt(token: str, keys: Iterable[bytes]) -> tuple[dict[str, Any], bytes]:
    """Decrypt a compact `dir` JWE with the first of `keys` that authenticates it: (header, plaintext)."""
    from joserfc import jwe
    from joserfc.errors import JoseError
    from joserfc.jwk import OctKey

    parts = token.split(".")
    if len(parts) != 5 or len(token) > MAX_TOKEN_CHARS:
        raise _invalid("not a JWE")
    for part in parts:  # jose refuses a non-canonical encoding (other unused bits) as a tampered token
        b64url_decode(part)
    if parts[1]:
        raise _invalid("unsupported header")  # `dir` has no encrypted key
    for key in keys:
        try:
            found = jwe.decrypt_compact(token, OctKey.import_key(key), algorithms=ALGORITHMS, registry=_registry())
        except (JoseError, ValueError):  # wrong key, tampered, or a header jose would refuse (zip, crit, alg)
            continue
        header = found.protected
        if "kid" in header and header["kid"] != thumbprint(key):
            continue  # Auth.js takes the key whose thumbprint is the kid, and no other
        if found.plaintext is not None:
            return header, found.plaintext
    raise _invalid("it does not decrypt with this server's secret")


@lru_cache(maxsize=1)
def _registry() -> Any:
    from joserfc.jwe import JWERegistry

    return JWERegistry(algorithms=ALGORITHMS)


def validate_claims(plaintext: bytes, now: float | None = None) -> dict[str, Any]:
    """jose's checks with clockTolerance 15 (exp, nbf, iat types); `exp` is required: NextAuth always sets it."""
    from joserfc.errors import ExpiredTokenError, JoseError
    from joserfc.jwt import JWTClaimsRegistry

    try:
        claims = json.loads(plaintext)
    except ValueError:
        raise _invalid("bad payload") from None
    if not isinstance(claims, dict):
        raise _invalid("bad payload")
    registry = JWTClaimsRegistry(now=None if now is None else int(now), leeway=CLOCK_TOLERANCE_S,
                                 exp={"essential": True})
    try:
        registry.validate(claims)
    except ExpiredTokenError:
        raise Unauthorized("The session has expired; sign in again.", code="session_expired") from None
    except JoseError as exc:
        raise _invalid(exc.description or exc.error) from None
    return claims


def secrets() -> list[str]:
    settings = get_settings()
    return list(dict.fromkeys(s for s in (settings.nextauth_secret, settings.auth_secret) if s))


def decode(token: str, *, cookie: str | None = None) -> dict[str, Any]:
    """The claims of a v4 or v5 session token. `cookie` = the (unchunked) cookie name it came in, if any.

    From a cookie the name says which generation and salt made it; a Bearer token tries both.
    Raises Unauthorized: `invalid_session` (tampered, wrong secret, malformed) or `session_expired`.
    """
    keys: list[bytes] = []
    v5_salts = [cookie] if cookie in V5_COOKIES else [] if cookie in V4_COOKIES else list(V5_COOKIES)
    for secret in secrets():
        if cookie is None or cookie in V4_COOKIES:
            keys.append(v4_key(secret))
        for salt in v5_salts:
            keys += [v5_key(secret, salt, "A256CBC-HS512"), v5_key(secret, salt, "A256GCM")]
    if not keys:
        raise Unauthorized("Sign-in sessions are not enabled here (NEXTAUTH_SECRET is not set).",
                           code="sessions_disabled")
    _, plaintext = decrypt(token, keys)
    return validate_claims(plaintext)


def session_cookie(cookies: dict[str, str]) -> tuple[str, str] | None:
    """(token, cookie name) from the first session cookie present, chunks `.0`, `.1`, ... joined in order."""
    for name in V5_COOKIES + V4_COOKIES:
        if name in cookies:
            return cookies[name], name
        chunks = sorted((int(key[len(name) + 1:]), value) for key, value in cookies.items()
                        if key.startswith(name + ".") and key[len(name) + 1:].isdigit())
        if chunks:
            return "".join(value for _, value in chunks), name
    return None


def principal_for_request(request: Request, conn: psycopg.Connection[Row], bearer: str | None) -> Principal:
    """The workspace member behind a session token in `bearer` (not one of our keys) or the session cookie."""
    if bearer:
        claims = decode(unquote(bearer))
    else:
        found = session_cookie(dict(request.cookies))
        if found is None:
            raise Unauthorized("Send an API key as 'Authorization: Bearer <key>'.", code="missing_api_key")
        token, name = found
        _check_cookie_origin(request)
        claims = decode(token, cookie=name)
    return principal_for_claims(conn, claims, request.headers.get("x-workspace-id"))


def principal_for_claims(conn: psycopg.Connection[Row], claims: dict[str, Any],
                         workspace_id: str | None) -> Principal:
    """Map the token's `email` to a workspace membership; X-Workspace-Id picks one when there are several."""
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email:
        raise Forbidden("The session carries no e-mail address to find the workspace by.", code="session_without_email")
    rows = fetch_all(conn, """SELECT workspace_id, role FROM workspace_members WHERE lower(email) = lower(%s)
                              ORDER BY created_at, workspace_id LIMIT 1000""", (email,))
    if workspace_id:
        rows = [r for r in rows if r["workspace_id"] == workspace_id.strip()]
        if not rows:
            raise Forbidden(f"{email} is not a member of workspace {workspace_id}.", code="not_a_member")
    elif not rows:
        raise Forbidden(f"{email} is not a member of any workspace; an admin can add it with "
                        "'python -m scripts workspace add-member'.", code="not_a_member")
    elif len(rows) > 1:
        raise BadRequest("This account belongs to several workspaces: name one in the X-Workspace-Id header.",
                         code="workspace_required", details={"workspaces": [r["workspace_id"] for r in rows]})
    member = rows[0]
    return Principal(workspace_id=member["workspace_id"], scope="admin" if member["role"] == "admin" else "chat",
                     actor=f"user:{email}")


def _check_cookie_origin(request: Request) -> None:
    """Cookies ride along on cross-site requests: a state-changing one must come from the app or from us."""
    origin = request.headers.get("origin")
    if request.method in ("GET", "HEAD", "OPTIONS") or not origin:
        return
    settings = get_settings()
    allowed = {_origin(u) for u in (settings.nextauth_url, settings.public_url) if u}
    allowed.add(f"{request.url.scheme}://{request.headers.get('host', '')}")
    if _origin(origin) not in allowed:
        raise Forbidden(f"Origin {origin} may not use this session cookie.", code="origin_not_allowed")


def _origin(url: str) -> str:
    parts = urlsplit(url.strip())
    return f"{parts.scheme}://{parts.netloc}".lower()

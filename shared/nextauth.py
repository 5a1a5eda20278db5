"""NextAuth v4 and Auth.js v5 session tokens, decrypted exactly as they do, mapped to a workspace member.

Both issue a JWE in compact form with `alg: dir` and a key derived from the secret by HKDF-SHA256:
- next-auth v4 (packages/next-auth/src/jwt/index.ts): `enc: A256GCM`, salt "", info
  "NextAuth.js Generated Encryption Key", 32 bytes; cookie `next-auth.session-token` (`__Secure-` on https).
- Auth.js v5 (packages/core/src/jwt.ts): `enc: A256CBC-HS512`, salt = the cookie name, info
  "Auth.js Generated Encryption Key (<salt>)", 64 bytes, `kid` = RFC 7638 thumbprint of that key (SHA-512);
  its decoder also takes `A256GCM` with a 32-byte key. Cookie `authjs.session-token` (`__Secure-` on https).
Both decode with jose's `jwtDecrypt(..., {clockTolerance: 15})`; big cookies arrive in chunks `.0`, `.1`, ...
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterable
from functools import lru_cache
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
from fastapi import Request

from shared.auth import Principal
from shared.db import Row, fetch_all
from shared.errors import BadRequest, Forbidden, Unauthorized
from shared.settings import get_settings

CLOCK_TOLERANCE_S = 15
MAX_TOKEN_CHARS = 64_000  # a chunked cookie may exceed 4 KB; nothing legitimate comes near this
V4_COOKIES = ("__Secure-next-auth.session-token", "next-auth.session-token")
V5_COOKIES = ("__Secure-authjs.session-token", "authjs.session-token")
V4_INFO = "NextAuth.js Generated Encryption Key"
KEY_LENGTH = {"A256GCM": 32, "A256CBC-HS512": 64}
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
    digest = {32: hashlib.sha256, 64: hashlib.sha512}[len(key)]
    members = json.dumps({"k": b64url_encode(key), "kty": "oct"}, separators=(",", ":"))
    return b64url_encode(digest(members.encode()).digest())


def decrypt(token: str, keys: Iterable[bytes]) -> tuple[dict[str, Any], bytes]:
    """Decrypt a compact `dir` JWE with the first of `keys` that authenticates it: (header, plaintext)."""
    parts = token.split(".")
    if len(parts) != 5 or len(token) > MAX_TOKEN_CHARS:
        raise _invalid("not a JWE")
    encoded_header, encrypted_key, iv_b64, ciphertext_b64, tag_b64 = parts
    try:
        header = json.loads(b64url_decode(encoded_header))
    except ValueError:
        raise _invalid("bad header") from None
    if not isinstance(header, dict) or header.get("alg") != "dir" or header.get("enc") not in KEY_LENGTH:
        raise _invalid("unsupported algorithm")
    if "zip" in header or "crit" in header or encrypted_key:
        raise _invalid("unsupported header")  # jose refuses these for `dir` too
    iv, ciphertext, tag = b64url_decode(iv_b64), b64url_decode(ciphertext_b64), b64url_decode(tag_b64)
    aad = encoded_header.encode("ascii")
    enc = header["enc"]
    for key in keys:
        if len(key) != KEY_LENGTH[enc] or ("kid" in header and header["kid"] != thumbprint(key)):
            continue
        plaintext = _gcm(key, iv, ciphertext, tag, aad) if enc == "A256GCM" else _cbc_hs(key, iv, ciphertext, tag, aad)
        if plaintext is not None:
            return header, plaintext
    raise _invalid("it does not decrypt with this server's secret")


def _gcm(key: bytes, iv: bytes, ciphertext: bytes, tag: bytes, aad: bytes) -> bytes | None:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if len(iv) != 12 or len(tag) != 16:
        return None
    try:
        return AESGCM(key).decrypt(iv, ciphertext + tag, aad)
    except InvalidTag:
        return None


def _cbc_hs(key: bytes, iv: bytes, ciphertext: bytes, tag: bytes, aad: bytes) -> bytes | None:
    """AES_256_CBC_HMAC_SHA_512 (RFC 7518 5.2.5): MAC key first half, AES key second half, tag = MAC[:32]."""
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    if len(iv) != 16 or len(tag) != 32 or not ciphertext or len(ciphertext) % 16:
        return None
    mac_key, enc_key = key[:32], key[32:]
    al = (len(aad) * 8).to_bytes(8, "big")
    expected = hmac.new(mac_key, aad + iv + ciphertext + al, hashlib.sha512).digest()[:32]
    if not hmac.compare_digest(expected, tag):
        return None
    decryptor = Cipher(algorithms.AES(enc_key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        return None


def validate_claims(plaintext: bytes, now: float | None = None) -> dict[str, Any]:
    """jose's checks with clockTolerance 15 (exp, nbf, iat types); `exp` is required: NextAuth always sets it."""
    try:
        claims = json.loads(plaintext)
    except ValueError:
        raise _invalid("bad payload") from None
    if not isinstance(claims, dict):
        raise _invalid("bad payload")
    current = int(time.time() if now is None else now)

    def number(name: str) -> float | None:
        value = claims.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise _invalid(f"'{name}' is not a number")
        return value

    number("iat")
    nbf, exp = number("nbf"), number("exp")
    if nbf is not None and nbf > current + CLOCK_TOLERANCE_S:
        raise _invalid("not valid yet")
    if exp is None:
        raise _invalid("no expiry")
    if exp <= current - CLOCK_TOLERANCE_S:
        raise Unauthorized("The session has expired; sign in again.", code="session_expired")
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

"""NextAuth v4 / Auth.js v5 session tokens reach the API in place of a key, mapped to workspace members.

Tokens are made here the way their encoders make them (jwt/index.ts of next-auth v4, core/src/jwt.ts of
Auth.js: JWE `dir` with A256GCM or A256CBC-HS512, keys from HKDF), and tests/fakes/nextauth_tokens.json
holds tokens made once by the real next-auth@4.24.15 and @auth/core@0.41.3 (via the real `jose`). When
Node and those packages are at NEXTAUTH_INTEROP_DIR, fresh tokens go both ways between them and us.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from scripts.__main__ import main as cli
from scripts._serve import serve_in_thread
from shared.core.http import create_app
from shared.guard.deps import AnyKey
from tests.fakes.chat_fixtures import make_assistant

FAKES = Path(__file__).parent / "fakes"
REAL = json.loads((FAKES / "nextauth_tokens.json").read_text())
SECRET = REAL["secret"]
EMAIL = REAL["email"]
V5_SALT = "authjs.session-token"
# The real next-auth v4 and @auth/core packages, installed once from npm into a git-ignored cache.
INTEROP_ROOT = Path(__file__).resolve().parent.parent / ".cache" / "nextauth-interop"
INTEROP_DIR = INTEROP_ROOT / "node_modules"
INTEROP_PACKAGES = ["next-auth@4.24.15", "@auth/core@0.41.3"]


def _clear_caches() -> None:
    conftest = sys.modules.get("conftest") or __import__("tests.conftest").conftest
    conftest.clear_caches()


# --- the encode side, as next-auth and Auth.js do it -------------------------------------------------

def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def hkdf(secret: str, salt: str, info: str, length: int) -> bytes:
    return HKDF(algorithm=SHA256(), length=length, salt=salt.encode(), info=info.encode()).derive(secret.encode())


def jwe(payload: dict[str, Any], key: bytes, enc: str, kid: str | None = None) -> str:
    header = {"alg": "dir", "enc": enc, **({"kid": kid} if kid else {})}
    encoded_header = b64(json.dumps(header, separators=(",", ":")).encode())
    aad, plaintext = encoded_header.encode(), json.dumps(payload).encode()
    if enc == "A256GCM":
        iv = os.urandom(12)
        sealed = AESGCM(key).encrypt(iv, plaintext, aad)
        ciphertext, tag = sealed[:-16], sealed[-16:]
    else:  # A256CBC-HS512, RFC 7518 5.2.5
        iv = os.urandom(16)
        padder = padding.PKCS7(128).padder()
        encryptor = Cipher(algorithms.AES(key[32:]), modes.CBC(iv)).encryptor()
        ciphertext = encryptor.update(padder.update(plaintext) + padder.finalize()) + encryptor.finalize()
        al = (len(aad) * 8).to_bytes(8, "big")
        tag = hmac.new(key[:32], aad + iv + ciphertext + al, hashlib.sha512).digest()[:32]
    return ".".join([encoded_header, "", b64(iv), b64(ciphertext), b64(tag)])


def claims(email: str = EMAIL, max_age: int = 3600, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"name": "Ada", "email": email, "sub": "user-1", **extra, "iat": now, "exp": now + max_age,
            "jti": str(uuid.uuid4())}


def encode_v4(email: str = EMAIL, secret: str = SECRET, max_age: int = 3600, **extra: Any) -> str:
    key = hkdf(secret, "", "NextAuth.js Generated Encryption Key", 32)
    return jwe(claims(email, max_age, **extra), key, "A256GCM")


def encode_v5(email: str = EMAIL, secret: str = SECRET, salt: str = V5_SALT, max_age: int = 3600,
              **extra: Any) -> str:
    key = hkdf(secret, salt, f"Auth.js Generated Encryption Key ({salt})", 64)
    kid = b64(hashlib.sha512(json.dumps({"k": b64(key), "kty": "oct"}, separators=(",", ":")).encode()).digest())
    return jwe(claims(email, max_age, **extra), key, "A256CBC-HS512", kid)


# --- fixtures ----------------------------------------------------------------------------------------

@pytest.fixture
def ws(engine, monkeypatch) -> str:
    """A workspace where ada@example.com is an admin (added with the CLI, mixed case on purpose)."""
    monkeypatch.setenv("NEXTAUTH_SECRET", SECRET)
    _clear_caches()
    workspace_id, _ = engine.workspace("Acme")
    assert cli(["workspace", "add-member", workspace_id, "Ada@Example.com", "--role", "admin"]) == 0
    return workspace_id


def get_keys(engine, token: str | None = None, cookies: dict[str, str] | None = None,
             **headers: str) -> httpx.Response:
    all_headers = {k.replace("_", "-"): v for k, v in headers.items()}
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    if cookies:  # by hand: httpx would drop __Secure- cookies over http
        all_headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    return httpx.get(f"{engine.url}/api/keys", headers=all_headers, timeout=10)


def code(reply: httpx.Response) -> str:
    return reply.json()["error"]["code"]


def probe_app() -> Any:
    """A route of any scope (as chat routes are) that shows who the caller is."""
    app = create_app("session-probe")

    @app.get("/probe")
    def probe(principal: AnyKey) -> dict[str, Any]:
        return {"workspace_id": principal.workspace_id, "scope": principal.scope, "actor": principal.actor}

    return app


# --- tests -------------------------------------------------------------------------------------------

def test_real_v4_and_v5_tokens_reach_admin_routes_as_bearer_and_cookie(engine, ws) -> None:
    for token in (REAL["v4_valid"], REAL["v5_valid"], REAL["v5_secure_valid"]):
        reply = get_keys(engine, token)
        assert reply.status_code == 200, reply.text
        assert reply.json()["count"] == 1  # the workspace's first admin key
    assert get_keys(engine, cookies={"next-auth.session-token": REAL["v4_valid"]}).status_code == 200
    assert get_keys(engine, cookies={"authjs.session-token": REAL["v5_valid"]}).status_code == 200
    assert get_keys(engine, cookies={"__Secure-authjs.session-token": REAL["v5_secure_valid"]}).status_code == 200
    # The cookie name is the v5 salt: a token under the other name does not decrypt.
    assert code(get_keys(engine, cookies={"__Secure-authjs.session-token": REAL["v5_valid"]})) == "invalid_session"


def test_tokens_encoded_here_work_and_admin_actions_are_audited_as_the_user(engine, ws) -> None:
    for token in (encode_v4(), encode_v5(), encode_v5(salt="__Secure-authjs.session-token")):
        assert get_keys(engine, token).status_code == 200
    with engine.db() as conn:
        assistant = make_assistant(conn, ws)
    created = httpx.post(f"{engine.url}/api/keys", json={"name": "widget", "scope": "chat",
                                                         "assistant_ids": [assistant]},
                         headers={"Authorization": f"Bearer {encode_v5()}"}, timeout=10)
    assert created.status_code == 201, created.text
    with engine.db() as conn:
        row = conn.execute("SELECT actor, action FROM audit_log WHERE workspace_id = %s", (ws,)).fetchone()
    assert row == {"actor": f"user:{EMAIL}", "action": "key.created"}


def test_member_role_gets_chat_scope_only(engine, ws) -> None:
    assert cli(["workspace", "add-member", ws, "bob@example.com"]) == 0  # default role: member
    token = encode_v5("bob@example.com")
    reply = get_keys(engine, token)
    assert reply.status_code == 403 and code(reply) == "admin_key_required"
    assert "role" in reply.json()["error"]["message"]

    url, stop = serve_in_thread(probe_app())
    try:
        member = httpx.get(f"{url}/probe", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        admin = httpx.get(f"{url}/probe", headers={"Cookie": f"authjs.session-token={encode_v5()}"}, timeout=10)
    finally:
        stop()
    assert member.json() == {"workspace_id": ws, "scope": "chat", "actor": "user:bob@example.com"}
    assert admin.json() == {"workspace_id": ws, "scope": "admin", "actor": f"user:{EMAIL}"}


def test_expired_tokens_are_refused_with_session_expired(engine, ws) -> None:
    for token in (REAL["v4_expired"], REAL["v5_expired"], encode_v4(max_age=-20), encode_v5(max_age=-20)):
        reply = get_keys(engine, token)
        assert reply.status_code == 401 and code(reply) == "session_expired", reply.text
    # jose's clockTolerance of 15 s: a token expired 10 s ago still passes, as it does in NextAuth.
    assert get_keys(engine, encode_v4(max_age=-10)).status_code == 200
    assert get_keys(engine, encode_v5(max_age=-10)).status_code == 200


ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def padding_bits(part: str) -> str:
    """The same bytes with different unused low bits in the last character (jose would not notice)."""
    return part[:-1] + ALPHABET[ALPHABET.index(part[-1]) ^ 1]


def flip(part: str, index: int) -> str:
    """Change one base64url character (to one that changes the decoded bytes)."""
    char = part[index]
    return part[:index] + ("A" if char != "A" else "B") + part[index + 1:]


def test_tampered_tokens_and_wrong_secrets_are_refused_with_invalid_session(engine, ws) -> None:
    for token in (REAL["v4_valid"], REAL["v5_valid"]):
        header, key, iv, ciphertext, tag = token.split(".")
        forged_header = b64(json.dumps({"alg": "dir", "enc": "A256GCM"}).encode())
        tampered = [
            ".".join([header, key, iv, flip(ciphertext, 5), tag]),
            ".".join([header, key, iv, ciphertext, flip(tag, 3)]),
            ".".join([header, key, flip(iv, 2), ciphertext, tag]),
            f"{forged_header}.{key}.{iv}.{ciphertext}.{tag}",       # the header is authenticated too
            f"{header}.AAAA.{iv}.{ciphertext}.{tag}",               # `dir` has no encrypted key
            f"{header}.{key}.{iv}.{ciphertext}.{padding_bits(tag)}",  # same bytes, not canonical base64url
            f"{header}.{key}.{iv}.{ciphertext}",                    # four parts
        ]
        for bad in tampered:
            reply = get_keys(engine, bad)
            assert reply.status_code == 401 and code(reply) == "invalid_session", bad
    for token in (encode_v4(secret="another-secret"), encode_v5(secret="another-secret")):
        reply = get_keys(engine, token)
        assert reply.status_code == 401 and code(reply) == "invalid_session"
    none_alg = b64(json.dumps({"alg": "none"}).encode()) + "." + b64(json.dumps(claims()).encode()) + ".."
    assert code(get_keys(engine, none_alg + ".")) == "invalid_session"
    assert code(get_keys(engine, cookies={"authjs.session-token": "garbage"})) == "invalid_session"


def test_users_without_membership_and_workspace_choice(engine, ws) -> None:
    reply = get_keys(engine, encode_v5("stranger@example.com"))
    assert reply.status_code == 403 and code(reply) == "not_a_member"
    reply = get_keys(engine, encode_v5(None))  # type: ignore[arg-type]
    assert reply.status_code == 403 and code(reply) == "session_without_email"

    second, _ = engine.workspace("Second")
    other, _ = engine.workspace("Not Ada's")
    assert cli(["workspace", "add-member", second, EMAIL, "--role", "member"]) == 0
    token = encode_v5()
    reply = get_keys(engine, token)
    assert reply.status_code == 400 and code(reply) == "workspace_required"
    assert sorted(reply.json()["error"]["details"]["workspaces"]) == sorted([ws, second])
    assert get_keys(engine, token, x_workspace_id=ws).status_code == 200
    assert code(get_keys(engine, token, x_workspace_id=second)) == "admin_key_required"  # member there
    reply = get_keys(engine, token, x_workspace_id=other)
    assert reply.status_code == 403 and code(reply) == "not_a_member"
    assert cli(["workspace", "add-member", "ws_missing", EMAIL]) == 1


def test_chunked_cookie_is_joined_in_order(engine, ws) -> None:
    token = encode_v5(picture="https://example.com/" + "a" * 9000)  # > 4 KB: NextAuth splits it
    assert len(token) > 8000
    size = 3933  # NextAuth's chunk size (4096 - 163)
    chunks = {f"authjs.session-token.{i}": token[i * size:(i + 1) * size] for i in range(len(token) // size + 1)}
    assert len(chunks) >= 3
    shuffled = dict(reversed(list(chunks.items())))
    assert get_keys(engine, cookies=shuffled).status_code == 200
    assert code(get_keys(engine, cookies={k: v for k, v in chunks.items() if not k.endswith(".1")})) \
        == "invalid_session"


def test_cookie_sessions_refuse_other_origins_on_writes(engine, ws, monkeypatch) -> None:
    monkeypatch.setenv("NEXTAUTH_URL", "https://app.example.com")
    _clear_caches()
    cookie = {"Cookie": f"authjs.session-token={encode_v5()}"}
    evil = httpx.post(f"{engine.url}/api/keys", json={"name": "x"}, timeout=10,
                      headers={**cookie, "Origin": "https://evil.example"})
    assert evil.status_code == 403 and code(evil) == "origin_not_allowed"
    ok = httpx.post(f"{engine.url}/api/keys", json={"name": "x", "scope": "admin"}, timeout=10,
                    headers={**cookie, "Origin": "https://app.example.com"})
    assert ok.status_code == 201, ok.text


def test_sessions_are_refused_when_no_secret_is_set_and_keys_still_work(engine, ws, monkeypatch) -> None:
    _, admin_key = engine.workspace("Keys")
    monkeypatch.delenv("NEXTAUTH_SECRET")
    _clear_caches()
    reply = get_keys(engine, encode_v5())
    assert reply.status_code == 401 and code(reply) == "sessions_disabled"
    monkeypatch.setenv("AUTH_SECRET", SECRET)  # Auth.js v5's name for it
    _clear_caches()
    assert get_keys(engine, encode_v5()).status_code == 200
    assert get_keys(engine, admin_key).status_code == 200
    assert code(get_keys(engine, "de_admin_not-a-key")) == "invalid_api_key"
    assert code(get_keys(engine, "not-a-key-either")) == "invalid_api_key"
    assert code(get_keys(engine)) == "missing_api_key"


@pytest.fixture(scope="session")
def real_nextauth() -> Path:
    """Install the real packages on first use (the npm registry is reachable in CI, like PyPI)."""
    if not ((INTEROP_DIR / "next-auth").is_dir() and (INTEROP_DIR / "@auth" / "core").is_dir()):
        INTEROP_ROOT.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund", "--legacy-peer-deps",
                        "--prefix", str(INTEROP_ROOT), *INTEROP_PACKAGES], check=True, timeout=600)
    return INTEROP_DIR


def test_live_interop_with_the_real_nextauth_packages(monkeypatch, real_nextauth) -> None:
    monkeypatch.setenv("NEXTAUTH_SECRET", "live-interop-secret")
    monkeypatch.setenv("DATABASE_URL", os.environ.get("DATABASE_URL", "postgresql://unused"))
    _clear_caches()
    from shared.guard import nextauth

    env = {**os.environ, "NODE_PATH": str(INTEROP_DIR)}
    script = str(FAKES / "nextauth_tokens.mjs")
    made = json.loads(subprocess.run(["node", script, "encode", "live-interop-secret", "eve@example.com"],
                                     env=env, capture_output=True, text=True, timeout=30, check=True).stdout)
    assert nextauth.decode(made["v4_valid"])["email"] == "eve@example.com"
    assert nextauth.decode(made["v5_valid"], cookie=V5_SALT)["email"] == "eve@example.com"
    with pytest.raises(Exception) as expired:
        nextauth.decode(made["v5_expired"])
    assert getattr(expired.value, "code", None) == "session_expired"
    ours = {"v4": encode_v4("eve@example.com", "live-interop-secret"),
            "v5": encode_v5("eve@example.com", "live-interop-secret")}
    read = json.loads(subprocess.run(["node", script, "decode", "live-interop-secret"], input=json.dumps(ours),
                                     env=env, capture_output=True, text=True, timeout=30, check=True).stdout)
    assert read["v4"]["email"] == read["v5"]["email"] == "eve@example.com"

"""Passphrase encryption for backups: AES-256-GCM in authenticated chunks, key from scrypt.

Why not gpg or age, as the runbook suggests: gpg is a system binary that neither Vercel's runtime nor
python:3.12-slim ships, and the repo cannot pip-install it; pyrage (age) only encrypts whole byte
strings in memory with a passphrase. `cryptography` installs from a wheel everywhere the code runs,
so the same code encrypts on a laptop, in CI, in Docker and in a function, with memory flat.

File layout (all integers big-endian):
    header   = MAGIC(8) | log2_n(1) | r(1) | p(1) | chunk_size(4) | salt(16) | nonce_prefix(7)
    tag      = HMAC-SHA256(mac_key, header)                      -> wrong passphrase detected at once
    chunk i  = AES-256-GCM(enc_key, nonce_prefix | i(4) | last(1), plaintext_i, aad=header)
`enc_key | mac_key = scrypt(passphrase, salt)`. Each chunk is authenticated and numbered, and the last
one is marked (the STREAM construction age uses), so a flipped byte, reordered, dropped, truncated or
appended data all fail to decrypt.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Iterator
from typing import BinaryIO

MAGIC = b"DLGBAK1\n"
_HEADER = struct.Struct(">8sBBBI16s7s")
HEADER_SIZE = _HEADER.size  # 38
TAG_SIZE = 16
CHUNK_SIZE = 1 << 20  # 1 MiB of plaintext per chunk: memory stays flat for any dump size
SCRYPT = (15, 8, 1)  # n = 2**15, r = 8, p = 1: ~32 MiB and ~0.1 s per backup, as age's default-ish cost


class DecryptionError(Exception):
    """The file is not a backup, was altered, or the passphrase is wrong. Nothing may be restored from it."""


def _keys(passphrase: str, salt: bytes, log2_n: int, r: int, p: int) -> tuple[bytes, bytes]:
    if not passphrase:
        raise DecryptionError("BACKUP_PASSPHRASE is empty.")
    material = hashlib.scrypt(passphrase.encode(), salt=salt, n=1 << log2_n, r=r, p=p,
                              maxmem=256 * 1024 * 1024, dklen=64)
    return material[:32], material[32:]


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", index, 1 if last else 0)


class EncryptingWriter:
    """A write-only file: bytes written are encrypted chunk by chunk into `dst`; close() seals the stream."""

    def __init__(self, dst: BinaryIO, passphrase: str, *, chunk_size: int = CHUNK_SIZE,
                 scrypt: tuple[int, int, int] = SCRYPT) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.dst, self.chunk_size = dst, chunk_size
        salt, self.prefix = os.urandom(16), os.urandom(7)
        self.header = _HEADER.pack(MAGIC, *scrypt, chunk_size, salt, self.prefix)
        enc_key, mac_key = _keys(passphrase, salt, *scrypt)
        self.aead = AESGCM(enc_key)
        dst.write(self.header + hmac.new(mac_key, self.header, hashlib.sha256).digest())
        self.buffer = bytearray()
        self.index = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        self.buffer += data
        # Keep at least one byte back: only close() knows which chunk is the last one.
        while len(self.buffer) > self.chunk_size:
            self._emit(bytes(self.buffer[:self.chunk_size]), last=False)
            del self.buffer[:self.chunk_size]
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._emit(bytes(self.buffer), last=True)
            self.buffer.clear()
            self.closed = True

    def _emit(self, chunk: bytes, last: bool) -> None:
        self.dst.write(self.aead.encrypt(_nonce(self.prefix, self.index, last), chunk, self.header))
        self.index += 1


def decrypt_chunks(src: BinaryIO, passphrase: str) -> Iterator[bytes]:
    """Yield the plaintext chunk by chunk; raises DecryptionError at the first bad byte.

    A caller must not act on the output until the iterator is exhausted: only then is the whole
    stream known to be authentic and complete.
    """
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    header = _read_exact(src, HEADER_SIZE)
    if len(header) < HEADER_SIZE or not header.startswith(MAGIC):
        raise DecryptionError("This is not a Dialog Engine backup (unknown header).")
    _, log2_n, r, p, chunk_size, salt, prefix = _HEADER.unpack(header)
    # Bound the parameters an attacker could set: no huge scrypt cost or chunk allocation.
    if not (10 <= log2_n <= 20 and 1 <= r <= 32 and 1 <= p <= 16 and 1 <= chunk_size <= 64 << 20):
        raise DecryptionError("The backup header has impossible parameters; the file was altered.")
    enc_key, mac_key = _keys(passphrase, salt, log2_n, r, p)
    tag = _read_exact(src, 32)
    if not hmac.compare_digest(tag, hmac.new(mac_key, header, hashlib.sha256).digest()):
        raise DecryptionError("Wrong BACKUP_PASSPHRASE for this backup (or its header was altered); "
                              "nothing was restored.")
    aead, index = AESGCM(enc_key), 0
    block = _read_exact(src, chunk_size + TAG_SIZE)
    while True:
        following = _read_exact(src, chunk_size + TAG_SIZE) if len(block) == chunk_size + TAG_SIZE else b""
        last = not following
        try:
            yield aead.decrypt(_nonce(prefix, index, last), block, header)
        except InvalidTag:
            raise DecryptionError(f"The backup fails authentication at chunk {index} (bytes from "
                                  f"{HEADER_SIZE + 32 + index * (chunk_size + TAG_SIZE)}): it was altered, "
                                  "truncated or corrupted; nothing was restored.") from None
        if last:
            return
        block, index = following, index + 1


def _read_exact(src: BinaryIO, size: int) -> bytes:
    """Read `size` bytes, fewer only at end of file (pipes and sockets return short reads)."""
    parts, missing = [], size
    while missing:
        part = src.read(missing)
        if not part:
            break
        parts.append(part)
        missing -= len(part)
    return b"".join(parts)

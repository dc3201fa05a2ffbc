"""Keyed tombstones: what the store keeps about a forgotten interaction, and the key it needs.

A tombstone must let the store refuse a forgotten pair on every later import (and let
``verify`` prove that none came back) without being the data itself. So the store keeps, per
forgotten ``(user, item)`` pair of internal ids, only the token

.. math::
    t(u, i) = \\mathrm{BLAKE2b}_{128}(K;\\ \\text{person} = \\texttt{gf-pair};\\
    \\mathrm{int64_{le}}(u) \\,\\|\\, \\mathrm{int64_{le}}(i)),

BLAKE2b in its keyed (MAC) mode under a 256-bit random key :math:`K` that is **not** in the
database file: it lives in the key file beside it (``STORE.key`` for ``STORE``, mode 0600,
created with the store; :func:`default_key_path`). A whole forgotten user (item) also loses its
raw id: its ``users`` (``items``) row keeps the internal id, so checkpoint rows stay aligned,
but its raw id is replaced by the placeholder ``forgotten:`` + :func:`node_token` (the same MAC
over the raw id, person ``gf-user`` / ``gf-item``), so a re-imported row of that raw id maps
to the same internal id and its pairs are still refused. A forget request's ledger row records
the placeholder (user / item requests) or the number of pairs (edge requests), never raw ids;
its idempotency digest and the graph fingerprints the ledger and the checkpoint pointer record
are MACs too (:func:`request_digest`, :func:`graph_digest`: a plain fingerprint of the edges
after each request would let anyone test guesses of the removed pairs against it).

What a holder of the database file learns, **without the key**: the number of forgotten pairs
per request and when; that internal user (item) *n* was forgotten as a whole, and how many of
its interactions were; the audit figures recorded with each request (aggregate ranks and
utility of the deleted pairs' users); item raw ids, and raw ids of users not forgotten as a
whole (an edge request removes the pairs, not the user); request ids, which are stored and
used in checkpoint file names as given (put no personal data in them). Not which items a forgotten user had, not a forgotten
user's raw id, not which pairs an edge request removed: each token is a pseudo-random function
of its pair, and checking a guess needs the key. **With the key** as well, tokens can be
recomputed for every (user, item) pair of the id spaces, which reveals which internal pairs
were forgotten (but still not a forgotten user's raw id, unless it is guessed and its
placeholder recomputed): keep the key file where the database's readers cannot read it
(``key_path=`` / ``--key FILE``; by default it sits beside the database, so a copy of the folder
carries both). Losing it loses nothing already forgotten, but the store can then no longer
check its tombstones: forget requests and imports into a store with tombstones are refused
until it is restored (there is no re-keying without the old key).

The bytes: ``secure_delete`` zeroes deleted rows, and after each request the WAL is
checkpointed into the database and truncated. A reader holding a snapshot at that moment, or a
crash just after the commit, delays that to the next writable open of the store; the request
then logs a warning, and ``verify`` warns while the WAL holds frames.

Hashing is one C call per pair (about 0.5 µs), done only for the pairs a request or an import
brings in, or, in ``verify`` and an audit, once over the store's rows.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np
from torch import Tensor

KEY_BYTES = 32
TOKEN_BYTES = 16
PLACEHOLDER = "forgotten:"  # prefix of a forgotten node's raw id
_KEY_ID_PERSON = b"gf-key-id"


def default_key_path(db: str | os.PathLike) -> Path:
    """``STORE.key`` beside the store file ``STORE``."""
    db = Path(db)
    return db.with_name(db.name + ".key")


def _mac(key: bytes, person: bytes, data: bytes) -> bytes:
    return hashlib.blake2b(data, key=key, person=person, digest_size=TOKEN_BYTES).digest()


def key_id(key: bytes) -> str:
    """A public id of the key (a MAC of a constant), stored in the database to detect a wrong
    key file."""
    return _mac(key, _KEY_ID_PERSON, b"").hex()


def read_key(path: Path) -> bytes:
    """The key in ``path`` (64 hex digits); one-line ``ValueError`` naming the file otherwise."""
    if path.is_dir():
        raise ValueError(f"{path}: a directory, expected the store's key file")
    try:
        text = path.read_text(encoding="ascii").strip()
        key = bytes.fromhex(text)
    except (UnicodeDecodeError, ValueError):
        raise ValueError(f"{path}: not a graphforget store key (64 hex digits)") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"{path}: not a graphforget store key (64 hex digits)")
    return key


def create_key(path: Path) -> bytes:
    """A new random key written to ``path`` (created exclusively, mode 0600, fsynced); an
    existing key file there is read instead (a store re-created beside its old key)."""
    if path.exists() or path.is_symlink():
        return read_key(path)
    key = secrets.token_bytes(KEY_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (key.hex() + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return key


def pair_tokens(key: bytes, edges: Tensor | np.ndarray) -> list[bytes]:
    """Tokens of the pairs ``edges [2, m]`` (internal ids), in order."""
    arr = np.ascontiguousarray(np.asarray(edges, dtype=np.int64).reshape(2, -1).T, dtype="<i8")
    raw = arr.tobytes()
    w = 16
    return [_mac(key, b"gf-pair", raw[k:k + w]) for k in range(0, len(raw), w)]


def node_token(key: bytes, what: str, raw: str) -> str:
    """Hex MAC of a raw user / item id (``what``: ``"user"`` or ``"item"``)."""
    return _mac(key, b"gf-" + what.encode(), raw.encode("utf-8")).hex()


def placeholder(key: bytes, what: str, raw: str) -> str:
    """The raw id a forgotten node keeps: ``forgotten:`` + :func:`node_token`."""
    return PLACEHOLDER + node_token(key, what, raw)


def graph_digest(key: bytes, fingerprint: str) -> str:
    """Keyed digest of a graph's fingerprint (what the ledger and the checkpoint pointer record):
    the plain fingerprint is an unkeyed hash of the training edges, so consecutive ones would
    let anyone holding the file test which pairs a request removed."""
    return _mac(key, b"gf-graph", fingerprint.encode()).hex()


def request_digest(key: bytes, kind: str, request: Any) -> str:
    """Keyed digest of a canonical forget request (idempotency without storing its raw ids)."""
    body = json.dumps({"kind": kind, "request": request}, sort_keys=True).encode()
    return _mac(key, b"gf-request", body).hex()


def tombstones_digest(tokens: Iterable[bytes], prefix: bytes) -> Optional[str]:
    """sha256 of ``prefix`` + the sorted tokens; ``None`` for none."""
    tokens = sorted(tokens)
    if not tokens:
        return None
    return hashlib.sha256(prefix + b"".join(tokens)).hexdigest()

"""Forget requests: raw ids as users give them, their canonical form, and their outcome.

A request is a list of raw ``(user, item)`` pairs (:func:`normalise_pairs`: strings, or ints
written as decimal strings; anything else is refused naming the entry) or one raw user / item
id. :func:`new_request_id` makes an idempotency key when the caller gives none;
:class:`ForgetResult` is what a request returns (rebuilt from its ledger row on a replay), and
:class:`UnlearningFailed` what it raises when the method and its fallback fail numerically
(nothing is changed; the ledger records a ``failed`` row).
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field, fields as dc_fields
from typing import Any, Iterable, Optional

from .ledger import LedgerEntry


class UnlearningFailed(RuntimeError):
    """The unlearning method (and its fallback) failed numerically; nothing was changed."""


@dataclass
class ForgetResult:
    """Outcome of a request (rebuilt from the ledger when a request id is replayed)."""

    request_id: str
    kind: str
    status: str
    num_edges: int
    num_heldout: int
    method: Optional[str]
    checkpoint: Optional[str]
    checkpoint_sha256: Optional[str]
    graph_fingerprint: Optional[str]
    report: dict = field(default_factory=dict)
    audit_before: Optional[dict] = None
    audit_after: Optional[dict] = None
    ledger_hash: Optional[str] = None  # hash of the request's ledger row (an anchor)
    replayed: bool = False

    @classmethod
    def from_entry(cls, e: LedgerEntry, replayed: bool) -> "ForgetResult":
        names = {f.name for f in dc_fields(cls)} - {"replayed", "ledger_hash"}
        d = {k: getattr(e, k) for k in names}
        d["report"] = d["report"] or {}
        return cls(**d, ledger_hash=e.hash, replayed=replayed)

    def summary(self) -> str:
        rep = self.report or {}
        s = (f"{'replayed' if self.replayed else self.status} {self.request_id}: forgot "
             f"{self.num_edges} training interactions")
        if self.num_heldout:
            s += f" (+{self.num_heldout} held-out)"
        s += f" with {self.method}"
        if rep.get("seconds_total") is not None:
            s += f" in {rep['seconds_total']:.3f}s"
        return s + f"; checkpoint {self.checkpoint} sha256={self.checkpoint_sha256}"


def raw_id(x: Any) -> Optional[str]:
    if isinstance(x, bool):
        return None
    if isinstance(x, str):
        return x if x.strip() == x and x else None
    if isinstance(x, int) or (hasattr(x, "dtype") and getattr(x, "ndim", 1) == 0
                              and str(x.dtype).startswith(("int", "uint", "torch.int"))):
        return str(int(x))
    return None


def normalise_pairs(edges_raw: Iterable) -> list[tuple[str, str]]:
    """``[(raw_user, raw_item), ...]`` as strings; ``ValueError`` naming malformed entries."""
    if isinstance(edges_raw, (str, bytes)) or not hasattr(edges_raw, "__iter__"):
        raise ValueError(f"edges must be a list of (user, item) pairs, got {type(edges_raw).__name__}")
    out, bad = [], []
    for k, p in enumerate(edges_raw):
        if isinstance(p, (str, bytes)) or not hasattr(p, "__len__") or len(p) != 2:
            bad.append((k, p))
            continue
        u, i = raw_id(p[0]), raw_id(p[1])
        if u is None or i is None:
            bad.append((k, p))
            continue
        out.append((u, i))
    if bad:
        raise ValueError(f"malformed edges ({len(bad)}; expected (user, item) pairs of str/int "
                         f"ids): {[f'#{k}: {p!r}' for k, p in bad[:10]]}")
    return out


def new_request_id(prefix: str = "req") -> str:
    return f"{prefix}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"

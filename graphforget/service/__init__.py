"""The deletion service: an SQLite interaction store, an append-only hash-chained
ledger and a :class:`Forgetter` that applies forget requests atomically to store, model and
ledger.

>>> from graphforget.service import Forgetter, InteractionStore, verified, verify_store
>>> InteractionStore("store.sqlite").import_graph(graph)        # once
>>> f = Forgetter("store.sqlite", "model.pt", method="ifru", fallback="finetune")
>>> f.forget([("196", "242")], request_id="ticket-17"); f.forget_user("186")
>>> verified(verify_store("store.sqlite", "model.pt"))   # the ledger chain and every cross-check
True
"""
from .forgetter import Forgetter, audit_figures
from .recovery import rebind_checkpoint, recorded_recipe, retrain_checkpoint
from .requests import ForgetResult, UnlearningFailed, new_request_id, normalise_pairs
from .series import LockTimeout
from .ledger import Ledger, LedgerEntry
from .store import InteractionStore
from .verify import Check, integrity_problem, load_for_store, verify_store, verified

__all__ = ["InteractionStore", "Ledger", "LedgerEntry", "Forgetter", "ForgetResult",
           "UnlearningFailed", "audit_figures", "normalise_pairs",
           "new_request_id", "Check", "verify_store", "verified", "integrity_problem",
           "LockTimeout", "rebind_checkpoint", "retrain_checkpoint", "recorded_recipe",
           "load_for_store"]

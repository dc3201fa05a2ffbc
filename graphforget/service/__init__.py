"""The deletion service: an SQLite interaction store, an append-only ledger and a
:class:`Forgetter` that applies forget requests atomically to store, model and ledger.

>>> from graphforget.service import Forgetter, InteractionStore
>>> InteractionStore("store.sqlite").import_graph(graph)        # once
>>> f = Forgetter("store.sqlite", "model.pt", method="ifru", fallback="finetune")
>>> f.forget([("196", "242")], request_id="ticket-17"); f.forget_user("186")
"""
from .forgetter import (ForgetResult, Forgetter, UnlearningFailed, audit_figures, new_request_id,
                        normalise_pairs)
from .ledger import Ledger, LedgerEntry
from .store import InteractionStore

__all__ = ["InteractionStore", "Ledger", "LedgerEntry", "Forgetter", "ForgetResult",
           "UnlearningFailed", "audit_figures", "normalise_pairs",
           "new_request_id"]

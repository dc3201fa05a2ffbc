"""Unlearning methods behind one contract (see :mod:`graphforget.unlearning.base`).

>>> result = graphforget.unlearn(model, graph, edges, method="ifru", k=3)
>>> result.model, result.graph, result.report
>>> from graphforget.unlearning import IFRU, AltEraser      # the method classes

``graphforget.unlearn`` is :func:`unlearn` (a plain function, exported by the top-level
package); the method classes of :data:`METHODS` import lazily on first access.
"""
from __future__ import annotations

import importlib

from .base import UnlearnReport, UnlearnResult, Unlearner, UnlearningRequest, accepts_any_option, param_names
from .requests import deletion_edges, parse_method

# method name -> "module:Class"; modules import lazily so a missing optional piece never
# breaks `import graphforget`.
METHODS = {
    "retrain": "graphforget.unlearning.retrain:Retrain",
    "finetune": "graphforget.unlearning.finetune:FineTune",
    "if": "graphforget.unlearning.influence:InfluenceFunction",
    "ifru": "graphforget.unlearning.ifru:IFRU",
    "scif": "graphforget.unlearning.scif:SCIF",
    "alteraser": "graphforget.unlearning.alteraser:AltEraser",
    "sisa": "graphforget.unlearning.sisa:SISA",
    "receraser": "graphforget.unlearning.receraser:RecEraser",
}

#: One line per method, for ``graphforget unlearn --help`` and the README's table.
SUMMARIES = {
    "retrain": "train from scratch on the remaining data with the original's recipe and a new seed (the reference)",
    "finetune": "a few epochs of the original's optimiser on the remaining data (cheap, forgets little)",
    "if": "influence-function Newton step over the deleted edges' endpoint rows (options: steps, damping, solver)",
    "ifru": "IF plus the spillover gradient of the k-hop subgraph, with importance pruning (options: k, steps, coupling)",
    "scif": "label-replacement influence on the endpoints (BCE / labelled data only)",
    "alteraser": "alternating closed-form block-Newton over the affected rows (options: rounds, tol)",
    "sisa": "sharded models; retrain only the shards that held the deleted edges (needs a sharded checkpoint)",
    "receraser": "SISA with balanced user/item partitions and a learned shard aggregator",
}


def method_key(method) -> str:
    """Registry key of the method name ``method`` (any case); ``ValueError`` naming the known
    methods for anything else."""
    if not isinstance(method, str) or method.lower() not in METHODS:
        raise ValueError(f"unknown unlearning method {method!r}; choose from {sorted(METHODS)}")
    return method.lower()


class OptionError(ValueError, TypeError):
    """An option a method does not take, or of the wrong type: a ``ValueError`` (bad input,
    one line naming it) that is also the ``TypeError`` Python raises for a bad keyword."""


def get_unlearner(method: str, **options) -> Unlearner:
    """Instantiate an unlearning method by name with its options.

    ``ValueError`` for an unknown method and for option values the constructor refuses;
    :class:`OptionError` (a ``ValueError`` and ``TypeError``) for an option the method does not
    take, naming it and the method's options (from its constructor's signature), or a value
    of the wrong type."""
    key = method_key(method)
    module, cls = METHODS[key].split(":")
    klass = getattr(importlib.import_module(module), cls)
    valid = None if accepts_any_option(klass) else param_names(klass)
    unknown = [name for name in options if valid is not None and name not in valid]
    if unknown:
        raise OptionError(f"method {key!r} has no option{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(map(repr, unknown))}; its options: {', '.join(valid)}")
    try:
        return klass(**options)
    except TypeError as exc:  # a value of the wrong type, or an option the signature hid
        raise OptionError(f"method {key!r}: bad options {options}: {exc}") from exc


def load_methods(methods=None) -> None:
    """Import the modules of the method names ``methods`` (default: all) now, checking the
    names: a long run (benchmark, reproduction) then fails on a typo before it trains anything
    and keeps the code it started with even if the source changes while it runs."""
    for name in (METHODS if methods is None else list(methods)):
        importlib.import_module(METHODS[method_key(name)].split(":")[0])


def unlearn(model, graph, request, method: str = "ifru", **options) -> UnlearnResult:
    """Forget ``request`` (edges ``[2, m]``, pairs, or an :class:`UnlearningRequest`) from
    ``model`` trained on ``graph``; returns the new model, new graph and a report."""
    return get_unlearner(method, **options).unlearn(model, graph, request)


CLASSES = {spec.split(":")[1]: spec for spec in METHODS.values()}


def __getattr__(name: str):
    if name in CLASSES:
        module, cls = CLASSES[name].split(":")
        return getattr(importlib.import_module(module), cls)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Unlearner", "UnlearningRequest", "UnlearnReport", "UnlearnResult", "METHODS", "SUMMARIES",
           "deletion_edges", "parse_method", "method_key", "get_unlearner", "load_methods", "unlearn",
           *CLASSES]

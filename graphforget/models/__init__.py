"""Recommenders with one interface: ``propagate(adj, embedding)``, ``score``, losses."""
from .base import RecModel
from .lightgcn import LightGCN
from .mf import MF
from .ngcf import NGCF

MODELS = {"mf": MF, "lightgcn": LightGCN, "ngcf": NGCF}


def build_model(name: str, num_users: int, num_items: int, dim: int = 64, layers: int = 3,
                seed: int | None = None, **kwargs) -> RecModel:
    """Construct a model by name (``mf``, ``lightgcn``, ``ngcf``)."""
    key = name.lower()
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    if key == "mf":
        return MF(num_users, num_items, dim=dim, seed=seed, **kwargs)
    return MODELS[key](num_users, num_items, dim=dim, num_layers=layers, seed=seed, **kwargs)


__all__ = ["RecModel", "MF", "LightGCN", "NGCF", "MODELS", "build_model"]

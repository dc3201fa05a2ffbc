"""Recommenders with one interface: ``propagate(adj, embedding)``, ``score``, losses."""
from .base import RecModel
from .lightgcn import LightGCN
from .mf import MF
from .ngcf import NGCF

MODELS = {"mf": MF, "lightgcn": LightGCN, "ngcf": NGCF}


def build_model(name: str, num_users: int, num_items: int, dim: int = 64, layers: int = 3,
                seed: int | None = None, init_std: float = 0.1, **kwargs) -> RecModel:
    """Construct a model by name (``mf``, ``lightgcn``, ``ngcf``); ``init_std`` is the standard
    deviation of the Gaussian initialisation of the embeddings."""
    key = name.lower()
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    if int(dim) < 1 or (key != "mf" and int(layers) < 0) or not float(init_std) > 0:
        raise ValueError(f"need dim >= 1, layers >= 0 and init_std > 0, got dim={dim}, "
                         f"layers={layers}, init_std={init_std}")
    kwargs["init_std"] = float(init_std)
    if key == "mf":
        return MF(num_users, num_items, dim=dim, seed=seed, **kwargs)
    return MODELS[key](num_users, num_items, dim=dim, num_layers=layers, seed=seed, **kwargs)


def from_config(config: dict, seed: int | None = None) -> RecModel:
    """A fresh model of ``model.config()`` (initialised with ``seed``)."""
    cfg = dict(config)
    return build_model(cfg["model"], cfg["num_users"], cfg["num_items"], dim=cfg["dim"],
                       layers=cfg["layers"], seed=seed, init_std=cfg.get("init_std", 0.1))


__all__ = ["from_config", "RecModel", "MF", "LightGCN", "NGCF", "MODELS", "build_model"]

"""graphforget: make graph-neural recommenders forget.

Data → :class:`~graphforget.data.InteractionGraph` → model (:mod:`graphforget.models`) →
:func:`~graphforget.train.train` → :func:`graphforget.unlearn` (:mod:`graphforget.unlearning`) → audit.
"""
from .data import InteractionGraph, Interactions
from .data.registry import list_datasets, load_dataset
from .models import MF, NGCF, LightGCN, build_model
from .train import TrainConfig, Trainer, evaluate, load_checkpoint, save_checkpoint, train
from .unlearning import unlearn

__version__ = "0.1.0"

__all__ = ["InteractionGraph", "Interactions", "MF", "LightGCN", "NGCF", "build_model",
           "TrainConfig", "Trainer", "train", "evaluate", "save_checkpoint", "load_checkpoint",
           "load_dataset", "list_datasets", "unlearn", "__version__"]

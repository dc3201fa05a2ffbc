"""Training loop, negative sampling and checkpoints."""
from .checkpoint import file_sha256, load_checkpoint, save_checkpoint
from .sampling import sample_negatives
from .trainer import TrainConfig, Trainer, TrainResult, evaluate, train

__all__ = ["TrainConfig", "Trainer", "TrainResult", "train", "evaluate", "sample_negatives",
           "save_checkpoint", "load_checkpoint", "file_sha256"]

"""Training loop, the objective unlearning differentiates, its stationary finish, negative
sampling, checkpoints and shard training (:mod:`.sharding`: SISA / RecEraser ensembles)."""
from .checkpoint import file_sha256, load_checkpoint, save_checkpoint
from .objective import Objective, SampleSet
from .sampling import fixed_negatives, sample_negatives
from .search import L2_GRID, search_l2
from .sharding import fit_sharded, partition_edges, retrain_shards, train_aggregator
from .stationary import FinishResult, stationarity, stationary_finish
from .trainer import TrainConfig, Trainer, TrainResult, evaluate, train

__all__ = ["TrainConfig", "Trainer", "TrainResult", "train", "evaluate", "sample_negatives",
           "fixed_negatives", "Objective", "SampleSet", "stationarity", "stationary_finish",
           "FinishResult", "search_l2", "L2_GRID", "save_checkpoint", "load_checkpoint", "file_sha256",
           "fit_sharded", "partition_edges", "retrain_shards", "train_aggregator"]

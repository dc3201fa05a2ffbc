"""Interaction data: tables, graphs, normalised adjacency, loaders, filters, splits."""
from .download import download
from .edgefile import read_edges, read_pairs
from .filters import binarize, compact, dedupe, implicit, k_core
from .graph import InteractionGraph, as_edge_tensor, edge_keys
from .interactions import Interactions
from .protocols import ifru_protocol, implicit_protocol
from .registry import DATASETS, DatasetSpec, data_root, dataset_stats, list_datasets, load_dataset
from .sparse import NormalizedAdjacency, sym_spmm
from .splits import leave_one_out, per_user_split, random_split, temporal_split, to_graph

__all__ = ["InteractionGraph", "Interactions", "NormalizedAdjacency", "sym_spmm",
           "as_edge_tensor", "edge_keys",
           "k_core", "binarize", "implicit", "dedupe", "compact",
           "random_split", "per_user_split", "leave_one_out", "temporal_split", "to_graph",
           "ifru_protocol", "implicit_protocol",
           "DATASETS", "DatasetSpec", "data_root", "list_datasets", "download", "load_dataset",
           "dataset_stats", "read_pairs", "read_edges"]

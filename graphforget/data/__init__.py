"""Interaction data: tables, graphs, normalised adjacency, loaders, filters, splits."""
from .graph import InteractionGraph, as_edge_tensor, edge_keys
from .interactions import Interactions
from .sparse import NormalizedAdjacency, sym_spmm

__all__ = ["InteractionGraph", "Interactions", "NormalizedAdjacency", "sym_spmm",
           "as_edge_tensor", "edge_keys"]

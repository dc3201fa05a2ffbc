"""Readers for interaction files; each returns :class:`Interactions` or a split graph."""
from .lightgcn_txt import load_lightgcn_txt, read_lightgcn_file

__all__ = ["load_lightgcn_txt", "read_lightgcn_file"]

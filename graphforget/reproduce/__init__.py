"""Paper-table reproductions: ``graphforget reproduce ifru|alteraser``."""
from .runner import Setting, deletion_edges, flip_labels, parse_method, run_setting
from .tables import PRESETS, load_table_dataset, reproduce

__all__ = ["reproduce", "run_setting", "Setting", "PRESETS", "load_table_dataset",
           "deletion_edges", "flip_labels", "parse_method"]

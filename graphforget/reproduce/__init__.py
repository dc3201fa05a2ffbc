"""Paper-table reproductions: ``graphforget reproduce ifru|alteraser``."""
from .runner import Setting, flip_labels, run_setting
from .tables import PRESETS, load_table_dataset, reproduce

__all__ = ["reproduce", "run_setting", "Setting", "PRESETS", "load_table_dataset", "flip_labels"]

"""docs/results.md's generated tables equal what the committed result files give."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_results_doc_is_up_to_date_with_the_result_files():
    out = subprocess.run([sys.executable, str(ROOT / "experiments" / "results_doc.py"), "--check"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr

"""download(): served from a local http.server on 127.0.0.1 — never the internet."""
from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import threading
import zipfile

import pytest

from graphforget.data import DATASETS, DatasetSpec, download, load_dataset
from graphforget.data.registry import CHECKSUMS


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def server(tmp_path):
    """Serve ``tmp_path / 'www'`` on an ephemeral 127.0.0.1 port; yields (folder, base url)."""
    www = tmp_path / "www"
    www.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def _register(monkeypatch, name, fmt, files, sha):
    spec = DatasetSpec(name, fmt, "test data", "http://invalid.example/", tuple(files), dict(zip(files, sha)))
    monkeypatch.setitem(DATASETS, name, spec)
    return spec


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_txt_download_with_checksum_and_reload(server, tmp_path, monkeypatch, capsys):
    www, url = server
    (www / "train.txt").write_text("0 0 1 2\n1 1 2\n2 0 2\n")
    (www / "test.txt").write_text("0 3\n1 0\n")
    sha = [hashlib.sha256((www / f).read_bytes()).hexdigest() for f in ("train.txt", "test.txt")]
    _register(monkeypatch, "tiny", "lightgcn-txt", ["train.txt", "test.txt"], [sha[0], None])
    root = tmp_path / "root"
    folder = download("tiny", root=root, url=url, progress=False)
    assert folder == root / "tiny"
    out = capsys.readouterr().out
    assert sha[1] in out and "test.txt" in out and sha[0] not in out  # unknown hash printed
    record = json.loads((folder / CHECKSUMS).read_text())
    assert record["files"] == {"train.txt": sha[0], "test.txt": sha[1]}
    g = load_dataset("tiny", root=root)
    assert g.num_train == 7 and g.test_edges.shape[1] == 2
    # a second call re-uses the verified copy without network access
    assert download("tiny", root=root, url="http://127.0.0.1:9/", progress=False) == folder
    # a changed file is caught on load
    (folder / "train.txt").write_text("0 0\n")
    with pytest.raises(ValueError, match="differs"):
        load_dataset("tiny", root=root)


def test_wrong_checksum_leaves_nothing(server, tmp_path, monkeypatch):
    www, url = server
    (www / "train.txt").write_text("0 0 1\n")
    _register(monkeypatch, "bad", "lightgcn-txt", ["train.txt"], ["0" * 64])
    root = tmp_path / "root"
    with pytest.raises(ValueError, match="does not match"):
        download("bad", root=root, url=url, progress=False)
    assert _leftovers(root / "bad") == []
    with pytest.raises(FileNotFoundError, match="graphforget datasets download bad"):
        load_dataset("bad", root=root)


def test_zip_download_unpacks_movielens(server, tmp_path, monkeypatch):
    www, url = server
    buf = io.BytesIO()
    rows = "".join(f"{u}\t{i}\t{4 + (u + i) % 2}\t{1000 + u * 10 + i}\n" for u in range(12) for i in range(12) if (u * 7 + i) % 5)
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ml-mini/u.data", rows)
    (www / "ml-mini.zip").write_bytes(buf.getvalue())
    sha = hashlib.sha256(buf.getvalue()).hexdigest()
    _register(monkeypatch, "ml-mini", "movielens", ["ml-mini.zip"], [sha])
    root = tmp_path / "root"
    folder = download("ml-mini", root=root, url=url, progress=False)
    assert (folder / "ml-mini" / "u.data").read_text() == rows
    assert set(json.loads((folder / CHECKSUMS).read_text())["files"]) == {"ml-mini.zip", "ml-mini/u.data"}
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []
    g = load_dataset("ml-mini", root=root, seed=0)
    assert g.num_train > 0 and g.num_users == 12


def test_zip_slip_refused(server, tmp_path, monkeypatch):
    www, url = server
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../evil.txt", "x")
    (www / "evil.zip").write_bytes(buf.getvalue())
    _register(monkeypatch, "evil", "movielens", ["evil.zip"], [None])
    with pytest.raises(ValueError, match="outside"):
        download("evil", root=tmp_path / "root", url=url, progress=False)
    assert not (tmp_path / "root" / "evil.txt").exists()


def test_http_error_and_unknown_names(server, tmp_path, monkeypatch):
    _, url = server
    _register(monkeypatch, "gone", "lightgcn-txt", ["train.txt"], [None])
    with pytest.raises(OSError, match="cannot download"):
        download("gone", root=tmp_path, url=url, progress=False)
    assert [p for p in (tmp_path / "gone").iterdir()] == []
    with pytest.raises(ValueError, match="registered"):
        download("no-such-set", root=tmp_path)
    with pytest.raises(ValueError, match="ships with the package"):
        download("demo", root=tmp_path)

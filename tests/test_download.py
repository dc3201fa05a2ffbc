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


# ------------------------------------------------------------------ verification (issue 13.4)
from graphforget import cli  # noqa: E402
from graphforget.data.download import check_url  # noqa: E402

TRAIN = "0 0 1 2\n1 1 2\n2 0 2\n"
TEST = "0 3\n1 0\n"


def _sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


def _pinned(monkeypatch, url, name="pin"):
    """A test data set whose *registry* URL is the local server and whose files are pinned."""
    spec = DatasetSpec(name, "lightgcn-txt", "test data", url, ("train.txt", "test.txt"),
                       {"train.txt": _sha(TRAIN), "test.txt": _sha(TEST)})
    monkeypatch.setitem(DATASETS, name, spec)
    return spec


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_pinned_hash_accepted(server, tmp_path, monkeypatch, capsys):
    www, url = server
    (www / "train.txt").write_text(TRAIN)
    (www / "test.txt").write_text(TEST)
    _pinned(monkeypatch, url)
    folder = download("pin", root=tmp_path, progress=False)
    out = capsys.readouterr().out
    assert out.count("sha256 verified (registry)") == 2 and "UNVERIFIED" not in out
    record = json.loads((folder / CHECKSUMS).read_text())
    assert record["verified"] == {"train.txt": True, "test.txt": True}
    assert load_dataset("pin", root=tmp_path).num_train == 7


def test_tampered_file_refused_on_first_download(server, tmp_path, monkeypatch):
    www, url = server
    (www / "train.txt").write_text(TRAIN)
    (www / "test.txt").write_text("0 3\n1 1\n")  # tampered
    _pinned(monkeypatch, url)
    with pytest.raises(ValueError) as err:
        download("pin", root=tmp_path, progress=False)
    msg = str(err.value)
    assert "\n" not in msg and "pin/test.txt" in msg
    assert f"expected {_sha(TEST)}" in msg and f"actual {_sha('0 3' + chr(10) + '1 1' + chr(10))}" in msg
    assert _leftovers(tmp_path / "pin") == []  # train.txt (which matched) not kept either
    with pytest.raises(FileNotFoundError, match="not downloaded"):
        load_dataset("pin", root=tmp_path)


def test_tampered_file_refused_on_force_cache_unchanged(server, tmp_path, monkeypatch):
    www, url = server
    (www / "train.txt").write_text(TRAIN)
    (www / "test.txt").write_text(TEST)
    _pinned(monkeypatch, url)
    folder = download("pin", root=tmp_path, progress=False)
    before = _snapshot(folder)
    (www / "train.txt").write_text("0 0 1 2 3\n")  # the server now serves a tampered file
    with pytest.raises(ValueError, match=r"pin/train.txt: sha256 does not match"):
        download("pin", root=tmp_path, force=True, progress=False)
    assert _snapshot(folder) == before  # no temp file, checksums.json and data untouched
    assert load_dataset("pin", root=tmp_path).num_train == 7


@pytest.mark.parametrize("bad", ["file:///etc/passwd", "ftp://127.0.0.1/x", "data:,hello",
                                 "/etc", "http:///nohost"])
def test_non_http_urls_refused(tmp_path, monkeypatch, bad):
    with pytest.raises(ValueError, match="only https:// and http://"):
        check_url(bad)
    _register(monkeypatch, "loc", "lightgcn-txt", ["train.txt"], [None])
    with pytest.raises(ValueError, match="refusing to download"):
        download("loc", root=tmp_path, url=bad, progress=False)
    monkeypatch.setitem(DATASETS, "loc2", DatasetSpec("loc2", "lightgcn-txt", "t", bad, ("train.txt",)))
    with pytest.raises(ValueError, match="refusing to download"):
        download("loc2", root=tmp_path, progress=False)
    assert not (tmp_path / "loc").exists() and not (tmp_path / "loc2").exists()
    check_url("https://example.org/a")
    check_url("HTTP://127.0.0.1:8/a")


def test_file_url_refused_by_cli(tmp_path, monkeypatch, capsys):
    (tmp_path / "train.txt").write_text(TRAIN)
    _register(monkeypatch, "loc", "lightgcn-txt", ["train.txt"], [None])
    code = cli.main(["datasets", "download", "loc", "--root", str(tmp_path / "r"), "--quiet",
                     "--url", tmp_path.as_uri()])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "file://" in err
    assert not (tmp_path / "r" / "loc").exists()


@pytest.mark.parametrize("target", ["file", "ftp"])
def test_redirect_to_file_url_refused(tmp_path, monkeypatch, target):
    location = (tmp_path / "secret").as_uri() if target == "file" else "ftp://127.0.0.1/secret"

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(302)
            self.send_header("Location", location)
            self.end_headers()

        def log_message(self, *args):
            pass

    (tmp_path / "secret").write_text("0 0\n")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        _register(monkeypatch, "redir", "lightgcn-txt", ["train.txt"], [None])
        # urllib itself refuses file:// targets; check_url covers ftp:// and the rest
        with pytest.raises((ValueError, OSError), match=f"{target}://"):
            download("redir", root=tmp_path / "r", url=f"http://127.0.0.1:{httpd.server_address[1]}/",
                     progress=False)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert _leftovers(tmp_path / "r" / "redir") == []


def test_custom_url_unverified_unless_sha256(server, tmp_path, monkeypatch, capsys):
    www, url = server
    (www / "train.txt").write_text(TRAIN)
    _register(monkeypatch, "mirror", "lightgcn-txt", ["train.txt"], [None])
    root = tmp_path / "r"
    # no --sha256: downloaded, reported unverified (with the computed hash)
    assert cli.main(["datasets", "download", "mirror", "--root", str(root), "--quiet",
                     "--url", url]) == 0
    out = capsys.readouterr().out
    assert "mirror/train.txt: UNVERIFIED (custom --url without --sha256)" in out and _sha(TRAIN) in out
    assert json.loads((root / "mirror" / CHECKSUMS).read_text())["verified"] == {"train.txt": False}
    before = _snapshot(root / "mirror")
    # a wrong --sha256: refused with a one-line error, cache unchanged
    code = cli.main(["datasets", "download", "mirror", "--root", str(root), "--quiet", "--force",
                     "--url", url, "--sha256", "ab" * 32])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"expected {'ab' * 32}, actual {_sha(TRAIN)}" in err and "mirror/train.txt" in err
    assert _snapshot(root / "mirror") == before
    # the right one (bare HEX or FILE=HEX): verified
    for given in (_sha(TRAIN).upper(), f"train.txt={_sha(TRAIN)}"):
        assert cli.main(["datasets", "download", "mirror", "--root", str(root), "--quiet",
                         "--force", "--url", url, "--sha256", given]) == 0
        assert "mirror/train.txt: sha256 verified (--sha256)" in capsys.readouterr().out
    assert json.loads((root / "mirror" / CHECKSUMS).read_text())["verified"] == {"train.txt": True}


def test_custom_url_still_checked_against_registry_pin(server, tmp_path, monkeypatch, capsys):
    www, url = server
    (www / "train.txt").write_text(TRAIN)
    (www / "test.txt").write_text(TEST)
    _pinned(monkeypatch, "https://invalid.example/")
    download("pin", root=tmp_path, url=url, progress=False)  # a mirror with the same bytes
    assert capsys.readouterr().out.count("verified (registry)") == 2
    (www / "test.txt").write_text("0 1\n")
    with pytest.raises(ValueError, match="does not match"):
        download("pin", root=tmp_path, url=url, force=True, progress=False)
    # --sha256 overrides the pin for the file it names
    download("pin", root=tmp_path, url=url, force=True, progress=False,
             sha256={"test.txt": _sha("0 1\n")})
    assert "pin/test.txt: sha256 verified (--sha256)" in capsys.readouterr().out


def test_bad_sha256_arguments(tmp_path, monkeypatch):
    _pinned(monkeypatch, "https://invalid.example/")
    with pytest.raises(ValueError, match="has 2 files"):
        download("pin", root=tmp_path, sha256="0" * 64)
    with pytest.raises(ValueError, match="not a file of this data set"):
        download("pin", root=tmp_path, sha256=["other.txt=" + "0" * 64])
    with pytest.raises(ValueError, match="not a 64-digit hex"):
        download("pin", root=tmp_path, sha256=["train.txt=xyz"])
    assert not (tmp_path / "pin").exists()

r"""Fetch registered public data sets (:data:`graphforget.data.registry.DATASETS`) with the
standard library only.

Each file is streamed to a hidden temporary file in the data set's folder while its sha256 is
computed, checked against the registry, and only then renamed into place (``os.replace``,
atomic), so an interrupted or corrupted download never leaves a file that looks complete.
``.zip`` archives are unpacked next to themselves (members escaping the folder are refused).

Checksums: the registry records ``None`` where no sha256 is published (GroupLens publishes
only MD5 and GitHub raw files none). For those, :func:`download` prints the sha256 it computed
("trust on first use"). After every download the sha256 of every file in the folder (archives
and unpacked files) is written to ``checksums.json``, written last; ``load_dataset`` verifies
the files against it on every load, and a folder without it counts as not downloaded.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Optional

from .registry import (CHECKSUMS, dataset_dir, get_spec, is_downloaded, verify_checksums,
                       write_checksums)

CHUNK = 1 << 20


def _fetch(url: str, dest: Path, expected: Optional[str], progress: bool) -> str:
    """Stream ``url`` to ``dest`` atomically; return its sha256 (checked when ``expected``)."""
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                resp = urllib.request.urlopen(url, timeout=60)
            except (urllib.error.URLError, OSError) as exc:
                raise OSError(f"cannot download {url}: {exc}") from None
            with resp:
                total = resp.headers.get("Content-Length")
                from tqdm.auto import tqdm

                with tqdm(total=int(total) if total else None, unit="B", unit_scale=True,
                          desc=dest.name, disable=not progress, file=sys.stderr) as bar:
                    for chunk in iter(lambda: resp.read(CHUNK), b""):
                        out.write(chunk)
                        h.update(chunk)
                        bar.update(len(chunk))
                if total is not None and out.tell() != int(total):
                    raise OSError(f"{url}: truncated download ({out.tell()} of {total} bytes)")
        digest = h.hexdigest()
        if expected is not None and digest != expected.lower():
            raise ValueError(f"{url}: sha256 {digest} does not match the expected {expected}; "
                             "the file was not kept")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return digest


def _unzip(archive: Path, folder: Path) -> None:
    """Unpack ``archive`` into ``folder`` via a temporary folder; refuse escaping members."""
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        archive.unlink(missing_ok=True)
        raise ValueError(f"{archive}: not a valid zip archive (removed)") from None
    root = folder.resolve()
    with zf:
        for member in zf.namelist():
            target = (folder / member).resolve()
            if member.startswith("/") or (target != root and root not in target.parents):
                raise ValueError(f"{archive}: member {member!r} would extract outside {folder}")
        staging = Path(tempfile.mkdtemp(dir=folder, prefix=".extract-"))
        try:
            zf.extractall(staging)
            for entry in staging.iterdir():
                final = folder / entry.name
                if final.is_dir() and not final.is_symlink():
                    shutil.rmtree(final)
                elif final.exists():
                    final.unlink()
                os.replace(entry, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def download(name: str, root: Optional[str | os.PathLike] = None, url: Optional[str] = None,
             force: bool = False, progress: bool = True) -> Path:
    """Download a registered data set into ``data_root(root) / name`` and return that folder.

    Args:
        name: a key of :data:`~graphforget.data.registry.DATASETS`.
        root: data root (default ``$GRAPHFORGET_DATA`` or ``~/.cache/graphforget``).
        url: replaces the registered base URL: file ``f`` is fetched from ``url + "/" + f``
            (mirrors, or a local server in tests).
        force: download again even if a complete copy is present.
        progress: show a progress bar on stderr.

    An existing complete copy (``checksums.json`` present) is verified and returned without
    network access unless ``force``. Where the registry has no sha256 for a file, the computed
    one is printed and recorded in ``checksums.json``.

    Raises:
        ValueError: unknown name (``'demo'`` ships with the package), a sha256 mismatch (the
            file is not kept), or a corrupt archive.
        OSError: the URL cannot be fetched.
    """
    if name == "demo":
        raise ValueError("'demo' ships with the package; load it with load_dataset('demo')")
    spec = get_spec(name)
    folder = dataset_dir(name, root)
    if is_downloaded(name, root) and not force:
        verify_checksums(folder)
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CHECKSUMS).unlink(missing_ok=True)  # incomplete until written again at the end
    for fname, file_url in zip(spec.files, spec.urls(url)):
        expected = spec.sha256.get(fname)
        digest = _fetch(file_url, folder / fname, expected, progress)
        if expected is None:
            print(f"{name}/{fname}: sha256 {digest} (no published checksum; recorded in "
                  f"{folder / CHECKSUMS})")
        if fname.endswith(".zip"):
            _unzip(folder / fname, folder)
    write_checksums(folder, {"dataset": name, "urls": spec.urls(url)})
    return folder

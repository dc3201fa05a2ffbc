r"""Fetch registered public data sets (:data:`graphforget.data.registry.DATASETS`) with the
standard library only.

Only ``https://`` and ``http://`` URLs are fetched (``file://``, ``ftp://``, ``data:`` and any
other scheme are refused, also as a redirect target). Every file of a data set is streamed to a
hidden temporary file in the data set's folder while its sha256 is computed; only when *all*
files are downloaded and match their expected sha256 (and archives are checked) are they moved
into place (``os.replace``). A mismatch, an interrupted download or a bad archive removes the
temporary files and leaves the cache exactly as it was — also with ``force=True``.
``.zip`` archives are unpacked next to themselves (members escaping the folder are refused).

Checksums: the expected sha256 of a file is the one given with ``sha256=`` (CLI ``--sha256``),
else the one pinned in the registry (it also applies to a mirror given with ``url=``: a mirror
must serve the same bytes). A file with neither is downloaded **unverified**: :func:`download`
says so and prints the sha256 it computed ("trust on first use"). After every download the
sha256 of every file in the folder (archives and unpacked files) is written to
``checksums.json``, written last, with which files were verified; ``load_dataset`` verifies
the files against it on every load, and a folder without it counts as not downloaded.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path
from typing import Iterable, Mapping, Optional, Union

from .registry import (CHECKSUMS, dataset_dir, get_spec, is_downloaded, verify_checksums,
                       write_checksums)

CHUNK = 1 << 20
SCHEMES = ("https", "http")
Sha256Arg = Union[None, str, Mapping[str, str], Iterable[str]]


def check_url(url: str) -> None:
    """``ValueError`` unless ``url`` is an ``https://`` or ``http://`` URL with a host."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES or not parts.netloc:
        got = f"{scheme}://" if scheme else "no scheme"
        raise ValueError(f"refusing to download {url!r}: only https:// and http:// URLs are "
                         f"allowed (got {got})")


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to https:// / http:// targets."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        check_url(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_CheckedRedirects)


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text.lower())


def _user_hashes(files: tuple[str, ...], sha256: Sha256Arg) -> dict[str, str]:
    """Expected hashes given by the caller: ``HEX`` (a one-file data set), ``FILE=HEX`` items,
    or a ``{file: hex}`` mapping; ``ValueError`` for anything malformed."""
    if sha256 is None:
        return {}
    if isinstance(sha256, Mapping):
        items = list(sha256.items())
    else:
        entries = [sha256] if isinstance(sha256, str) else list(sha256)
        items = []
        for entry in entries:
            fname, sep, hexdigest = entry.rpartition("=")
            if not sep:
                if len(files) != 1:
                    raise ValueError(f"--sha256 {entry}: this data set has {len(files)} files "
                                     f"({', '.join(files)}); give FILE=HEX for each")
                fname = files[0]
            items.append((fname, hexdigest))
    out = {}
    for fname, hexdigest in items:
        if fname not in files:
            raise ValueError(f"--sha256: {fname!r} is not a file of this data set "
                             f"({', '.join(files)})")
        if not _is_sha256(hexdigest):
            raise ValueError(f"--sha256 for {fname}: {hexdigest!r} is not a 64-digit hex sha256")
        out[fname] = hexdigest.lower()
    return out


def _fetch(url: str, folder: Path, fname: str, progress: bool) -> tuple[Path, str]:
    """Stream ``url`` to a hidden temporary file in ``folder``; return (temp path, sha256).

    The caller checks the hash and moves the file into place (or removes it)."""
    check_url(url)
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{fname}.", suffix=".part")
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                resp = _OPENER.open(url, timeout=60)
            except (urllib.error.URLError, OSError) as exc:
                raise OSError(f"cannot download {url}: {exc}") from None
            with resp:
                check_url(resp.geturl())
                total = resp.headers.get("Content-Length")
                from tqdm.auto import tqdm

                with tqdm(total=int(total) if total else None, unit="B", unit_scale=True,
                          desc=fname, disable=not progress, file=sys.stderr) as bar:
                    for chunk in iter(lambda: resp.read(CHUNK), b""):
                        out.write(chunk)
                        h.update(chunk)
                        bar.update(len(chunk))
                if total is not None and out.tell() != int(total):
                    raise OSError(f"{url}: truncated download ({out.tell()} of {total} bytes)")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, h.hexdigest()


def _check_zip(archive: Path, folder: Path, fname: str) -> None:
    """``ValueError`` if ``archive`` (a downloaded temporary file) is not a zip archive or has a
    member that would extract outside ``folder``."""
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        raise ValueError(f"{folder / fname}: not a valid zip archive (discarded)") from None
    root = folder.resolve()
    with zf:
        for member in zf.namelist():
            target = (folder / member).resolve()
            if member.startswith("/") or (target != root and root not in target.parents):
                raise ValueError(f"{folder / fname}: member {member!r} would extract outside "
                                 f"{folder} (discarded)")


def _unzip(archive: Path, folder: Path) -> None:
    """Unpack ``archive`` (checked by :func:`_check_zip` before it was installed) into
    ``folder`` via a temporary folder."""
    with zipfile.ZipFile(archive) as zf:
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
             force: bool = False, progress: bool = True, sha256: Sha256Arg = None) -> Path:
    """Download a registered data set into ``data_root(root) / name`` and return that folder.

    Args:
        name: a key of :data:`~graphforget.data.registry.DATASETS`.
        root: data root (default ``$GRAPHFORGET_DATA`` or ``~/.cache/graphforget``).
        url: replaces the registered base URL: file ``f`` is fetched from ``url + "/" + f``
            (mirrors, or a local server in tests). Registry pins still apply; a file without
            one is reported unverified unless ``sha256`` gives its hash.
        force: download again even if a complete copy is present.
        progress: show a progress bar on stderr.
        sha256: expected sha256 overriding the registry's: ``"HEX"`` (one-file data sets),
            ``["FILE=HEX", ...]`` or ``{"FILE": "HEX"}``.

    Only ``https://`` / ``http://`` URLs are fetched. An existing complete copy
    (``checksums.json`` present) is verified and returned without network access unless
    ``force``. Files without an expected sha256 are downloaded but reported **unverified**
    with the sha256 computed, which is recorded in ``checksums.json``.

    Raises:
        ValueError: unknown name (``'demo'`` ships with the package), a URL that is not
            https/http, a malformed ``sha256``, a sha256 mismatch or a corrupt archive (then
            nothing downloaded is kept and the cache is left as it was).
        OSError: the URL cannot be fetched.
    """
    if name == "demo":
        raise ValueError("'demo' ships with the package; load it with load_dataset('demo')")
    spec = get_spec(name)
    urls = spec.urls(url)
    for file_url in urls:
        check_url(file_url)
    given = _user_hashes(spec.files, sha256)
    folder = dataset_dir(name, root)
    if is_downloaded(name, root) and not force:
        verify_checksums(folder)
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    fetched: dict[str, tuple[Path, str]] = {}
    try:
        for fname, file_url in zip(spec.files, urls):
            expected = given.get(fname) or spec.sha256.get(fname)
            tmp, digest = _fetch(file_url, folder, fname, progress)
            fetched[fname] = (tmp, digest)
            if expected is not None and digest != expected.lower():
                raise ValueError(f"{name}/{fname}: sha256 does not match: expected "
                                 f"{expected.lower()}, actual {digest} (from {file_url}); "
                                 "download discarded, cache left unchanged")
            if fname.endswith(".zip"):
                _check_zip(tmp, folder, fname)
        # everything is here and checked: install (checksums.json last marks it complete)
        (folder / CHECKSUMS).unlink(missing_ok=True)
        for fname, (tmp, _) in fetched.items():
            os.replace(tmp, folder / fname)
    finally:
        for tmp, _ in fetched.values():
            tmp.unlink(missing_ok=True)
    verified = {}
    for fname, file_url in zip(spec.files, urls):
        digest = fetched[fname][1]
        source = "--sha256" if fname in given else "registry" if spec.sha256.get(fname) else None
        verified[fname] = source is not None
        if source:
            print(f"{name}/{fname}: sha256 verified ({source})")
        else:
            why = ("custom --url without --sha256" if url else
                   "no sha256 pinned in the registry; pass --sha256 to check one")
            print(f"{name}/{fname}: UNVERIFIED ({why}); sha256 {digest} recorded in "
                  f"{folder / CHECKSUMS} (trust on first use)")
        if fname.endswith(".zip"):
            _unzip(folder / fname, folder)
    write_checksums(folder, {"dataset": name, "urls": urls, "verified": verified})
    return folder

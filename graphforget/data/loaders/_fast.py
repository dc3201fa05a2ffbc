"""Vectorised parsing of interaction files: numpy over the file's bytes, no per-line Python.

The loaders first try these functions; each one either returns exactly what the reference
parser (:mod:`csv` rows, ``str.split`` / ``int`` / ``float`` per token, ``str.strip`` and a
first-appearance dict for ids) would return, or raises :class:`Fallback` when the input holds
anything whose reference semantics it does not reproduce byte for byte (quotes inside fields,
NUL or exotic white space, exponents, malformed rows, ...). The loaders then rerun the
reference parser, which also produces every error message. So the fast path never changes a
result or an error; it only skips the Python loops on well-formed files.

Building blocks:

* :func:`lines` — start / end offsets of the non-blank lines (``\\n``, ``\\r`` or ``\\r\\n``).
* :func:`digits` / :func:`decimal` — integers and decimal numbers of many fields at once, by
  digit position (at most 18 passes over the column, each vectorised over rows). A decimal
  ``m / 10**f`` with ``m < 2**53`` and ``f <= 22`` is computed as one IEEE division of two
  exactly representable numbers, which is the correctly rounded value Python's ``float`` gives.
* :func:`factorize` — contiguous ids in order of first appearance (``np.unique`` with
  ``return_index`` / ``return_inverse`` on a packed integer key; a dense first-occurrence table
  for small integer ids), raw ids decoded once per distinct id.
* :class:`FastTable` — a delimited file as field offsets ``[rows, columns]``.
* :func:`lightgcn_pairs` / :func:`id_list` — LightGCN ``train.txt`` (``user item item ...``)
  and ``user_list.txt`` / ``item_list.txt``, from the runs of non-white-space bytes.

Memory: the file's bytes, int32 offsets (files under 2 GiB) and a few column-sized arrays; no
Python object per row. pandas / pyarrow are not used.
"""
from __future__ import annotations

import codecs
import csv
from pathlib import Path
from typing import Optional

import numpy as np


class Fallback(Exception):
    """The vectorised path does not apply to this input; use the reference parser."""


#: encodings in which every ASCII byte is its own character and never part of a multi-byte
#: sequence, so separators, quotes and digits can be found on the raw bytes
ASCII_COMPATIBLE = {"utf-8", "iso8859-1", "ascii", "cp1252"}
_NL, _CR, _QUOTE = 10, 13, 34
_POW10 = np.array([float(10 ** k) for k in range(23)])  # exact doubles
#: bytes ``str.strip`` removes at either end of an ASCII id (``\\n`` / ``\\r`` never occur in one)
_ASCII_SPACE = np.zeros(256, dtype=bool)
_ASCII_SPACE[[9, 11, 12, 28, 29, 30, 31, 32]] = True


def ascii_compatible(encoding: str) -> bool:
    try:
        return codecs.lookup(encoding).name in ASCII_COMPATIBLE
    except LookupError:
        return False


def as_bytes(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8)


def offset_dtype(size: int):
    """int32 byte offsets for files under 2 GiB (half the memory), else int64."""
    return np.int32 if size < 2**31 - 1 else np.int64


def lines(buf: np.ndarray, universal: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(start, end)`` byte offsets of the non-blank lines of ``buf``.

    Lines end at ``\\n``, ``\\r`` or ``\\r\\n`` (``universal``) or at ``\\n`` only; blank lines
    (no byte between two terminators) are left out, a last line without terminator is kept.
    """
    n = buf.size
    dt = offset_dtype(n)
    if universal and bool((buf == _CR).any()):
        term = np.flatnonzero(buf <= _CR)
        term = term[(buf[term] == _NL) | (buf[term] == _CR)].astype(dt)
    else:
        term = np.flatnonzero(buf == _NL).astype(dt)
    start = np.empty(term.size + 1, dtype=dt)
    start[0] = 0
    np.add(term, 1, out=start[1:])
    end = np.empty(term.size + 1, dtype=dt)
    end[:-1] = term
    end[-1] = n
    del term
    keep = end > start
    if bool(keep.all()):
        return start, end
    return start[keep], end[keep]


def _byte_at(buf: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """``buf[pos]`` with positions past the end reading as 0."""
    if buf.size == 0:
        return np.zeros(pos.shape, dtype=np.uint8)
    out = buf[np.minimum(pos, buf.size - 1)]
    if pos.size and int(pos.max()) >= buf.size:
        out = np.where(pos < buf.size, out, 0).astype(np.uint8)
    return out


def _unsigned(buf: np.ndarray, start: np.ndarray, length: np.ndarray, max_digits: int = 18) \
        -> Optional[np.ndarray]:
    """int64 values of fields that are 1..``max_digits`` ASCII digits, else ``None``; one pass
    per digit position (in place, a uint8 gather and two int64 updates per pass)."""
    n = length.size
    lo, hi = int(length.min()), int(length.max())
    if lo < 1 or hi > max_digits:
        return None
    value = np.zeros(n, dtype=np.int64)
    pos = start.copy()
    c = np.empty(n, dtype=np.uint8)
    for j in range(hi):
        np.take(buf, pos, out=c, mode="clip")
        np.subtract(c, 48, out=c)  # digits are 0..9, every other byte wraps above 9
        if j < lo:  # every field has a digit here
            if bool((c > 9).any()):
                return None
            value *= 10
            value += c
        else:
            active = length > j
            if bool(((c > 9) & active).any()):
                return None
            np.multiply(value, 10, out=value, where=active)
            np.add(value, c, out=value, where=active)
        pos += 1
    return value


def _sign(buf: np.ndarray, start: np.ndarray, length: np.ndarray):
    """``(negative, has_sign)`` masks of fields starting with ``-`` / ``+`` (or ``None, None``
    when no field has a sign)."""
    first = buf.take(start, mode="clip") if buf.size else np.zeros(start.size, dtype=np.uint8)
    has_sign = ((first == 43) | (first == 45)) & (length > 0)
    if not bool(has_sign.any()):
        return None, None
    return first == 45, has_sign


def digits(buf: np.ndarray, start: np.ndarray, end: np.ndarray, signed: bool = False,
           canonical: bool = False) -> Optional[np.ndarray]:
    """int64 values of the fields ``buf[start:end]`` if every field is 1–18 ASCII digits
    (after one optional ``+`` / ``-`` with ``signed``), else ``None``: exactly ``int(field)``
    for such fields. With ``canonical`` a field may not start with ``0`` unless it is ``0``
    (so that value and text determine each other)."""
    length = end - start
    if length.size == 0:
        return np.zeros(0, dtype=np.int64)
    neg = None
    if signed:
        neg, has_sign = _sign(buf, start, length)
        if neg is not None:
            start = start + has_sign
            length = end - start
    if canonical and int(length.max()) > 1 and bool(
            ((buf.take(start, mode="clip") == 48) & (length > 1)).any()):
        return None
    value = _unsigned(buf, start, length)
    if value is not None and neg is not None:
        np.negative(value, out=value, where=neg)
    return value


def decimal(buf: np.ndarray, start: np.ndarray, end: np.ndarray) -> Optional[np.ndarray]:
    """float64 values of the fields, equal to ``float(field)``, if every field is a decimal
    number ``[+-](digits[.digits] | .digits)[(e|E)[+-]digits]``, else ``None``.

    A field with mantissa ``m`` (at most 15 digits, so ``m < 2**53``) and decimal exponent
    ``k`` (``|k| <= 22``, so ``10**|k|`` is an exact double) is ``m * 10**k`` or
    ``m / 10**-k``: one correctly rounded operation on exact operands, which is the correctly
    rounded value of the decimal, as ``float`` gives it. Other valid fields (rare: long
    mantissas, large exponents) are converted by ``float`` itself, once each.
    """
    length = end - start
    n = length.size
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    hi = int(length.max())
    if int(length.min()) < 1 or hi > 40:
        return None
    neg, has_sign = _sign(buf, start, length)
    body = start if neg is None else start + has_sign
    blen = end - body
    ints = _unsigned(buf, body, blen, 15)  # plain integers: exact as doubles
    if ints is not None:
        value = ints.astype(np.float64)
    else:
        value = _plain_decimal(buf, body, blen)
        if value is None:  # an exponent, or not a number: the general parser below
            return _decimal_general(buf, start, end)
    if neg is not None:
        np.negative(value, out=value, where=neg)  # "-0" is -0.0, as float gives it
    return value


def _plain_decimal(buf: np.ndarray, start: np.ndarray, length: np.ndarray) -> Optional[np.ndarray]:
    """``digits[.digits]`` / ``.digits`` fields (at most 15 digits, no sign, no exponent) as
    ``mantissa / 10**fraction_digits``; ``None`` if any field is not of that form."""
    n = length.size
    lo, hi = int(length.min()), int(length.max())
    if lo < 1 or hi > 16:
        return None
    mant = np.zeros(n, dtype=np.int64)
    ndig = np.zeros(n, dtype=np.int8)
    nfrac = np.zeros(n, dtype=np.int8)
    seen_dot = np.zeros(n, dtype=bool)
    pos = start.copy()
    c = np.empty(n, dtype=np.uint8)
    for j in range(hi):
        np.take(buf, pos, out=c, mode="clip")
        np.subtract(c, 48, out=c)  # '.' becomes 254
        digit = c <= 9
        dot = c == 254
        if j >= lo:
            active = length > j
            digit &= active
            dot &= active
            if bool((active & ~digit & ~dot).any()):
                return None
        elif not bool((digit | dot).all()):
            return None
        if bool((dot & seen_dot).any()):
            return None
        np.multiply(mant, 10, out=mant, where=digit)
        np.add(mant, c, out=mant, where=digit)
        ndig += digit
        nfrac += digit & seen_dot
        seen_dot |= dot
        pos += 1
    if int(ndig.min()) < 1 or int(ndig.max()) > 15:
        return None
    return mant.astype(np.float64) / _POW10[nfrac]


def _decimal_general(buf: np.ndarray, start: np.ndarray, end: np.ndarray) -> Optional[np.ndarray]:
    """:func:`decimal` for any field (exponents, long mantissas), one state machine pass per
    byte position."""
    length = end - start
    n = length.size
    hi = int(length.max())
    first = _byte_at(buf, start)
    neg = first == 45
    sign = neg | (first == 43)
    mant = np.zeros(n, dtype=np.int64)
    ndig = np.zeros(n, dtype=np.int64)   # mantissa digits
    nfrac = np.zeros(n, dtype=np.int64)  # of which after the dot
    seen_dot = np.zeros(n, dtype=bool)
    in_exp = np.zeros(n, dtype=bool)     # after the e / E
    exp_at = np.full(n, -2, dtype=np.int64)
    exp_neg = np.zeros(n, dtype=bool)
    exp = np.zeros(n, dtype=np.int64)
    exp_dig = np.zeros(n, dtype=np.int64)
    for j in range(hi):
        active = length > j
        if j == 0:
            active &= ~sign
        c = _byte_at(buf, start + j)
        d = c.astype(np.int64) - 48
        digit = (d >= 0) & (d <= 9) & active
        m_digit = digit & ~in_exp
        x_digit = digit & in_exp
        dot = (c == 46) & active & ~in_exp
        e = ((c == 101) | (c == 69)) & active & ~in_exp
        x_sign = ((c == 43) | (c == 45)) & active & in_exp & (exp_at == j - 1)
        ok = m_digit | x_digit | dot | e | x_sign
        if bool((active & ~ok).any()) or bool((dot & seen_dot).any()):
            return None
        keep = m_digit & (ndig < 18)
        mant = np.where(keep, mant * 10 + d, mant)
        ndig += m_digit
        nfrac += m_digit & seen_dot
        seen_dot |= dot
        exp_neg |= x_sign & (c == 45)
        keep = x_digit & (exp_dig < 6)
        exp = np.where(keep, exp * 10 + d, exp)
        exp_dig += x_digit
        exp_at = np.where(e, j, exp_at)
        in_exp |= e
    if int(ndig.min()) < 1 or bool((in_exp & (exp_dig < 1)).any()):
        return None
    k = np.where(exp_neg, -exp, exp) - nfrac
    easy = (ndig <= 15) & (np.abs(k) <= 22) & (exp_dig < 6)
    m = mant.astype(np.float64)
    kk = np.where(easy, k, 0)
    value = np.where(kk >= 0, m * _POW10[np.maximum(kk, 0)], m / _POW10[np.maximum(-kk, 0)])
    value = np.where(neg, -value, value)
    hard = np.flatnonzero(~easy)
    if hard.size:
        value[hard] = [float(x) for x in substrings(buf, start[hard], end[hard], "ascii")]
    return value


def _first_appearance(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, first_rows)``: contiguous ids of the values of ``key`` in order of first
    appearance, and the row where each id first appears."""
    n = key.size
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    kmin, kmax = int(key.min()), int(key.max())
    if kmin >= 0 and kmax < 4 * n + (1 << 16):  # small integer ids: dense first-occurrence table
        first = np.full(kmax + 1, n, dtype=np.int64)
        np.minimum.at(first, key, np.arange(n, dtype=np.int64))
        present = np.flatnonzero(first < n)
        rows = first[present]
        order = np.argsort(rows, kind="stable")
        rank = np.empty(kmax + 1, dtype=np.int64)
        rank[present[order]] = np.arange(order.size, dtype=np.int64)
        return rank[key], rows[order]
    _, rows, inverse = np.unique(key, return_index=True, return_inverse=True)
    order = np.argsort(rows, kind="stable")
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size, dtype=np.int64)
    return rank[inverse.reshape(-1)], rows[order]


def _packed_words(buf: np.ndarray, start: np.ndarray, end: np.ndarray) -> list[np.ndarray]:
    """Each field's bytes, zero-padded and packed 8 per uint64 word (big-endian)."""
    length = end - start
    n = length.size
    hi = int(length.max()) if n else 0
    lo = int(length.min()) if n else 0
    pos = start.copy()
    c = np.empty(n, dtype=np.uint8)
    eight = np.uint64(8)
    words = []
    for w in range(0, max(hi, 1), 8):
        word = np.zeros(n, dtype=np.uint64)
        for j in range(w, w + 8):
            word <<= eight
            if j < hi:
                np.take(buf, pos, out=c, mode="clip")
                if j >= lo:
                    c[length <= j] = 0
                word |= c
                pos += 1
        words.append(word)
    return words


def _key_ids(buf: np.ndarray, start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First-appearance ids of the distinct byte strings ``buf[start:end]`` (no NUL bytes)."""
    num = digits(buf, start, end, canonical=True)
    if num is not None:  # decimal ids without leading zeros: the value is the key
        return _first_appearance(num)
    words = _packed_words(buf, start, end)
    if len(words) == 1:
        return _first_appearance(words[0].view(np.int64))
    # longer ids: one 64-bit mix of the words, then a check that no two strings share a key
    mix = words[0].copy()
    for w in words[1:]:
        mix *= np.uint64(0x9E3779B97F4A7C15)
        mix ^= mix >> np.uint64(29)
        mix += w
    ids, rows = _first_appearance(mix.view(np.int64))
    rep = rows[ids]
    if all(np.array_equal(w[rep], w) for w in words):
        return ids, rows
    stacked = np.stack(words, axis=1)  # a collision (never seen): exact unique over the words
    _, rows, inverse = np.unique(stacked, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(rows, kind="stable")
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size, dtype=np.int64)
    return rank[inverse.reshape(-1)], rows[order]


def substrings(buf: np.ndarray, start: np.ndarray, end: np.ndarray, encoding: str) -> list[str]:
    """``[buf[s:e].decode(encoding) for s, e in zip(start, end)]`` with one gather and one
    decode: the pieces are joined by ``\\n`` (which no field contains) and split again."""
    k = start.size
    if k == 0:
        return []
    length = end - start
    total = int(length.sum())
    joined = np.full(total + k - 1, _NL, dtype=np.uint8)
    if total:
        piece = np.repeat(np.arange(k, dtype=np.int64), length)
        within = np.arange(total, dtype=np.int64) - (np.cumsum(length) - length)[piece]
        out_start = np.cumsum(length + 1) - (length + 1)
        joined[out_start[piece] + within] = buf[start[piece] + within]
    return joined.tobytes().decode(encoding).split("\n")


def factorize(buf: np.ndarray, start: np.ndarray, end: np.ndarray, encoding: str) \
        -> tuple[np.ndarray, list[str]]:
    """Ids in order of first appearance of the stripped raw ids ``buf[start:end]``, and the raw
    ids by internal id: exactly the reference ``dict.setdefault`` over ``str.strip(field)``.

    Raises :class:`Fallback` on an empty (or all white space) id, which is an error there.
    """
    if start.size and int((end - start).min()) == 0:
        raise Fallback("empty id")
    ids, rows = _key_ids(buf, start, end)
    s, e = start[rows], end[rows]
    names = substrings(buf, s, e, encoding)
    edge = np.concatenate([_byte_at(buf, s), _byte_at(buf, e - 1)])
    if bool(_ASCII_SPACE[edge].any() or (edge >= 128).any()):  # maybe white space to strip
        stripped = [x.strip() for x in names]  # once per distinct raw id
        if stripped != names:
            vocab: dict[str, int] = {}
            remap = np.fromiter((vocab.setdefault(x, len(vocab)) for x in stripped),
                                dtype=np.int64, count=len(stripped))
            ids, names = remap[ids], list(vocab)
    if "" in names:
        raise Fallback("empty id")
    return ids, names


class FastTable:
    """A delimited file split into fields by byte offsets; every non-blank line has the same
    number of fields. Built only when the reference :mod:`csv` reader would split the file the
    same way; otherwise the constructor raises :class:`Fallback`.

    Attributes:
        header: the stripped field names of the first line (``header=True``), else ``None``.
        width: fields per line.
        num_rows: data rows.
    """

    def __init__(self, path: Path, data: bytes, sep: str, header: bool, encoding: str,
                 quoting: bool, replace: Optional[str] = None) -> None:
        if len(sep) != 1 or ord(sep) >= 128 or sep in '\r\n"' or not ascii_compatible(encoding):
            raise Fallback("separator or encoding")
        if b"\x00" in data:
            raise Fallback("NUL byte")
        if not data.isascii():
            try:  # the reference decodes the whole file; any invalid byte is an error there
                data.decode(encoding)
            except UnicodeDecodeError:
                raise Fallback("not valid text") from None
        if replace is not None:
            if not replace.isascii() or "\r" in replace or "\n" in replace:
                raise Fallback("replace")
            if b"\r" in data:  # the reference splits at \n only here: \r must end a line
                cr = np.flatnonzero(as_bytes(data) == _CR)
                nxt = _byte_at(as_bytes(data), cr + 1)
                if not bool(((nxt == _NL) | (cr == len(data) - 1)).all()):
                    raise Fallback("replace")
            data = data.replace(replace.encode("ascii"), sep.encode("ascii"))
        self.path, self.encoding, self.data = path, encoding, data
        buf = self.buf = as_bytes(data)
        start, end = lines(buf)
        if start.size < (2 if header else 1):
            raise Fallback("no rows")
        if int((end - start).max()) > csv.field_size_limit():
            raise Fallback("long line")
        seps = np.flatnonzero(buf == ord(sep)).astype(start.dtype)
        per_line, rest = divmod(seps.size, start.size)
        seps = seps.reshape(start.size, per_line) if not rest else None
        # sorted separators dealt out per_line to each line in order: every line has exactly
        # per_line of them iff each line's first and last one lie inside it
        if seps is None or (per_line and not bool((seps[:, 0] >= start).all()
                                                   and (seps[:, -1] < end).all())):
            raise Fallback("ragged rows")  # a width error, or a quoted separator
        width = per_line + 1
        self.line_start, self.line_end = start, end
        self.seps = seps
        self.width = width
        self.quoted = quoting and b'"' in data
        if self.quoted:
            self._check_quotes(data.count(b'"'))
        self.first = 1 if header else 0
        self.num_rows = start.size - self.first
        self.header: Optional[list[str]] = None
        self.header_line = 0
        if header:
            bounds = [self.field(j, header=True) for j in range(width)]
            s, e = (np.concatenate([b[k] for b in bounds]) for k in (0, 1))
            self.header = [h.strip() for h in substrings(buf, s, e, encoding)]
            self.header_line = int(data[: int(start[0])].count(b"\n") + data[: int(start[0])].count(b"\r")
                                   - data[: int(start[0])].count(b"\r\n")) + 1

    def _bounds(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        s = self.line_start if j == 0 else self.seps[:, j - 1] + 1
        e = self.line_end if j == self.width - 1 else self.seps[:, j]
        return s, e

    def _check_quotes(self, total: int) -> None:
        """Every quote must open and close a whole field (``"..."``, no quote inside): then
        :mod:`csv` reads the field as its inner text. Anything else goes to the reference."""
        quoted_fields = 0
        for j in range(self.width):
            s, e = self._bounds(j)
            opens = (_byte_at(self.buf, s) == _QUOTE) & (e > s)
            closes = (_byte_at(self.buf, e - 1) == _QUOTE) & (e - 1 > s)
            if not np.array_equal(opens, closes):
                raise Fallback("quote")
            quoted_fields += int(opens.sum())
        if 2 * quoted_fields != total:
            raise Fallback("quote inside a field")

    def field(self, j: int, header: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Byte offsets ``(start, end)`` of column ``j`` of the data rows (or of the header)."""
        s, e = self._bounds(j)
        s, e = (s[:1], e[:1]) if header else (s[self.first:], e[self.first:])
        if self.quoted:
            q = (_byte_at(self.buf, s) == _QUOTE) & (e > s)
            s, e = s + q, e - q
        return s, e

    def ids(self, j: int) -> tuple[np.ndarray, list[str]]:
        return factorize(self.buf, *self.field(j), self.encoding)

    def numeric(self, j: int, integer: bool = False) -> np.ndarray:
        """Column ``j`` as float64 (int64 with ``integer``): the reference's ``int`` / ``float``."""
        s, e = self.field(j)
        if integer:
            out = digits(self.buf, s, e, signed=True)
            if out is not None:
                return out
            if s.size and int((e - s).max()) > 18:  # maybe a long integer int() would take
                raise Fallback("long integer")
            # else some field is no integer: the reference parses the column as floats
        out = decimal(self.buf, s, e)
        if out is None or not bool(np.isfinite(out).all()):
            raise Fallback("number")
        if integer:
            if bool((out != np.floor(out)).any()):
                raise Fallback("not an integer")
            return out.astype(np.int64)
        return out


# ------------------------------------------------------------------ LightGCN text
_BOM = b"\xef\xbb\xbf"
_LGCN_BYTES = np.zeros(256, dtype=bool)  # digits and the white space allowed between ids
_LGCN_BYTES[[9, 10, 13, 32] + list(range(48, 58))] = True
_ID_LIST_BYTES = np.zeros(256, dtype=bool)  # printable ASCII and the same white space
_ID_LIST_BYTES[[9, 10, 13] + list(range(32, 127))] = True


def _runs(mask: np.ndarray, dtype) -> tuple[np.ndarray, np.ndarray]:
    """``(start, end)`` of the maximal runs of ``True`` in ``mask``."""
    step = np.diff(mask.view(np.int8), prepend=np.int8(0), append=np.int8(0))
    return np.flatnonzero(step == 1).astype(dtype), np.flatnonzero(step == -1).astype(dtype)


def _tokens(data: bytes, allowed: np.ndarray):
    """Tokens (runs of non-white-space bytes) of an ASCII text and which of them open a line
    (lines end at ``\\n`` or ``\\r``); :class:`Fallback` for any byte outside ``allowed``."""
    if data.startswith(_BOM):  # utf-8-sig: a leading byte-order mark is ignored
        data = data[len(_BOM):]
    buf = as_bytes(data)
    if not data.isascii() or not bool(allowed[buf].all()):
        raise Fallback("characters")
    start, end = _runs(buf > 32, offset_dtype(buf.size))
    term = np.flatnonzero(buf < 32)
    term = term[(buf[term] == _NL) | (buf[term] == _CR)]
    first = np.zeros(start.size, dtype=bool)
    if start.size:
        first[0] = True
        nxt = np.searchsorted(start, term)  # the token after each line end opens a line
        first[nxt[nxt < start.size]] = True
    return buf, start, end, first


def lightgcn_pairs(data: bytes, max_id: int) -> np.ndarray:
    """Edges ``[2, m]`` (users, items) of a LightGCN text file (lines ``user item item ...``),
    in file order; :class:`Fallback` unless every byte is an ASCII digit or white space and
    every id is at most ``max_id`` (the reference raises the errors)."""
    buf, start, end, first = _tokens(data, _LGCN_BYTES)
    ids = digits(buf, start, end)
    del start, end
    if ids is None or (ids.size and int(ids.max()) > max_id):
        raise Fallback("id")
    heads = np.flatnonzero(first)
    per_line = np.diff(heads, append=ids.size) - 1  # items on each non-blank line
    out = np.empty((2, ids.size - heads.size), dtype=np.int64)
    out[0] = np.repeat(ids[heads], per_line)
    np.compress(~first, ids, out=out[1])
    return out


def id_list(data: bytes, max_id: int) -> Optional[list[str]]:
    """The raw ids of a ``user_list.txt`` / ``item_list.txt`` (``org_id remap_id`` lines, an
    optional ``org_id`` header on line 1): ``names[remap_id] = org_id`` (the last line wins),
    ``str(k)`` for a ``k`` no line names; ``None`` without any such line."""
    buf, start, end, first = _tokens(data, _ID_LIST_BYTES)
    if start.size == 0:
        return None
    last = np.ones(start.size, dtype=bool)
    last[:-1] = first[1:]
    count = np.diff(np.append(np.flatnonzero(first), start.size))
    org_s, org_e = start[first], end[first]
    keep = count >= 2
    on_line_1 = not bool(((buf[: int(start[0])] == _NL) | (buf[: int(start[0])] == _CR)).any())
    if on_line_1 and buf[int(org_s[0]):int(org_e[0])].tobytes() == b"org_id":
        keep[0] = False
    if not keep.any():
        return None
    remap = digits(buf, start[last][keep], end[last][keep])
    if remap is None or int(remap.max()) > max_id:
        raise Fallback("remap_id")
    org_s, org_e = org_s[keep], org_e[keep]
    size = int(remap.max()) + 1
    latest = np.full(size, -1, dtype=np.int64)
    np.maximum.at(latest, remap, np.arange(remap.size, dtype=np.int64))
    named = latest >= 0
    names = substrings(buf, org_s[latest[named]], org_e[latest[named]], "ascii")
    if bool(named.all()):
        return names
    out = np.arange(size).astype(str).astype(object)
    out[named] = np.array(names, dtype=object)
    return out.tolist()

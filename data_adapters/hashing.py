"""Content hashes: the keys of every cache."""
from __future__ import annotations

import hashlib
import hmac
import json
import re
from pathlib import Path
from typing import Any

from data_adapters.readers.dicom_series import parse_series_ref

__all__ = ["file_hash", "path_hash", "json_hash", "salted", "MAC_FIELD", "derived_key", "mac", "mac_matches",
           "table_mac", "seal_table", "table_is_sealed"]

_CHUNK = 1 << 20


def file_hash(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def path_hash(path: str | Path) -> str:
    """A file's hash, or for a folder (a DICOM series) the hash of its files' names and hashes; for a series
    reference ``FOLDER/@UID`` the folder's hash with the reference (conservative: any file of the folder counts)."""
    path = Path(path)
    if parse_series_ref(path):  # one series among several in a folder
        return json_hash(path_hash(path.parent), path.name)
    if not path.is_dir():
        return file_hash(path)
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    return json_hash([(p.name, file_hash(p)) for p in files])


def json_hash(*parts: Any) -> str:
    """A stable hash of JSON-serialisable parts (dict keys sorted)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def salted(key: str, value: str, length: int = 16) -> str:
    """A keyed hash (HMAC-SHA-256 under ``key``, truncated) of an identifier; empty stays empty."""
    if not value:
        return ""
    return hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest()[:length]


# -- keyed MACs: a cache or table that anyone could edit is trusted only when its MAC under the operator's key holds --
#: the Parquet key-value metadata entry that holds a table's MAC
MAC_FIELD = b"glassbox-mac"


def derived_key(secret: str, purpose: str) -> str:
    """A key for one purpose (``"cache-mac"``, ``"report-seal"``) derived from the operator's secret (HMAC-SHA-256), so
    that a MAC made for one use never verifies another and the secret itself never keys two things."""
    if not secret:
        raise ValueError("no secret to derive a key from")
    return hmac.new(secret.encode(), f"glassbox:{purpose}".encode(), hashlib.sha256).hexdigest()


def mac(key: str, data: bytes) -> str:
    """HMAC-SHA-256 of ``data`` under ``key`` (hex)."""
    return hmac.new(key.encode(), data, hashlib.sha256).hexdigest()


def mac_matches(key: str, data: bytes, expected: str | bytes | None) -> bool:
    """Whether ``expected`` is the MAC of ``data`` (compared in constant time); False when there is none."""
    if not expected:
        return False
    if isinstance(expected, bytes):
        expected = expected.decode("ascii", "replace")
    return hmac.compare_digest(mac(key, data), expected)


def table_mac(table, key: str) -> str:
    """The MAC of an Arrow table's content: column names, types and every value (numbers by their bytes, everything
    else as JSON), under ``key``. Its own metadata is left out, so the MAC can be stored there."""
    import numpy as np
    import pyarrow as pa

    h = hmac.new(key.encode(), digestmod=hashlib.sha256)
    h.update(json.dumps([table.column_names, [_type_name(t) for t in table.schema.types], table.num_rows]).encode())
    for column in table.columns:
        kind = column.type
        if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
            values = column.to_numpy()
            nulls = np.asarray(column.is_null().to_numpy(zero_copy_only=False), bool)
            h.update(np.packbits(nulls).tobytes())
            h.update(np.ascontiguousarray(np.where(nulls, 0, values) if nulls.any() else values).tobytes())
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            h.update(_string_bytes(column))
        else:
            h.update(json.dumps(column.to_pylist(), default=str, separators=(",", ":")).encode())
        h.update(b"\x00")
    return h.hexdigest()


def _string_bytes(column) -> bytes:
    """A string column as bytes without a Python object per value: its null mask, offsets and characters."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    nulls = np.asarray(arr.is_null().to_numpy(zero_copy_only=False), bool)
    arr = pc.fill_null(arr.cast(pa.large_string()), "")
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    _validity, offsets, data = arr.buffers()
    offs = np.frombuffer(offsets, dtype=np.int64)[arr.offset:arr.offset + len(arr) + 1]
    chars = data.to_pybytes()[int(offs[0]):int(offs[-1])] if data is not None and len(arr) else b""
    return np.packbits(nulls).tobytes() + (offs - offs[0]).tobytes() + chars


def _type_name(kind) -> str:
    # what a Parquet round trip keeps: list element names and large/small offsets may change, the values do not
    text = str(kind).replace("large_", "")
    return re.sub(r"<(item|element): ", "<", text)


def seal_table(table, key: str):
    """``table`` with its MAC in its schema metadata (:data:`MAC_FIELD`)."""
    meta = {k: v for k, v in (table.schema.metadata or {}).items() if k != MAC_FIELD}
    return table.replace_schema_metadata({**meta, MAC_FIELD: table_mac(table, key).encode()})


def table_is_sealed(table, key: str) -> bool:
    """Whether ``table`` carries a MAC under ``key`` that matches its content."""
    expected = (table.schema.metadata or {}).get(MAC_FIELD)
    return bool(expected) and hmac.compare_digest(table_mac(table, key).encode(), expected)

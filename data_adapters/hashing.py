"""Content hashes: the keys of every cache."""
from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

from data_adapters.readers.dicom_series import parse_series_ref

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

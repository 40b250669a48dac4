"""The cache store: every result a workspace keeps, written and read one way.

Layout::

    <root>/models/<version>/model.json (+ weights)       model versions offered by the app
    <root>/cohorts/<name>/manifest.csv (+ images)          cohorts offered by the app
    <root>/cache/cohorts/<key>.parquet                      a checked manifest (the cohort table), keyed by its bytes
    <root>/cache/predictions/<model>-<cohort>.parquet       per-case probabilities
    <root>/cache/attributions/<key[:2]>/<key>.npz           one saliency map, float32, keyed by content hashes

Cache keys are content hashes (model weights + spec, image bytes or cohort, method, parameters, target),
so an edited file never serves a stale result and a renamed one never recomputes. A cached result is exactly a
fresh one: maps are stored as float32 with a SHA-256 of their bytes and the case id beside them, tables are
checked against the cases they should cover, and an entry that fails the check (corrupt, truncated, another
case's) is recomputed with a warning in the log, never served. A digest alone would not stop someone who can
edit the cache (p → 1 − p, then a new digest): every entry also carries a keyed MAC (HMAC-SHA-256 under a key
derived from the operator's secret, :func:`integrity_key`), checked on every read; an entry whose MAC fails is
discarded, recomputed and logged. Writes are atomic (temp file + rename in the same folder); a full disk or a
read-only folder is a :class:`RecordError` naming the file (the old file stays intact, no partial file remains),
and a cache that cannot be written is used without being kept, so a read-only copy of a workspace still opens;
temp files a killed run left behind are removed by :func:`remove_orphans`. Two processes asking for the
same result compute it once: the first holds a lock file, the second waits and then reads.

Every write follows one pattern: check (read and verify), lock, re-check (another process may have written it while
we waited), compute, atomic write (:func:`cached_frame`, :func:`cached_arrays`, the map and shard stores).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from data_adapters.errors import RecordError
from data_adapters.hashing import MAC_FIELD, mac, mac_matches, seal_table, table_is_sealed
from data_adapters.records import Attribution
from workspace.keys import integrity_key

__all__ = [
    "MSG_BAD_MAC", "NUMERICS", "ORPHAN_AGE_S", "ShardStore", "arrays_mac", "atomic_write", "cached_arrays",
    "cached_frame", "digest", "discard", "keep", "lock", "read_arrays", "read_attribution", "read_frame",
    "remove_orphans", "rows_text", "write_arrays", "write_attribution", "write_failure", "write_file", "write_frame",
]

log = logging.getLogger("glassbox.cache")
#: a temp file older than this is a killed run's leftover, not a write in progress
ORPHAN_AGE_S = 600
#: how results are computed, in every cache key: float32 throughout, TF32 off on CUDA (explainers.device)
NUMERICS = "fp32"


#: what an ``OSError`` of a write means, in the operator's words
_WRITE_FAILURES = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
                   errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
                   errno.EPERM: "permission denied", errno.EFBIG: "the file is too large for the file system"}


def write_failure(path: Path, e: OSError) -> RecordError:
    """The named error for a failed write of ``path``."""
    why = _WRITE_FAILURES.get(e.errno or -1, e.strerror or str(e) or type(e).__name__)
    return RecordError(f"{path} could not be written: {why}; nothing was changed (an earlier {path.name}, if any, is "
                       "intact, and no partial file was left)")


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` to a temp file in ``path``'s folder, then rename it over ``path``: a reader sees the old file
    or the new one, never a part. A Parquet file is sealed with the cache MAC. Any ``OSError`` (full disk,
    read-only) becomes a :class:`RecordError` naming ``path``; the temp file is removed."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp" + path.suffix)
        os.close(fd)
    except OSError as e:
        raise write_failure(path, e) from e
    try:
        write(Path(tmp))
        if path.suffix == ".parquet" and MAC_FIELD not in (pq.read_schema(tmp).metadata or {}):
            pq.write_table(seal_table(pq.read_table(tmp), integrity_key()), tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise write_failure(path, e) from e
    finally:
        with contextlib.suppress(OSError):
            if os.path.exists(tmp):
                os.unlink(tmp)


def write_file(path: str | Path, data: str | bytes) -> Path:
    """Write an output file (a table, a report) atomically; a full disk or read-only folder is a named
    :class:`RecordError` and leaves any earlier file intact."""
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else data

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write)
    return path


def keep(path: Path, write: Callable[[Path], None]) -> None:
    """A cache write that may fail (full disk, read-only copy of a workspace): the result is then used without
    being kept, with a warning, never a traceback."""
    try:
        atomic_write(path, write)
    except RecordError as e:
        log.warning("%s; the result is used without being cached", e)


@contextlib.contextmanager
def lock(path: Path) -> Iterator[None]:
    """An exclusive lock for computing ``path`` (a ``.lock`` file beside it; released when the holder exits, even
    when it is killed, since the kernel drops ``flock`` locks with the process). In a folder that cannot be written
    (a read-only copy) there is nothing to lock against: the computation runs unlocked and is not kept."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path.with_name(path.name + ".lock"), "a+")
    except OSError:
        yield
        return
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def discard(path: Path, why: str) -> None:
    log.warning("cache entry %s discarded and recomputed: %s", path.name, why)
    with contextlib.suppress(OSError):  # a read-only copy keeps the bad file; it is still never served
        path.unlink()


MSG_BAD_MAC = "its keyed MAC does not match its content (edited, or written without the operator's key)"


def read_frame(path: Path, case_ids: Sequence[str] | None) -> pd.DataFrame | None:
    """A cached table, or None when missing or when it fails its check (unreadable, MAC, other cases than
    expected)."""
    if not path.is_file():
        return None
    try:
        table = pq.read_table(path)
    except Exception as e:  # noqa: BLE001 - any unreadable cache file is recomputed, whatever the reader raised
        discard(path, f"unreadable ({type(e).__name__})")
        return None
    if not table_is_sealed(table, integrity_key()):
        discard(path, MSG_BAD_MAC)
        return None
    frame = table.to_pandas()
    if case_ids is not None and ("case_id" not in frame or frame["case_id"].tolist() != list(case_ids)):
        discard(path, "its cases are not the cohort's")
        return None
    return frame


def write_frame(frame: pd.DataFrame, tmp: Path) -> None:
    pq.write_table(seal_table(pa.Table.from_pandas(frame, preserve_index=False), integrity_key()), tmp)


def cached_frame(path: Path, compute: Callable[[], pd.DataFrame], case_ids: Sequence[str] | None) -> pd.DataFrame:
    """Read ``path`` if it holds a good table for ``case_ids``; else compute it once (under a lock) and write it."""
    frame = read_frame(path, case_ids)
    if frame is not None:
        return frame
    with lock(path):
        frame = read_frame(path, case_ids)  # another process may have written it while we waited
        if frame is None:
            frame = compute()
            keep(path, lambda tmp: write_frame(frame, tmp))
    return frame


def arrays_mac(arrays: dict[str, np.ndarray]) -> str:
    """The cache MAC of named arrays (names, dtypes, shapes and bytes)."""
    parts = [json.dumps([[k, str(v.dtype), list(v.shape)] for k, v in sorted(arrays.items())]).encode()]
    parts += [np.ascontiguousarray(v).tobytes() for _, v in sorted(arrays.items())]
    return mac(integrity_key(), b"\x00".join(parts))


def read_arrays(path: Path, names: Sequence[str]) -> dict[str, np.ndarray] | None:
    """Named arrays kept in an ``.npz`` with their MAC, or None when missing or when it fails its check."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in names}
            sealed = str(z["mac"]) if "mac" in z else ""
    except Exception as e:  # noqa: BLE001 - any damaged cache file is recomputed
        discard(path, f"unreadable ({type(e).__name__})")
        return None
    if sealed != arrays_mac(arrays):
        discard(path, MSG_BAD_MAC)
        return None
    return arrays


def write_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Keep named arrays with their MAC (a failed write: used without being kept)."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays, mac=np.array(arrays_mac(arrays)))

    keep(path, write)


def cached_arrays(path: Path, names: Sequence[str], compute: Callable[[], dict[str, np.ndarray]],
                  valid: Callable[[dict[str, np.ndarray]], bool] = lambda arrays: True) -> dict[str, np.ndarray]:
    """Read ``path`` if it holds good arrays that are ``valid``; else compute them once (under a lock) and keep
    them."""
    arrays = read_arrays(path, names)
    if arrays is not None and valid(arrays):
        return arrays
    with lock(path):
        arrays = read_arrays(path, names)
        if arrays is None or not valid(arrays):
            arrays = {k: np.asarray(v) for k, v in compute().items()}
            write_arrays(path, arrays)
    return arrays


def remove_orphans(root: Path, older_than_s: float = ORPHAN_AGE_S) -> int:
        """Delete temp files under ``root`` that a killed run left (older than ``older_than_s``); returns how
        many. Younger ones may be another process's write in progress and are kept."""
        if not root.is_dir():
            return 0
        removed = 0
        now = time.time()
        for tmp in root.rglob("tmp*.tmp*"):
            with contextlib.suppress(OSError):  # gone already, or a read-only copy
                if now - tmp.stat().st_mtime > older_than_s:
                    tmp.unlink()
                    removed += 1
        return removed


class ShardStore:
    """Maps written in shards: per shard one ``.npy`` (float32, ``(n, C, *spatial)``, read memory-mapped so one map
    costs one page-in, not the shard) and one ``.json`` (per row: key, case id, digest, timing, parameters); the
    ``.json`` is written last, so a shard without one is incomplete and never read. A million maps are a thousand
    file pairs, not a million small files; the index (key → shard, row) is built from the ``.json`` files once per
    process and refreshed when a shard is added."""

    _index_cache: dict[Path, tuple[tuple, dict[str, tuple[Path, int, dict]]]] = {}

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def write(self, name: str, attributions: Sequence[Attribution], keys: Sequence[str]) -> Path:
        """Write one shard (``name`` unique within the store); returns its ``.json``."""
        array = np.stack([np.ascontiguousarray(a.array, dtype=np.float32) for a in attributions])
        rows = [{"key": k, "case_id": a.case_id, "model_hash": a.model_hash, "method": a.method, "params": a.params,
                 "target": a.target, "seconds": a.seconds, "convergence_delta": a.convergence_delta,
                 "sha256": digest(array[i])} for i, (a, k) in enumerate(zip(attributions, keys))]
        data = self.root / f"{name}.npy"
        atomic_write(data, lambda tmp: np.save(tmp, array))
        meta = self.root / f"{name}.json"
        body = {"rows": rows, "mac": mac(integrity_key(), rows_text(rows))}
        atomic_write(meta, lambda tmp: tmp.write_text(json.dumps(body)))
        return meta

    def done(self, name: str) -> bool:
        return (self.root / f"{name}.json").is_file()

    def _index(self) -> dict[str, tuple[Path, int, dict]]:
        metas = sorted(self.root.rglob("*.json")) if self.root.is_dir() else []
        stamp = tuple((str(m), m.stat().st_mtime_ns) for m in metas)
        cached = ShardStore._index_cache.get(self.root)
        if cached and cached[0] == stamp:
            return cached[1]
        index = {}
        key = integrity_key()
        for meta in metas:
            try:
                body = json.loads(meta.read_text())
                rows = body["rows"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if not mac_matches(key, rows_text(rows), body.get("mac")):
                log.warning("shard %s: %s; its maps are recomputed", meta.name, MSG_BAD_MAC)
                continue
            for r, row in enumerate(rows):
                index[row["key"]] = (meta.with_suffix(".npy"), r, row)
        ShardStore._index_cache[self.root] = (stamp, index)
        return index

    def __len__(self) -> int:
        return len(self._index())

    def read(self, key: str, case_id: str) -> Attribution | None:
        """The map stored under ``key`` for ``case_id``, checked against its digest; None when absent or damaged."""
        hit = self._index().get(key)
        if hit is None:
            return None
        path, row, meta = hit
        try:
            array = np.array(np.load(path, mmap_mode="r")[row], dtype=np.float32)
        except (OSError, ValueError, IndexError) as e:
            log.warning("shard %s unreadable (%s); the map is recomputed", path.name, type(e).__name__)
            return None
        if meta["case_id"] != case_id or digest(array) != meta["sha256"]:
            log.warning("shard %s row %d does not match its digest or case; the map is recomputed", path.name, row)
            return None
        return Attribution(case_id=case_id, model_hash=meta["model_hash"], method=meta["method"],
                           params=meta["params"], target=meta["target"], array=array, seconds=meta["seconds"],
                           convergence_delta=meta["convergence_delta"])


def rows_text(rows: list) -> bytes:
    return json.dumps(rows, sort_keys=True, separators=(",", ":"), default=str).encode()


def digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array, dtype=np.float32).tobytes()).hexdigest()


def write_attribution(path: Path, key: str, a: Attribution) -> None:
    # float32, as computed: a cache hit returns exactly what a fresh run returns
    meta = {"key": key, "case_id": a.case_id, "model_hash": a.model_hash, "method": a.method, "params": a.params,
            "target": a.target, "seconds": a.seconds, "convergence_delta": a.convergence_delta,
            "sha256": digest(a.array)}
    meta["mac"] = mac(integrity_key(), rows_text([meta]))

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, array=np.ascontiguousarray(a.array, dtype=np.float32), meta=np.array(json.dumps(meta)))

    atomic_write(path, write)


def read_attribution(path: Path, key: str, case_id: str) -> Attribution | None:
    """The cached map, or None when missing or when it fails its check (unreadable, digest, key or case id)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            array = z["array"]
    except Exception as e:  # noqa: BLE001 - a damaged file of any kind is recomputed
        discard(path, f"unreadable ({type(e).__name__})")
        return None
    if meta.get("key") != key or meta.get("case_id") != case_id:
        discard(path, "written for another case or key")
        return None
    if array.dtype != np.float32 or digest(array) != meta.get("sha256"):
        discard(path, "its content does not match its digest")
        return None
    if not mac_matches(integrity_key(), rows_text([{k: v for k, v in meta.items() if k != "mac"}]), meta.get("mac")):
        discard(path, MSG_BAD_MAC)
        return None
    return Attribution(case_id=case_id, model_hash=meta["model_hash"], method=meta["method"], params=meta["params"],
                       target=meta["target"], array=array, seconds=meta["seconds"],
                       convergence_delta=meta["convergence_delta"])

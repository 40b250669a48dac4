"""The operator's secret and the keys derived from it.

The secret (:func:`secret_path`) lives outside every workspace, so a copied workspace does not carry it; it keys the
hashed patient, study and case ids (:func:`identifier_key`) and, through a per-purpose derivation, the MACs that make
caches, cohort tables and kept reports verifiable (:func:`integrity_key`).
"""
from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path

from data_adapters.errors import InvalidInputError, RecordError
from data_adapters.hashing import derived_key

__all__ = ["SECRET_MIN_CHARS", "identifier_key", "integrity_key", "secret_path"]


def secret_path() -> Path:
    """Where the operator's secret is kept: ``$GLASSBOX_SECRET_FILE``, else ``$XDG_CONFIG_HOME/glassbox/secret``
    (default ``~/.config/glassbox/secret``)."""
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return Path(os.environ.get("GLASSBOX_SECRET_FILE") or config / "glassbox" / "secret")


#: the secret last read, by (path, modification time, size): a page asks for it on every run
_SECRET_READ: dict[tuple[str, int, int], str] = {}
SECRET_MIN_CHARS = 16


def identifier_key() -> str:
    """The secret that keys hashed patient, study and case ids (HMAC) and the integrity MACs (:func:`integrity_key`):
    :func:`secret_path`, outside every workspace, so a copied workspace does not carry it, and the same whichever
    folder a command runs from; created with owner-only permissions on first use. A secret file that is empty or
    too short is refused (an empty key would key every id with ``""``)."""
    path = secret_path()
    if not path.is_file():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".secret")  # created 0600
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
            with contextlib.suppress(FileExistsError):  # another process made it first: keep theirs
                os.link(tmp, path)
            os.unlink(tmp)
        except OSError as e:
            raise RecordError(f"the secret file {path} does not exist and could not be created ({e.strerror or e}); "
                              "set $GLASSBOX_SECRET_FILE to the operator's secret") from e
    st = path.stat()
    stamp = (str(path), st.st_mtime_ns, st.st_size)
    if stamp not in _SECRET_READ:
        try:
            text = path.read_text().strip()
        except (OSError, UnicodeDecodeError) as e:
            raise RecordError(f"the secret file {path} could not be read ({e})") from e
        if len(text) < SECRET_MIN_CHARS:
            raise InvalidInputError(f"the secret file {path} holds {len(text)} characters; it needs at least "
                                    f"{SECRET_MIN_CHARS} (delete it and Glassbox makes a new one, or write a long "
                                    "random secret into it)")
        _SECRET_READ.clear()
        _SECRET_READ[stamp] = text
    return _SECRET_READ[stamp]


def integrity_key(purpose: str = "cache-mac") -> str:
    """The key of the MACs that make caches, cohort tables and kept reports verifiable: derived from the operator's
    secret per ``purpose`` (``cache-mac``, ``report-seal``), never the secret itself."""
    return derived_key(identifier_key(), purpose)

"""The operator's settings, validated against a declared schema before anything trusts them.

What the operator decides (``DESIGN.md``, "Who decides what") reaches Glassbox through four kinds of input, and
each is checked here, with a message naming the file (or variable), the field and what it wants:

- a workspace's ``settings.json`` (:data:`SETTINGS`): ``model_roots`` and ``data_roots`` (lists of absolute
  folders: a bare string would be iterated per character and ``/`` trusted), ``allow_columns``, and
  ``operating_point`` (``rule`` ``youden`` / ``sensitivity=x`` / ``specificity=x`` with ``0 < x <= 1``, ``split``,
  or a fixed ``threshold`` in [0, 1]); a misspelt key is refused with the closest known one;
- the environment ``glassbox serve`` sets (:func:`operator_roots`, :func:`check_environment`):
  ``$GLASSBOX_MODEL_ROOTS``, ``$GLASSBOX_DATA_ROOTS`` (absolute folders),
  ``$GLASSBOX_BOARD_K`` (an integer ≥ 2), ``$GLASSBOX_AUTH``;
- the secret file that keys hashed identifiers (``workspace.store.identifier_key``): an empty or short one is
  refused, never used to key ids with ``""``;
- the users file (checked by ``workspace.access.Users`` when opened).

:func:`check_operator` runs every check at start (the app calls it on each run, before anything is shown).
"""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

from data_adapters.errors import InvalidInputError
from data_adapters.schema import Folder, ListOf, Num, Obj, Str, read_json, roots

__all__ = ["SETTINGS", "SETTINGS_NAME", "Settings", "load_settings", "operator_roots", "check_environment",
           "check_operator", "board_k_from", "check_rule", "safe_file_stem"]

SETTINGS_NAME = "settings.json"
_RULE = re.compile(r"(sensitivity|specificity)=(.+)")


def check_rule(rule: str, path: str = "operating_point.rule") -> str:
    """``youden``, or ``sensitivity=x`` / ``specificity=x`` with ``0 < x <= 1``; anything else refused by name
    (``sensitivity=2`` would otherwise pick the first threshold of the curve, silently)."""
    if rule == "youden":
        return rule
    m = _RULE.fullmatch(rule)
    if not m:
        raise InvalidInputError(f"{path} {rule!r} is not a threshold rule: give 'youden', 'sensitivity=0.9' or "
                                "'specificity=0.9'")
    try:
        target = float(m.group(2))
    except ValueError:
        target = float("nan")
    if not 0 < target <= 1:
        raise InvalidInputError(f"{path} {rule!r}: the target {m.group(1)} must be a number in (0, 1], got "
                                f"{m.group(2)!r}")
    return rule


def _operating_point(value: dict, path: str) -> None:
    if "threshold" in value and ({"rule", "split"} & set(value)):
        raise InvalidInputError(f"{path}: give either a fixed 'threshold' or a 'rule' (with its 'split'), not both")


#: ``settings.json``
SETTINGS = Obj({
    "model_roots": roots(),
    "data_roots": roots(),
    "allow_columns": ListOf(Str(), "a list of column names", unique=True),
    "operating_point": Obj({
        "rule": Str(check=lambda v, p: check_rule(v, p)),
        "split": Str(),
        "threshold": Num(lo=0, hi=1),
    }, label="operating_point", when=_operating_point),
}, label=SETTINGS_NAME)


@dataclasses.dataclass(frozen=True)
class Settings:
    """A workspace's validated ``settings.json`` (every field at its default when the file is absent)."""

    source: Path
    model_roots: tuple[Path, ...] = ()
    data_roots: tuple[Path, ...] = ()
    allow_columns: tuple[str, ...] = ()
    operating_point: dict | None = None
    raw: dict = dataclasses.field(default_factory=dict, compare=False)

    def get(self, key: str, default: Any = None) -> Any:
        """The validated value of ``key`` as written (lists as lists), for callers that read a dict."""
        return self.raw.get(key, default)


def load_settings(root: str | Path) -> Settings:
    """``root/settings.json`` read (bounded: size, depth, duplicate keys) and checked against :data:`SETTINGS`;
    an :class:`InvalidInputError` naming the file and field otherwise. A missing file is every default."""
    path = Path(root) / SETTINGS_NAME
    if not path.exists():
        return Settings(source=path)
    raw = read_json(path)
    try:
        value = SETTINGS.check(raw, "")
    except InvalidInputError as e:
        raise InvalidInputError(f"{path}: {e}") from e
    return Settings(source=path, model_roots=tuple(Path(p) for p in value.get("model_roots", [])),
                    data_roots=tuple(Path(p) for p in value.get("data_roots", [])),
                    allow_columns=tuple(value.get("allow_columns", [])),
                    operating_point=value.get("operating_point"), raw=value)


def operator_roots(name: str) -> list[Path]:
    """The folders in ``$name`` (``os.pathsep``-separated), each an absolute folder path and never ``/``; a
    relative or root entry is refused by name (it would trust what the working directory happens to be, or
    everything)."""
    text = os.environ.get(name, "")
    entries = [p for p in text.split(os.pathsep) if p]
    folder = Folder()
    for i, entry in enumerate(entries):
        try:
            folder.check(entry, f"${name} entry {i + 1}")
        except InvalidInputError as e:
            raise InvalidInputError(f"{e} (the operator sets it: glassbox serve)") from e
    return [Path(p) for p in entries]


def board_k_from(text: str | None) -> int:
    """``$GLASSBOX_BOARD_K`` as an integer ≥ 2 (default 10); anything else refused by name, never replaced by
    the default silently."""
    if text is None or not text.strip():
        return 10
    try:
        k = int(text.strip())
    except ValueError:
        raise InvalidInputError(f"$GLASSBOX_BOARD_K must be an integer ≥ 2 (the smallest group a board view "
                                f"shows), got {text!r}") from None
    if k < 2:
        raise InvalidInputError(f"$GLASSBOX_BOARD_K must be an integer ≥ 2 (the smallest group a board view shows), "
                                f"got {k}")
    return k


def check_environment() -> None:
    """The variables ``glassbox serve`` sets, each checked by name."""
    for name in ("GLASSBOX_MODEL_ROOTS", "GLASSBOX_DATA_ROOTS"):
        operator_roots(name)
    board_k_from(os.environ.get("GLASSBOX_BOARD_K"))
    from workspace.access import auth_mode

    auth_mode()


def check_operator(workspaces: list[Path] | None = None) -> None:
    """Every operator input checked at start: the environment, the secret, the users file, and the
    ``settings.json`` of each workspace the server offers; the first problem raised by name."""
    from workspace.access import Users, users_file
    from workspace.store import allowed_workspaces, identifier_key

    check_environment()
    identifier_key()
    if users_file().exists():
        Users().check()
    for root in workspaces if workspaces is not None else allowed_workspaces():
        load_settings(root)


_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def safe_file_stem(text: str, limit: int = 80) -> str:
    """A file name made from ``text`` (a case id, a method) that stays in the folder it is written to: only
    letters, digits, ``_`` and ``-`` (runs of anything else become one ``_``, so ``../../escape_case`` gives
    ``escape_case`` with a short hash of the original beside it, never a path), at most ``limit`` characters."""
    import hashlib

    stem = _UNSAFE.sub("_", text).strip("_")[:limit] or "case"
    if stem != text:
        stem += "-" + hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:8]
    return stem

"""The operator's settings, validated against a declared schema before anything trusts them.

What the operator decides (``DESIGN.md``, "Who decides what") reaches Glassbox through four kinds of input, and
each is checked here, with a message naming the file (or variable), the field and what it wants:

- a workspace's ``settings.json`` (:data:`SETTINGS`): ``model_roots`` and ``data_roots`` (lists of absolute
  folders: a bare string would be iterated per character and ``/`` trusted), ``allow_columns``, and
  ``operating_point`` (``rule`` ``youden`` / ``sensitivity=x`` / ``specificity=x`` with ``0 < x <= 1``, ``split``,
  or a fixed ``threshold`` in [0, 1]); a misspelt key is refused with the closest known one;
- the flags of ``glassbox serve`` (``--board-k``, ``--model-root``, ``--data-root``, ``--auth``), carried to the app
  in the environment it sets (``$GLASSBOX_BOARD_K`` an integer ≥ 2, ``$GLASSBOX_MODEL_ROOTS`` and
  ``$GLASSBOX_DATA_ROOTS`` absolute folders, ``$GLASSBOX_AUTH``), all read into one :class:`Operator` object
  (:func:`operator_settings`): every page and command reads the board's ``k`` and the roots from it, and a command's
  own ``--k`` may raise the operator's k, never lower it (:meth:`Operator.k_for`);
- the secret file that keys hashed identifiers (``workspace.keys.identifier_key``): an empty or short one is
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
           "check_operator", "Operator", "operator_settings", "DEFAULT_BOARD_K", "check_rule", "safe_file_stem"]

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
    "cluster_column": Str(),
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


def operator_roots(name: str, environ=None) -> list[Path]:
    """The folders in ``$name`` (``os.pathsep``-separated), each an absolute folder path and never ``/``; a
    relative or root entry is refused by name (it would trust what the working directory happens to be, or
    everything)."""
    text = (os.environ if environ is None else environ).get(name, "")
    entries = [p for p in text.split(os.pathsep) if p]
    folder = Folder()
    for i, entry in enumerate(entries):
        try:
            folder.check(entry, f"${name} entry {i + 1}")
        except InvalidInputError as e:
            raise InvalidInputError(f"{e} (the operator sets it: glassbox serve)") from e
    return [Path(p) for p in entries]


#: the smallest group a board view shows when the operator sets none
DEFAULT_BOARD_K = 10
_BOARD_K_WHY = "the smallest group a board view shows"


def _board_k(text: str | int | None, source: str) -> int:
    """The board's k from ``source`` (a flag or a variable) as an integer ≥ 2 (None or blank: the default);
    anything else refused by name, never replaced by the default silently."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return DEFAULT_BOARD_K
    try:
        k = int(text.strip()) if isinstance(text, str) else int(text)
    except ValueError:
        raise InvalidInputError(f"{source} must be an integer ≥ 2 ({_BOARD_K_WHY}), got {text!r}") from None
    if k < 2:
        raise InvalidInputError(f"{source} must be an integer ≥ 2 ({_BOARD_K_WHY}), got {k}")
    return k


@dataclasses.dataclass(frozen=True)
class Operator:
    """What the operator decided for the server and the commands, in one object (``DESIGN.md``, "Who decides
    what"): ``board_k`` the smallest group a board view shows, ``model_roots`` the folders whose bundles may run
    config code, ``data_roots`` the folders images may come from, ``auth`` the sign-in mode (``""``: decided by the
    users file). Made from ``glassbox serve``'s flags (:meth:`from_flags`) or from the environment the server was
    started with (:func:`operator_settings`), each value checked by name on the way in."""

    board_k: int = DEFAULT_BOARD_K
    model_roots: tuple[Path, ...] = ()
    data_roots: tuple[Path, ...] = ()
    auth: str = ""

    @classmethod
    def from_flags(cls, *, board_k: int | None = None, model_roots=None, data_roots=None, auth: str | None = None,
                   inherit: Operator | None = None) -> Operator:
        """``glassbox serve --board-k K --model-root DIR --data-root DIR --auth MODE``, checked as the app will
        read them (a bad value refused before the server starts, naming the flag); a flag not given keeps the
        value of ``inherit`` (the operator's environment) or the default."""
        from workspace.access import AUTH_MODES

        if inherit is not None:
            board_k = inherit.board_k if board_k is None else board_k
            model_roots = inherit.model_roots if not model_roots else model_roots
            data_roots = inherit.data_roots if not data_roots else data_roots
            auth = auth or inherit.auth

        if auth and auth not in AUTH_MODES:
            raise InvalidInputError(f"--auth must be one of {', '.join(AUTH_MODES)}, not {auth!r}")
        folder = Folder()
        paths = {}
        for flag, given in (("--model-root", model_roots), ("--data-root", data_roots)):
            resolved = [Path(p).resolve() for p in given or ()]
            for p in resolved:
                folder.check(str(p), flag)
            paths[flag] = tuple(resolved)
        return cls(board_k=_board_k(board_k, "--board-k"), model_roots=paths["--model-root"],
                   data_roots=paths["--data-root"], auth=auth or "")

    def environment(self) -> dict[str, str]:
        """The variables that carry this object to the app's process (read back by :func:`operator_settings`)."""
        env = {"GLASSBOX_BOARD_K": str(self.board_k)}
        for name, given in (("GLASSBOX_MODEL_ROOTS", self.model_roots), ("GLASSBOX_DATA_ROOTS", self.data_roots)):
            if given:
                env[name] = os.pathsep.join(map(str, given))
        if self.auth:
            env["GLASSBOX_AUTH"] = self.auth
        return env

    def k_for(self, asked: int | None, flag: str = "--k") -> int:
        """The k a command or view uses: the operator's when none is asked for; an asked k may raise it, never
        lower it (refused, naming ``flag``, the operator's k and where it is set)."""
        if asked is None:
            return self.board_k
        if asked < self.board_k:
            raise InvalidInputError(f"{flag} {asked} is below the operator's k of {self.board_k} ({_BOARD_K_WHY}, "
                                    "set by glassbox serve --board-k or $GLASSBOX_BOARD_K): a command may raise k, "
                                    "never lower it")
        return int(asked)


def operator_settings(environ=None) -> Operator:
    """The operator's :class:`Operator` as the running process was started with it (``glassbox serve`` sets the
    environment; at the command line, the operator's own ``$GLASSBOX_*``), each variable checked by name."""
    from workspace.access import AUTH_MODES

    env = os.environ if environ is None else environ
    auth = env.get("GLASSBOX_AUTH", "").strip()
    if auth and auth not in AUTH_MODES:
        raise InvalidInputError(f"GLASSBOX_AUTH must be one of {', '.join(AUTH_MODES)}, not {auth!r}")
    return Operator(board_k=_board_k(env.get("GLASSBOX_BOARD_K"), "$GLASSBOX_BOARD_K"),
                    model_roots=tuple(operator_roots("GLASSBOX_MODEL_ROOTS", env)),
                    data_roots=tuple(operator_roots("GLASSBOX_DATA_ROOTS", env)), auth=auth)


def check_environment() -> None:
    """The variables ``glassbox serve`` sets, each checked by name (:func:`operator_settings`), and the sign-in
    mode they imply."""
    operator_settings()
    from workspace.access import auth_mode

    auth_mode()


def check_operator(workspaces: list[Path] | None = None) -> None:
    """Every operator input checked at start: the environment, the secret, the users file, and the
    ``settings.json`` of each workspace the server offers; the first problem raised by name."""
    from workspace.access import Users, users_file
    from workspace.keys import identifier_key
    from workspace.store import allowed_workspaces

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

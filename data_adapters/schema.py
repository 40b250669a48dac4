"""A small schema engine for the JSON files Glassbox reads (``model.json`` here; ``settings.json`` and the
operator's files in ``workspace.settings``), and the reading of such a file with its failures named.

A schema is a tree of :class:`Field` objects. ``Obj`` refuses unknown keys with the closest known one
("did you mean"), names a missing required key, and each leaf says what it wants in the user's words, so that a
message reads ``settings.json: model_roots must be a list of absolute folder paths, got "/srv/trusted"``.
Nothing is coerced silently: a string where a list is wanted is refused (``ListOf(from_string=True)`` is the one
stated exception, for free text such as a model card's limitations, where ``"none"`` becomes ``["none"]``, never
four letters).

:func:`read_json` reads a file with the bounds a resource depends on stated and enforced: its size, its nesting
depth (a file nested 100,000 deep would otherwise end in a ``RecursionError``), no duplicate keys (the second
``"model_roots"`` would silently win), no ``NaN``/``Infinity``, and the top-level kind (an array where an object
is expected).
"""
from __future__ import annotations

import difflib
import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from data_adapters.errors import InvalidInputError

__all__ = ["Field", "Str", "Num", "Bool", "ListOf", "Obj", "MapOf", "Folder", "OneOf", "Scalar", "read_json",
           "parse_json", "unknown_keys", "MAX_JSON_BYTES", "MAX_JSON_DEPTH", "MODEL_SPEC", "PREPROCESSING",
           "CARD", "roots"]

#: the largest settings or model file read (a model.json is a few kB)
MAX_JSON_BYTES = 1 << 20
#: the deepest nesting of objects and arrays a file may have (Glassbox's own files need 4)
MAX_JSON_DEPTH = 32


def _show(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


class Field:
    """One node of a schema: ``check(value, path)`` returns the value (normalised) or raises
    :class:`InvalidInputError` naming ``path``; ``describe()`` says what it wants, in words."""

    description = "a value"

    def __init__(self, description: str | None = None, *, check: Callable[[Any, str], None] | None = None) -> None:
        if description is not None:
            self.description = description
        self._extra = check

    def describe(self) -> str:
        return self.description

    def refuse(self, value: Any, path: str) -> InvalidInputError:
        return InvalidInputError(f"{path} must be {self.describe()}, got {_show(value)}")

    def check(self, value: Any, path: str) -> Any:
        value = self._check(value, path)
        if self._extra is not None:
            self._extra(value, path)
        return value

    def _check(self, value: Any, path: str) -> Any:
        return value


class Str(Field):
    """A string; ``choices`` (exact), ``pattern`` (full match), non-empty unless ``empty``."""

    def __init__(self, description: str | None = None, *, choices: Sequence[str] | None = None,
                 pattern: str | None = None, empty: bool = False, max_len: int = 10_000, **kw) -> None:
        super().__init__(description or ("a string" if empty else "a non-empty string"), **kw)
        self.choices, self.pattern, self.empty, self.max_len = choices, pattern, empty, max_len

    def _check(self, value: Any, path: str) -> Any:
        if not isinstance(value, str) or (not self.empty and not value.strip()) or len(value) > self.max_len:
            raise self.refuse(value, path)
        if self.choices is not None and value not in self.choices:
            close = difflib.get_close_matches(value, list(self.choices), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InvalidInputError(f"{path} {value!r} is not one of {tuple(self.choices)}{hint}")
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise self.refuse(value, path)
        return value


class Num(Field):
    """A JSON number (never a boolean, never a string of digits) within ``[lo, hi]`` (``open_lo``/``open_hi``
    exclude the bound); ``integer`` for whole numbers."""

    def __init__(self, description: str | None = None, *, lo: float | None = None, hi: float | None = None,
                 integer: bool = False, open_lo: bool = False, open_hi: bool = False, **kw) -> None:
        self.lo, self.hi, self.integer, self.open_lo, self.open_hi = lo, hi, integer, open_lo, open_hi
        if description is None:
            kind = "an integer" if integer else "a number"
            if lo is not None and hi is not None:
                description = f"{kind} in {'(' if open_lo else '['}{lo:g}, {hi:g}{')' if open_hi else ']'}"
            elif lo is not None:
                description = f"{kind} {'>' if open_lo else '≥'} {lo:g}"
            elif hi is not None:
                description = f"{kind} {'<' if open_hi else '≤'} {hi:g}"
            else:
                description = kind
        super().__init__(description, **kw)

    def _check(self, value: Any, path: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.refuse(value, path)
        if self.integer and not float(value).is_integer():
            raise self.refuse(value, path)
        lo_bad = self.lo is not None and (value <= self.lo if self.open_lo else value < self.lo)
        hi_bad = self.hi is not None and (value >= self.hi if self.open_hi else value > self.hi)
        if lo_bad or hi_bad:
            raise self.refuse(value, path)
        return value  # unchanged (a spec is hashed as written)


class Bool(Field):
    description = "true or false (JSON booleans, no quotes)"

    def _check(self, value: Any, path: str) -> Any:
        if not isinstance(value, bool):
            raise self.refuse(value, path)
        return value


class Scalar(Field):
    """A string, number or boolean (free text fields such as a model card's extras)."""

    description = "a string, number or boolean"

    def _check(self, value: Any, path: str) -> Any:
        if not isinstance(value, (str, int, float, bool)) or (isinstance(value, float) and not math.isfinite(value)):
            raise self.refuse(value, path)
        return value


class OneOf(Field):
    """The first of ``options`` that accepts the value; else refused with every option named."""

    def __init__(self, *options: Field, description: str | None = None, **kw) -> None:
        super().__init__(description or " or ".join(o.describe() for o in options), **kw)
        self.options = options

    def _check(self, value: Any, path: str) -> Any:
        for option in self.options:
            try:
                return option.check(value, path)
            except InvalidInputError:
                continue
        raise self.refuse(value, path)


class ListOf(Field):
    """A JSON array of ``item``, ``min_len``..``max_len`` long (``length`` for exactly). ``from_string``: a bare
    string is taken as a list of that one string (stated on the field; never split into characters)."""

    def __init__(self, item: Field, description: str | None = None, *, min_len: int = 0, max_len: int = 10_000,
                 length: int | None = None, from_string: bool = False, unique: bool = False, **kw) -> None:
        if length is not None:
            min_len = max_len = length
        if description is None:
            size = (f"{length} " if length is not None else "a non-empty " if min_len == 1 and max_len >= 10_000
                    else "a ")
            description = f"{size}list of {item.describe().removeprefix('a ').removeprefix('an ')}s" \
                if length is None else f"a list of {length}: {item.describe()} each"
        super().__init__(description, **kw)
        self.item, self.min_len, self.max_len, self.from_string, self.unique = (item, min_len, max_len, from_string,
                                                                                 unique)

    def _check(self, value: Any, path: str) -> Any:
        if self.from_string and isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not self.min_len <= len(value) <= self.max_len:
            raise self.refuse(value, path)
        out = [self.item.check(v, _join(path, i)) for i, v in enumerate(value)]
        if self.unique and len(set(map(_show, out))) != len(out):
            dup = next(v for i, v in enumerate(out) if _show(v) in map(_show, out[:i]))
            raise InvalidInputError(f"{path} lists {_show(dup)} more than once")
        return out


def unknown_keys(fields: Mapping, known: Sequence[str] | set[str] | frozenset[str], label: str) -> None:
    """Unknown keys refused with the closest known one: a misspelt ``explain_layr`` or ``model_root`` would
    otherwise be ignored silently and the default used."""
    unknown = sorted(set(fields) - set(known))
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=0.6)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise InvalidInputError(f"{label} has unknown field(s) {', '.join(hints)}; known: {sorted(known)}")


class Obj(Field):
    """A JSON object with declared ``fields``; ``required`` keys must be present; unknown keys refused with
    did-you-mean unless ``extra`` (a :class:`Field` every other value must satisfy). ``label`` names the object
    in the unknown-key message at the top level (e.g. ``model.json``). ``when`` checks across fields."""

    description = "an object"

    def __init__(self, fields: Mapping[str, Field], *, required: Sequence[str] = (), extra: Field | None = None,
                 label: str | None = None, when: Callable[[dict, str], None] | None = None,
                 description: str | None = None) -> None:
        super().__init__(description)
        self.fields, self.required, self.extra, self.label, self.when = dict(fields), tuple(required), extra, \
            label, when

    def with_fields(self, fields: Mapping[str, Field]) -> Obj:
        """This schema with more declared fields (a loader's own keys)."""
        if not fields:
            return self
        return Obj({**self.fields, **fields}, required=self.required, extra=self.extra, label=self.label,
                   when=self.when, description=self.description)

    def _check(self, value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            raise InvalidInputError(f"{path or self.label or 'the file'} must be a JSON object "
                                    f"({{\"key\": value, ...}}), got {type(value).__name__ if not isinstance(value, list) else 'an array'}")
        if self.extra is None:
            unknown_keys(value, self.fields, path or self.label or "the file")
        for key in self.required:
            if key not in value:
                raise InvalidInputError(f"missing field {_join(path, key)!r}")
        out = {}
        for key, v in value.items():
            field = self.fields.get(key, self.extra)
            out[key] = field.check(v, _join(path, key)) if field is not None else v
        if self.when is not None:
            self.when(out, path)
        return out


class MapOf(Obj):
    """An object whose keys are free (each must match ``key_pattern``) and values satisfy ``value``."""

    def __init__(self, value: Field, *, key_pattern: str = r".+", description: str | None = None) -> None:
        super().__init__({}, extra=value, description=description)
        self.key_pattern = key_pattern

    def _check(self, value: Any, path: str) -> Any:
        out = super()._check(value, path)
        for key in out:
            if not re.fullmatch(self.key_pattern, key):
                raise InvalidInputError(f"{_join(path, key)}: key {key!r} is not allowed here")
        return out


def _is_absolute(text: str) -> bool:
    return PurePosixPath(text).is_absolute() or PureWindowsPath(text).is_absolute()


class Folder(Str):
    """An absolute folder path (never relative: it would mean a different folder from each working directory;
    never the file-system root, which would trust everything). ``exists``: it must be a folder now."""

    def __init__(self, description: str = "an absolute folder path", *, exists: bool = False, **kw) -> None:
        super().__init__(description, **kw)
        self.exists = exists

    def _check(self, value: Any, path: str) -> Any:
        value = super()._check(value, path)
        if "\x00" in value or not _is_absolute(value):
            raise self.refuse(value, path)
        resolved = os.path.realpath(value)
        if Path(resolved) == Path(resolved).parent:
            raise InvalidInputError(f"{path}: {value!r} is the file-system root; name the folder that holds the "
                                    "models or data, not everything")
        if self.exists and not Path(value).is_dir():
            raise InvalidInputError(f"{path}: {value!r} is not a folder")
        return value


def roots(description: str = "a list of absolute folder paths") -> ListOf:
    """A list of trusted folders: each absolute and not ``/``; a bare string is refused (iterating it would trust
    ``/`` and every letter)."""
    return ListOf(Folder(), description, unique=True)


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} appears twice in one object")
        out[key] = value
    return out


def _depth(text: str) -> int:
    """The deepest nesting of ``[``/``{`` in JSON ``text`` (outside strings), without recursion."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def parse_json(text: str, where: str | Path, *, kind: type = dict, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """JSON ``text`` parsed with its failures named after ``where``: not JSON, nested deeper than ``max_depth``,
    a key twice in one object, ``NaN``, or a top level other than ``kind``."""
    if _depth(text) > max_depth:
        raise InvalidInputError(f"{where}: nested deeper than {max_depth} levels; Glassbox's files need a few")
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except RecursionError as e:  # defence in depth: _depth bounds it first
        raise InvalidInputError(f"{where}: nested too deeply to read") from e
    except json.JSONDecodeError as e:
        raise InvalidInputError(f"{where}: not valid JSON ({e})") from e
    except ValueError as e:
        raise InvalidInputError(f"{where}: not valid JSON ({e})") from e
    if kind is not None and not isinstance(value, kind):
        got = "an array" if isinstance(value, list) else type(value).__name__
        want = "an object ({\"key\": value, ...})" if kind is dict else kind.__name__
        raise InvalidInputError(f"{where}: must hold {want} at the top level, got {got}")
    return value


def read_json(path: str | Path, *, kind: type = dict, max_bytes: int = MAX_JSON_BYTES,
              max_depth: int = MAX_JSON_DEPTH) -> Any:
    """A JSON file read with its bounds enforced (size, depth, duplicate keys, top-level kind); every failure an
    :class:`InvalidInputError` naming the file."""
    path = Path(path)
    try:
        if not path.is_file():
            raise InvalidInputError(f"{path}: not a file")
        size = path.stat().st_size
        if size > max_bytes:
            raise InvalidInputError(f"{path}: {size} bytes; a settings or model file is at most {max_bytes} bytes")
        raw = path.read_bytes()
    except OSError as e:
        raise InvalidInputError(f"{path}: cannot be read ({e.strerror or e})") from e
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidInputError(f"{path}: not valid JSON (not UTF-8 text: {e.reason} at byte {e.start})") from e
    return parse_json(text, path, kind=kind, max_depth=max_depth)


# -- model.json -------------------------------------------------------------------------------------------------
_TASKS = ("binary", "multiclass", "multilabel")


class _Nullable(Field):
    """``inner`` or JSON ``null``."""

    def __init__(self, inner: Field) -> None:
        super().__init__(f"{inner.describe()} or null")
        self.inner = inner

    def _check(self, value: Any, path: str) -> Any:
        return None if value is None else self.inner.check(value, path)
_INTENSITIES = ("none", "minmax", "zscore", "range")
_CHANNELS = ("grey", "luminance", "rgb")


def _window(value: list, path: str) -> None:
    a_min, a_max, b_min, b_max = value
    if not a_min < a_max:
        raise InvalidInputError(f"{path} [a_min, a_max, b_min, b_max] needs a_min < a_max (the window it maps), got "
                                f"a_min={a_min:g}, a_max={a_max:g}: every pixel would map to one value")
    if b_min == b_max:
        raise InvalidInputError(f"{path} [a_min, a_max, b_min, b_max] needs b_min != b_max, got both {b_min:g}: "
                                "every pixel would map to one value")


def _spatial(value: list, path: str) -> None:
    if len(value) not in (2, 3):
        raise InvalidInputError(f"{path} must give 2 or 3 sizes (2D or 3D), got {len(value)}")


#: ``model.json``'s ``preprocessing`` (the fields of ``records.Preprocessing``; its own checks run after)
PREPROCESSING = Obj({
    "in_channels": Num(integer=True, lo=1, hi=64),
    "spatial_size": ListOf(Num(integer=True, lo=1, hi=4096), "a list of 2 or 3 integers ≥ 1", min_len=1, max_len=8,
                           check=_spatial),
    "intensity": Str(choices=_INTENSITIES),
    "intensity_range": ListOf(Num(), "a list of 4 numbers [a_min, a_max, b_min, b_max]", length=4, check=_window),
    "resize": Bool(),
    "spacing": ListOf(Num(lo=0, open_lo=True, hi=1000), "a list of positive sizes in mm", min_len=1, max_len=3),
    "channels": _Nullable(Str(choices=_CHANNELS)),
}, required=("in_channels", "spatial_size"), label="preprocessing")

#: ``model.json``'s ``card``: free text the pages show (escaped there); ``limitations`` a list ("none" → ["none"])
CARD = Obj({
    "intended_use": Str(empty=True),
    "training_data": Str(empty=True),
    "limitations": ListOf(Str(), "a list of strings (one per limitation)", from_string=True),
}, extra=OneOf(Scalar(), ListOf(Scalar()), description="a string, number, boolean or a list of them"),
    label="card")

#: ``model.json`` (a loader may read more keys: add them to :data:`MODEL_SPEC`'s fields when it registers)
MODEL_SPEC = Obj({
    "name": Str(),
    "version": OneOf(Str(), Num(), description="a string or a number"),
    "format": Str(),
    "weights": Str(),
    "network": Obj({"name": Str(), "args": MapOf(Field())}, required=("name",), label="network"),
    "task": Str(choices=_TASKS),
    "class_names": ListOf(Str(), "a list of non-empty strings, e.g. [\"no lesion\", \"lesion\"]", min_len=1,
                          max_len=1000, unique=True),
    "preprocessing": PREPROCESSING,
    "explain_layer": _Nullable(Str("a layer name (a non-empty string)")),
    "card": CARD,
    "input_format": MapOf(Field()),
}, label="model.json")

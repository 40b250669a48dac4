"""Small-cell suppression for ethics-board views and reports: one function decides which groups are hidden, and every
view asks it (tables, gap tables, banners, plot legends, counts).

A group with fewer than ``k`` cases is hidden (primary suppression). Complementary suppression then hides more, so
that no hidden group and no sum of hidden groups under ``k`` follows by arithmetic from what is shown:

- :func:`suppression` decides for one table with its total: the hidden groups are never one alone, and their sum is
  at least ``k`` (groups of 3, 4, 100 and 100 at ``k = 10``: the 3, the 4 *and* a 100 are hidden, or 7 would follow
  from the total);
- :func:`board_suppression` decides once for everything a role's views publish together: every population a board
  can open (the cohort, its labelled cases, the splits), every attribute's margin and every intersection (``site A``
  beside ``site A · sex M`` gives ``A · F`` by subtraction), each a set of *atoms* (the cells of the finest
  cross-classification). Cells are withdrawn until the audit of :mod:`evaluation.disclosure` finds no derivable small
  count (an integer program over every derivable combination) and no hidden cell pinned below ``k`` (linear
  programs). :meth:`BoardSuppression.view` then shows a group of *any* table only where its count already follows
  from that publication, so no view, page, export or report tells a reader anything the audited set does not.
"""
from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from evaluation.disclosure import Audit, audit, derivation, feasible_range, residual, row_basis, smallest_derivable_sum

__all__ = ["Suppression", "suppression", "BoardSuppression", "board_suppression", "rejections_by_reason", "MISSING"]

#: how a missing attribute value is named as a group (as :mod:`evaluation.subgroups` names it)
MISSING = "(missing)"
PRIMARY = "fewer than {k} cases"
COMPLEMENTARY = ("hidden so that no group under {k} can be derived from the other counts shown (complementary "
                 "suppression)")


@dataclasses.dataclass(frozen=True)
class Suppression:
    """``hidden``: group → why it is hidden; ``k``: the smallest group shown."""

    k: int
    hidden: Mapping[str, str]

    @property
    def note(self) -> str:
        if not self.hidden:
            return f"no group has fewer than {self.k} cases"
        primary = [g for g, why in self.hidden.items() if why.startswith("fewer") and g != "overall"]
        extra = [g for g in self.hidden if g not in primary and g != "overall"]
        text = f"{len(primary)} group(s) with fewer than {self.k} cases hidden"
        if extra:
            text += (f", and {len(extra)} more so that no group or sum of groups under {self.k} can be derived from "
                     "the totals, margins and other tables shown")
        if "overall" in self.hidden:
            text += f"; the total is hidden too ({self.hidden['overall']})"
        return text

    def shows(self, group) -> bool:
        return str(group) not in self.hidden

    def names_hidden(self, text: str) -> bool:
        """Whether ``text`` names a hidden group (as a whole word)."""
        return any(re.search(rf"(?<!\w){re.escape(g)}(?!\w)", str(text)) for g in self.hidden)

    def table(self, table: pd.DataFrame, *, group: str = "group") -> pd.DataFrame:
        """A per-group table as text, every figure of a hidden group shown as ``<k`` (the row stays, so the reader
        sees that a group exists), its notes saying why."""
        def text(v) -> str:
            if isinstance(v, (bool, np.bool_)):
                return "yes" if v else "no"
            if isinstance(v, (float, np.floating)):
                return "" if np.isnan(v) else f"{v:.3f}"
            return str(v)

        out = table.map(text)
        hide = table[group].astype(str).isin(list(self.hidden)).to_numpy()
        out.loc[hide, [c for c in out.columns if c != group]] = f"<{self.k}"
        if "notes" in out:
            out.loc[hide, "notes"] = [f"suppressed: {self.hidden[g]}" for g in table.loc[hide, group].astype(str)]
        return out

    def rows(self, frame: pd.DataFrame, columns: Iterable[str] = ()) -> pd.DataFrame:
        """The rows of ``frame`` none of whose ``columns`` is a hidden group and none of whose text cells names one
        (gap tables with their pair columns, per-case frames)."""
        keep = np.ones(len(frame), bool)
        for c in columns:
            if c in frame:
                keep &= ~frame[c].astype(str).isin(list(self.hidden)).to_numpy()
        if self.hidden:
            for c in frame.columns:
                if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c]):
                    keep &= ~frame[c].map(lambda v: isinstance(v, str) and self.names_hidden(v)).to_numpy(bool)
        return frame[keep]

    def texts(self, texts: Iterable[str]) -> list[str]:
        """The sentences (banners, flags) that name no hidden group."""
        return [t for t in texts if not self.names_hidden(t)]


def suppression(sizes: Mapping[str, int], k: int) -> Suppression:
    """Which groups one table hides, given each group's size (``overall`` excluded; the total, their sum, is taken
    as shown): every group under ``k``, then the smallest shown groups until the hidden ones are not one alone and
    sum to at least ``k`` (so neither a hidden group nor a sum of them under ``k`` follows from the total). A total
    under ``k`` hides everything. For several tables of one role, :func:`board_suppression`."""
    sizes = {str(g): int(n) for g, n in sizes.items() if str(g) != "overall"}
    k = int(k)
    hidden = {g: PRIMARY.format(k=k) for g, n in sizes.items() if n < k}
    if sum(sizes.values()) < k and sizes:
        return Suppression(k=k, hidden={**{g: PRIMARY.format(k=k) for g in sizes},
                                        "overall": PRIMARY.format(k=k)})
    while hidden and (len(hidden) == 1 or sum(sizes[g] for g in hidden) < k) and len(hidden) < len(sizes):
        n, g = min((n, g) for g, n in sizes.items() if g not in hidden)
        hidden[g] = COMPLEMENTARY.format(k=k)
    return Suppression(k=k, hidden=hidden)


def _population_key(where: Mapping[str, Iterable[str]] | None, labelled: bool) -> tuple:
    cond = tuple(sorted((str(a), tuple(sorted(map(str, v)))) for a, v in (where or {}).items()))
    return (bool(labelled), cond)


@dataclasses.dataclass(frozen=True, eq=False)
class BoardSuppression:
    """One decision for every count a role's views publish together.

    ``atoms``: the finest cross-classification (one row per observed combination of ``attributes`` and
    ``_labelled``, its size in ``n``); ``published``: the audited publication, one 0/1 row over atoms per count a
    view may show; ``audit``: what :func:`evaluation.disclosure.audit` found on it (nothing, when it is safe);
    ``primary`` and ``complementary``: how many distinct counts were withheld for each reason; ``views``: how many
    standard tables the decision was taken over.
    """

    k: int
    attributes: tuple[str, ...]
    atoms: pd.DataFrame
    published: np.ndarray
    audit: Audit
    primary: int
    complementary: int
    views: int

    @property
    def _basis(self) -> np.ndarray:
        cached = self.__dict__.get("_q")
        if cached is None:
            cached = row_basis(self.published)[0]
            object.__setattr__(self, "_q", cached)
        return cached

    def _mask(self, where: Mapping[str, Iterable[str]] | None, labelled: bool) -> np.ndarray:
        mask = np.ones(len(self.atoms), bool)
        if labelled:
            mask &= self.atoms["_labelled"].to_numpy(bool)
        for attr, values in (where or {}).items():
            if attr not in self.atoms:
                raise KeyError(attr)
            mask &= self.atoms[attr].isin([str(v) for v in values]).to_numpy()
        return mask

    def derivable(self, member: np.ndarray) -> bool:
        """Whether the count of the atoms in ``member`` (a boolean mask) follows from the publication."""
        return residual(self._basis, member) < 1e-6

    def covers(self, attributes: Iterable[str]) -> bool:
        return all(a in self.attributes for a in attributes)

    def view(self, by: str | Sequence[str], *, where: Mapping[str, Iterable[str]] | None = None,
             labelled: bool = False) -> Suppression:
        """The :class:`Suppression` of one table: groups of ``by`` (named as the tables name them, values joined by
        `` · ``) among the cases with ``where`` (attribute → values kept) and, with ``labelled``, a label. A group is
        shown only where its count follows from the audited publication; ``overall`` is hidden where the
        population's total does not."""
        by = [by] if isinstance(by, str) else list(by)
        mask = self._mask(where, labelled)
        k = self.k
        hidden: dict[str, str] = {}
        if not self.derivable(mask):
            hidden["overall"] = PRIMARY.format(k=k) if self.atoms["n"][mask].sum() < k else COMPLEMENTARY.format(k=k)
        atoms = self.atoms[mask]
        if by and len(atoms):
            for key, sub in atoms.groupby(by, sort=False):
                key = key if isinstance(key, tuple) else (key,)
                member = np.zeros(len(self.atoms), bool)
                member[sub.index.to_numpy()] = True
                if not self.derivable(member):
                    name = " · ".join(map(str, key))
                    hidden[name] = PRIMARY.format(k=k) if sub["n"].sum() < k else COMPLEMENTARY.format(k=k)
        return Suppression(k=k, hidden=hidden)

    def for_table(self, sizes: Mapping[str, int], by: str | Sequence[str], *,
                  where: Mapping[str, Iterable[str]] | None = None, labelled: bool = False) -> Suppression:
        """:meth:`view` checked against the table actually shown (``sizes``: group → n, with ``overall``): a group
        the decision does not know, or whose count differs from the audited one (another population), is hidden
        too, and so is every group under ``k``: what was not audited is not shown."""
        by = [by] if isinstance(by, str) else list(by)
        hide = self.view(by, where=where, labelled=labelled)
        mask = self._mask(where, labelled)
        known = {"overall": int(self.atoms["n"][mask].sum())}
        if by:
            known |= {" · ".join(map(str, key if isinstance(key, tuple) else (key,))): int(n)
                      for key, n in self.atoms[mask].groupby(by, sort=False)["n"].sum().items()}
        hidden = dict(hide.hidden)
        for g, n in sizes.items():
            g = str(g)
            if g not in hidden and (int(n) < self.k or known.get(g) != int(n)):
                hidden[g] = PRIMARY.format(k=self.k) if int(n) < self.k else COMPLEMENTARY.format(k=self.k)
        return Suppression(k=self.k, hidden=hidden)

    def shows_total(self, *, where: Mapping[str, Iterable[str]] | None = None, labelled: bool = False) -> bool:
        return self.derivable(self._mask(where, labelled))

    @property
    def note(self) -> str:
        return (f"one suppression decision over {self.views} tables ({len(self.attributes)} attributes: totals, "
                f"margins and two-way intersections; {self.audit.atoms} finest cells): {self.primary} count(s) under "
                f"{self.k} withheld, {self.complementary} more withheld so that none can be derived; audit: "
                + ("no small count derivable" if self.audit.safe else f"{len(self.audit.disclosures)} disclosure(s)"))


def atoms_of(frame: pd.DataFrame, attributes: Sequence[str]) -> pd.DataFrame:
    """The finest cross-classification of ``frame`` by ``attributes`` and whether a case has a label: one row per
    observed combination (values as strings, missing as ``(missing)``), its size in ``n``."""
    work = pd.DataFrame({a: frame[a].astype("string").fillna(MISSING).astype(str) for a in attributes},
                        index=frame.index)
    work["_labelled"] = frame["label"].notna().to_numpy() if "label" in frame else True
    atoms = work.groupby([*attributes, "_labelled"], sort=True).size().rename("n").reset_index()
    return atoms


def _standard_views(atoms: pd.DataFrame, attributes: Sequence[str], max_order: int):
    """(population mask, population order, by) for the tables the decision is taken over: the cohort (Home, the
    report's make-up) and its labelled cases (Subgroups, the report's performance), each grouped by every
    combination of up to ``max_order`` attributes. A split is an attribute, so "site among the test cases" is a
    cell of ``site · split``. Finer tables (three attributes, or two within one split) are shown through
    :meth:`BoardSuppression.view` only as far as the audited counts already imply."""
    n = len(atoms)
    labelled = atoms["_labelled"].to_numpy(bool)
    populations = [(np.ones(n, bool), 0)]
    if not labelled.all():
        populations.append((labelled, 1))
    subsets = [()] + [c for r in range(1, min(max_order, len(attributes)) + 1)
                      for c in itertools.combinations(attributes, r)]
    for mask, order in populations:
        for by in subsets:
            yield mask, order, list(by)


def board_suppression(frame: pd.DataFrame, attributes: Sequence[str], k: int, *, max_order: int | None = 2, base: BoardSuppression | None = None) -> BoardSuppression:
    """The suppression decision for everything a board can see of ``frame`` (cases with ``attributes``, banded
    already, and ``label``): every standard table (see :func:`_standard_views`) contributes its total and its
    groups; counts under ``k`` are withheld (primary), then (complementary) the smallest shown group of any table
    whose hidden groups are one alone or sum under ``k``, then, while :func:`evaluation.disclosure.
    smallest_derivable_sum` finds a derivable small count, the published count of the finest table that the
    derivation cannot do without; last, linear programs bound every hidden count, and one pinned below ``k``
    withdraws the smallest count that bounds it. ``base``: a decision at a smaller ``k`` whose withheld counts stay
    withheld (a board member who raises ``k`` must not see what the operator's ``k`` hid). Tables grouped by more
    than ``max_order`` attributes are not in the standard set; :meth:`BoardSuppression.view` still shows them
    safely (only what the publication already implies)."""
    attributes = [a for a in attributes if a in frame]
    k = int(k)
    atoms = atoms_of(frame, attributes)
    counts = atoms["n"].to_numpy(float)
    n_atoms = len(atoms)
    max_order = len(attributes) if max_order is None else max_order

    sets: dict[bytes, dict] = {}  # atom set (packed mask) → count, lowest order, the tables it is a cell of
    tables: list[list[bytes]] = []
    lines: dict[bytes, set[bytes]] = {}  # a cell → the cells of its tables that differ from it in one attribute
    for mask, order, by in _standard_views(atoms, attributes, max_order):
        cells = [((), mask)]
        if by:
            cells = []
            for value, rows in atoms[mask].groupby(by, sort=True).indices.items():
                m = np.zeros(n_atoms, bool)
                m[np.flatnonzero(mask)[rows]] = True
                cells.append((value if isinstance(value, tuple) else (value,), m))
        keys = []
        for value, m in cells:
            key = np.packbits(m).tobytes()
            entry = sets.setdefault(key, {"mask": m, "n": float(counts[m].sum()), "order": order + len(by),
                                          "total": not by})
            entry["order"] = min(entry["order"], order + len(by))
            entry["total"] = entry["total"] or not by
            keys.append(key)
        tables.append(keys)
        for i, (value, _) in enumerate(cells):
            for j, (other, _) in enumerate(cells):
                if i != j and sum(a != b for a, b in zip(value, other)) == 1:
                    lines.setdefault(keys[i], set()).add(keys[j])

    # cells of the finer tables (any number of attributes): never published by the decision, but their ranges are
    # checked too, since BoardSuppression.view shows such tables (every cell hidden that does not already follow)
    finer: dict[bytes, np.ndarray] = {}
    for mask, _, by in _standard_views(atoms, attributes, len(attributes)):
        if len(by) <= max_order:
            continue
        for rows in atoms[mask].groupby(by, sort=True).indices.values():
            m = np.zeros(n_atoms, bool)
            m[np.flatnonzero(mask)[rows]] = True
            key = np.packbits(m).tobytes()
            if key not in sets:
                finer[key] = m

    shown = {key: e["n"] >= k for key, e in sets.items()}
    if base is not None:  # what the smaller k withheld stays withheld
        for key, e in sets.items():
            shown[key] = shown[key] and base.derivable(e["mask"])
    primary = sum(not v for v in shown.values())

    member_of: dict[bytes, list[int]] = {}
    for t, keys in enumerate(tables):
        for key in keys:
            member_of.setdefault(key, []).append(t)

    def rank_key(key):
        """Which count to withdraw first: never a total before a group; a cell of a table that already hides one
        (suppressions kept together), then the one with most withheld cells in its lines (completing the rectangles
        of classical complementary suppression), of the finest table, the smallest count."""
        e = sets[key]
        crowded = any(not shown[g] for t in member_of[key] for g in tables[t])
        in_line = sum(not shown[g] for g in lines.get(key, ()))
        return (e["total"], not crowded, -in_line, -e["order"], e["n"])

    # complementary suppression within each table: hidden groups never one alone, never summing under k
    changed = True
    while changed:
        changed = False
        for groups in tables:
            hidden = [g for g in groups if not shown[g]]
            if hidden and (len(hidden) == 1 or sum(sets[g]["n"] for g in hidden) < k):
                rest = [g for g in groups if shown[g]]
                if rest:
                    shown[min(rest, key=lambda g: sets[g]["n"])] = False
                    changed = True

    def matrix() -> tuple[list[bytes], np.ndarray]:
        keys = [key for key, v in shown.items() if v]
        return keys, (np.array([sets[key]["mask"] for key in keys], float) if keys else np.zeros((0, n_atoms)))

    searches = ranges = 0
    passed: set[bytes] = set()  # withdrawing a count only widens ranges: a hidden count that passed stays passed
    while True:
        # exact: any derivable small count, found by the integer program, broken one withdrawal at a time
        while True:
            keys, R = matrix()
            searches += 1
            x = smallest_derivable_sum(R, counts, k)
            if x is None:
                break
            pool = [keys[i] for i in derivation(R, x)]
            shown[min(pool, key=rank_key)] = False
        # bounded: a hidden count the published ones pin below k
        keys, R = matrix()
        Q, spanning = row_basis(R)
        R_basis, b_basis = R[spanning], R[spanning] @ counts
        pinned = None
        # every atom holds at least one case, so the true counts lie inside the feasible region: a count that
        # does not follow from the publication is never pinned to one value by non-negativity alone, and a
        # finer table's hidden cell (shown as "<k" where it does not follow) needs no linear program; a count of
        # the standard tables is bounded, so that none is pinned below k
        for key, m in [(key, e["mask"]) for key, e in sets.items() if not shown[key]]:
            if key in passed or not 1 <= counts[m].sum() <= k - 1:
                continue
            low, high = feasible_range(R_basis, b_basis, m.astype(float))
            ranges += 2
            if high - low < 0.5 or high < k:
                pinned = m
                break
            passed.add(key)
        if pinned is None:
            break
        pool = [key for key in keys if (sets[key]["mask"] & pinned).any()]
        if not pool:
            break
        shown[min(pool, key=rank_key)] = False

    keys, R = matrix()
    Q, _ = row_basis(R)
    final = audit(counts, [np.flatnonzero(sets[key]["mask"]) for key in keys],
                  [np.flatnonzero(e["mask"]) for key, e in sets.items() if not shown[key]], k,
                  exact_only=[np.flatnonzero(m) for m in finer.values()
                              if residual(Q, m) >= 1e-6],
                  ranges=False)  # the loop above bounded every hidden count; the integer program runs again
    final = dataclasses.replace(final, searches=final.searches + searches, ranges=final.ranges + ranges)
    withheld = sum(not v for v in shown.values())
    return BoardSuppression(k=k, attributes=tuple(attributes), atoms=atoms, published=R, audit=final,
                            primary=primary, complementary=withheld - primary, views=len(tables))


#: what a board may read of a rejection: its field (a manifest column Glassbox defines) and a kind of reason, never the
#: value, path, case id or row number the full message names
REASON_KINDS = (
    (r"^empty case_id", "empty case id"),
    (r"^duplicate case_id", "duplicate case id"),
    (r"^label .* is a name, not a class index", "label is a class name, not an index"),
    (r"^label .* is not one of the model's classes", "label is not one of the model's classes"),
    (r"^label .* is not an integer", "label is not an integer class index"),
    (r"^label .* is outside the classes", "label is outside the classes"),
    (r"^empty image path", "empty image path"),
    (r"file not found", "file not found"),
    (r"outside the data root", "file outside the data roots"),
    (r"not a DICOM file", "not a DICOM file"),
    (r"same (series|instance) as", "duplicate DICOM series or instance"),
    (r"^mask is .*, image is", "mask size differs from the image"),
    (r"^image is .*(the model expects|most images in this cohort are)", "image shape does not fit"),
    (r"cannot be read", "file cannot be read"),
)
FIELDS = ("case_id", "image", "mask", "label")


def reason_kind(reason: str) -> str:
    """A rejection's reason as a kind that names no value: the first of :data:`REASON_KINDS` that matches, else
    "other problem"."""
    for pattern, kind in REASON_KINDS:
        if re.search(pattern, str(reason)):
            return kind
    return "other problem"


def rejections_by_reason(rejections: Iterable) -> pd.DataFrame:
    """Rejected rows as a board sees them: ``rows`` (how many), ``field`` and ``reason`` (a kind from
    :func:`reason_kind`): counts by reason only, never a case id, row number, value, path or quoted name. A field
    that is not one of Glassbox's manifest columns reads "other column"."""
    counts: dict[tuple[str, str], set] = {}
    for r in rejections:
        field = r.field if r.field in FIELDS else "other column"
        counts.setdefault((field, reason_kind(r.reason)), set()).add(r.row)
    rows = [{"rows": len(at), "field": f, "reason": why} for (f, why), at in counts.items()]
    rows.sort(key=lambda r: (-r["rows"], r["field"], r["reason"]))
    return pd.DataFrame(rows, columns=["rows", "field", "reason"])

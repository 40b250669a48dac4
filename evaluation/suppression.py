"""Small-cell suppression for ethics-board views and reports: one function decides which groups are hidden, and every
view asks it (tables, gap tables, banners, plot legends, counts).

A group with fewer than ``k`` cases is hidden (primary suppression). When exactly one group is hidden and the total is
shown, its size would follow by subtraction (``211 − 67 − 79 = 65``), so the smallest other group is hidden too
(complementary suppression), and the view says so. With two or more hidden groups only their sum can be derived.
Intersections (``sex · site``) are treated as one level of groups: their margins are not cross-checked.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

__all__ = ["Suppression", "suppression"]


@dataclasses.dataclass(frozen=True)
class Suppression:
    """``hidden``: group → why it is hidden; ``k``: the smallest group shown."""

    k: int
    hidden: Mapping[str, str]

    @property
    def note(self) -> str:
        if not self.hidden:
            return f"no group has fewer than {self.k} cases"
        primary = [g for g, why in self.hidden.items() if why.startswith("fewer")]
        extra = [g for g in self.hidden if g not in primary]
        text = f"{len(primary)} group(s) with fewer than {self.k} cases hidden"
        if extra:
            text += f", and {len(extra)} more so that a hidden group's size cannot be derived from the total"
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

    def rows(self, frame: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
        """The rows of ``frame`` none of whose ``columns`` names a hidden group (gap tables, per-case frames)."""
        keep = np.ones(len(frame), bool)
        for c in columns:
            if c in frame:
                keep &= ~frame[c].astype(str).isin(list(self.hidden)).to_numpy()
        return frame[keep]

    def texts(self, texts: Iterable[str]) -> list[str]:
        """The sentences (banners, flags) that name no hidden group."""
        return [t for t in texts if not self.names_hidden(t)]


def suppression(sizes: Mapping[str, int], k: int) -> Suppression:
    """Which groups a board view hides, given each group's size (``overall`` excluded)."""
    sizes = {str(g): int(n) for g, n in sizes.items() if str(g) != "overall"}
    hidden = {g: f"fewer than {k} cases" for g, n in sizes.items() if n < k}
    if len(hidden) == 1 and len(sizes) > 1:
        n, g = min((n, g) for g, n in sizes.items() if g not in hidden)
        hidden[g] = "hidden so that another group's size cannot be derived from the total (complementary suppression)"
    return Suppression(k=int(k), hidden=hidden)

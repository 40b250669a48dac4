"""The gates and checks behind every exit code of the ``glassbox`` command, as :class:`Verdict` records.

A command or a page never decides an outcome: it asks one function here (or the gate's owning module) for a
:class:`~evaluation.inference.Verdict` and shows it. The command maps the Verdict's outcome to its exit code
(``pass`` 0, ``fail`` 1, ``could not judge`` 3, ``not shown`` 4; bad input is 2 before any Verdict) and prints its
reasons and error control; a page banner and a report sentence that state the same judgement read the same Verdict.

============================  ===================================================  =====================================
gate or check                 Verdict from                                         shown by
============================  ===================================================  =====================================
``subgroups --max-gap``       :meth:`ShownGaps.gate` (``GapJudgement.gate`` on      CLI exit code
                              the groups a board view shows)
subgroup gap screen           :meth:`ShownGaps.screen`                             Subgroups page banner
``compare --max-regression``  :func:`evaluation.version_comparison.               CLI exit code, Compare page banner
                              noninferiority_gate`
``monitor --alert``           :func:`drift_gate`                                   CLI exit code (1 on an alert)
``audit verify``,             :func:`integrity_verdict`                            CLI exit code
``verify-report``
``check``                     :func:`loaded_verdict`                               CLI exit code (1 when nothing loads)
``report --expect``           :func:`same_report`                                  CLI exit code
a concept's CAV accuracy      :func:`cav_gate`                                     ``glassbox tcav`` (each row's gate)
============================  ===================================================  =====================================
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence

import pandas as pd

from data_adapters.errors import InvalidInputError
from evaluation.inference import Verdict
from evaluation.suppression import MISSING
from evaluation.version_comparison import noninferiority_gate

__all__ = ["ShownGaps", "shown_gaps", "gap_limits", "ALERTS", "alert_levels", "drift_gate", "integrity_verdict",
           "loaded_verdict", "same_report", "noninferiority_gate", "margins", "cav_gate"]

#: the reason a board view that shows fewer than two groups judges no gap (no gap is computed from hidden groups)
TOO_FEW_SHOWN = "fewer than two groups are shown in the board view"
#: how a gate's reason that names a hidden group is said in a board view
HIDDEN_REASON = "a gap involving a group hidden in the board view"


def _limits(clauses: Iterable[str], metrics: Sequence[str], flag: str, example: str, what: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for clause in clauses:
        name, sep, value = clause.partition("=")
        name = name.strip()
        try:
            out[name] = float(value)
        except ValueError:
            raise InvalidInputError(f"{flag} {clause!r}: expected METRIC={what}, e.g. {example}") from None
        if not sep or name not in metrics:
            raise InvalidInputError(f"{flag} {clause!r}: metric must be one of {', '.join(metrics)}")
    return out


def gap_limits(clauses: Iterable[str], metrics: Sequence[str]) -> dict[str, float]:
    """``--max-gap METRIC=VALUE`` clauses as ``metric → limit``, each metric one of ``metrics`` (named otherwise)."""
    return _limits(clauses, metrics, "--max-gap", "sensitivity=0.1", "NUMBER")


def margins(text: str | None, metrics: Sequence[str]) -> dict[str, float]:
    """``--max-regression auroc=0.02,sensitivity=0.03`` as ``metric → non-inferiority margin``."""
    clauses = [c for c in (text or "").split(",") if c.strip()]
    return _limits(clauses, metrics, "--max-regression", "auroc=0.02", "MARGIN")


# -- subgroup gaps as a view may judge them ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ShownGaps:
    """The between-group gaps a view may judge. Without a board view (``hide`` None), the report's own. With one,
    the gaps among the groups it shows only: ``judged`` is the report re-made on their cases (no gap figure computed
    from a hidden group), and when fewer than two groups are shown nothing is judged (``unjudged``).

    ``report`` and ``judged`` are :class:`evaluation.subgroups.GapJudgement` reports (subgroup or multi-class);
    ``hide`` an :class:`evaluation.suppression.Suppression` for the table."""

    report: object
    judged: object
    hide: object | None = None
    unjudged: bool = False

    @property
    def among_shown(self) -> bool:
        """Whether the gaps are judged on the groups shown, some being hidden."""
        return self.hide is not None and self.judged is not self.report

    def flags(self) -> list[str]:
        """The gap flags the view may state (none naming a hidden group; none when nothing is judged)."""
        if self.unjudged:
            return []
        return self.hide.texts(self.judged.flags()) if self.hide is not None else self.report.flags()

    def gaps(self) -> pd.DataFrame:
        """The gaps table the view may show (no row when nothing is judged: every one came from a hidden group)."""
        if self.hide is None:
            return self.report.gaps
        if self.unjudged:
            return self.report.gaps.iloc[:0]
        return self.hide.rows(self.judged.gaps, ["higher_group", "lower_group"])

    def notes(self) -> list[tuple[str, str]]:
        """``(metric, note)`` for each gap note the view may state."""
        if self.unjudged:
            return []
        gaps = self.judged.gaps
        rows = gaps.loc[gaps["note"] != "", ["metric", "note"]]
        return [(r.metric, r.note) for r in rows.itertuples()
                if self.hide is None or not self.hide.names_hidden(r.note)]

    def judgement(self) -> str:
        """The gap judgement in one line (the command's ``judgement:``), with the error controlled."""
        if self.unjudged:
            return f"could not judge: {TOO_FEW_SHOWN}"
        if self.among_shown:
            return (f"{self.judged.judgement()} (among the groups shown; a gap involving a hidden group is not judged "
                    "in the board view)")
        return self.report.judgement()

    def screen(self) -> Verdict:
        """The gap screen a page banner states: ``fail`` when a gap the view shows has a simultaneous interval
        excluding zero (the reasons are the flags), ``pass`` when none has, ``could not judge`` when fewer than two
        groups could be compared (or are shown), ``not shown`` when every gap found involves a hidden group."""
        control = self.judged.error_control
        if self.unjudged:
            return Verdict("could not judge", [TOO_FEW_SHOWN], control)
        if not self.judged.comparable:
            return Verdict("could not judge", [self.judged.judgement().removeprefix("could not judge: ")], control)
        flags = self.flags()
        if flags:
            return Verdict("fail", flags, control)
        if self.judged.flags():
            return Verdict("not shown", ["no gap among the groups shown; a gap involving a hidden group is not shown "
                                         "in the board view"], control)
        return Verdict("pass", [self.judged.judgement()], control)

    def gate(self, limits: Mapping[str, float]) -> Verdict:
        """``--max-gap``: :meth:`GapJudgement.gate` on the gaps the view may judge; on a board view, a reason naming a
        hidden group is said as :data:`HIDDEN_REASON`, and with fewer than two groups shown, ``could not judge``."""
        if self.unjudged:
            return Verdict("could not judge", [f"{TOO_FEW_SHOWN}; no gate is judged on hidden groups"])
        verdict = self.judged.gate(dict(limits))
        return verdict if self.hide is None else _redacted(verdict, self.hide)


def _redacted(verdict: Verdict, hide) -> Verdict:
    return dataclasses.replace(
        verdict, reasons=tuple(HIDDEN_REASON if hide.names_hidden(r) else r for r in verdict.reasons),
        parts=tuple(_redacted(p, hide) for p in verdict.parts))


def shown_gaps(report, frame: pd.DataFrame, by: Sequence[str], hide=None,
               rebuild: Callable[[pd.DataFrame], object] | None = None) -> ShownGaps:
    """The gaps of ``report`` (made from ``frame``'s cases grouped by ``by``) as a view with ``hide`` may judge
    them. When the board view hides a group (besides the overall row), the report is re-made by ``rebuild`` on the
    cases of the groups shown, if at least two are; otherwise nothing is judged."""
    if hide is None or not (set(hide.hidden) - {"overall"}):
        return ShownGaps(report, report, hide)
    names = frame[list(by)].astype("string").fillna(MISSING).astype(str).agg(" · ".join, axis=1)
    shown = names.map(hide.shows).to_numpy(bool)
    if names[shown].nunique() < 2 or rebuild is None:  # no pair to judge: every gap row would name a hidden group
        return ShownGaps(report, report, hide, unjudged=True)
    return ShownGaps(report, rebuild(frame[shown]), hide)


# -- monitoring --------------------------------------------------------------------------------------------------------
#: what each ``monitor --alert`` level watches
ALERTS = {"mmd_p": "the model's feature space, per window", "site_mmd_p": "the feature space, per site",
          "attribute_p": "the attribute mix (site, scanner, sex, age)"}
#: the alert a monitor raises when none is named
DEFAULT_ALERTS = {"mmd_p": 0.01}


def alert_levels(clauses: Iterable[str]) -> dict[str, float]:
    """``--alert NAME=LEVEL`` clauses over :data:`DEFAULT_ALERTS`, each name one of :data:`ALERTS`."""
    levels = dict(DEFAULT_ALERTS)
    for clause in clauses:
        name, _, value = clause.partition("=")
        if name not in ALERTS:
            raise InvalidInputError(f"--alert {clause!r}: name must be one of {', '.join(ALERTS)}")
        try:
            levels[name] = float(value)
        except ValueError:
            raise InvalidInputError(f"--alert {clause!r}: expected NAME=LEVEL, e.g. mmd_p=0.01") from None
    return levels


def drift_gate(report, levels: Mapping[str, float]) -> Verdict:
    """``monitor --alert``: ``fail`` when a Holm-adjusted p-value of :class:`evaluation.drift.DriftReport` is under
    its level (one reason per alert name, naming the windows), else ``pass`` (reason ``no alert``)."""
    reasons = []
    for name, level in levels.items():
        if name == "mmd_p":
            hit = report.windows.loc[report.windows["mmd_p_adj"] < level, "window"].tolist()
        elif name == "site_mmd_p":
            hit = report.sites.loc[report.sites["mmd_p_adj"] < level, "window"].tolist() if len(report.sites) else []
        else:
            attrs = report.attributes
            hit = attrs.loc[attrs["p_adj"] < level, "window"].unique().tolist() if len(attrs) else []
        if hit:
            reasons.append(f"{name} < {level:g} ({ALERTS[name]}) in {', '.join(sorted(set(map(str, hit))))}")
    control = ("Holm-adjusted p-values over the windows (window × site, window × attribute) each alert watches: each "
               "alert name's family-wise false-alarm rate on a stable deployment is at most its level (measured: "
               "benchmarks/calibration/monitoring.py); several alert names together may raise it up to their sum")
    return Verdict("fail", reasons, control) if reasons else Verdict("pass", ["no alert"], control)


# -- integrity, loading, report identity ------------------------------------------------------------------------------
def integrity_verdict(ok: bool, description: str) -> Verdict:
    """``audit verify`` and ``verify-report``: ``pass`` when the check found the record (or kept report) intact,
    ``fail`` naming what changed (``description``, the check's own sentence)."""
    return Verdict("pass" if ok else "fail", [description], "every entry's hash chain (audit verify), or the kept "
                                                            "report's seal and stated sign-offs (verify-report), "
                                                            "checked in full, not sampled")


def loaded_verdict(n_loaded: int, summary: str) -> Verdict:
    """``check``: ``fail`` when no case of the cohort loaded (``summary`` the load report's line), else ``pass``."""
    return Verdict("pass" if n_loaded else "fail", [summary])


def same_report(expected: str | None, digest: str, why: str = "") -> Verdict:
    """``report --expect HASH``: ``pass`` when no hash is expected or the report made now is that one; ``fail``
    otherwise, ``why`` saying what differs."""
    if expected is None or expected == digest:
        return Verdict("pass", [f"report {digest}"])
    return Verdict("fail", [why or f"this is not report {expected[:16]}"])


# -- concepts ---------------------------------------------------------------------------------------------------------
def cav_gate(accuracy: float) -> Verdict:
    """A concept's CAV-accuracy gate (:data:`evaluation.concept_significance.GATE`): ``pass`` when the CAV tells the
    concept from random images at least :data:`~evaluation.concept_significance.MIN_CAV_ACCURACY` of the time on
    held-out images; else ``could not judge`` (its direction is noise, so its TCAV score is not judged)."""
    from evaluation.concept_significance import GATE, MIN_CAV_ACCURACY

    if accuracy >= MIN_CAV_ACCURACY:
        return Verdict("pass", [f"CAV accuracy {accuracy:.2f} ≥ {MIN_CAV_ACCURACY:.2f}"], GATE)
    return Verdict("could not judge", [f"CAV accuracy {accuracy:.2f} < {MIN_CAV_ACCURACY:.2f}: the layer cannot "
                                       "tell the concept from random images"], GATE)

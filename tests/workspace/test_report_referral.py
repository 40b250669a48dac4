"""The board report's clinical figures carry their intervals (``evaluation.referral``: Wilson, patients clustered
where known): missed positives and false alarms per 1000, and with referral the share referred, the sensitivity
among the kept cases and the missed per 1000 kept; the point figures are those the report printed before."""
from __future__ import annotations

import pytest

from workspace.access import Identity
from workspace.report import gather, render_html
from workspace.store import Workspace


@pytest.fixture(scope="module")
def report_data(demo_root):
    ws = Workspace(demo_root)
    v2 = ws.load_model(ws.model_paths()["v2"])
    cohort = ws.cohort_for(v2, ws.resolve_cohort("demo2d"))
    return gather(ws, v2, cohort, by=["scanner"], k=68, author=Identity("ops", "admin"), trust_methods=(),
                  figures=False)


@pytest.fixture(scope="module")
def clinical(report_data):
    return report_data.evidence


def _sentence(evidence) -> str:
    """What the report's checklist says for the clinical-metrics question."""
    return next(q["evidence"] for q in evidence["checklist"] if q["id"] == "clinical_metrics")


def _bracketed(value, ci):
    lo, hi = ci
    return lo <= value <= hi and lo < hi


def test_the_clinical_line_has_intervals_around_the_old_figures(clinical):
    c = clinical["performance"]["clinical"]
    assert _bracketed(c["missed_per_1000"], c["missed_per_1000_ci"])
    assert _bracketed(c["false_alarms_per_1000"], c["false_alarms_per_1000_ci"])
    # the point figures as before: (1 - sensitivity) x prevalence, (1 - specificity) x (1 - prevalence), per 1000
    # (here from the rounded sensitivity, specificity and prevalence the report also prints)
    assert c["missed_per_1000"] == pytest.approx((1 - c["sensitivity"]) * c["prevalence"] * 1000, abs=1.0)
    assert c["false_alarms_per_1000"] == pytest.approx((1 - c["specificity"]) * (1 - c["prevalence"]) * 1000,
                                                       abs=1.0)
    sentence = _sentence(clinical)
    assert f"{c['missed_per_1000']} missed cases (95% CI {c['missed_per_1000_ci'][0]}–" in sentence
    assert "false alarms (95% CI" in sentence


def test_the_referral_figures_have_intervals(clinical):
    r = clinical["performance"]["clinical"]["referral"]
    assert r is not None and r["method"] == "mc_dropout" and r["fraction"] == 0.1
    assert r["referred"] == pytest.approx(0.1, abs=0.02)  # the most uncertain 10% of the cohort
    for name in ("referred", "sensitivity_kept", "missed_per_1000_kept"):
        assert _bracketed(r[name], r[f"{name}_ci"]), name
    # the uncertain cases referred hold the hard ones: sensitivity among the kept is at least the cohort's
    assert r["sensitivity_kept"] >= clinical["performance"]["clinical"]["sensitivity"]
    assert "among the kept cases sensitivity is" in _sentence(clinical)


def test_the_rendered_report_prints_the_intervals(report_data):
    """The HTML's clinical paragraph shows each interval the evidence carries, beside its point figure."""
    html = " ".join(render_html(report_data).split())
    c = report_data.evidence["performance"]["clinical"]
    r = c["referral"]
    missed = c["missed_per_1000_ci"]
    assert f"positives would be missed</b> (95% CI {missed[0]:.1f}–{missed[1]:.1f})" in html
    alarms = c["false_alarms_per_1000_ci"]
    assert f"negatives flagged (95% CI {alarms[0]:.1f}–{alarms[1]:.1f})" in html
    referred = [round(v * 100, 1) for v in r["referred_ci"]]
    assert f"of the cases evaluated (95% CI {referred[0]}–{referred[1]}%)" in html
    kept = [round(v * 100, 1) for v in r["sensitivity_kept_ci"]]
    assert f"% of positives (95% CI {kept[0]}–{kept[1]}%)" in html
    kept_missed = r["missed_per_1000_kept_ci"]
    assert f"missed per 1000 kept (95% CI {kept_missed[0]:.1f}–{kept_missed[1]:.1f})" in html

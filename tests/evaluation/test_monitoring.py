"""Monitoring after deployment: the MMD test against a direct double sum, its false-alarm rate and power, Holm's
adjustment, and the demo's deployment year (a new scanner at site C from month 5, prevalence up from month 8, labels
for six months) with its known answers, through the workspace and the command line."""
from __future__ import annotations

import numpy as np
import pytest

from evaluation.drift import bandwidth, drivers, holm, mmd_test
from workspace.monitoring import monitor
from tests.pages.test_roles import local_auth  # noqa: F401 - the fixture


def test_mmd_is_the_double_sum():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(15, 3)), rng.normal(0.5, 1, size=(11, 3))
    sigma = 1.3
    k = lambda a, b: np.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / (2 * sigma**2))  # noqa: E731
    direct = k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()
    stat, _ = mmd_test(x, y, sigma=sigma, n_perm=10)
    assert stat == pytest.approx(direct, rel=1e-10)


def test_mmd_false_alarms_stay_near_their_level_and_a_shift_is_found():
    rng = np.random.default_rng(1)
    same = [mmd_test(rng.normal(size=(60, 4)), rng.normal(size=(60, 4)), n_perm=200, seed=s)[1] for s in range(40)]
    assert np.mean(np.array(same) < 0.05) <= 0.15  # 40 null pairs: at most 6 alarms at the 5% level
    x, y = rng.normal(size=(60, 4)), rng.normal(0.7, 1, size=(60, 4))
    assert mmd_test(x, y, n_perm=200)[1] < 0.01


def test_holm_known_answer():
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, np.nan]), [0.03, 0.06, 0.06, np.nan])


def test_the_farthest_cases_drive_the_drift():
    rng = np.random.default_rng(2)
    ref = rng.normal(size=(200, 3))
    cur = rng.normal(size=(50, 3))
    cur[7] += 9
    assert drivers(ref, cur, [f"c{i}" for i in range(50)], k=1)["case_id"].tolist() == ["c7"]
    assert bandwidth(ref) > 0


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    from data_adapters.demo.synthesis import generate_deployment_cohort

    return generate_deployment_cohort(tmp_path_factory.mktemp("dep") / "deployment", per_month=45)


def test_the_new_scanner_is_found_in_month_5_and_not_before(demo_ws, deployment):
    handle = demo_ws.load_model(demo_ws.resolve_model("v2"))
    reference = demo_ws.cohort_for(handle, demo_ws.resolve_cohort("demo2d"))
    current = demo_ws.cohort_for(handle, deployment)
    report = monitor(demo_ws, handle, reference, current)
    w = report.windows.set_index("window")
    stable, shifted = w.loc["2026-01":"2026-04"], w.loc["2026-05":]
    assert (stable["mmd_p_adj"] >= 0.01).all(), "no false alarm in the four stable months"
    assert (shifted["mmd_p_adj"] < 0.01).all()
    assert (shifted["intensity_shift_sd"] > stable["intensity_shift_sd"].max() + 0.5).all()
    first_c = report.sites[report.sites["site"] == "C"]
    assert first_c["window"].tolist() == ["2026-05"] and first_c["new_scanner"].tolist() == ["Nimbus 7"]
    assert any("site C's images differ" in a and "Nimbus 7" in a for a in report.alerts)
    # labels for six months: measured there only; the estimate follows it while nothing has shifted
    assert (w.loc["2026-07":, "labelled"] == 0).all() and w.loc["2026-07":, "accuracy"].isna().all()
    assert (abs(stable["estimated_accuracy"] - stable["accuracy"]) < 0.1).all()
    # per site: site C on its new scanner loses the accuracy it had and site A keeps (labelled months 5-6), while its
    # estimate stays high (confidently wrong); site B (occult positives v2 cannot see) is low throughout
    g = report.groups.set_index(["window", "site"])
    new_c = [g.loc[(m, "C"), "accuracy"] for m in ("2026-05", "2026-06")]
    old_c = [g.loc[(m, "C"), "accuracy"] for m in ("2026-01", "2026-02", "2026-03", "2026-04")]
    a = [g.loc[(m, "A"), "accuracy"] for m in ("2026-05", "2026-06")]
    assert max(new_c) < min(old_c) - 0.2 and max(new_c) < min(a) - 0.2
    assert min(g.loc[(m, "C"), "estimated_accuracy"] for m in ("2026-05", "2026-06")) > 0.85
    assert (g["accuracy_lo"].dropna() <= g["accuracy"].dropna()).all()
    # the referral rule set on the reference refers about its 10% while nothing has shifted
    assert (stable["referred"] <= 0.3).all() and stable["referred"].mean() <= 0.2
    # prevalence rises from month 8: more cases called positive than in the labelled stable months
    assert w.loc["2026-08":, "called_positive"].mean() > stable["called_positive"].mean() + 0.15


def test_monitor_command_exits_1_on_an_alert_and_records_it(demo_root, deployment, capsys):
    from workspace.cli import main
    from workspace.review import Record

    before = len(Record(demo_root).audit(action="monitor_run"))
    code = main(["monitor", "--workspace", str(demo_root), "--model", "v2", "--reference", "demo2d", "--current",
                 str(deployment), "--alert", "mmd_p=0.01"])
    out = capsys.readouterr()
    assert code == 1 and "ALERT: mmd_p < 0.01" in out.err and "2026-05" in out.err
    assert len(Record(demo_root).audit(action="monitor_run")) == before + 1
    assert main(["monitor", "--workspace", str(demo_root), "--model", "v2", "--reference", "demo2d", "--current",
                 str(deployment), "--alert", "mmd=0.01"]) == 2


def test_monitoring_page_shows_the_alerts_the_figure_and_the_drivers(demo_root, demo_ws, local_auth):
    from data_adapters.models import load_model
    from tests.pages.test_roles import as_role
    from workspace import jobs

    handle = demo_ws.load_model(demo_ws.resolve_model("v2"))
    reference = demo_ws.cohort_for(handle, demo_ws.resolve_cohort("demo2d"))
    current = demo_ws.cohort_for(handle, demo_ws.resolve_cohort("deployment"))
    at = as_role("pages/monitoring.py", demo_root, "developer", cohort="deployment")
    assert not at.exception and any(b.label == "Run the drift analysis" for b in at.button)
    key = (f"monitor:{load_model(demo_ws.model_paths()['v2']).weights_hash}:{reference.content_hash}:"
           f"{current.content_hash}:acquired_month:0.01")
    job = jobs.start(key, "test", lambda progress: monitor(demo_ws, handle, reference, current))
    while job.running:
        import time
        time.sleep(0.1)
    at = as_role("pages/monitoring.py", demo_root, "developer", cohort="deployment")
    assert not at.exception, at.exception
    warnings = [w.value for w in at.warning]
    assert any("site C's images differ" in w and "Nimbus 7" in w for w in warnings)
    assert not any("2026-0" + m in w and "feature space" in w for m in "1234" for w in warnings)
    assert len(at.get("plotly_chart")) == 1
    tables = [d.value for d in at.dataframe]
    assert len(tables) == 5 and tables[-1]["case_id"].str.startswith("dep-").all()  # the cases driving the drift
    assert any(b.label == "Open in Case review" for b in at.button)
    board = as_role("pages/monitoring.py", demo_root, "board", cohort="deployment")
    assert not board.exception and len(board.dataframe) == 4, "a board sees no case rows"
    jobs.forget(key)


def test_the_board_report_gains_a_monitoring_section_the_checklist_links_to(demo_ws, deployment):
    from workspace.access import Identity
    from workspace.report import gather, render_html

    handle = demo_ws.load_model(demo_ws.resolve_model("v2"))
    cohort = demo_ws.cohort_for(handle, demo_ws.resolve_cohort("demo2d"))
    current = demo_ws.cohort_for(handle, deployment)
    data = gather(demo_ws, handle, cohort, by=["site"], k=10, author=Identity("ops", "admin"), trust_methods=(),
                  figures=False, monitoring=current)
    m = data.evidence["monitoring"]
    assert m["first_alert"] == "2026-05" and any("site C" in line and "Nimbus 7" in line for line in m["sites"])
    (question,) = [q for q in data.evidence["checklist"] if q["id"] == "monitoring_plan"]
    assert "input drift from 2026-05" in question["evidence"]
    html = render_html(data)
    assert 'id="monitoring"' in html and 'href="#monitoring">(see monitoring)' in html
    plain = gather(demo_ws, handle, cohort, by=["site"], k=10, author=Identity("ops", "admin"), trust_methods=(),
                   figures=False)
    assert 'href="#checklist">(see checklist)' in render_html(plain) and "monitoring" not in plain.evidence


# -- the model's own outcome, the p-value floor, board views ------------------------------------------------------------
def _stream(n_ref=240, windows=4, per=90, n_classes=3, seed=0, shift_from=None, sites="AB", small_site=None):
    """Reference and current parts for :func:`window_report`: a perfect ``n_classes`` model (the label's class gets
    0.9), embeddings shifted by 1.5 from window ``shift_from`` on; ``small_site`` adds 8 cases of that site a window."""
    import pandas as pd

    rng = np.random.default_rng(seed)

    def part(n, shift=None, extra=0):
        labels = rng.integers(0, n_classes, n + extra)
        probs = np.full((n + extra, n_classes), 0.1 / (n_classes - 1))
        probs[np.arange(n + extra), labels] = 0.9
        site = [sites[i % len(sites)] for i in range(n)] + [small_site] * extra
        frame = pd.DataFrame({"label": pd.array(labels, dtype="Int64"), "site": site, "scanner": "S1"})
        emb = rng.normal(size=(n + extra, 6)) + (0 if shift is None else shift)
        return {"frame": frame, "embedding": emb, "probabilities": probs, "intensity": rng.random((n + extra, 4))}

    reference = part(n_ref)
    parts = [part(per, 1.5 if shift_from is not None and w >= shift_from else None, 8 if small_site else 0)
             for w in range(windows)]
    import pandas as pd
    current = {"frame": pd.concat([p["frame"] for p in parts], ignore_index=True),
               **{k: np.concatenate([p[k] for p in parts]) for k in ("embedding", "probabilities", "intensity")}}
    names = np.repeat([f"2026-0{w + 1}" for w in range(windows)], [len(p["frame"]) for p in parts])
    return reference, current, names


def test_a_perfect_three_class_model_is_monitored_at_accuracy_one():
    from evaluation.drift import window_report

    reference, current, windows = _stream(n_classes=3)
    report = window_report(reference, current, windows, class_index=None, threshold=None, n_perm=100)
    w = report.windows
    assert (w["accuracy"] == 1.0).all() and (w["estimated_accuracy"] > 0.95).all()
    assert (w["accuracy_lo"] > 0.9).all() and report.view == "top class against the label"
    assert np.allclose(w[["predicted_0", "predicted_1", "predicted_2"]].sum(axis=1), 1.0)
    # the old reading (the last class's probability against label == 1) is far from it: the test can fail
    p, y = current["probabilities"][:, 2], current["frame"]["label"].to_numpy(int)
    assert ((p >= 0.5) == (y == 1)).mean() < 0.5
    # one class one-vs-rest, on choice: that class at its threshold, sensitivity and specificity 1
    one = window_report(reference, current, windows, class_index=2, threshold=0.5, n_perm=100).windows
    assert (one["accuracy"] == 1.0).all() and (one["sensitivity"] == 1.0).all() and (one["specificity"] == 1.0).all()
    assert (one["estimated_sensitivity"] > 0.95).all()
    with pytest.raises(ValueError, match="needs its threshold"):
        window_report(reference, current, windows, class_index=1, threshold=None)


def test_permutation_p_values_never_go_below_what_the_permutations_can_show():
    from evaluation.drift import permutations_for, window_report

    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(80, 4)), rng.normal(3.0, 1, size=(80, 4))
    stat, p = mmd_test(x, y, n_perm=500)
    assert p == pytest.approx(1 / 501), "a clear shift reads 1/(B+1), not a gamma tail such as 1e-237"
    # beyond every permutation, a window is rerun with enough permutations to cross alpha after Holm
    reference, current, windows = _stream(shift_from=2, windows=4)
    report = window_report(reference, current, windows, class_index=None, threshold=None, n_perm=200, alpha=0.01)
    w = report.windows.set_index("window")
    shifted = w.loc[["2026-03", "2026-04"]]
    assert (shifted["permutations"] >= permutations_for(4, 0.01, 10, at_least=200)).all()
    assert (shifted["mmd_p"] >= 1 / (shifted["permutations"] + 1) - 1e-15).all()
    assert shifted["alert"].all() and not w.loc[["2026-01", "2026-02"], "alert"].any()
    assert (w.loc[["2026-01", "2026-02"], "permutations"] == 200).all(), "only the extreme ones are rerun"


def test_a_board_view_hides_small_sites_in_tables_and_never_names_them():
    from evaluation.drift import window_report

    reference, current, windows = _stream(shift_from=0, windows=3, sites="AB", small_site="Z")
    current["frame"].loc[current["frame"]["site"] == "Z", "scanner"] = "Rare 1"
    report = window_report(reference, current, windows, class_index=None, threshold=None, n_perm=100,
                           attributes=["site"], kinds={"site": "categorical"})
    assert "Z" in set(report.groups["site"]) and any("new: Z" in a for a in report.alerts)
    board = report.for_board(10)
    assert "Z" not in set(board.groups["site"]) and "Z" not in set(board.site_windows["site"])
    assert not any(board.hidden.names_hidden(a) for a in board.alerts) and board.alerts
    assert not any("Z" in v for v in board.attributes["new"])
    assert "hidden in every window" in board.note
    # one small site alone would follow from the window's total (shown): the next smallest is hidden with it
    assert set(board.groups["site"]) in ({"A"}, {"B"})
    assert set(report.for_board(5).groups["site"]) == {"A", "B", "Z"}, "at k = 5 nothing is hidden"


def test_the_workspace_monitors_a_three_class_model_by_its_top_class_and_one_class_on_choice(tmp_path, monkeypatch):
    import types

    import pandas as pd

    from tests.helpers import TinyCNN, handle_for
    from workspace import monitoring
    from workspace.store import Workspace

    reference, current, windows = _stream(n_classes=3, windows=2)
    current["frame"]["acquired_month"] = windows
    parts = {"reference": reference, "current": current}

    for name, part in parts.items():
        part["frame"]["case_id"] = [f"{name}{i}" for i in range(len(part["frame"]))]

    monkeypatch.setattr(monitoring, "embeddings", lambda ws, handle, cohort, *, progress=None: parts[cohort.name])

    class Given(Workspace):
        def predictions(self, handle, cohort, *, progress=None):
            from data_adapters.tables import PredictionTable

            part = parts[cohort.name]
            return PredictionTable.of(part["frame"]["case_id"].tolist(), part["probabilities"], task="multiclass")

    def cohort(name):
        frame = parts[name]["frame"]
        return types.SimpleNamespace(name=name, frame=lambda: frame.copy(), content_hash=name,
                                     attribute_schema={c: "categorical" for c in frame if c != "label"})

    handle = handle_for(TinyCNN(2, 1, 3), task="multiclass", n_classes=3)
    report = monitoring.monitor(Given(tmp_path), handle, cohort("reference"), cohort("current"), n_perm=50)
    assert report.class_index is None and (report.windows["accuracy"] == 1.0).all()
    assert report.operating_point == "top class against the label" and not report.warnings
    chosen = monitoring.monitor(Given(tmp_path), handle, cohort("reference"), cohort("current"), n_perm=50,
                                target="class1")
    assert chosen.class_index == 1 and (chosen.windows["sensitivity"] == 1.0).all()
    assert "class 'class1' at threshold" in chosen.operating_point and chosen.threshold == pytest.approx(
        float(chosen.operating_point.split("threshold ")[1].split(" ")[0]), abs=5e-4)


def test_the_measured_window_specificity_carries_wilsons_interval_clustered_by_patient_where_known():
    """Known answer: without patients, each window's specificity interval is statsmodels' Wilson on its negatives;
    with three images a patient sharing their call, the interval counts patients, so it is wider."""
    import pandas as pd
    from statsmodels.stats.proportion import proportion_confint

    from data_adapters.tables import CLUSTER
    from evaluation.drift import window_report

    rng = np.random.default_rng(3)

    def part(n):
        patients = np.repeat(np.arange(n // 3), 3)
        label = (rng.random(n // 3) < 0.4)[patients].astype(int)
        called = np.where(label == 1, rng.random(n) < 0.8, (rng.random(n // 3) < 0.25)[patients])
        p = np.where(called, 0.75, 0.25)
        frame = pd.DataFrame({"label": pd.array(label, dtype="Int64"), "site": "A", "scanner": "S1",
                              CLUSTER: patients})
        return {"frame": frame, "embedding": rng.normal(size=(n, 4)), "probabilities": np.column_stack([1 - p, p]),
                "intensity": rng.random((n, 4))}

    reference, current = part(150), part(270)
    current["frame"][CLUSTER] += 10_000 * (np.arange(270) // 90)
    windows = np.repeat(["2026-01", "2026-02", "2026-03"], 90)
    plain_current = {**current, "frame": current["frame"].drop(columns=CLUSTER)}
    plain = window_report(reference, plain_current, windows, class_index=1, threshold=0.5, n_perm=20,
                          by_site=None).windows
    keyed = window_report(reference, current, windows, class_index=1, threshold=0.5, n_perm=20, by_site=None).windows
    for w, row in plain.set_index("window").iterrows():
        rows = (windows == w) & (current["frame"]["label"].to_numpy(int) == 0)
        negatives_right = int((current["probabilities"][rows, 1] < 0.5).sum())
        assert row["specificity"] == pytest.approx(negatives_right / rows.sum())
        assert (row["specificity_lo"], row["specificity_hi"]) == pytest.approx(
            proportion_confint(negatives_right, int(rows.sum()), method="wilson"))
    assert ((keyed["specificity_hi"] - keyed["specificity_lo"]) > (plain["specificity_hi"] - plain["specificity_lo"])
            ).all(), "a patient's images alike: fewer independent negatives, a wider interval"
    assert (keyed["specificity_lo"] <= keyed["specificity"]).all() and (keyed["specificity"] <= keyed["specificity_hi"]
                                                                        ).all()

"""Reader agreement: the clustered share against statsmodels' cluster-robust variance, kappa against scikit-learn
(undefined included), "could not judge" for an undefined kappa on the page's and the report's paths."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy.stats import t as student_t
from sklearn.metrics import cohen_kappa_score

from data_adapters.errors import InvalidInputError
from evaluation.reader_agreement import (COULD_NOT_JUDGE, clustered_proportion, in_words, kappa, mean_kappa,
                                         model_vs_reader, reader_pairs)
from evaluation.subgroups import wilson


def _verdicts(cases: int = 40, readers: int = 3, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    chance = rng.beta(1.6, 0.4, cases)
    agree = rng.random(cases * readers) < np.repeat(chance, readers)
    return pd.DataFrame({"case_id": np.repeat([f"c{i}" for i in range(cases)], readers),
                         "reader": np.tile([f"r{j}" for j in range(readers)], cases),
                         "agreement": np.where(agree, "agree", "disagree"), "explanation": "not judged",
                         "corrected_label": None, "flag_board": False, "model_hash": "m"})


def _ols_cluster_variance(y: np.ndarray, groups) -> float:
    fit = sm.OLS(y, np.ones((len(y), 1))).fit(cov_type="cluster", cov_kwds={"groups": groups})
    return float(fit.bse[0] ** 2)


def test_the_clustered_variance_is_statsmodels_cluster_robust_one_way_and_two_way():
    v = _verdicts()
    y = (v["agreement"] == "agree").to_numpy(float)
    cases = pd.factorize(v["case_id"])[0]
    readers = pd.factorize(v["reader"])[0]
    one = clustered_proportion(y, cases)
    assert one["variance"] == pytest.approx(_ols_cluster_variance(y, cases), rel=1e-10)
    two = clustered_proportion(y, cases, second=readers)
    assert two["variance"] == pytest.approx(_ols_cluster_variance(y, np.column_stack([cases, readers])), rel=1e-10)
    # the design effect is the ratio to the binomial variance, and the interval is wider than plain Wilson's
    p = y.mean()
    assert one["design_effect"] == pytest.approx(one["variance"] / (p * (1 - p) / len(y)))
    assert one["design_effect"] > 1.2
    lo, hi = wilson(y.sum(), len(y), 1.96)
    assert one["lo"] < lo and one["hi"] > hi
    assert two["hi"] - two["lo"] > one["hi"] - one["lo"], "3 readers as a random sample: wider still"


def test_independent_verdicts_get_the_plain_wilson_interval_up_to_t():
    rng = np.random.default_rng(3)
    y = (rng.random(400) < 0.7).astype(float)
    one = clustered_proportion(y, np.arange(400))  # one verdict per case: no clustering
    lo, hi = wilson(y.sum(), 400, 1.96)
    assert one["design_effect"] == pytest.approx(1.0, abs=0.01)
    assert one["lo"] == pytest.approx(lo, abs=2e-3) and one["hi"] == pytest.approx(hi, abs=2e-3)


def test_a_unanimous_share_counts_each_case_once():
    y = np.ones(30)
    cases = np.repeat(np.arange(10), 3)
    out = clustered_proportion(y, cases)
    assert out["p"] == 1.0 and out["design_effect"] == pytest.approx(3.0)
    lo, _ = wilson(10, 10, float(student_t.ppf(0.975, 9)))  # 10 cases: Wilson on 10, t on 9 degrees of freedom
    assert out["lo"] == pytest.approx(lo, abs=1e-3)


def test_model_vs_reader_is_clustered_by_case_and_by_patient_where_known():
    v = _verdicts(30)
    frame = pd.DataFrame({"case_id": [f"c{i}" for i in range(30)], "site": ["A", "B"] * 15})
    table = model_vs_reader(v, frame, "site").set_index("group")
    y = (v["agreement"] == "agree").to_numpy(float)
    plain = wilson(y.sum(), len(y), 1.96)
    assert table.loc["overall", "agree_lo"] < plain[0] and table.loc["overall", "design_effect"] > 1
    assert table.loc["overall", "cases"] == 30 and table.loc["overall", "readers"] == 3
    # two cases of one patient: the patient is the unit, so the design effect counts 15 clusters, not 30
    frame["_cluster"] = np.arange(30) // 2
    by_patient = model_vs_reader(v, frame).iloc[0]
    units = clustered_proportion(y, np.repeat(np.arange(30) // 2, 3))
    assert by_patient["agree_lo"] == pytest.approx(units["lo"]) and by_patient["agree_hi"] == pytest.approx(units["hi"])
    with pytest.raises(InvalidInputError, match="readers='everyone': give 'fixed' or 'random'"):
        model_vs_reader(v, frame, readers="everyone")


def test_kappa_matches_scikit_learn_including_where_it_is_undefined():
    rng = np.random.default_rng(0)
    a = rng.choice(["agree", "disagree", "unsure"], 50, p=[0.6, 0.3, 0.1])
    b = np.where(rng.random(50) < 0.6, a, rng.choice(["agree", "disagree", "unsure"], 50))
    assert kappa(a, b)[0] == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)
    one = np.array(["agree"] * 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = cohen_kappa_score(one, one)
    assert np.isnan(reference) and np.isnan(kappa(one, one)[0])
    # one category each, different ones: defined (0), as scikit-learn says
    assert kappa(one, np.array(["disagree"] * 8))[0] == pytest.approx(cohen_kappa_score(one, ["disagree"] * 8))


def test_an_undefined_kappa_is_could_not_judge_with_its_reason_never_a_number():
    v = pd.DataFrame({"case_id": [f"c{i}" for i in range(6)] * 2, "reader": ["r1"] * 6 + ["r2"] * 6,
                      "model_hash": "m", "agreement": "agree"})
    row = reader_pairs(v, n_boot=200).iloc[0]
    assert row["verdict"] == COULD_NOT_JUDGE and np.isnan(row["kappa"]) and np.isnan(row["kappa_lo"])
    assert "both readers gave 'agree' on every shared case" in row["reason"]
    assert in_words(row["kappa"]).startswith(COULD_NOT_JUDGE)
    assert in_words("").startswith(COULD_NOT_JUDGE) and in_words(None).startswith(COULD_NOT_JUDGE)  # a blank cell
    assert in_words(0.5) == "moderate" and in_words(0.9) == "almost perfect"


def test_a_kappa_mostly_undefined_in_resamples_gets_no_interval():
    # one disagreement among 20: most resamples without it have kappa undefined
    a = ["agree"] * 20
    b = ["agree"] * 19 + ["disagree"]
    v = pd.DataFrame({"case_id": [f"c{i}" for i in range(20)] * 2, "reader": ["r1"] * 20 + ["r2"] * 20,
                      "model_hash": "m", "agreement": a + b})
    row = reader_pairs(v, n_boot=400).iloc[0]
    assert row["verdict"] == "judged" and row["kappa"] == pytest.approx(cohen_kappa_score(a, b))
    assert np.isnan(row["kappa_lo"]) and "undefined in" in row["reason"]


def test_kappa_interval_resamples_patients_and_is_wider_for_them():
    rng = np.random.default_rng(5)
    truth = np.repeat(rng.choice(3, 30, p=[0.6, 0.3, 0.1]), 2)
    cats = np.array(["agree", "disagree", "unsure"])

    def read():
        own = np.where(rng.random(60) < 0.7, truth, rng.integers(0, 3, 60))
        return cats[np.repeat(own[::2], 2)]  # a reader reads a patient's two images alike

    ids = [f"c{i}" for i in range(60)]
    v = pd.DataFrame({"case_id": ids * 2, "reader": ["r1"] * 60 + ["r2"] * 60, "model_hash": "m",
                      "agreement": np.concatenate([read(), read()])})
    by_image = reader_pairs(v, n_boot=1000).iloc[0]
    by_patient = reader_pairs(v, clusters=pd.Series(np.arange(60) // 2, index=ids), n_boot=1000).iloc[0]
    assert by_patient["kappa"] == by_image["kappa"]
    assert (by_patient["kappa_hi"] - by_patient["kappa_lo"]) > 1.2 * (by_image["kappa_hi"] - by_image["kappa_lo"])


def test_the_board_report_says_could_not_judge_when_kappa_is_undefined(tmp_path, monkeypatch):
    """Issue 24: the board report crashed when two readers gave one category only (kappa undefined)."""
    from tests.helpers import tiny_workspace
    from workspace.access import Identity
    from workspace.report import gather, render_html
    from workspace.review import Record, Verdict
    from workspace.store import Workspace

    monkeypatch.setenv("GLASSBOX_RECORD_DIR", str(tmp_path / "records"))
    root = tiny_workspace(tmp_path / "ws", 12)
    ws = Workspace(root)
    handle = ws.load_model(root / "models" / "tiny")
    cohort = ws.cohort_for(handle, ws.resolve_cohort("pngs"))
    record = Record(root)
    for reader in ("dr-a", "dr-b"):
        for case in [c.case_id for c in cohort.cases][:6]:
            record.record_verdict(Identity(reader, "radiologist"), Verdict(
                case_id=case, model_version=handle.version, model_hash=handle.weights_hash, cohort=cohort.name,
                cohort_hash=cohort.content_hash, agreement="agree"), secret="s" * 32)
    data = gather(ws, handle, cohort, k=5, author=Identity("chair", "board"), trust_methods=(), figures=False)
    (pair,) = data.evidence["reviewers"]["pairs"]
    assert pair["verdict"] == COULD_NOT_JUDGE and pair["kappa"] == "not defined" and pair["kappa_lo"] == "–"
    assert pair["words"].startswith("could not judge: both readers gave 'agree'")
    html = render_html(data)
    assert "could not judge: both readers gave" in html and "nan" not in html.split("Reviewers")[-1][:2000]


def test_the_reader_agreement_page_says_could_not_judge_for_an_undefined_kappa(tmp_path, monkeypatch):
    from tests.helpers import tiny_workspace
    from tests.pages.test_pages import page
    from workspace.access import Identity
    from workspace.review import Record, Verdict
    from workspace.store import Workspace

    monkeypatch.setenv("GLASSBOX_RECORD_DIR", str(tmp_path / "records"))
    root = tiny_workspace(tmp_path / "ws", 12)
    ws = Workspace(root)
    handle = ws.load_model(root / "models" / "tiny")
    cohort = ws.cohort_for(handle, ws.resolve_cohort("pngs"))
    record = Record(root)
    for reader in ("dr-a", "dr-b", "dr-c"):
        for i, case in enumerate([c.case_id for c in cohort.cases][:8]):
            agreement = "agree" if reader != "dr-c" or i % 2 else "disagree"
            record.record_verdict(Identity(reader, "radiologist"), Verdict(
                case_id=case, model_version=handle.version, model_hash=handle.weights_hash, cohort=cohort.name,
                cohort_hash=cohort.content_hash, agreement=agreement), secret="s" * 32)
    at = page("pages/agreement.py", root, model="tiny", cohort="pngs")
    assert not at.exception and not at.error
    pairs = next(d.value for d in at.dataframe if "in words" in d.value.columns).set_index(["reader_1", "reader_2"])
    assert pairs.loc[("dr-a", "dr-b"), "verdict"] == COULD_NOT_JUDGE
    assert pairs.loc[("dr-a", "dr-b"), "in words"].startswith("could not judge: both readers gave 'agree'")
    assert pairs.loc[("dr-a", "dr-c"), "verdict"] == "judged"
    shares = next(d.value for d in at.dataframe if "design_effect" in d.value.columns)
    assert shares.iloc[0]["n"] == 24 and shares.iloc[0]["cases"] == 8
    assert any(m.value.startswith("Mean kappa over 2 pairs") and "1 pair(s) with kappa undefined left out" in m.value
               for m in at.markdown)
    at.toggle(key="agree_readers_random").set_value(True).run()
    assert not at.exception and any("for readers like these" in m.value for m in at.markdown)


def test_mean_kappa_is_the_mean_of_scikit_learns_pairwise_kappas_and_wider_for_readers_like_these():
    rng = np.random.default_rng(8)
    truth = rng.choice(3, 50, p=[0.6, 0.3, 0.1])
    cats = np.array(["agree", "disagree", "unsure"])
    reads = {f"r{j}": cats[np.where(rng.random(50) < 0.5 + 0.1 * j, truth, rng.integers(0, 3, 50))]
             for j in range(4)}
    v = pd.DataFrame({"case_id": [f"c{i}" for i in range(50)] * 4, "reader": np.repeat(list(reads), 50),
                      "model_hash": "m", "agreement": np.concatenate(list(reads.values()))})
    expected = np.mean([cohen_kappa_score(reads[a], reads[b]) for a, b in
                        [("r0", "r1"), ("r0", "r2"), ("r0", "r3"), ("r1", "r2"), ("r1", "r3"), ("r2", "r3")]])
    fixed = mean_kappa(v, n_boot=500)
    random = mean_kappa(v, readers="random", n_boot=500)
    assert fixed["kappa"] == pytest.approx(expected, abs=1e-12) and fixed["pairs"] == 6 and fixed["verdict"] == "judged"
    assert fixed["kappa_lo"] < expected < fixed["kappa_hi"]
    assert random["kappa_hi"] - random["kappa_lo"] > fixed["kappa_hi"] - fixed["kappa_lo"]
    # a pair with kappa undefined is left out and counted; none defined: could not judge
    same = pd.DataFrame({"case_id": [f"c{i}" for i in range(6)] * 2, "reader": ["r1"] * 6 + ["r2"] * 6,
                         "model_hash": "m", "agreement": "agree"})
    out = mean_kappa(same, n_boot=100)
    assert out["verdict"] == COULD_NOT_JUDGE and out["undefined_pairs"] == 1 and np.isnan(out["kappa"])

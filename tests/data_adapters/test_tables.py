"""The typed tables that cross package borders: naming, validation (type and message), accessors."""
from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from data_adapters.errors import InvalidInputError
from data_adapters.tables import (
    CLUSTER,
    FIGURES,
    PredictionTable,
    UncertaintyTable,
    mean_columns,
    probability_column,
    probability_columns,
    std_columns,
    uncertainty_columns,
)


def _frame(p: np.ndarray, ids=None) -> pd.DataFrame:
    frame = pd.DataFrame(p, columns=probability_columns(p.shape[1]))
    frame.insert(0, "case_id", ids if ids is not None else [f"c{i}" for i in range(len(p))])
    return frame


def test_the_on_disk_names_are_the_ones_cached_tables_carry():
    # the Parquet layout of the cache: changing a name would orphan every cached demo table
    assert probability_column(0) == "p_0" and probability_column("melanoma") == "p_melanoma"
    assert probability_columns(3) == ["p_0", "p_1", "p_2"]
    assert probability_columns(["neg", "pos"]) == ["p_0", "p_1"]

    class Handle:
        n_classes = 2
    assert probability_columns(Handle()) == ["p_0", "p_1"]
    assert uncertainty_columns(2) == ["mean_0", "mean_1", "std_0", "std_1", "entropy", "mutual_information"]
    assert CLUSTER == "_cluster"


def test_a_prediction_table_hands_out_its_probabilities_in_case_order_and_is_frozen():
    p = np.array([[0.1, 0.9], [0.7, 0.3], [0.5, 0.5]])
    table = PredictionTable(_frame(p, ["b", "a", "c"]).assign(extra=1), task="binary", n_classes=2)
    np.testing.assert_array_equal(table.probabilities(), p)
    np.testing.assert_array_equal(table.probability(1), [0.9, 0.3, 0.5])
    np.testing.assert_array_equal(table.top_class(), [1, 0, 0])
    assert table.case_ids == ["b", "a", "c"] and len(table) == 3
    assert list(table.frame.columns) == ["case_id", "p_0", "p_1"], "extra columns are dropped"
    shown = table.frame
    shown.loc[0, "p_0"] = 0.99
    assert table.probabilities()[0, 0] == 0.1, "the frame handed out is a copy"
    with pytest.raises(AttributeError, match="frozen"):
        table.task = "multiclass"
    np.testing.assert_array_equal(table.select(["c", "b"]).probabilities(), p[[2, 0]])
    again = pickle.loads(pickle.dumps(table))  # st.cache_data pickles what it returns
    np.testing.assert_array_equal(again.probabilities(), p)
    assert again.task == "binary" and again.n_classes == 2


def test_of_builds_the_same_table_as_the_frame():
    p = np.array([[0.2, 0.3, 0.5], [0.6, 0.2, 0.2]])
    a = PredictionTable.of(["x", "y"], p, task="multiclass")
    pd.testing.assert_frame_equal(a.frame, _frame(p, ["x", "y"]))
    assert a.n_classes == 3


@pytest.mark.parametrize("change, message", [
    (lambda f: f.drop(columns=["p_1"]), "column(s) 'p_1' missing"),
    (lambda f: f.assign(case_id=["a", "a", "c"]), "case_id in row 1 appears twice"),
    (lambda f: f.assign(p_1=[0.9, 1.3, 0.5]), "row 1, column 'p_1' is not a probability in [0, 1]"),
    (lambda f: f.assign(p_0=[0.1, np.nan, 0.5]), "row 1, column 'p_0' is not a probability"),
    (lambda f: f.assign(p_0=[0.1, 0.3, 0.5]), "row 1's probabilities sum to 0.6, not 1"),
])
def test_a_malformed_prediction_table_is_refused_naming_the_row_and_column(change, message):
    p = np.array([[0.1, 0.9], [0.7, 0.3], [0.5, 0.5]])
    with pytest.raises(InvalidInputError) as e:
        PredictionTable(change(_frame(p, ["a", "b", "c"])), task="binary", n_classes=2)
    assert message in str(e.value)


def test_multilabel_rows_need_not_sum_to_one_but_stay_probabilities():
    p = np.array([[0.9, 0.8], [0.1, 0.0]])
    assert PredictionTable(_frame(p), task="multilabel", n_classes=2).probabilities().sum() == pytest.approx(1.8)
    with pytest.raises(InvalidInputError, match="row 0's probabilities sum to 1.7"):
        PredictionTable(_frame(p), task="multiclass", n_classes=2)


def _summary(mean: np.ndarray) -> dict[str, np.ndarray]:
    entropy = -(mean * np.log(mean)).sum(axis=1)
    return {"mean": mean, "std": mean * 0.1, "entropy": entropy, "mutual_information": entropy / 4}


def test_an_uncertainty_table_names_its_figures_and_their_direction():
    mean = np.array([[0.5, 0.5], [0.99, 0.01], [0.8, 0.2]])
    table = UncertaintyTable.of(["a", "b", "c"], _summary(mean), method="mc_dropout", task="binary")
    assert table.method == "mc_dropout" and table.n_classes == 2
    assert list(table.frame.columns) == ["case_id", *uncertainty_columns(2)]
    np.testing.assert_array_equal(table.means(), mean)
    np.testing.assert_allclose(table.spreads(), mean * 0.1)
    entropy = table.figure("entropy")
    assert entropy.argmax() == 0 and entropy.argmin() == 1, "the 50/50 case is the most uncertain"
    assert all(f.higher_is_more_uncertain for f in FIGURES.values())
    assert FIGURES["std"].per_class and not FIGURES["entropy"].per_class
    np.testing.assert_array_equal(table.figure("std_1"), mean[:, 1] * 0.1)
    np.testing.assert_array_equal(table.predictions().probabilities(), mean)
    with pytest.raises(InvalidInputError, match="'variance' is not one of"):
        table.figure("variance")


def test_a_malformed_uncertainty_table_is_refused():
    mean = np.array([[0.5, 0.5], [0.99, 0.01]])
    good = UncertaintyTable.of(["a", "b"], _summary(mean), method="tta", task="binary").frame
    with pytest.raises(InvalidInputError, match=r"uncertainty \(tta\): column\(s\) 'entropy' missing"):
        UncertaintyTable(good.drop(columns=["entropy"]), method="tta", task="binary", n_classes=2)
    with pytest.raises(InvalidInputError, match="row 1, column 'std_0' must be a finite figure >= 0"):
        UncertaintyTable(good.assign(std_0=[0.1, -0.2]), method="tta", task="binary", n_classes=2)
    with pytest.raises(InvalidInputError, match="row 0, column 'mean_1' is not a probability"):
        UncertaintyTable(good.assign(mean_1=[1.5, 0.01]), method="tta", task="binary", n_classes=2)
    assert mean_columns(2) == ["mean_0", "mean_1"] and std_columns(2) == ["std_0", "std_1"]


def test_the_workspace_hands_out_typed_tables_and_keeps_the_cached_layout(tmp_path):
    """The border: predictions and uncertainty leave the workspace as typed tables, while the Parquet files keep
    the columns cached demo results were written with (a renamed column would orphan every cache)."""
    from explainers.inference import predict_cases
    from tests.helpers import TinyCNN, handle_for, random_png_cohort
    from tests.explainers.test_uncertainty import DropoutCNN
    from workspace.store import Workspace
    from workspace.uncertainty import case_uncertainty, uncertainty, uncertainty_path

    cohort = random_png_cohort(tmp_path / "cohort", 5, seed=3)
    handle = handle_for(TinyCNN(2, 1, 3), n_classes=3, input_shape=(1, 12, 12))
    ws = Workspace(tmp_path / "ws")
    preds = ws.predictions(handle, cohort)
    assert isinstance(preds, PredictionTable) and preds.task == "multiclass" and preds.n_classes == 3
    assert preds.case_ids == cohort.case_ids
    expected = np.array([p.probabilities for p in predict_cases(handle, list(cohort.cases))])
    np.testing.assert_allclose(preds.probabilities(), expected, atol=1e-6)
    assert pd.read_parquet(ws.prediction_path(handle, cohort)).columns.tolist() == ["case_id", "p_0", "p_1", "p_2"]

    dropout = handle_for(DropoutCNN(), n_classes=3, input_shape=(1, 12, 12))
    assert uncertainty(ws, [dropout], cohort, "mc_dropout", samples=4, cached_only=True) is None, "never computed"
    unc = uncertainty(ws, [dropout], cohort, "mc_dropout", samples=4)
    assert isinstance(unc, UncertaintyTable) and unc.method == "mc_dropout" and unc.case_ids == cohort.case_ids
    path = uncertainty_path(ws, [dropout], cohort, "mc_dropout", samples=4)
    assert pd.read_parquet(path).columns.tolist() == ["case_id", *uncertainty_columns(3)]
    again = uncertainty(ws, [dropout], cohort, "mc_dropout", samples=4, cached_only=True)
    np.testing.assert_array_equal(again.figure("entropy"), unc.figure("entropy"))
    alone = case_uncertainty(ws, dropout, cohort.cases[2], "mc_dropout", samples=4)
    np.testing.assert_allclose(alone.means()[0], unc.means()[2], atol=1e-6)
    assert (unc.spreads() > 0).any(), "dropout draws differ: a spread to read"


def test_a_table_joined_to_its_cohort_carries_labels_and_patients_in_its_own_case_order():
    p = np.array([[0.1, 0.9], [0.7, 0.3], [0.5, 0.5]])
    table = PredictionTable(_frame(p, ["b", "a", "c"]), task="binary", n_classes=2)
    assert table.labels() is None and table.clusters() is None, "nothing known before the join"
    cohort = pd.DataFrame({"case_id": ["a", "b", "c", "d"], "label": pd.array([0, 1, None, 1], dtype="Int64"),
                           CLUSTER: [7, 8, 8, 9]})
    joined = table.with_cohort(cohort)
    assert joined.labels().tolist() == [1, 0, pd.NA] and joined.clusters().tolist() == [8, 7, 8]
    np.testing.assert_array_equal(joined.probabilities(), p)
    assert list(joined.frame.columns) == ["case_id", "p_0", "p_1"], "labels never enter the frame a page merges"
    picked = joined.select(["c", "b"])
    assert picked.clusters().tolist() == [8, 8] and picked.labels().tolist() == [pd.NA, 1]
    again = pickle.loads(pickle.dumps(joined))
    assert again.clusters().tolist() == [8, 7, 8]
    assert table.with_cohort(cohort.drop(columns=[CLUSTER])).clusters() is None, "patients unknown: no clusters"
    with pytest.raises(InvalidInputError, match="case 'c' is not in the cohort"):
        table.with_cohort(cohort[cohort["case_id"] != "c"])
    with pytest.raises(InvalidInputError, match="case 'a' has label 2, not a class index in 0..1"):
        table.with_cohort(cohort.assign(label=pd.array([2, 1, None, 1], dtype="Int64")))

"""Scale: header-only checks agree with decoding, the cohort table re-opens without reading images and notices an
edited file, cases held as columns equal the records, large subgroup tables resample cell counts and agree with the
case bootstrap, predictions are made once per distinct image, and batch precompute (here and on a local Ray
instance) writes the cache the app reads and resumes after an interruption."""
from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd
import pytest

from data_adapters import cohort as cohort_mod
from data_adapters.cohort import check_files, load_manifest
from data_adapters.hashing import file_hash, json_hash
from data_adapters.records import CaseTable
from evaluation import metrics
from evaluation.metrics import Cells, counts
from tests.helpers import write_png
from tests.data_adapters.test_cohort import ROWS, bad_cohort, write_manifest


_bad_cohort = bad_cohort


def _same(a, b):
    assert list(a.cases) == list(b.cases)
    pd.testing.assert_frame_equal(a.cases.table, b.cases.table)
    assert a.content_hash == b.content_hash
    assert [(r.row, r.field) for r in a.report.rejections] == [(r.row, r.field) for r in b.report.rejections]


def test_header_check_accepts_and_rejects_what_decoding_does(tmp_path):
    d = _bad_cohort(tmp_path)
    write_manifest(d, [*ROWS, ("crc", "images/crc.png", "0", "", "A")])
    pixels = load_manifest(d / "manifest.csv", class_names=("a", "b"), check="pixels")
    header = load_manifest(d / "manifest.csv", class_names=("a", "b"), check="header")
    _same(pixels, header)
    crc = [r for r in header.report.rejections if r.case_id == "crc"]
    assert crc and "truncated or corrupt" in crc[0].reason and "CRC" in crc[0].reason
    assert any("checked from their headers" in n for n in header.report.notes)
    assert not any("checked from their headers" in n for n in pixels.report.notes)


def test_the_content_hash_is_the_records_hash(tmp_path):
    """Caches and recorded verdicts are keyed by the cohort hash: the table must give the value records gave."""
    d = _bad_cohort(tmp_path)
    write_manifest(d, ROWS)
    cohort = load_manifest(d / "manifest.csv", class_names=("a", "b"))
    cases = list(cohort.cases)
    assert cohort.content_hash == json_hash([(c.case_id, c.image_hash, c.label, c.attributes,
                                              file_hash(c.mask) if c.mask else None) for c in cases])
    rebuilt = CaseTable.from_cases(cases, cohort.attribute_schema)
    assert [rebuilt[i] for i in range(len(rebuilt))] == cases
    pd.testing.assert_frame_equal(rebuilt.frame(), cohort.frame(), check_dtype=False)


def test_checking_in_two_processes_gives_what_one_gives(tmp_path, monkeypatch):
    folder = tmp_path / "many"
    rng = np.random.default_rng(1)
    jobs = []
    for i in range(40):
        write_png(folder / f"{i}.png", rng.integers(0, 255, (8, 8), dtype=np.uint8))
        jobs.append((str(folder / f"{i}.png"), f"{i}.png"))
    jobs.append((str(folder / "gone.png"), "gone.png"))
    monkeypatch.setattr(cohort_mod, "PARALLEL_FROM", 10)
    one = check_files(jobs, roots=[folder], channels=None, pixels=False, workers=1)
    two = check_files(jobs, roots=[folder], channels=None, pixels=False, workers=2)
    assert one == two and one[-1].error == "file not found: gone.png" and one[0].shape == (1, 8, 8)


def test_the_cohort_table_reopens_without_reading_images_and_notices_an_edit(tmp_path, monkeypatch):
    from workspace.store import Workspace

    d = _bad_cohort(tmp_path)
    write_manifest(d, ROWS)
    ws = Workspace(tmp_path / "ws")
    first = ws.load_cohort(d / "manifest.csv", class_names=("a", "b"))
    calls = []
    real = cohort_mod.check_files
    monkeypatch.setattr(cohort_mod, "check_files", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = ws.load_cohort(d / "manifest.csv", class_names=("a", "b"))
    assert calls == [], "an unchanged cohort re-opens from its table"
    _same(first, again)
    assert again.report.summary() == first.report.summary() and again.report.notes == first.report.notes
    # an image rewritten with other content: its size or time changes, so the cohort is checked again
    image = d / "images" / "ok1.png"
    write_png(image, np.full((16, 16), 7, np.uint16))
    os.utime(image, ns=(time.time_ns(), time.time_ns() + 10**9))
    edited = ws.load_cohort(d / "manifest.csv", class_names=("a", "b"))
    assert calls == [1]
    assert edited.content_hash != first.content_hash
    assert edited.case("c2").image_hash != first.case("c2").image_hash


def test_cells_give_exact_counts_and_a_bounded_auroc():
    rng = np.random.default_rng(3)
    n = 30_000
    y = rng.random(n) < 0.3
    p = np.clip(0.3 * y + rng.beta(2, 5, n), 0, 1)
    called = p >= 0.4
    cells = Cells.of(y, p, called, 0.4, bins=256)
    exact = counts(np.ones((1, n)), y, p, called)
    binned = cells.counts(cells.count[None].astype(float))
    for field in ("n", "pos", "tp", "fp"):
        assert getattr(binned, field)[0] == getattr(exact, field)[0]
    assert binned.brier[0] == pytest.approx(exact.brier[0], rel=1e-9)
    assert binned.ece_gap[0] == pytest.approx(exact.ece_gap[0], rel=1e-9)
    auc_exact, auc_binned = metrics.auroc(exact)[0], metrics.auroc(binned)[0]
    assert 0 < cells.auroc_error < 0.01
    assert abs(auc_binned - auc_exact) <= cells.auroc_error + 1e-12


def test_large_subgroup_tables_agree_with_the_case_bootstrap(monkeypatch):
    from evaluation import subgroups

    rng = np.random.default_rng(0)
    n = 24_000
    y = rng.random(n) < 0.3
    group = rng.integers(0, 3, n).astype(str)
    p = np.clip(0.35 * y + rng.beta(2, 5, n) - 0.1 * (group == "2") * y, 0, 1)
    frame = pd.DataFrame({"y": y, "p": p, "g": group})
    big = subgroups.subgroup_report(frame, "g", threshold=0.4, n_boot=400)
    monkeypatch.setattr(subgroups, "CELL_BOOTSTRAP_FROM", 10**9)
    small = subgroups.subgroup_report(frame, "g", threshold=0.4, n_boot=400)
    assert "score-bin counts" in big.table["notes"][0] and "score-bin" not in small.table["notes"][0]
    np.testing.assert_allclose(big.table["ece"], small.table["ece"], rtol=1e-9)  # ECE: no interval, same test
    np.testing.assert_array_equal(big.table["ece_p"], small.table["ece_p"])
    for m in ("auroc", "sensitivity", "specificity", "ppv", "brier"):
        np.testing.assert_allclose(big.table[m], small.table[m], rtol=1e-9)  # the estimates are the same numbers
        width = (small.table[f"{m}_hi"] - small.table[f"{m}_lo"]).to_numpy()
        for side in ("_lo", "_hi"):  # the intervals differ by Monte-Carlo noise only
            assert np.all(np.abs(big.table[m + side] - small.table[m + side]).to_numpy() < 0.2 * width + 1e-4), m
    assert list(big.gaps["flag"].astype(bool)) == list(small.gaps["flag"].astype(bool))


def test_a_patient_bootstrap_on_cells_is_wider_when_images_of_a_patient_agree(monkeypatch):
    """Each patient's 4 images are the same case: resampling patients must widen the interval (by about 2 = √4)."""
    from data_adapters.tables import CLUSTER
    from evaluation import subgroups

    rng = np.random.default_rng(5)
    patients = 6_000
    y = np.repeat(rng.random(patients) < 0.3, 4)
    p = np.repeat(np.clip(0.3 * (y[::4]) + rng.beta(2, 5, patients), 0, 1), 4)
    frame = pd.DataFrame({"y": y, "p": p, "g": "all", CLUSTER: np.repeat(np.arange(patients), 4)})
    clustered = subgroups.subgroup_report(frame, "g", threshold=0.4, n_boot=300).table.iloc[0]
    plain = subgroups.subgroup_report(frame.drop(columns=CLUSTER), "g", threshold=0.4, n_boot=300).table.iloc[0]
    ratio = (clustered["sensitivity_hi"] - clustered["sensitivity_lo"]) / (plain["sensitivity_hi"]
                                                                         - plain["sensitivity_lo"])
    assert 1.6 < ratio < 2.5


def test_each_distinct_image_is_predicted_once(tmp_path, monkeypatch):
    from tests.helpers import TinyCNN, handle_for
    from workspace import store
    from workspace.store import Workspace

    folder = tmp_path / "c"
    rng = np.random.default_rng(0)
    for i in range(3):
        write_png(folder / f"{i}.png", rng.integers(0, 255, (8, 8), dtype=np.uint8))
    rows = "\n".join(f"r{k},{k % 3}.png" for k in range(12))
    (folder / "manifest.csv").write_text("case_id,image\n" + rows + "\n")
    handle = handle_for(TinyCNN(2, 1, 3))
    ws = Workspace(tmp_path / "ws")
    cohort = ws.load_cohort(folder / "manifest.csv")
    seen = []
    real = store.predict_cases
    monkeypatch.setattr(store, "predict_cases", lambda h, cases, **k: seen.append(len(cases)) or real(h, cases, **k))
    preds = ws.predictions(handle, cohort).frame
    assert seen == [3] and preds["case_id"].tolist() == cohort.case_ids
    each = real(handle, list(cohort.cases))
    np.testing.assert_array_equal(preds[["p_0", "p_1", "p_2"]].to_numpy(), np.array([e.probabilities for e in each]))


def test_scale_demo_rows_share_files_and_load(tmp_path):
    from data_adapters.demo.synthesis import generate_scale_cohort

    manifest = generate_scale_cohort(tmp_path / "s", 40, distinct=8)
    frame = pd.read_csv(manifest)
    assert len(frame) == 40 and frame["image"].nunique() == 8 and frame["case_id"].is_unique
    assert frame["patient_id"].nunique() < 40
    cohort = load_manifest(manifest)
    assert len(cohort) == 40 and cohort.n_patients == frame["patient_id"].nunique()
    by_image = frame.groupby("image")["label"].nunique()
    assert (by_image == 1).all(), "a copy keeps its image's label"


def _precompute_plan(root, **kw):
    from workspace.precompute import Plan

    return Plan(workspace=str(root), model="tiny", cohort="pngs", shard_size=4, **kw)


def test_precompute_fills_the_cache_the_app_reads_and_resumes(tmp_path, monkeypatch):
    from tests.helpers import tiny_workspace
    from workspace import precompute as pc
    from workspace.store import Workspace
    from workspace.uncertainty import uncertainty

    root = tiny_workspace(tmp_path / "ws", n=10)
    plan = _precompute_plan(root, methods=("saliency",), uncertainty="tta")
    real = pc.compute_shard
    calls = []

    def dies_on_third(plan, index, opened=None):
        if len(calls) == 2:
            raise KeyboardInterrupt  # the run is killed after two shards
        calls.append(index)
        return real(plan, index, opened)

    monkeypatch.setattr(pc, "compute_shard", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        pc.precompute(plan)
    monkeypatch.setattr(pc, "compute_shard", lambda p, i, o=None: calls.append(i) or real(p, i, o))
    summary = pc.precompute(plan)
    assert calls == [0, 1, 2] and (summary.shards, summary.computed, summary.skipped) == (3, 1, 2)
    ws = Workspace(root)
    handle = ws.load_model(ws.resolve_model("tiny"))
    cohort = ws.cohort_for(handle, ws.resolve_cohort("pngs"))
    preds = pd.read_parquet(ws.prediction_path(handle, cohort))
    fresh = Workspace(tmp_path / "elsewhere").predictions(handle, cohort).frame
    pd.testing.assert_frame_equal(preds, fresh)
    unc = uncertainty(ws, [handle], cohort, "tta", cached_only=True)
    assert unc is not None and unc.case_ids == cohort.case_ids
    assert len(ws.attribution_shards()) == 10
    from explainers.saliency import explain
    from data_adapters.cohort import load_image_batch

    stored = ws.attributions(handle, list(cohort.cases), "saliency", 1)
    again = explain(handle, load_image_batch(list(cohort.cases), handle.preprocessing), cohort.case_ids, "saliency", 1)
    for a, b in zip(stored, again):
        np.testing.assert_array_equal(a.array, b.array)
    assert not list((ws.cache / "attributions").rglob("*.npz")), "maps came from the shards, none recomputed"


def test_precompute_on_a_local_ray_instance_gives_the_same_cache(tmp_path):
    pytest.importorskip("ray")
    from tests.helpers import tiny_workspace
    from workspace.precompute import precompute
    from workspace.store import Workspace

    root = tiny_workspace(tmp_path / "ws", n=10)
    summary = precompute(_precompute_plan(root, methods=("saliency",)), ray="auto", workers=2)
    assert (summary.shards, summary.computed) == (3, 3)
    ws = Workspace(root)
    handle = ws.load_model(ws.resolve_model("tiny"))
    cohort = ws.cohort_for(handle, ws.resolve_cohort("pngs"))
    pd.testing.assert_frame_equal(pd.read_parquet(ws.prediction_path(handle, cohort)),
                                  Workspace(tmp_path / "elsewhere").predictions(handle, cohort).frame)
    assert len(ws.attribution_shards()) == 10


def test_a_background_job_is_shared_reports_progress_and_keeps_its_error():
    import threading

    from workspace import jobs

    gate = threading.Event()
    runs = []

    def work(progress):
        runs.append(1)
        progress(1, 4)
        gate.wait(5)
        progress(4, 4)
        return "result"

    first = jobs.start("k-test", "test", work)
    second = jobs.start("k-test", "test", work)  # another session asking for the same result: the same job
    assert first is second
    for _ in range(100):
        if first.done == 1:
            break
        time.sleep(0.01)
    assert first.running and first.fraction == 0.25 and "1/4" in first.describe()
    gate.set()
    for _ in range(500):
        if not first.running:
            break
        time.sleep(0.01)
    assert first.result == "result" and runs == [1] and first.error is None

    def fails(progress):
        raise ValueError("disk full")

    bad = jobs.start("k-bad", "bad", fails)
    for _ in range(500):
        if not bad.running:
            break
        time.sleep(0.01)
    assert isinstance(bad.error, ValueError)
    assert jobs.start("k-bad", "bad", lambda p: "again") is not bad, "a failed job is started again when asked"
    jobs.forget("k-test")
    jobs.forget("k-bad")


def test_an_unreachable_ray_address_is_named_not_waited_on(tmp_path):
    from data_adapters.errors import InvalidInputError
    from tests.helpers import tiny_workspace
    from workspace.precompute import precompute

    root = tiny_workspace(tmp_path / "ws", n=4)
    with pytest.raises(InvalidInputError, match=r"--ray 127\.0\.0\.1:1: no Ray cluster answers there"):
        precompute(_precompute_plan(root), ray="127.0.0.1:1")

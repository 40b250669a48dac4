"""Privacy: DICOM identifiers never reach records, workspace files, exports or the CLI's output."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pydicom
import pytest
import torch
from pydicom.data import get_testdata_file

from data_adapters.demo.dicom_export import write_series as write_dicom_series
from data_adapters.dicom_folder import load_dicom_folder, salted
from data_adapters.errors import InvalidInputError
from data_adapters.models import write_spec
from tests.helpers import torchscript_binary_model
from workspace.cli import main
from workspace.store import Workspace

SECRETS = ["Doe^Jane", "MRN-7781234", "19580214", "St Elsewhere Oncology Wing 4", "ACC-99812"]


@pytest.fixture
def dicom_study(tmp_path):
    folder = tmp_path / "study"
    for i, (pid, sex) in enumerate([("MRN-7781234", "F"), ("MRN-7781234", "F"), ("MRN-5550001", "M")]):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.PatientName, ds.PatientID, ds.PatientBirthDate = "Doe^Jane", pid, "19580214"
        ds.AccessionNumber, ds.PatientSex, ds.PatientAge = "ACC-99812", sex, "066Y"
        ds.InstitutionName, ds.Manufacturer = "Hospital North", "Acme"
        ds.InstitutionAddress = "St Elsewhere Oncology Wing 4"
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.{1000 + i}"
        ds.SeriesInstanceUID = f"1.2.826.0.1.3680043.8.498.{2000 + i}"  # one single-slice series each
        ds.StudyInstanceUID = f"1.2.826.0.1.3680043.8.498.{50 + (i // 2)}"
        (folder / f"series{i % 2}").mkdir(parents=True, exist_ok=True)
        ds.save_as(folder / f"series{i % 2}" / f"img{i}.dcm")
    (folder / "README.txt").write_text("not an image")
    # and a CT series of slices (one volume case) carrying the same identifiers on every slice
    write_dicom_series(folder / "series2", np.full((4, 16, 16), 1000, np.uint16), PatientName="Doe^Jane",
                       PatientID="MRN-7781234", PatientBirthDate="19580214", AccessionNumber="ACC-99812",
                       InstitutionAddress="St Elsewhere Oncology Wing 4", InstitutionName="Hospital North",
                       PatientSex="F", PatientAge="066Y")
    return folder


def test_folder_cohort_has_tag_attributes_and_only_hashed_ids(dicom_study, tmp_path, monkeypatch):
    ws = Workspace(tmp_path / "ws")
    cohort = load_dicom_folder(dicom_study, salt=ws.salt)
    assert len(cohort) == 4 and cohort.report.n_rejected == 1
    assert sorted(c.shape for c in cohort.cases)[0] == (1, 4, 16, 16), "the series is one volume case"
    assert str(cohort.report.rejections[0]).endswith("README.txt: not a DICOM file")
    frame = cohort.frame()
    assert set(frame["sex"]) == {"F", "M"} and set(frame["age"]) == {66} and set(frame["site"]) == {"Hospital North"}
    patients = [c.patient for c in cohort.cases]
    assert len(set(patients)) == 2 and cohort.n_patients == 2, "the same patient links across files"
    assert salted(ws.salt, "MRN-7781234") in patients
    assert "patient" not in frame and frame["_cluster"].nunique() == 2, "the hash is kept, never a column shown"
    assert not any(p in frame.to_csv() for p in patients)
    text = frame.to_csv() + repr(cohort)
    assert not any(s in text for s in SECRETS)
    same = load_dicom_folder(dicom_study, salt=Workspace(tmp_path / "other").salt)
    assert [c.patient for c in same.cases] == patients, "one operator secret: ids link across workspaces"
    monkeypatch.setenv("GLASSBOX_SECRET_FILE", str(tmp_path / "another-site" / "secret"))
    other = load_dicom_folder(dicom_study, salt=Workspace(tmp_path / "other").salt)
    assert {c.patient for c in other.cases}.isdisjoint(patients), "another secret, other hashes"


def test_no_identifier_reaches_workspace_files_exports_or_output(dicom_study, tmp_path, capsys):
    model = torchscript_binary_model(tmp_path / "model", 128)
    ws = tmp_path / "ws"
    args = ["--model", str(model), "--cohort", str(dicom_study), "--workspace", str(ws)]
    assert main(["check", "--cohort", str(dicom_study), "--workspace", str(ws)]) == 0
    assert main(["predict", *args, "--out", str(tmp_path / "pred.csv")]) == 0
    case = load_dicom_folder(dicom_study, salt=Workspace(ws).salt).cases[0].case_id
    assert main(["explain", *args, "--case", case, "--method", "saliency", "--out", str(tmp_path / "m.npy")]) == 0
    out = capsys.readouterr()
    written = [p for p in [*ws.rglob("*"), tmp_path / "pred.csv"] if p.is_file()]
    assert any(p.suffix == ".parquet" for p in written) and any(p.suffix == ".npz" for p in written)
    for p in written:
        blob = p.read_bytes()
        for s in SECRETS:
            assert s.encode() not in blob, (s, p)
    assert not any(s in out.out + out.err for s in SECRETS)
    assert np.load(tmp_path / "m.npy").shape == (1, 128, 128)


def test_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match=r"empty: folder is empty; expected DICOM files"):
        load_dicom_folder(tmp_path / "empty", salt="s")


def test_pages_never_render_identifiers_of_a_dicom_folder_cohort(dicom_study, tmp_path):
    import shutil

    from streamlit.testing.v1 import AppTest

    from tests.pages.test_pages import ROOT, allow

    ws = tmp_path / "ws"
    allow(ws)
    shutil.copytree(dicom_study, ws / "cohorts" / "ct_study")
    model = ws / "models" / "ct1"
    model.mkdir(parents=True)
    from data_adapters.models.state_dict import monai_network

    net = monai_network("DenseNet")(spatial_dims=2, in_channels=1, out_channels=1, init_features=4, growth_rate=4,
                                    block_config=[1, 1], bn_size=2, dropout_prob=0.1)
    torch.save(net.state_dict(), model / "weights.pt")
    write_spec(model, {"name": "ct", "version": "1", "format": "state_dict", "weights": "weights.pt",
                       "network": {"name": "DenseNet", "args": {"spatial_dims": 2, "in_channels": 1, "out_channels": 1,
                                   "init_features": 4, "growth_rate": 4, "block_config": [1, 1], "bn_size": 2,
                                   "dropout_prob": 0.1}},
                       "task": "binary", "class_names": ["normal", "abnormal"],
                       # the model works on a 64² grid: CT_small's 128² slices are resized for it and for display
                       "preprocessing": {"in_channels": 1, "spatial_size": [64, 64], "intensity": "range",
                                         "intensity_range": [-1000, 1000, 0, 1], "resize": True}})
    for name in ("pages/home.py", "pages/case_review.py"):
        at = AppTest.from_file(str(ROOT / name), default_timeout=120)
        at.session_state["workspace"] = str(ws)
        at.session_state["model"] = "ct1"
        at.session_state["cohort"] = "ct_study"
        at.run()
        assert not at.exception, name
        rendered = " ".join(str(e.value) for kind in ("markdown", "caption", "metric", "dataframe", "selectbox",
                                                      "title", "info", "warning", "success")
                            for e in getattr(at, kind))
        assert "Hospital North" in rendered or name.endswith("home.py"), "the page shows the cohort"
        assert "as the model sees it" in rendered or name.endswith("home.py")
        for s in SECRETS:
            assert s not in rendered, (s, name)


# -- the board's views: counts by reason, no hidden group named ---------------------------------------------------

NAMES_IN_ROWS = ["DOE^JANE", "Jane_Doe_1961", "Smith_John", "7781234"]


def test_a_board_member_reads_rejected_rows_as_counts_by_reason_only(tmp_path, monkeypatch):
    from tests.helpers import tiny_workspace
    from tests.pages.test_roles import as_role

    monkeypatch.setenv("GLASSBOX_AUTH", "local")
    monkeypatch.setenv("GLASSBOX_USERS_FILE", str(tmp_path / "users.sqlite"))
    ws = tiny_workspace(tmp_path / "ws", n=24)
    manifest = ws / "cohorts" / "pngs" / "manifest.csv"
    manifest.write_text(manifest.read_text() + "DOE^JANE,i0.png,0,A\nDOE^JANE,i1.png,1,B\n"
                        "mrn7781234,scans/Jane_Doe_1961.png,0,A\nc99,scans/Smith_John.png,1,B\n")
    shown = {}
    for role in ("board", "developer"):
        at = as_role("pages/home.py", ws, role, model="tiny", cohort="pngs")
        assert not at.exception, role
        shown[role] = " ".join(str(e.value) for kind in ("markdown", "caption", "metric", "dataframe", "info",
                                                         "warning", "success", "title", "subheader")
                               for e in getattr(at, kind))
        if role == "board":
            (table,) = [d.value for d in at.dataframe if "reason" in d.value.columns]
            assert list(table.columns) == ["rows", "field", "reason"]
            assert table.set_index("reason")["rows"].to_dict() == {"file not found": 2, "duplicate case id": 1}
    assert "DOE^JANE" in shown["developer"], "a developer still reads the full load report"
    for s in NAMES_IN_ROWS:
        assert s not in shown["board"], s


def test_subgroups_board_output_names_no_hidden_group(demo_root, demo_cohort, tmp_path, capsys):
    from evaluation.cohort_summary import board_decision

    out = tmp_path / "board.csv"
    args = ["subgroups", "--model", str(demo_root / "models" / "v1"), "--cohort",
            str(demo_root / "cohorts" / "demo2d" / "manifest.csv"), "--workspace", str(demo_root), "--by", "scanner",
            "--where", "split=test", "--n-boot", "200", "--threshold", "0.5"]
    assert main([*args, "--out", str(tmp_path / "all.csv")]) in (0, 1)
    full = capsys.readouterr().out
    assert main([*args, "--board", "68", "--out", str(out)]) in (0, 1)
    text = capsys.readouterr().out
    hide = board_decision(demo_cohort, 68).view("scanner", where={"split": ["test"]}, labelled=True)
    assert set(hide.hidden) == {"Borealis 3", "Cygnus Q"}, "67 test cases under k, 68 hidden with it"
    assert hide.names_hidden(full), "without --board the groups are named (the test can fail)"
    board = pd.read_csv(out)
    assert set(board.loc[board["group"].isin(list(hide.hidden)), "n"]) == {"<68"}
    gaps = (tmp_path / "board.gaps.csv").read_text()
    for line in text.splitlines():
        assert "<68" in line or not hide.names_hidden(line), line
    assert not hide.names_hidden(gaps), gaps
    assert main([*args[:-4], "--where", "age=50", "--board", "68"]) == 2
    assert "--where 'age=50': with --board, cases can be selected only by an attribute" in capsys.readouterr().err

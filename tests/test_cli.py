"""The glassbox command line on the demo and on bad input."""
from __future__ import annotations

import numpy as np
import pandas as pd

from workspace.cli import main


def test_check_prints_the_load_report(demo_root, capsys):
    manifest = demo_root / "cohorts" / "demo2d" / "manifest.csv"
    assert main(["check", "--cohort", str(manifest), "--model", str(demo_root / "models" / "v2")]) == 0
    out = capsys.readouterr().out
    assert "720 of 720 rows loaded, 0 rejected" in out
    assert "checked against model demo lesion detector v2: input (1, 128, 128)" in out


def test_check_lists_rejections_and_fails_when_nothing_loads(tmp_path, capsys):
    (tmp_path / "manifest.csv").write_text("case_id,image,label\na,missing.png,0\nb,gone.png,1\n")
    assert main(["check", "--cohort", str(tmp_path / "manifest.csv")]) == 1
    out = capsys.readouterr().out
    assert "0 of 2 rows loaded, 2 rejected" in out
    assert "rejected row 1 (case a), field 'image': file not found: missing.png" in out


def test_bad_input_is_one_clear_line(tmp_path, capsys):
    assert main(["check", "--cohort", str(tmp_path / "nope.csv")]) == 2
    assert capsys.readouterr().err.strip().endswith("nope.csv: manifest not found")


def test_predict_writes_probabilities_per_class(demo_root, tmp_path):
    out = tmp_path / "p.csv"
    assert main(["predict", "--model", str(demo_root / "models" / "v1"),
                 "--cohort", str(demo_root / "cohorts" / "demo2d" / "manifest.csv"), "--out", str(out),
                 "--workspace", str(demo_root)]) == 0
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["case_id", "p_no lesion", "p_lesion"] and len(frame) == 720


def test_explain_writes_one_map(demo_root, tmp_path, capsys):
    out = tmp_path / "m.npy"
    args = ["explain", "--model", str(demo_root / "models" / "v2"), "--cohort",
            str(demo_root / "cohorts" / "demo2d" / "manifest.csv"), "--case", "demo-0002", "--workspace",
            str(tmp_path / "ws")]
    assert main([*args, "--method", "grad_cam", "--out", str(out)]) == 0
    assert np.load(out).shape == (1, 128, 128)
    assert "class 'lesion'" in capsys.readouterr().out
    assert main([*args, "--method", "integrated_gradient"]) == 2
    assert "(did you mean 'integrated_gradients'" in capsys.readouterr().err
    assert main([*args, "--method", "saliency", "--target", "tumour"]) == 2
    assert "target 'tumour' is not a class; classes are 0='no lesion', 1='lesion'" in capsys.readouterr().err

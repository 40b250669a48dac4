"""The glassbox command line on the demo and on bad input."""
from __future__ import annotations

import numpy as np
import pandas as pd

from workspace.cli import EXIT_COULD_NOT_JUDGE, main


def test_check_prints_the_load_report(demo_root, capsys):
    manifest = demo_root / "cohorts" / "demo2d" / "manifest.csv"
    assert main(["check", "--cohort", str(manifest), "--model", str(demo_root / "models" / "v2")]) == 0
    out = capsys.readouterr().out
    assert "720 of 720 rows loaded, 0 rejected" in out
    assert "checked against model demo lesion detector v2: 2D input 1×128×128 (channels × spatial)" in out


def test_check_lists_rejections_and_fails_when_nothing_loads(tmp_path, capsys):
    (tmp_path / "manifest.csv").write_text("case_id,image,label\na,missing.png,0\nb,gone.png,1\n")
    assert main(["check", "--cohort", str(tmp_path / "manifest.csv")]) == 1
    out = capsys.readouterr().out
    assert "0 of 2 rows loaded, 2 rejected" in out
    assert "rejected 1 row, field 'image': file not found: missing.png (row 1)" in out


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


def _demo_args(demo_root, version="v1"):
    return ["--model", str(demo_root / "models" / version), "--cohort",
            str(demo_root / "cohorts" / "demo2d" / "manifest.csv"), "--workspace", str(demo_root)]


def test_subgroups_writes_the_table_and_gates_a_release(demo_root, tmp_path, capsys):
    out = tmp_path / "table.csv"
    args = ["subgroups", *_demo_args(demo_root, "v2"), "--by", "site", "--where", "split=test", "--n-boot", "300",
            "--threshold", "0.5"]
    assert main([*args, "--out", str(out), "--max-gap", "sensitivity=0.05"]) == 1
    text = capsys.readouterr().out
    assert "FAIL: sensitivity gap" in text and "vs B" in text and "lies above 0.05" in text
    table = pd.read_csv(out)
    assert list(table["group"]) == ["overall", "A", "B", "C"] and {"auroc_lo", "auroc_hi"} <= set(table.columns)
    assert (tmp_path / "table.gaps.csv").is_file()
    assert main([*args, "--max-gap", "sensitivity=0.9"]) == 0
    assert "pass: sensitivity gap interval does not lie above 0.9 (3 groups compared)" in capsys.readouterr().out
    assert main([*args, "--max-gap", "accuracy=0.1"]) == 2
    assert "metric must be one of auroc, sensitivity" in capsys.readouterr().err


def test_subgroups_prints_the_miscalibration_tests_verdict_as_the_page_and_report_word_it(demo_root, tmp_path,
                                                                                           capsys):
    import re

    import pytest

    out = tmp_path / "table.csv"
    assert main(["subgroups", *_demo_args(demo_root, "v2"), "--by", "site", "--where", "split=test", "--n-boot",
                 "100", "--threshold", "0.5", "--out", str(out)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("calibration test:"))
    found = re.match(r"calibration test: ECE overall (\d\.\d{3}) \((\d\.\d{3}) by chance; miscalibration "
                     r"(shown|not shown), p (\d\.\d{3})\) \(outcomes redrawn", line)
    assert found, line
    overall = pd.read_csv(out).set_index("group").loc["overall"]
    ece, chance, verdict, p = float(found[1]), float(found[2]), found[3], float(found[4])
    assert (ece, chance, p) == pytest.approx((overall["ece"], overall["ece_chance"], overall["ece_p"]), abs=5e-4)
    assert verdict == ("shown" if p < 0.05 else "not shown")


def test_a_gate_that_could_not_judge_is_neither_pass_nor_fail(demo_root, capsys):
    args = ["subgroups", *_demo_args(demo_root, "v2"), "--by", "site", "--where", "split=test", "--n-boot", "100"]
    assert main([*args, "--max-gap", "sensitivity=0.9", "--min-n", "5000"]) == EXIT_COULD_NOT_JUDGE == 3
    text = capsys.readouterr().out
    assert "COULD NOT JUDGE: sensitivity: 0 of 3 group(s)" in text and "pass:" not in text
    assert "judgement: could not judge" in text


def test_uncertainty_command(demo_root, tmp_path, capsys):
    out = tmp_path / "u.csv"
    assert main(["uncertainty", *_demo_args(demo_root, "v1"), "--model", str(demo_root / "models" / "v2"),
                 "--method", "ensemble", "--out", str(out)]) == 0
    frame = pd.read_csv(out)
    assert len(frame) == 720 and {"entropy", "mutual_information", "p_lesion", "std_lesion"} <= set(frame.columns)
    assert "wrote 720 cases" in capsys.readouterr().out


def test_check_predict_and_explain_run_on_the_demo_dicom_studies_with_the_3d_model(demo_root, tmp_path, capsys):
    import numpy as np

    studies, model = demo_root / "cohorts" / "demo3d_dicom", demo_root / "models" / "ct3d-v1"
    args = ["--model", str(model), "--cohort", str(studies), "--workspace", str(demo_root)]
    assert main(["check", *args[2:], "--model", str(model)]) == 0
    out = capsys.readouterr().out
    assert "24 case(s) from 768 files; 0 rejected" in out
    assert "checked against model demo nodule detector (3D CT) 3d-v1: 3D input 1×32×48×48" in out
    assert main(["predict", *args, "--out", str(tmp_path / "p.csv")]) == 0
    case = open(tmp_path / "p.csv").read().splitlines()[1].split(",")[0]
    assert main(["explain", *args, "--case", case, "--method", "grad_cam", "--out", str(tmp_path / "m.npy")]) == 0
    assert np.load(tmp_path / "m.npy").shape == (1, 32, 48, 48)
    assert "Demo^Patient" not in capsys.readouterr().out + open(tmp_path / "p.csv").read()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_runs_from_any_folder_and_stops_on_sigterm(demo_root, tmp_path):
    """Started outside the repository, the server answers; SIGTERM to `glassbox serve` stops the server itself
    (no child left holding the port)."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    port = _free_port()
    glassbox = Path(sys.executable).parent / "glassbox"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLASSBOX_")}
    proc = subprocess.Popen([str(glassbox), "serve", "--workspace", str(demo_root), "--port", str(port)],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    assert r.read() == b"ok"
                break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, "server did not start"
                time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) is not None
        time.sleep(0.5)
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, "nothing serves the port after SIGTERM"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_the_app_runs_from_another_working_directory(demo_root, tmp_path, monkeypatch):
    from pathlib import Path

    from tests.pages.test_pages import page

    monkeypatch.chdir(tmp_path)  # assets/logo.svg and the pages resolve from the package, not from here
    at = page(str(Path(__file__).resolve().parents[2] / "app.py"), demo_root)
    assert not at.exception and at.title[0].value == "Glassbox"


def test_progress_is_one_line_per_step_in_a_log(demo_root, tmp_path):
    """Not a terminal: no live bar redrawn a thousand times, one line when each step ends."""
    import io

    from workspace.cli import _Bars

    log = io.StringIO()
    bars = _Bars(log)
    step = bars("predicting")
    for i in range(1001):
        step(i, 1000)
    bars("explaining")(3, 3)
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("predicting: 1000/1000 in ") and lines[1].startswith("explaining")

"""Settings with a schema: settings.json, model.json and the operator's variables and files are checked against a
declared schema, and every reproduction from the attack report ends in a named refusal (never a silent widening,
never a traceback). Each test also shows what the old reading did with the same input, so that it could fail."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from data_adapters.errors import InvalidInputError, ModelError
from data_adapters.models import load_model, read_spec
from data_adapters.schema import MODEL_SPEC, CARD, PREPROCESSING, parse_json, read_json, roots
from tests.data_adapters.test_bundle import NET, write_bundle
from workspace.settings import (
    SETTINGS,
    Operator,
    check_environment,
    check_rule,
    load_settings,
    operator_roots,
    operator_settings,
    safe_file_stem,
)
from workspace.store import Workspace


def _write(root: Path, settings) -> Workspace:
    root.mkdir(parents=True, exist_ok=True)
    (root / "settings.json").write_text(settings if isinstance(settings, str) else json.dumps(settings))
    return Workspace(root)


def _old_roots(text: str) -> list[Path]:
    """What the old reading made of a string given for a list of roots: one root per character."""
    return [Path(p) for p in json.loads(text)["model_roots"]]


# -- roots: a string is refused, never iterated per character -----------------------------------------------------
def test_a_string_for_model_roots_is_refused_and_its_bundle_never_runs(tmp_path):
    witness = tmp_path / "witness"
    trojan = tmp_path / "srv" / "trusted" / "trojan"
    network_def = f"$__import__('pathlib').Path(r'{witness}').touch() or monai.networks.nets.DenseNet(" + \
        ", ".join(f"{k}={v!r}" for k, v in NET.items()) + ")"
    write_bundle(trojan, network_def=network_def)
    text = json.dumps({"model_roots": "/srv/trusted"})
    assert Path("/") in _old_roots(text), "the old reading trusted / (the string's first character)"
    ws = _write(tmp_path / "ws", text)
    with pytest.raises(InvalidInputError, match=r"settings\.json: model_roots must be a list of absolute folder "
                                                r"paths, got \"/srv/trusted\""):
        ws.load_model(trojan)
    assert not witness.exists(), "the bundle's config code never ran"


def test_a_string_for_data_roots_does_not_widen_the_data_root_to_slash(tmp_path):
    ws = _write(tmp_path / "ws", {"data_roots": "/data"})
    with pytest.raises(InvalidInputError, match=r"data_roots must be a list of absolute folder paths, got \"/data\""):
        ws.data_roots


@pytest.mark.parametrize("entry,pattern", [
    ("relative/folder", r"data_roots\[0\] must be an absolute folder path, got \"relative/folder\""),
    ("/", r"data_roots\[0\]: '/' is the file-system root"),
    ("/a/..", r"data_roots\[0\]: '/a/\.\.' is the file-system root"),
    (7, r"data_roots\[0\] must be an absolute folder path, got 7"),
])
def test_each_root_is_an_absolute_folder_and_never_the_file_system_root(tmp_path, entry, pattern):
    ws = _write(tmp_path / "ws", {"data_roots": [entry]})
    with pytest.raises(InvalidInputError, match=pattern):
        ws.data_roots


def test_valid_roots_are_read_as_given(tmp_path):
    ws = _write(tmp_path / "ws", {"data_roots": [str(tmp_path / "archive")], "model_roots": [str(tmp_path / "m")]})
    assert ws.data_roots[0] == tmp_path / "archive"
    assert ws.model_roots == [ws.root / "models", tmp_path / "m"]
    assert load_settings(tmp_path / "nowhere").model_roots == (), "a missing file is every default"


def test_operator_variables_are_checked_by_name(monkeypatch, tmp_path):
    monkeypatch.setenv("GLASSBOX_MODEL_ROOTS", os.pathsep.join([str(tmp_path), "relative"]))
    with pytest.raises(InvalidInputError, match=r"\$GLASSBOX_MODEL_ROOTS entry 2 must be an absolute folder path"):
        operator_roots("GLASSBOX_MODEL_ROOTS")
    monkeypatch.setenv("GLASSBOX_MODEL_ROOTS", "/")
    with pytest.raises(InvalidInputError, match=r"file-system root"):
        check_environment()
    monkeypatch.setenv("GLASSBOX_MODEL_ROOTS", str(tmp_path))
    assert operator_roots("GLASSBOX_MODEL_ROOTS") == [tmp_path]
    for bad in ("ten", "1", "2.5"):
        with pytest.raises(InvalidInputError, match=r"\$GLASSBOX_BOARD_K must be an integer ≥ 2"):
            operator_settings({"GLASSBOX_BOARD_K": bad})
    assert operator_settings({}).board_k == 10 and operator_settings({"GLASSBOX_BOARD_K": "25"}).board_k == 25


# -- unknown keys, bad JSON, rules --------------------------------------------------------------------------------
def test_a_misspelt_key_is_refused_with_the_closest_known_one(tmp_path):
    ws = _write(tmp_path / "ws", {"data_root": ["/archive"]})
    with pytest.raises(InvalidInputError, match=r"unknown field\(s\) 'data_root' \(did you mean 'data_roots'\?\)"):
        ws.data_roots
    ws = _write(tmp_path / "ws", {"operating_point": {"treshold": 0.4}})
    with pytest.raises(InvalidInputError, match=r"'treshold' \(did you mean 'threshold'\?\)"):
        ws.settings


@pytest.mark.parametrize("text,pattern", [
    ("{oops", r"settings\.json: not valid JSON"),
    ("[1, 2]", r"settings\.json: must hold an object .* at the top level, got an array"),
    ('{"data_roots": ["/a"], "data_roots": ["/"]}', r"key 'data_roots' appears twice"),
    ('{"operating_point": {"threshold": NaN}}', r"NaN is not a JSON number"),
    ("[" * 100_000 + "]" * 100_000, r"nested deeper than 32 levels"),
    (b"\xff\xfe{}".decode("latin-1"), r"not valid JSON"),
])
def test_malformed_settings_get_a_named_message(tmp_path, text, pattern):
    ws = _write(tmp_path / "ws", text)
    with pytest.raises(InvalidInputError, match=pattern):
        ws.settings


@pytest.mark.parametrize("rule,ok", [("youden", True), ("sensitivity=0.9", True), ("specificity=1", True),
                                     ("sensitivity=2", False), ("sensitivity=0", False), ("specificity=-0.1", False),
                                     ("sensitivity=high", False), ("sens=0.9", False), ("sensitivity=nan", False)])
def test_a_threshold_rule_needs_a_target_in_zero_one(rule, ok):
    if ok:
        assert check_rule(rule) == rule
    else:
        with pytest.raises(InvalidInputError, match=r"operating_point\.rule"):
            check_rule(rule)


def test_operating_point_sensitivity_2_is_refused_in_settings(tmp_path):
    from sklearn.metrics import roc_curve

    import numpy as np

    # what the old rule did with sensitivity=2: np.argmax of an all-False mask is 0, the curve's first threshold
    y, p = np.array([0, 1, 0, 1]), np.array([0.1, 0.8, 0.3, 0.6])
    fpr, tpr, thr = roc_curve(y, p)
    assert not (tpr >= 2).any() and np.argmax(tpr >= 2) == 0, "a silent pick, not a refusal"
    ws = _write(tmp_path / "ws", {"operating_point": {"rule": "sensitivity=2"}})
    with pytest.raises(InvalidInputError, match=r"operating_point\.rule 'sensitivity=2': the target sensitivity must "
                                                r"be a number in \(0, 1\]"):
        ws.settings
    ws = _write(tmp_path / "ws", {"operating_point": {"threshold": 0.4, "rule": "youden"}})
    with pytest.raises(InvalidInputError, match=r"either a fixed 'threshold' or a 'rule'"):
        ws.settings
    ws = _write(tmp_path / "ws", {"operating_point": {"threshold": True}})
    with pytest.raises(InvalidInputError, match=r"operating_point\.threshold must be a number in \[0, 1\], got true"):
        ws.settings


# -- model.json -----------------------------------------------------------------------------------------------------
def _spec(**change) -> dict:
    base = {"name": "m", "version": "v1", "format": "torchscript", "weights": "model.ts", "task": "binary",
            "class_names": ["no", "yes"], "preprocessing": {"in_channels": 1, "spatial_size": [12, 12]}}
    return {**base, **change}


def test_model_json_as_an_array_or_nested_deep_is_named(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model.json").write_text("[1, 2, 3]")
    with pytest.raises(ModelError, match=r"model\.json: must hold an object .* got an array"):
        load_model(folder)
    (folder / "model.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(RecursionError):  # what plain json.loads does: the old read_spec let this through
        json.loads((folder / "model.json").read_text())
    with pytest.raises(ModelError, match=r"model\.json: nested deeper than 32 levels"):
        read_spec(folder)
    (folder / "model.json").write_text('{"name": "a", "name": "b"}')
    with pytest.raises(ModelError, match=r"key 'name' appears twice"):
        read_spec(folder)


def test_card_limitations_as_text_is_one_limitation_not_four_letters():
    assert tuple("none") == ("n", "o", "n", "e"), "what tuple() of the string made of it"
    assert CARD.check({"limitations": "none"}, "card")["limitations"] == ["none"]
    with pytest.raises(InvalidInputError, match=r"card\.limitations\[0\] must be a non-empty string, got 3"):
        CARD.check({"limitations": [3]}, "card")
    with pytest.raises(InvalidInputError, match=r"card\.owner must be a string, number, boolean or a list of them"):
        CARD.check({"owner": {"nested": 1}}, "card")


def test_a_card_limitation_given_as_text_loads_as_one(tmp_path):
    from tests.helpers import torchscript_binary_model

    folder = tmp_path / "m"
    torchscript_binary_model(folder, 12)
    spec = json.loads((folder / "model.json").read_text())
    spec["card"] = {"limitations": "none"}
    (folder / "model.json").write_text(json.dumps(spec))
    assert load_model(folder).card.limitations == ("none",)


@pytest.mark.parametrize("window,pattern", [
    ([100, 100, 0, 1], r"needs a_min < a_max .* got a_min=100, a_max=100"),
    ([400, -1000, 0, 1], r"needs a_min < a_max"),
    ([-1000, 400, 1, 1], r"needs b_min != b_max"),
    ([-1000, 400, 0], r"must be a list of 4 numbers"),
    (["-1000", 400, 0, 1], r"intensity_range\[0\] must be a number"),
])
def test_a_flat_intensity_window_is_refused(window, pattern):
    with pytest.raises(InvalidInputError, match=pattern):
        PREPROCESSING.check({"in_channels": 1, "spatial_size": [8, 8], "intensity": "range",
                             "intensity_range": window}, "preprocessing")


@pytest.mark.parametrize("change,pattern", [
    ({"name": ""}, r"name must be a non-empty string"),
    ({"version": ["v1"]}, r"version must be a string or a number"),
    ({"explain_layer": 3}, r"explain_layer must be a layer name"),
    ({"class_names": ["a", "a"]}, r"class_names lists \"a\" more than once"),
    ({"network": {"args": {}}}, r"missing field 'network\.name'"),
    ({"preprocessing": {"in_channels": 0, "spatial_size": [8, 8]}}, r"preprocessing\.in_channels must be an integer"),
    ({"preprocessing": {"in_channels": 1, "spatial_size": [8]}}, r"spatial_size must give 2 or 3 sizes"),
    ({"preprocessing": {"in_channels": 1, "spatial_size": [8, 8], "spacing": [0, 1]}},
     r"spacing\[0\] must be a number in \(0, 1000\], got 0"),
])
def test_model_json_fields_are_typed_and_ranged(change, pattern):
    with pytest.raises(InvalidInputError, match=pattern):
        MODEL_SPEC.check(_spec(**change), "")
    assert MODEL_SPEC.check(_spec(), "") == _spec(), "a good spec passes unchanged (it is hashed as written)"


def test_the_schema_engine_names_paths_and_refuses_silent_coercions():
    with pytest.raises(InvalidInputError, match=r"roots must be a list of absolute folder paths, got \"/srv\""):
        roots().check("/srv", "roots")
    with pytest.raises(InvalidInputError, match=r"x\.json: must hold an object"):
        parse_json("3", "x.json")
    assert parse_json('{"a": [1, {"b": 2}]}', "x.json") == {"a": [1, {"b": 2}]}
    assert set(SETTINGS.fields) == {"model_roots", "data_roots", "allow_columns", "cluster_column", "operating_point"}


def test_read_json_bounds_the_file_size(tmp_path):
    big = tmp_path / "big.json"
    big.write_text('{"a": "' + "x" * (2 << 20) + '"}')
    with pytest.raises(InvalidInputError, match=r"big\.json: \d+ bytes; a settings or model file is at most"):
        read_json(big)


# -- file names made from data ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("case_id", ["../../escape_case", "/etc/passwd", "..", "a/b", "a\\b", "\u202eevil", "x" * 300])
def test_a_file_name_from_a_case_id_never_leaves_its_folder(case_id):
    stem = safe_file_stem(case_id)
    assert "/" not in stem and "\\" not in stem and not stem.startswith(".") and len(stem) <= 89
    assert Path(stem).name == stem and stem.isascii()
    assert safe_file_stem("k0") == "k0", "a plain id is kept as it is"
    assert safe_file_stem("../a") != safe_file_stem("a"), "two ids never share a file"


# -- the operator's files, checked at start ---------------------------------------------------------------------
def test_a_garbage_users_file_is_named_not_a_traceback(tmp_path, monkeypatch):
    import sqlite3

    from workspace.access import Users

    garbage = tmp_path / "users.sqlite"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(sqlite3.DatabaseError):  # what opening it did before: a traceback
        sqlite3.connect(garbage).executescript("CREATE TABLE IF NOT EXISTS t (a)")
    with pytest.raises(InvalidInputError, match=r"users\.sqlite: not a Glassbox users file"):
        Users(garbage)
    good = Users(tmp_path / "good.sqlite")
    good.add("alice", "radiologist", None)
    db = sqlite3.connect(good.path)
    db.execute("UPDATE users SET role = 'chief' WHERE name = 'alice'")
    db.commit()
    with pytest.raises(InvalidInputError, match=r"good\.sqlite: account 'alice': role must be one of"):
        good.check()


def test_check_operator_names_the_first_bad_input_at_start(tmp_path, monkeypatch):
    from workspace.settings import check_operator

    monkeypatch.setenv("GLASSBOX_SECRET_FILE", str(tmp_path / "secret"))
    monkeypatch.setenv("GLASSBOX_USERS_FILE", str(tmp_path / "users.sqlite"))
    ws = _write(tmp_path / "ws", {"data_roots": [str(tmp_path)]})
    check_operator([ws.root])  # all good: nothing raised
    _write(ws.root, {"model_roots": "/srv/trusted"})
    with pytest.raises(InvalidInputError, match=r"model_roots must be a list"):
        check_operator([ws.root])
    _write(ws.root, {})
    monkeypatch.setenv("GLASSBOX_BOARD_K", "three")
    with pytest.raises(InvalidInputError, match=r"GLASSBOX_BOARD_K"):
        check_operator([ws.root])
    monkeypatch.delenv("GLASSBOX_BOARD_K")
    (tmp_path / "secret").write_text("")
    with pytest.raises(InvalidInputError, match=r"secret"):
        check_operator([ws.root])


def test_the_app_refuses_to_start_on_a_bad_settings_file(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.pages.test_pages import ROOT, TIMEOUT, allow

    monkeypatch.setenv("GLASSBOX_SECRET_FILE", str(tmp_path / "secret"))
    ws = _write(tmp_path / "ws", {"data_roots": "/data"})
    allow(ws.root)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    assert at.error and "Glassbox cannot start with these settings" in at.error[0].value
    assert "data\\_roots must be a list" in at.error[0].value or "data_roots must be a list" in at.error[0].value


def test_a_bundles_metadata_nested_deep_is_named(tmp_path):
    folder = tmp_path / "bundle"
    write_bundle(folder)
    (folder / "configs" / "metadata.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ModelError, match=r"metadata\.json: nested deeper than 32 levels"):
        read_spec(folder)
    (folder / "configs" / "metadata.json").write_text("[]")
    with pytest.raises(ModelError, match=r"metadata\.json: must hold an object"):
        read_spec(folder)


def test_serve_refuses_bad_settings_before_the_server_starts(tmp_path, monkeypatch, capsys):
    """``glassbox serve`` checks the operator's inputs itself; the server is never started on a string root."""
    from workspace import cli

    (tmp_path / "settings.json").write_text(json.dumps({"model_roots": "/srv/trusted"}))
    started = []
    monkeypatch.setattr(cli.os, "execve", lambda *a: started.append(a))
    monkeypatch.setattr(cli.os, "environ", dict(os.environ))  # the command writes the server's environment here
    assert cli.main(["serve", "--workspace", str(tmp_path), "--port", "8599"]) == 2
    assert not started
    assert "model_roots must be a list of absolute folder paths" in capsys.readouterr().err


@pytest.mark.parametrize("rule", ["sensitivity=2", "specificity=0", "sensitivity=-0.5"])
def test_a_threshold_rule_outside_zero_to_one_is_refused_on_the_command_line_too(rule):
    import numpy as np

    from evaluation.subgroups import choose_threshold

    with pytest.raises(InvalidInputError, match=r"must lie in \(0, 1\]"):
        choose_threshold(np.array([0, 1, 0, 1]), np.array([0.1, 0.8, 0.3, 0.6]), rule)


# -- the operator's settings in one object: k read everywhere from it, never lowered by a command ------------------
def test_a_commands_k_may_raise_the_operators_k_never_lower_it():
    op = Operator(board_k=20)
    assert op.k_for(None) == 20 and op.k_for(25) == 25 and op.k_for(20) == 20
    with pytest.raises(InvalidInputError, match=r"--k 15 is below the operator's k of 20 .*a command may raise k, "
                                                r"never lower it"):
        op.k_for(15)
    assert Operator().board_k == 10, "nothing set: the default"


def test_report_and_subgroups_board_read_the_operators_k(demo_root, monkeypatch, capsys):
    from workspace.cli import main

    monkeypatch.setenv("GLASSBOX_BOARD_K", "80")
    common = ["--model", "v1", "--cohort", "demo2d", "--workspace", str(demo_root)]
    assert main(["report", *common, "--k", "40", "--trust", ""]) == 2
    assert "--k 40 is below the operator's k of 80" in capsys.readouterr().err
    assert main(["subgroups", *common, "--by", "site", "--board", "40"]) == 2
    assert "--board 40 is below the operator's k of 80" in capsys.readouterr().err
    monkeypatch.setenv("GLASSBOX_BOARD_K", "5")
    assert main(["subgroups", *common, "--by", "site", "--board", "4"]) == 2, "the refusal follows the operator's k"


def test_the_pages_read_the_operators_k(demo_root, monkeypatch):
    """The Subgroups and Report pages' k starts at the operator's k (the old Report default was 10 whatever the
    operator set)."""
    from tests.pages.test_pages import page

    monkeypatch.setenv("GLASSBOX_BOARD_K", "37")
    at = page("pages/subgroups.py", demo_root, model="v1", cohort="demo2d")
    assert not at.exception and at.number_input(key="sub_k").value == 37


def test_serve_refuses_a_bad_flag_at_start_naming_it(tmp_path, monkeypatch, capsys):
    from workspace import cli

    started = []
    monkeypatch.setattr(cli.os, "execve", lambda *a: started.append(a))
    monkeypatch.setattr(cli.os, "environ", dict(os.environ))
    for flags, said in ((["--board-k", "1"], "--board-k must be an integer ≥ 2"),
                        (["--model-root", "/"], "--model-root: '/' is the file-system root")):
        assert cli.main(["serve", "--workspace", str(tmp_path), "--port", "8599", *flags]) == 2
        assert said in capsys.readouterr().err
    monkeypatch.setenv("GLASSBOX_AUTH", "everyone")
    assert cli.main(["serve", "--workspace", str(tmp_path), "--port", "8599"]) == 2
    assert "GLASSBOX_AUTH must be one of" in capsys.readouterr().err
    assert not started, "the server never started on a bad setting"


def test_serve_carries_its_flags_and_keeps_the_operators_environment(tmp_path, monkeypatch):
    import argparse

    from workspace.cli import serve_command

    monkeypatch.setenv("GLASSBOX_BOARD_K", "25")
    args = argparse.Namespace(workspace=[str(tmp_path)], model_root=None, data_root=[str(tmp_path)], auth=None,
                              board_k=None, address="127.0.0.1", port=8599)
    _, env = serve_command(args)
    assert env["GLASSBOX_BOARD_K"] == "25", "no flag: the operator's environment is kept, never reset to 10"
    assert operator_settings(env).data_roots == (tmp_path.resolve(),)
    _, env = serve_command(argparse.Namespace(**{**vars(args), "board_k": 40}))
    assert operator_settings(env).board_k == 40


def test_subgroups_board_alone_means_the_operators_k():
    from workspace.cli import parser

    args = parser().parse_args(["subgroups", "--model", "v1", "--cohort", "demo2d", "--by", "site", "--board"])
    assert args.board == 0 and Operator(board_k=30).k_for(args.board or None, "--board") == 30
    assert parser().parse_args(["report", "--model", "v1", "--cohort", "demo2d"]).k is None, \
        "report's k defaults to the operator's, not a fixed 10"

"""The board report: every section, the 11 lifecycle questions and the provenance hashes in the PDF; small groups hidden
everywhere in it; the synthetic-data mark on every page; a signature that stops holding when the model changes."""
from __future__ import annotations

import html as html_lib
import re
import shutil
import subprocess

import pytest
from streamlit.testing.v1 import AppTest

from data_adapters.errors import InvalidInputError
from evaluation.suppression import suppression
from tests.pages.test_pages import ROOT, TIMEOUT, allow
from workspace import cli
from workspace.access import Identity
from workspace.report import CHECKLIST, gather, render_html, write_report
from workspace.review import Record
from workspace.store import Workspace

BOARD = Identity("chair", "board")
SECTIONS = ["Provenance", "Cohort", "Performance", "Explanations", "Version comparison", "Reviewers",
            "Lifecycle checklist", "Sign-off"]


@pytest.fixture(scope="module")
def demo_report(demo_root, tmp_path_factory):
    ws = Workspace(demo_root)
    models = ws.model_paths()
    v1, v2 = ws.load_model(models["v1"]), ws.load_model(models["v2"])
    cohort = ws.cohort_for(v2, ws.resolve_cohort("demo2d"))
    data = gather(ws, v2, cohort, baseline=v1, by=["scanner"], k=68, author=Identity("ops", "admin"),
                  trust_cases=8)
    out = write_report(data, tmp_path_factory.mktemp("report") / "report.pdf", Record(demo_root))
    return data, out, v2, cohort


def test_the_pdf_holds_every_section_question_and_hash(demo_report):
    data, pdf, v2, cohort = demo_report
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    pages = [p for p in text.split("\f") if p.strip()]
    flat = re.sub(r"\s+", " ", text)
    for section in SECTIONS:
        assert section in flat, section
    for q in CHECKLIST["questions"]:
        assert q["question"] in flat, q["id"]
    joined = "".join(text.split())  # long hashes wrap across lines
    for digest in (v2.weights_hash, cohort.content_hash, data.content_hash):
        assert digest in joined
    assert all("SYNTHETIC DATA" in p for p in pages), "every page says the data is generated"
    assert all(re.search(rf"page {i} of {len(pages)}", p) for i, p in enumerate(pages, 1)), "page numbers"
    assert "positives would be missed" in flat and "Cases fixed 0, broken 17" in flat
    pngs = pdf.parent / "pages"
    pngs.mkdir()
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(pdf), str(pngs / "p")], check=True)
    assert len(list(pngs.glob("*.png"))) == len(pages) >= 4


def test_small_groups_are_hidden_everywhere_in_the_report(demo_report):
    data, _, _, _ = demo_report
    sizes = {r["group"]: r["n"] for r in data.evidence["performance"]["table"]}
    hidden = {g for g, n in sizes.items() if n == "<68"}
    assert hidden == {"Borealis 3", "Cygnus Q"}, "67 cases under k, and 68 hidden so 67 cannot be derived"
    html = render_html(data)
    # the Cohort section counts the whole cohort (240 per scanner, none small); the evaluated split is what is small
    assert "<td>Borealis 3</td><td>240</td>" in html
    html = html[html.index('id="performance"'):html.index('id="checklist"')]
    for name in hidden:  # where a hidden group is named, the row says nothing but that it is hidden
        rows = re.findall(r"<tr>(?:(?!</tr>).)*</tr>", html, flags=re.S)
        for row in [r for r in rows if name in r]:
            cells = [html_lib.unescape(re.sub("<[^>]+>", "", c)).strip() for c in re.findall(r"<td>(.*?)</td>", row, flags=re.S)]
            assert all(c in (name, "<68", "") or c.startswith("suppressed") for c in cells), row
        outside = re.sub(r"<tr>(?:(?!</tr>).)*</tr>", "", html, flags=re.S)
        assert name not in outside
    hide = suppression({"Acme X1": 73, "Borealis 3": 67, "Cygnus Q": 68}, 68)
    assert not any(hide.names_hidden(f) for f in data.evidence["performance"]["flags"])
    assert all(r["group"] not in hidden for r in data.evidence["comparison"]["table"])


def test_a_signature_names_one_report_and_stops_holding_when_the_model_changes(tmp_path, monkeypatch, capsys):
    from tests.helpers import tiny_workspace

    monkeypatch.setenv("GLASSBOX_RECORD_DIR", str(tmp_path / "records"))
    monkeypatch.setenv("GLASSBOX_BOARD_K", "5")  # the operator's k: `report --k 5` may not go under it
    root = tiny_workspace(tmp_path / "ws", 12)
    folder = root / "models" / "tiny"
    ws = Workspace(root)

    def report():
        handle = ws.load_model(folder)
        return gather(ws, handle, ws.cohort_for(handle, ws.resolve_cohort("pngs")), k=5, author=BOARD,
                      trust_methods=(), figures=False)

    first = report()
    assert report().content_hash == first.content_hash, "the same model and cohort make the same report"
    record = Record(root)
    with pytest.raises(InvalidInputError, match="does not sign off"):
        record.sign_off(Identity("dev", "developer"), first.content_hash)
    record.sign_off(BOARD, first.content_hash)
    assert list(record.signoffs(first.content_hash)["actor"]) == ["chair"]
    assert "Signed by <b>chair</b>" in render_html(first, record)
    assert cli.main(["report", "--workspace", str(root), "--model", "tiny", "--cohort", "pngs", "--trust", "", "--k", "5",
                     "--expect", first.content_hash]) == 0
    assert "signed by chair (board)" in capsys.readouterr().out
    spec = (folder / "model.json").read_text()
    (folder / "model.json").write_text(spec.replace('"name": "tiny"', '"name": "tiny retrained"'))
    second = report()
    assert second.content_hash != first.content_hash and record.signoffs(second.content_hash).empty
    assert "Not signed." in render_html(second, record)
    assert cli.main(["report", "--workspace", str(root), "--model", "tiny", "--cohort", "pngs", "--trust", "", "--k", "5",
                     "--expect", first.content_hash]) == 1
    assert "does not hold for it" in capsys.readouterr().out
    shutil.rmtree(root)


def test_the_boards_answers_are_kept_stated_and_change_the_report(tmp_path, monkeypatch):
    from tests.helpers import tiny_workspace

    monkeypatch.setenv("GLASSBOX_RECORD_DIR", str(tmp_path / "records"))
    root = tiny_workspace(tmp_path / "ws", 12)
    folder = root / "models" / "tiny"
    ws = Workspace(root)
    handle = ws.load_model(folder)
    cohort = ws.cohort_for(handle, ws.resolve_cohort("pngs"))
    before = gather(ws, handle, cohort, k=5, author=BOARD, trust_methods=(), figures=False)
    record = Record(root)
    with pytest.raises(InvalidInputError, match="the board does"):
        record.answer(Identity("dev", "developer"), model_hash=handle.weights_hash, cohort_hash=cohort.content_hash,
                      question="monitoring_plan", answer="x")
    record.answer(BOARD, model_hash=handle.weights_hash, cohort_hash=cohort.content_hash, question="monitoring_plan",
                  answer="Quarterly drift review by radiology QA", open_items="name an owner")
    after = gather(ws, handle, cohort, k=5, author=BOARD, trust_methods=(), figures=False)
    stated = {q["id"]: q for q in after.evidence["checklist"]}["monitoring_plan"]
    assert (stated["answer"], stated["open_items"], stated["answered_by"]) == (
        "Quarterly drift review by radiology QA", "name an owner", "chair")
    assert after.content_hash != before.content_hash
    assert record.audit(action="checklist_answer").iloc[-1]["actor"] == "chair"
    assert record.verify().ok


@pytest.mark.parametrize("role, can_sign", [("board", True), ("developer", False)])
def test_report_page_signs_for_the_board_only(demo_root, monkeypatch, tmp_path, role, can_sign):
    from tests.pages.test_roles import account

    monkeypatch.setenv("GLASSBOX_AUTH", "local")
    monkeypatch.setenv("GLASSBOX_USERS_FILE", str(tmp_path / "users.sqlite"))  # sessions follow their accounts
    allow(demo_root)
    at = AppTest.from_file(str(ROOT / "pages" / "report.py"), default_timeout=TIMEOUT)
    for key, value in {"workspace": str(demo_root), "model": "v2", "cohort": "demo2d", "_identity":
                       account(f"{role}-1", role), "report_by": ["site"]}.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception and not at.error
    assert any("Synthetic data" in w.value for w in at.warning)
    sign = [b for b in at.button if b.label.startswith("Sign report")]
    assert bool(sign) == can_sign
    if can_sign:
        sign[0].click().run()
        assert not at.exception
        assert any("signed by **board-1**" in m.value for m in at.markdown)
        assert Record(demo_root).signoffs().iloc[-1]["actor"] == "board-1"


def test_the_model_card_follows_the_toolkit_schema_and_hides_small_groups(demo_report):
    from workspace.report import model_card

    data, _, v2, _ = demo_report
    card = model_card(data)
    # Model Card Toolkit v0.0.2: these top-level properties only (its schema sets additionalProperties false)
    assert set(card) <= {"schema_version", "model_details", "model_parameters", "quantitative_analysis",
                         "considerations"} and card["schema_version"] == "0.0.2"
    assert card["model_details"]["version"]["name"] == "v2" and v2.weights_hash in card["model_details"]["documentation"]
    assert "SYNTHETIC" in card["model_parameters"]["data"][0]["description"]
    metrics = card["quantitative_analysis"]["performance_metrics"]
    assert all(isinstance(m["value"], float) and set(m) == {"type", "value", "slice"} for m in metrics)
    overall = {m["type"]: m["value"] for m in metrics if m["slice"] == "overall"}
    assert overall["auroc"] == float(data.evidence["performance"]["table"][0]["auroc"].split()[0])
    assert {m["slice"] for m in metrics} == {"overall", "scanner=Acme X1"}, "hidden groups are not sliced"
    assert all(set(x) == {"description"} for x in card["considerations"]["limitations"])


def test_the_kept_demo_pdf_verifies_and_an_edited_copy_does_not(demo_report, demo_root, tmp_path):
    from workspace.report import verify_report

    data, pdf, _, _ = demo_report
    check = verify_report(pdf, Record(demo_root))
    assert check.ok and check.kind == "pdf" and check.report == data.content_hash, check.describe()
    raw = bytearray(pdf.read_bytes())
    raw[len(raw) // 2] ^= 0x20
    edited = tmp_path / "edited.pdf"
    edited.write_bytes(bytes(raw))
    check = verify_report(edited, Record(demo_root))
    assert not check.ok and check.changes, "one changed byte before the seal is found"

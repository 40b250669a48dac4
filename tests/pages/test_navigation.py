"""The app's page table (``pages._navigation.PAGES``) is the one list of pages: every page file is in it once, the
operator's access policy names the same pages, the router builds its navigation from it, and each page draws the
heading the table gives it."""
from __future__ import annotations

import ast
from pathlib import Path

from pages._navigation import HEADINGS, PAGES, TITLES
from workspace.access import PAGES as ROLES_BY_PAGE

ROOT = Path(__file__).resolve().parents[2]


def page_files() -> set[str]:
    return {p.stem for p in (ROOT / "pages").glob("*.py") if not p.stem.startswith("_")}


def test_every_page_file_is_in_the_table_once_and_the_access_policy_names_the_same_pages():
    files = [p.file for p in PAGES]
    assert len(files) == len(set(files))
    assert set(files) == page_files()
    assert set(files) == set(ROLES_BY_PAGE)
    assert TITLES == {p.file: p.title for p in PAGES} and len(set(TITLES.values())) == len(PAGES)
    assert [p.url_path for p in PAGES if p.default] == [""]  # one page opens the app, at the root
    assert all(p.url_path == p.file for p in PAGES if not p.default)
    assert all(p.roles == ROLES_BY_PAGE[p.file] for p in PAGES)


def _calls(source: str, name: str) -> list[ast.Call]:
    """The calls of ``name`` (a plain name or an attribute, e.g. ``st.title``) in a module, in order."""
    return [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)
            and ((isinstance(node.func, ast.Attribute) and node.func.attr == name)
                 or (isinstance(node.func, ast.Name) and node.func.id == name))]


def test_each_page_draws_the_heading_the_table_gives_it():
    """Every page draws its heading with ``heading(__file__)`` once and writes no title of its own."""
    for page in PAGES:
        source = (ROOT / "pages" / f"{page.file}.py").read_text()
        calls = _calls(source, "heading")
        assert len(calls) == 1, page.file
        assert [ast.unparse(a) for a in calls[0].args] == ["__file__"], page.file
        assert not _calls(source, "title"), f"{page.file} writes its own st.title"
    assert len(_calls('import streamlit as st\nst.title("Elsewhere")\n', "title")) == 1  # the scan finds one
    assert HEADINGS == {p.file: p.heading for p in PAGES} and HEADINGS["home"] == "Glassbox"


def test_heading_draws_the_tables_heading_for_the_page_file(monkeypatch):
    import pytest

    from pages import _display

    drawn = []
    monkeypatch.setattr(_display.st, "title", drawn.append)
    for page in PAGES:
        _display.heading(str(ROOT / "pages" / f"{page.file}.py"))
    assert drawn == [p.heading for p in PAGES]
    with pytest.raises(KeyError, match="not in pages._navigation.PAGES"):
        _display.heading("/somewhere/pages/nowhere.py")


def test_the_router_restates_no_title():
    """app.py builds ``st.navigation`` from the table: no page title is written out there again."""
    literals = {node.value for node in ast.walk(ast.parse((ROOT / "app.py").read_text()))
                if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    assert not literals & set(TITLES.values())
    assert "PAGES" in (ROOT / "app.py").read_text()

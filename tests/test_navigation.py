"""The app's page table (``pages._navigation.PAGES``) is the one list of pages: every page file is in it once, the
operator's access policy names the same pages, the router builds its navigation from it, and each page draws the
heading the table gives it."""
from __future__ import annotations

import ast
from pathlib import Path

from pages._navigation import PAGES, TITLES
from workspace.access import PAGES as ROLES_BY_PAGE

ROOT = Path(__file__).resolve().parent.parent


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


def _title_calls(source: str) -> list[str]:
    """The string literals passed to ``st.title`` in a module, in order."""
    return [node.args[0].value for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "title"
            and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)]


def test_each_page_draws_the_heading_the_table_gives_it():
    for page in PAGES:
        source = (ROOT / "pages" / f"{page.file}.py").read_text()
        assert _title_calls(source)[:1] == [page.heading], page.file
    assert _title_calls('import streamlit as st\nst.title("Elsewhere")\n') == ["Elsewhere"]  # the scan finds one


def test_the_router_restates_no_title():
    """app.py builds ``st.navigation`` from the table: no page title is written out there again."""
    literals = {node.value for node in ast.walk(ast.parse((ROOT / "app.py").read_text()))
                if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    assert not literals & set(TITLES.values())
    assert "PAGES" in (ROOT / "app.py").read_text()

"""Real-browser smoke test: Debian's chromium opens the running app, visits every page, finds no error element.

`make test` installs chromium; there is no browser download (playwright drives /usr/bin/chromium).
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pages._navigation import PAGES as APP_PAGES

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# every page's URL path and the heading it draws (the app's own table), Case review first: a fresh server opened
# straight at a page must still run the router (sidebar, every nav link)
PAGES = {p.url_path: p.heading for p in sorted(APP_PAGES, key=lambda p: p.file != "case_review")}
#: pages that draw no figure until asked (or until there is something to draw): the text they show instead
NO_FIGURE = {"quality": "then run the checks", "agreement": "Reader agreement", "audit": "Export these entries",
             "report": "Preview", "monitoring": "has no window column"}
ERRORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def evil(tmp_path_factory):
    """A second workspace the operator allowed, whose models/ holds a bundle that leaves a witness if it runs."""
    from tests.pages.test_safeguards import _evil_workspace

    return _evil_workspace(tmp_path_factory.mktemp("attack"))


@contextlib.contextmanager
def serving(env: dict):
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--server.port",
                             str(port), "--server.address", "127.0.0.1", "--server.headless", "true"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError("the app did not start:\n" + proc.stdout.read().decode()[-2000:]) from None
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def app_url(demo_root, evil):
    # as `glassbox serve --workspace DEMO --workspace EVIL` sets it: no --model-root, so no bundle is trusted
    env = {**os.environ, "GLASSBOX_WORKSPACE": str(demo_root),
           "GLASSBOX_WORKSPACES": os.pathsep.join([str(demo_root), str(evil[0])])}
    env.pop("GLASSBOX_MODEL_ROOTS", None)
    env.pop("GLASSBOX_AUTH", None)
    with serving(env) as url:
        yield url


def test_every_page_renders_without_error_in_chromium(app_url, tmp_path):
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian chromium is missing: run `make test`, which installs it"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2400})
            for path, heading in PAGES.items():
                page.goto(f"{app_url}/{path}", wait_until="networkidle")
                page.get_by_role("heading", name=heading).first.wait_for(timeout=180_000)
                if path in NO_FIGURE:  # nothing is computed until asked: the page says so
                    page.get_by_text(NO_FIGURE[path]).first.wait_for(timeout=180_000)
                else:
                    page.locator(".js-plotly-plot").first.wait_for(timeout=180_000)
                page.wait_for_timeout(1500)
                page.screenshot(path=str(tmp_path / f"{path or 'home'}.png"))
                assert page.locator(ERRORS).count() == 0, f"error element on /{path}"
                assert page.locator('[data-testid="stSidebarNavLink"]').count() == len(PAGES)
                assert page.get_by_label("Workspace").count() >= 1, f"no shared sidebar on /{path}"
                assert page.get_by_role("textbox", name="Workspace").count() == 0, "no typed workspace path"
                if path == "case_review":
                    assert page.locator(".js-plotly-plot").count() >= 3  # image + Grad-CAM + saliency
        finally:
            browser.close()


def test_choosing_an_allowed_workspace_never_runs_its_bundle(app_url, evil):
    from playwright.sync_api import sync_playwright

    workspace, witness = evil
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2400})
            page.goto(app_url, wait_until="networkidle")
            page.get_by_role("heading", name="Glassbox").first.wait_for(timeout=180_000)
            page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.click()  # Workspace
            page.get_by_role("option", name=workspace.name).click()
            page.get_by_text("outside the configured model roots").first.wait_for(timeout=180_000)
            assert page.locator("text=Traceback").count() == 0
        finally:
            browser.close()
    assert not witness.exists(), "the bundle's config code ran"


def test_sign_in_record_a_verdict_reload_and_find_it(demo_root, tmp_path):
    """A radiologist signs in, records a verdict, reloads the page (a new session: signs in again) and finds it."""
    from playwright.sync_api import sync_playwright

    from workspace.access import Users
    from workspace.review import Record

    users = tmp_path / "users.sqlite"
    Users(users).add("dr-browser", "radiologist", "correct horse battery")
    env = {**os.environ, "GLASSBOX_WORKSPACE": str(demo_root), "GLASSBOX_WORKSPACES": str(demo_root),
           "GLASSBOX_AUTH": "local", "GLASSBOX_USERS_FILE": str(users)}

    def sign_in(page) -> None:
        page.get_by_role("heading", name="Glassbox · sign in").wait_for(timeout=120_000)
        page.get_by_label("User name").fill("dr-browser")
        page.get_by_role("textbox", name="Password").fill("correct horse battery")
        page.get_by_role("button", name="Sign in").click()
        page.get_by_text("Signed in as").first.wait_for(timeout=120_000)

    with serving(env) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 2600})
            page.goto(f"{url}/case_review", wait_until="networkidle")
            sign_in(page)
            page.get_by_role("heading", name="Case review").first.wait_for(timeout=180_000)
            page.locator(".js-plotly-plot").first.wait_for(timeout=180_000)
            assert page.locator('[data-testid="stSidebarNavLink"]').count() == 4, "a radiologist's four pages"
            page.get_by_role("button", name="Next ▶").click()  # the second case of the worklist
            page.get_by_role("heading", name="demo-0002").wait_for(timeout=60_000)
            page.locator(".js-plotly-plot").first.wait_for(timeout=180_000)
            page.wait_for_timeout(3000)  # the first case's form leaves the page
            form = page.locator('[data-testid="stForm"]')
            assert form.count() == 1
            form.get_by_role("radiogroup", name="With the model's call, I").get_by_text("disagree").click()
            form.get_by_label("Note (never a patient identifier)").fill("browser verdict")
            form.get_by_role("button", name="Record verdict").click()
            page.get_by_text("Recorded at").first.wait_for(timeout=60_000)
            stored = Record(demo_root).verdicts(reader="dr-browser")
            assert len(stored) == 1 and stored.iloc[0]["agreement"] == "disagree"
            case_id = stored.iloc[0]["case_id"]
            page.screenshot(path=str(tmp_path / "verdict.png"))
            # the reader's place survives a page switch
            page.locator('[data-testid="stSidebarNavLink"]').filter(has_text="Home").click()
            page.get_by_role("heading", name="Model card").wait_for(timeout=120_000)
            page.locator('[data-testid="stSidebarNavLink"]').filter(has_text="Case review").click()
            page.get_by_role("heading", name="Case review").first.wait_for(timeout=120_000)
            page.get_by_text("Your verdicts on this case").first.wait_for(timeout=60_000)
            assert case_id == "demo-0002"
            assert page.get_by_role("heading", name="demo-0002").count() == 1
            page.reload(wait_until="networkidle")
            sign_in(page)
            page.get_by_role("heading", name="Case review").first.wait_for(timeout=180_000)
            assert page.locator(ERRORS).count() == 0
            page.get_by_role("heading", name="demo-0001").wait_for(timeout=60_000)  # a new session starts at the top
            page.get_by_role("button", name="Next ▶").click()
            page.get_by_role("heading", name="demo-0002").wait_for(timeout=60_000)
            page.get_by_text("Your verdicts on this case").first.wait_for(timeout=60_000)
            page.wait_for_timeout(2000)
            note = page.get_by_label("Note (never a patient identifier)")
            assert note.count() == 1 and note.input_value() == "browser verdict", "the verdict, found again"
            assert page.locator(ERRORS).count() == 0
        finally:
            browser.close()

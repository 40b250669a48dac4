"""The pages' one helper: cached wrappers around the library, and the current selection from the sidebar.

``st.cache_resource`` holds models (shared, read-only); ``st.cache_data`` holds cohorts and results (copied
per caller). Streamlit leaves every argument whose name starts with ``_`` out of the key, so the keys here are
plain arguments: the workspace (it decides roots, trust and the id salt), and a *stamp* of every file a result
depends on (size and modification time of the model folder's files, the manifest or DICOM folder, and
``settings.json``), so that an edited model, manifest or setting is never served stale.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import math
import re
from pathlib import Path

import pandas as pd
import streamlit as st

from data_adapters.cohort import peek_fit
from data_adapters.errors import GlassboxError
from data_adapters.models import spec_path
from data_adapters.records import Attribution, Cohort, ModelHandle
from evaluation.figures import plain_figure
from evaluation.metrics import METRICS
from evaluation.multiclass import MULTICLASS_METRICS
from explainers.device import best_device
from workspace import jobs
from workspace.access import ADMIN_MESSAGES, NO_ROLE, PAGES, Identity, Users, attempt_actor, auth_mode, single_user
from workspace.review import Record, spreadsheet_safe
from workspace.store import Workspace, allowed_workspace, identifier_key


def stamp(path: str | Path) -> tuple:
    """What a cached result must be keyed on for ``path`` to be re-read when it changes: (name, size, mtime) of
    the file, or of every file under the folder."""
    path = Path(path)
    if path.is_file():
        st_ = path.stat()
        return ((str(path), st_.st_size, st_.st_mtime_ns),)
    if path.is_dir():
        return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(path.rglob("*")) if p.is_file())
    return ((str(path), None, None),)


def _workspace() -> Path:
    """The chosen workspace if the operator allowed it, else the first allowed one: never a typed path."""
    return allowed_workspace(st.session_state.get("workspace"))


# -- who is signed in, and what they may open ----------------------------------------------------------------
IDENTITY = "_identity"  # session state: set only by sign-in below (no widget carries this key)
PAGE_TITLES = {"home": "Home", "case_review": "Case review", "subgroups": "Subgroup performance",
               "compare": "Compare versions", "quality": "Explanation quality", "uncertainty": "Uncertainty",
               "concepts": "Concepts", "agreement": "Reader agreement", "report": "Board report", "monitoring": "Monitoring",
               "audit": "Audit log"}


#: the pages' widget keys whose values survive a page switch (app.py keeps them) ...
KEPT_PREFIXES = ("review_", "sub_", "cmp_", "qual_", "unc_", "concept_", "tcav_", "home_", "agree_", "audit_", "mon_",
                 "report_")
#: ... except actions (buttons, downloads, table selections), whose state Streamlit refuses to have set
ACTION_SUFFIXES = ("_prev", "_next", "_export", "_download", "_open", "_worklist")
ACTION_INFIXES = ("_run",)


def kept(key) -> bool:
    """Whether a session-state key is a setting to keep across pages (see ``tests/test_pages.py``, which checks
    every action key in the pages is excluded)."""
    return (isinstance(key, str) and key.startswith(KEPT_PREFIXES) and not key.endswith(ACTION_SUFFIXES)
            and not any(i in key for i in ACTION_INFIXES))


def record(root: Path | None = None) -> Record:
    """The workspace's review record (verdicts and audit log)."""
    return Record(root or _workspace())


#: why this session's sign-in ended (shown once above the sign-in form)
ENDED = "_session_ended"
log = logging.getLogger("glassbox.app")


def chart(where, fig, **kwargs) -> None:
    """Draw ``fig`` in ``where`` (``st`` or a column) with no markup a file could carry (:func:`plain_figure`)."""
    where.plotly_chart(plain_figure(fig), **kwargs)


def md(value) -> str:
    """``value`` (anything that came from a file, a manifest, a model card, a DICOM tag or a user) made safe to put
    inside ``st.markdown``, a caption, a label, a banner or an error: the characters that open a construct
    (``[ ] < > ! * _ ` ~ $ | # { } \\``) are backslash-escaped, ``://`` and ``www.`` are broken so no bare URL
    becomes a link, a leading list or heading marker is escaped, and line breaks become spaces. So
    ``![x](http://host/p.png)`` shows as text and fetches nothing, ``[login](http://phish)`` is no link, ``:red[…]``
    no colour, ``$x$`` no formula, while ``i0.png: file not found`` reads as written (CommonMark §2.4: an escaped
    punctuation character renders as itself)."""
    text = " ".join(str(value).splitlines())
    text = _MD_SPECIAL.sub(lambda m: "\\" + m.group(0), text)
    text = re.sub(r"(?<=\w)://", lambda m: ":\\/\\/", text)  # http://x shows as written, but is no autolink
    text = re.sub(r"(?i)\b(www)\.", lambda m: m.group(1) + "\\.", text)
    return _leading(text)


def _leading(text: str) -> str:
    """A leading list marker (``-``, ``+``, ``1.``, ``1)``) escaped, so the text is never a list item."""
    m = re.match(r"(\s*)([-+]|\d+[.)])", text)
    if not m:
        return text
    marker = m.group(2)
    escaped = "\\" + marker if marker in "-+" else marker[:-1] + "\\" + marker[-1]
    return m.group(1) + escaped + text[m.end():]


_MD_SPECIAL = re.compile(r"[\\`*_{}\[\]<>!~$|#]")


def _end_session(current: Identity, why: str) -> None:
    """The account behind this session changed (disabled, role or password changed): the session ends here."""
    record().log(current, "session_ended", why=why)
    for key in (IDENTITY, "_signed_in_logged", "_opened"):
        st.session_state.pop(key, None)
    st.session_state[ENDED] = why


def identity() -> Identity | None:
    """Who is using this session: single-user mode's operating-system user, the identity provider's user with the
    role the operator gave their e-mail, or the local account signed in on this session; None when nobody is.
    A local account is re-read on every run (every action): disabled, demoted or given a new password since it
    signed in, its session ends here, before the page acts."""
    mode = auth_mode()
    if mode == "single":
        st.session_state[IDENTITY] = single_user()
    elif mode == "oidc" and getattr(st.user, "is_logged_in", False):
        email = str(st.user.get("email") or "")
        role = Users().role_of(email) if email else None
        if role is None:
            st.session_state.pop(IDENTITY, None)
            return None
        st.session_state[IDENTITY] = Identity(email, role, "identity provider")
    current = st.session_state.get(IDENTITY)
    if current is not None and mode != "single" and current.how == "local account":
        fresh = Users().refresh(current)
        if fresh is None:
            _end_session(current, "the operator disabled this account or changed its role or password")
            return None
        st.session_state[IDENTITY] = current = fresh
    if current is not None and st.session_state.get("_signed_in_logged") != str(_workspace()):
        st.session_state["_signed_in_logged"] = str(_workspace())
        record().log(current, "sign_in", how=current.how)
    return current


def sign_in() -> Identity:
    """The signed-in identity, or the sign-in form (and stop) when nobody is signed in."""
    guard_server_messages()
    current = identity()
    if current is not None:
        return current
    mode = auth_mode()
    st.title("Glassbox · sign in")
    if mode == "oidc":
        if getattr(st.user, "is_logged_in", False):
            st.error("Your account has no Glassbox role on this server. Ask the operator to run "
                     "`glassbox user add YOUR-EMAIL --role … --no-password`.")
        else:
            st.button("Sign in with your organisation's account", on_click=st.login, key="oidc_login")
        st.stop()
    ended = st.session_state.pop(ENDED, None)
    if ended:
        st.warning(f"You were signed out: {ended}. Sign in again.")
    with st.form("sign_in"):
        name = st.text_input("User name", key="sign_in_name")
        password = st.text_input("Password", type="password", key="sign_in_password")
        submitted = st.form_submit_button("Sign in")
    if submitted:
        users = Users()
        name = name.strip()
        browser, network = client()
        wait = users.wait(name, browser, network)
        who = None if wait else users.authenticate(name, password, browser, network)
        if who is None:
            if not wait:
                failed_sign_in(users, name, browser)
            st.error("Not signed in: the name or password is wrong, the account is inactive, or this browser must "
                     "wait after repeated failures" + (f" (try again in {math.ceil(wait)} s)." if wait else "."))
        else:
            st.session_state[IDENTITY] = who
            st.session_state.pop("sign_in_password", None)
            st.rerun()
    st.caption("Accounts are created by the server's operator (`glassbox user add NAME --role ROLE`).")
    st.stop()


def client() -> tuple[str, str]:
    """This session's (browser, network) for sign-in limits: the browser as a keyed hash of the token in its
    Streamlit XSRF cookie (stable per browser, unknown to anyone else), the network as its address (``local`` on
    loopback)."""
    try:
        cookie = st.context.cookies.get("_streamlit_xsrf") or ""
        network = st.context.ip_address or "local"
    except Exception:  # no browser context (a script run without a server)
        cookie, network = "", "local"
    cookie = cookie if isinstance(cookie, str) else ""
    network = network if isinstance(network, str) else "local"
    token = _xsrf_token(cookie)
    browser = hmac.new(secret().encode(), b"browser\x00" + token, hashlib.sha256).hexdigest()[:20] if token else ""
    return browser, network


def _xsrf_token(cookie: str) -> bytes:
    """The token inside a Tornado XSRF cookie (version 2 masks it afresh each time it is set)."""
    parts = cookie.split("|")
    if len(parts) == 4 and parts[0] == "2":
        try:
            mask, masked = bytes.fromhex(parts[1]), bytes.fromhex(parts[2])
            return bytes(a ^ b for a, b in zip(mask * (len(masked) // max(len(mask), 1) + 1), masked))
        except ValueError:
            pass
    return cookie.encode()


def failed_sign_in(users: Users, name: str, browser: str) -> None:
    """A failed sign-in in the audit log, aggregated: the 1st, 2nd, 4th, 8th… failure of one name from one browser
    in the lockout window is an entry (with the count so far), so a flood of attempts is a handful of entries. A
    name that is no account is logged as ``unknown user #<keyed hash>``: never a password typed in the wrong box."""
    n = users.failures(name, browser)
    if n and n & (n - 1) == 0:
        actor = attempt_actor(name[:120] or "(empty)", secret(), users.exists(name))
        record().log(Identity(actor, NO_ROLE, "sign-in attempt"), "sign_in_failed", attempts=n,
                     waiting=users.locked(name, browser))


def _admin_session(session_state) -> bool:
    """Whether a browser session belongs to a signed-in admin (re-read from the account now)."""
    try:
        who = session_state[IDENTITY]
    except (KeyError, AttributeError):
        return False
    if not isinstance(who, Identity):
        return False
    try:
        if auth_mode() != "single" and who.how == "local account":
            who = Users().refresh(who)
    except GlassboxError:
        return False
    return who is not None and who.can("server_admin")


def guard_server_messages() -> None:
    """Drop the browser messages that act on the whole server (:data:`workspace.access.ADMIN_MESSAGES`: clearing
    every user's caches, run-on-save, git info) unless they come from a signed-in admin's session. Streamlit would
    take them from any websocket client, signed in or not. Installed once per process."""
    from streamlit.runtime.app_session import AppSession

    original = AppSession.handle_backmsg
    if getattr(original, "_glassbox_guard", False):
        return

    def handle_backmsg(self, msg) -> None:
        kind = msg.WhichOneof("type")
        if kind in ADMIN_MESSAGES and not _admin_session(getattr(self, "_session_state", None)):
            log.warning("dropped a %r message from a session that is not a signed-in admin's", kind)
            return None
        return original(self, msg)

    handle_backmsg._glassbox_guard = True
    AppSession.handle_backmsg = handle_backmsg


def guard(page: str) -> Identity:
    """Called first by every page: the signed-in identity if their role opens ``page``; otherwise a message (or
    the sign-in form) and the page stops."""
    who = sign_in()
    if not who.opens(page):
        allowed = ", ".join(PAGES[page])
        st.error(f"{PAGE_TITLES[page]} is not open to the {who.role} role (it is open to: {allowed}).")
        st.stop()
    return who


def sign_out() -> None:
    current = st.session_state.get(IDENTITY)
    if current is not None:
        record().log(current, "sign_out")
    for key in (IDENTITY, "_signed_in_logged", "_opened"):
        st.session_state.pop(key, None)


def opened(handle: ModelHandle, loaded_cohort: Cohort) -> None:
    """Record in the audit log, once per session, that this identity opened this model on this cohort."""
    who = st.session_state.get(IDENTITY)
    seen = st.session_state.setdefault("_opened", set())
    key = (str(_workspace()), handle.weights_hash, loaded_cohort.content_hash)
    if who is None or key in seen:
        return
    seen.add(key)
    record().log(who, "opened", model_version=handle.version, model=handle.weights_hash[:16],
                 cohort_name=loaded_cohort.name, cohort=loaded_cohort.content_hash[:16], cases=len(loaded_cohort))


def download(where, label: str, data: pd.DataFrame | str, *, file_name: str, key: str, what: str) -> None:
    """A CSV download that a spreadsheet cannot run as formulas, recorded in the audit log when it is taken (who
    exported what, its row count and content hash)."""
    text = data if isinstance(data, str) else spreadsheet_safe(data).to_csv(index=False)
    who = st.session_state.get(IDENTITY)
    where.download_button(label, text, file_name=file_name, key=key,
                          on_click=(lambda: record().log_export(who, what, text)) if who is not None else "rerun")


def secret() -> str:
    """The operator's key for hashed identifiers (case keys in the audit log)."""
    return identifier_key()


def cached_uncertainty(root: Path, model_path: Path, manifest: Path, method: str) -> pd.DataFrame | None:
    """The cohort's uncertainty if it was computed before (never computed here: the worklist opens on the whole
    cohort and must not wait for it)."""
    handle = model(model_path)
    return Workspace(root).uncertainty([handle], cohort(manifest, handle), method, cached_only=True)


def _model_stamp(path: str | Path) -> tuple:
    folder = Path(path) if Path(path).is_dir() else spec_path(path).parent
    return stamp(folder) + stamp(_workspace() / "settings.json")


def _cohort_stamp(manifest: str | Path) -> tuple:
    return stamp(manifest) + stamp(_workspace() / "settings.json")


@st.cache_resource(show_spinner="Loading model…")
def _model(root: str, path: str, key: tuple) -> ModelHandle:
    # bundles run config code only from the operator's model roots; the workspace itself grants no trust
    handle = Workspace(root, trust_own_models=False).load_model(path)
    handle.module.to(best_device())
    return handle


def model(path: str | Path) -> ModelHandle:
    return _model(str(_workspace()), str(path), _model_stamp(path))


@st.cache_resource(show_spinner="Checking cohort…", max_entries=8)  # one object, not a pickled copy per call
def _cohort(root: str, manifest: str, class_names: tuple[str, ...], input_shape: tuple[int | None, ...],
            key: tuple) -> Cohort:
    # a manifest, or a DICOM folder (ids salted per workspace); cases that do not fit the model are rejected
    return Workspace(root).load_cohort(manifest, class_names=class_names, input_shape=input_shape)


def cohort(manifest: str | Path, handle: ModelHandle) -> Cohort:
    """The cohort as the model sees it: labels outside its classes and images of another shape are rejected."""
    return _cohort(str(_workspace()), str(manifest), handle.class_names, handle.preprocessing.accepts,
                   _cohort_stamp(manifest))


def peers(handle: ModelHandle, models: dict[str, Path]) -> dict[str, Path]:
    """The workspace's versions that take the same input and predict the same classes as ``handle`` (the ones
    an ensemble or a version comparison may combine with it)."""
    out = {}
    for name, path in models.items():
        try:
            other = model(path)
        except GlassboxError:
            continue
        a, b = other.preprocessing, handle.preprocessing
        if (a.input_shape, a.spacing, a.resize, other.class_names) == (b.input_shape, b.spacing, b.resize,
                                                                       handle.class_names):
            out[name] = path
    return out


@st.cache_data(show_spinner="Predicting…", max_entries=16)
def _predictions(root: str, model_path: str, manifest: str, keys: tuple) -> pd.DataFrame:
    bar = st.progress(0.0, text="Predicting cohort…")
    handle = model(model_path)
    frame = Workspace(root).predictions(handle, cohort(manifest, handle),
                                        progress=lambda d, n: bar.progress(d / max(n, 1), text=f"Predicting {d}/{n}"))
    bar.empty()
    return frame


#: cohorts at least this large are predicted in a background job (the page shows its progress and is not blocked)
BACKGROUND_FROM = 2000


def predictions(root: Path, model_path: Path, manifest: Path) -> pd.DataFrame:
    """The cohort's predictions: read from the cache; computed here for a small cohort; for a large one, in a
    background job that widget changes and page switches do not restart (``workspace.jobs``), the page waiting
    with its progress meanwhile."""
    handle = model(model_path)
    loaded = cohort(manifest, handle)
    ws = Workspace(root)
    target = ws.prediction_path(handle, loaded)
    if len(loaded) >= BACKGROUND_FROM and not target.is_file():
        job = jobs.start(str(target), f"Predicting {len(loaded)} cases with {handle.label}",
                         lambda progress: ws.predictions(handle, loaded, progress=progress))
        if job.running or job.error:
            wait_for(job)
    return _predictions(str(root), str(model_path), str(manifest), _model_stamp(model_path) + _cohort_stamp(manifest))


def wait_for(job: jobs.Job) -> None:
    """Show a background job's progress (refreshed every 2 s) and stop the page until it is done; a failed job's
    error is shown instead. The page reruns by itself when the job ends."""
    if job.error is not None:
        show_error(job.error if isinstance(job.error, GlassboxError) else GlassboxError(str(job.error)))
        jobs.forget(job.key)
        st.stop()

    @st.fragment(run_every=2)
    def progress() -> None:
        current = jobs.get(job.key)
        if current is None or not current.running:
            st.rerun()
        st.progress(current.fraction, text=current.describe() + " · runs in the background: other pages stay open")

    progress()
    st.stop()


@st.cache_data(show_spinner=False, max_entries=32)
def _operating_point(root: str, model_path: str, manifest: str, class_index: int, keys: tuple):
    handle = model(model_path)
    return Workspace(root).operating_point(handle, cohort(manifest, handle), class_index)


def operating_point(root: Path, model_path: Path, manifest: Path, class_index: int):
    """The model's shared threshold for ``class_index`` (the same on every page); a Glassbox error stops the page."""
    try:
        return _operating_point(str(root), str(model_path), str(manifest), class_index,
                                _model_stamp(model_path) + _cohort_stamp(manifest))
    except GlassboxError as e:
        show_error(e)
        st.stop()


def attribution(root: Path, model_path: Path, manifest: Path, case_id: str, method: str, target: int) -> Attribution:
    """One map, from the workspace cache or computed (with a progress bar)."""
    handle = model(model_path)
    case = cohort(manifest, handle).case(case_id)
    bar = st.progress(0.0, text=f"Computing {method}…")
    try:
        (a,) = Workspace(root).attributions(handle, [case], method, target,
                                            progress=lambda d, n: bar.progress(d / max(n, 1)))
    finally:
        bar.empty()
    return a


def selection() -> tuple[Path, dict[str, Path], dict[str, Path]]:
    """Workspace root, its model versions and its cohorts, as chosen in the sidebar (or the defaults)."""
    root = _workspace()
    ws = Workspace(root, trust_own_models=False)
    return root, ws.model_paths(), ws.cohort_paths()


def chosen(options: dict[str, Path], key: str) -> Path | None:
    name = st.session_state.get(key)
    if name in options:
        return options[name]
    return next(iter(options.values()), None)


def require_selection() -> tuple[Path, Path, Path]:
    """The chosen workspace, model folder and manifest; stops the page with guidance when one is missing."""
    root, models, cohorts = selection()
    model_path, manifest = chosen(models, "model"), chosen(cohorts, "cohort")
    if model_path is None or manifest is None:
        st.warning(f"Workspace `{root}` has no {'models' if model_path is None else 'cohorts'} yet. "
                   "Build the demo with `glassbox demo`, or add `models/<version>/model.json` and "
                   "`cohorts/<name>/manifest.csv` (see the README).")
        st.stop()
    return root, model_path, manifest


def show_error(error: GlassboxError) -> None:
    """A Glassbox error on the page: its message names files, fields and values that came from files, so it is
    escaped (:func:`md`) and shows as written."""
    st.error(md(str(error)))


@st.cache_data(show_spinner=False, max_entries=16)
def _uncertainty(root: str, model_paths: tuple[str, ...], manifest: str, method: str, keys: tuple) -> pd.DataFrame:
    bar = st.progress(0.0, text=f"Estimating uncertainty ({method})…")
    try:
        handles = [model(p) for p in model_paths]
        return Workspace(root).uncertainty(handles, cohort(manifest, handles[0]), method,
                                           progress=lambda d, n: bar.progress(d / max(n, 1),
                                                                              text=f"{method}: {d}/{n} cases"))
    finally:
        bar.empty()


def uncertainty(root: Path, model_paths: list[Path], manifest: Path, method: str) -> pd.DataFrame:
    keys = sum((_model_stamp(p) for p in model_paths), ()) + _cohort_stamp(manifest)
    return _uncertainty(str(root), tuple(map(str, model_paths)), str(manifest), method, keys)


@st.cache_data(show_spinner=False, max_entries=16)
def _concept_scores(root: str, model_path: str, manifest: str, concepts: tuple[str, ...], layers: tuple[str, ...],
                    target: int, n_random: int, keys: tuple) -> pd.DataFrame:
    bar = st.progress(0.0, text="TCAV: training concept vectors against random concepts…")
    try:
        handle = model(model_path)
        return Workspace(root).concept_scores(handle, cohort(manifest, handle), Path(manifest).parent,
                                              list(concepts), list(layers), target, n_random=n_random,
                                              progress=lambda d, n: bar.progress(d / max(n, 1)))
    finally:
        bar.empty()


def concept_scores(root: Path, model_path: Path, manifest: Path, concepts: list[str], layers: list[str],
                   target: int, n_random: int) -> pd.DataFrame:
    keys = _model_stamp(model_path) + _cohort_stamp(manifest) + stamp(Path(manifest).parent / "concepts")
    return _concept_scores(str(root), str(model_path), str(manifest), tuple(concepts), tuple(layers), target,
                           n_random, keys)


@st.cache_data(show_spinner="Concept sensitivity…", max_entries=256)
def _concept_sensitivity(root: str, model_path: str, manifest: str, concepts: tuple[str, ...], layer: str,
                         case_id: str, target: int, keys: tuple) -> pd.DataFrame:
    handle = model(model_path)
    c = cohort(manifest, handle)
    ws = Workspace(root)
    return pd.concat([ws.concept_sensitivity(handle, c, Path(manifest).parent, name, layer, [c.case(case_id)], target)
                      for name in concepts], ignore_index=True)


def concept_sensitivity(root: Path, model_path: Path, manifest: Path, concepts: list[str], layer: str,
                        case_id: str, target: int) -> pd.DataFrame:
    keys = _model_stamp(model_path) + _cohort_stamp(manifest) + stamp(Path(manifest).parent / "concepts")
    return _concept_sensitivity(str(root), str(model_path), str(manifest), tuple(concepts), layer, case_id, target,
                                keys)


def loaded() -> tuple[Path, Path, Path, ModelHandle, Cohort]:
    """The chosen workspace, model folder and manifest, with the model and cohort loaded; a Glassbox error
    (bad model file, unreadable manifest) is shown and stops the page."""
    root, model_path, manifest = require_selection()
    try:
        handle = model(model_path)
        loaded_cohort = cohort(manifest, handle)
    except GlassboxError as e:
        show_error(e)
        st.stop()
    opened(handle, loaded_cohort)
    if not len(loaded_cohort):
        report = loaded_cohort.report
        st.error(f"No case of cohort **{md(loaded_cohort.name)}** fits model **{md(handle.label)}**, which expects "
                 f"{handle.preprocessing.describe()}; classes "
                 f"{md(', '.join(handle.class_names))}. Choose another cohort or model version in the sidebar. "
                 f"Why the {report.n_rejected} row(s) were rejected:")
        st.dataframe(report.frame().head(50), hide_index=True, key="load_rejections")
        st.stop()
    return root, model_path, manifest, handle, loaded_cohort


def predictions_or_stop(root: Path, model_path: Path, manifest: Path) -> pd.DataFrame:
    """The cohort's predictions (cached); a Glassbox error is shown and stops the page."""
    try:
        return predictions(root, model_path, manifest)
    except GlassboxError as e:
        show_error(e)
        st.stop()


def fitting_cohort(model_path: Path, cohorts: dict[str, Path], current: str | None) -> str | None:
    """A cohort for the chosen model: ``current`` if the model can take it (or that cannot be told cheaply), else
    the first cohort whose first rows it can take (labels among its classes, images of its shape after its channel
    conversion). A 2D model does not open on a 3D cohort, nor a 7-class model on a binary one."""
    try:
        handle = model(model_path)
    except GlassboxError:
        return current

    def fits(name: str) -> bool | None:
        path = cohorts[name]
        return _fits(str(path), handle.class_names, handle.preprocessing.accepts, handle.preprocessing.channels,
                     stamp(path) if Path(path).is_file() else ())

    if current in cohorts and fits(current) is not False:
        return current
    return next((n for n in cohorts if fits(n)), next((n for n in cohorts if fits(n) is None), current))


@st.cache_data(show_spinner=False, max_entries=64)
def _fits(path: str, class_names: tuple[str, ...], accepts: tuple, channels: str | None, key: tuple) -> bool | None:
    return peek_fit(path, class_names=class_names, input_shape=accepts, channels=channels)


@st.cache_data(show_spinner="Comparing versions…", max_entries=16)
def _comparison(root: str, base_path: str, cand_path: str, manifest: str, by: tuple[str, ...],
                where: tuple[tuple[str, str], ...], class_index: int | None, margin: float, keys: tuple):
    base, cand = model(base_path), model(cand_path)
    loaded = cohort(manifest, base)
    names = (MULTICLASS_METRICS.names() if class_index is None else METRICS.names())
    return Workspace(root).compare(base, cand, loaded, by=list(by), where=dict(where), class_index=class_index,
                                   margins={m: margin for m in names})


def comparison(root: Path, base_path: Path, cand_path: Path, manifest: Path, by: list[str], where: dict[str, str],
               class_index: int | None, margin: float):
    keys = _model_stamp(base_path) + _model_stamp(cand_path) + _cohort_stamp(manifest)
    return _comparison(str(root), str(base_path), str(cand_path), str(manifest), tuple(by),
                       tuple(sorted(where.items())), class_index, float(margin), keys)


@st.cache_data(show_spinner=False, max_entries=16)
def _map_agreement(root: str, paths: tuple[str, ...], manifest: str, case_ids: tuple[str, ...], method: str,
                   targets: tuple[int, ...], keys: tuple) -> pd.DataFrame:
    bar = st.progress(0.0, text=f"Maps of both versions ({method})…")
    try:
        handles = [model(p) for p in paths]
        loaded = cohort(manifest, handles[0])
        return Workspace(root).map_agreement(handles, [loaded.case(c) for c in case_ids], method, list(targets),
                                             progress=lambda d, n: bar.progress(d / max(n, 1)))
    finally:
        bar.empty()


def map_agreement(root: Path, paths: list[Path], manifest: Path, case_ids: list[str], method: str,
                  targets: list[int]) -> pd.DataFrame:
    keys = sum((_model_stamp(p) for p in paths), ()) + _cohort_stamp(manifest)
    return _map_agreement(str(root), tuple(map(str, paths)), str(manifest), tuple(case_ids), method,
                          tuple(int(t) for t in targets), keys)


@st.cache_data(show_spinner="Region test: perturbing every case and predicting again…", max_entries=16)
def _region_test(root: str, paths: tuple[str, ...], manifest: str, case_ids: tuple[str, ...], region: str, how: str,
                 frame: pd.DataFrame, by: tuple[str, ...], class_index: int | None, keys: tuple) -> pd.DataFrame:
    handles = [model(p) for p in paths]
    loaded = cohort(manifest, handles[0])
    return Workspace(root).region_test(handles, loaded, list(case_ids), region, how, frame, list(by), class_index)


def region_test(root: Path, paths: list[Path], manifest: Path, case_ids: list[str], region: str, how: str,
                frame: pd.DataFrame, by: list[str], class_index: int | None) -> pd.DataFrame:
    keys = sum((_model_stamp(p) for p in paths), ()) + _cohort_stamp(manifest)
    return _region_test(str(root), tuple(map(str, paths)), str(manifest), tuple(case_ids), region, how, frame,
                        tuple(by), class_index, keys)


@st.cache_data(show_spinner=False, max_entries=256)
def _trust(root: str, model_path: str, manifest: str, case_ids: tuple[str, ...], method: str, target: int,
           keys: tuple) -> pd.DataFrame:
    handle = model(model_path)
    loaded = cohort(manifest, handle)
    return Workspace(root).trust(handle, loaded, [loaded.case(c) for c in case_ids], method, target)


def trust(root: Path, model_path: Path, manifest: Path, case_ids: list[str], method: str, target: int) -> pd.DataFrame:
    """The trust checks of one method's maps for these cases (cached)."""
    keys = _model_stamp(model_path) + _cohort_stamp(manifest)
    return _trust(str(root), str(model_path), str(manifest), tuple(case_ids), method, int(target), keys)


@st.cache_data(show_spinner=False, max_entries=16)
def _explanation_quality(root: str, model_path: str, manifest: str, methods: tuple[str, ...], n_cases: int,
                         strata: tuple[str, ...], keys: tuple):
    bar = st.progress(0.0, text="Trust checks: maps, randomised models, deletion curves, noise…")
    try:
        handle = model(model_path)
        return Workspace(root).explanation_quality(handle, cohort(manifest, handle), list(methods), n_cases=n_cases,
                                                   strata=list(strata),
                                                   progress=lambda d, n: bar.progress(d / max(n, 1)))
    finally:
        bar.empty()


def explanation_quality(root: Path, model_path: Path, manifest: Path, methods: list[str], n_cases: int,
                        strata: list[str]):
    keys = _model_stamp(model_path) + _cohort_stamp(manifest)
    return _explanation_quality(str(root), str(model_path), str(manifest), tuple(methods), int(n_cases),
                                tuple(strata), keys)


@st.cache_data(show_spinner=False, max_entries=8)
def _board_report(root: str, model_path: str, baseline_path: str | None, manifest: str, by: tuple[str, ...], k: int,
                  author: str, role: str, keys: tuple):
    from workspace.report import gather

    handle = model(model_path)
    bar = st.progress(0.0, text="Gathering the report…")
    steps = ["provenance", "cohort", "performance", "explanations", "version", "reviewers"]
    try:
        return gather(Workspace(root), handle, cohort(manifest, handle),
                      baseline=model(baseline_path) if baseline_path else None, by=list(by), k=k,
                      author=Identity(author, role),
                      progress=lambda name: bar.progress(
                          (steps.index(name.split(" ")[0]) + 1) / len(steps) if name.split(" ")[0] in steps else 0.0,
                          text=f"Report: {name}…"))
    finally:
        bar.empty()


def board_report(root: Path, model_path: Path, baseline_path: Path | None, manifest: Path, by: list[str], k: int,
                 who: Identity):
    """The board report's evidence (cached; keyed on the files and on the review record, whose answers it
    states)."""
    handle = model(model_path)
    loaded = cohort(manifest, handle)
    rec = record(root)
    answers = rec.answers(model_hash=handle.weights_hash, cohort_hash=loaded.content_hash)
    verdicts = rec.verdicts(model_hash=handle.weights_hash, cohort_hash=loaded.content_hash, history=True)
    keys = (_model_stamp(model_path) + (_model_stamp(baseline_path) if baseline_path else ()) + _cohort_stamp(manifest)
            + (int(answers["id"].max()) if len(answers) else 0, int(verdicts["id"].max()) if len(verdicts) else 0))
    return _board_report(str(root), str(model_path), str(baseline_path) if baseline_path else None, str(manifest),
                         tuple(by), int(k), who.name, who.role, keys)


@st.cache_data(show_spinner="Uncertainty of this case…", max_entries=256)
def _case_uncertainty(root: str, model_path: str, manifest: str, case_id: str, method: str, keys: tuple):
    handle = model(model_path)
    return Workspace(root).case_uncertainty(handle, cohort(manifest, handle).case(case_id), method)


def case_uncertainty(root: Path, model_path: Path, manifest: Path, case_id: str, method: str) -> pd.DataFrame:
    """The case in view's uncertainty alone (the same numbers as its row of the cohort's)."""
    keys = _model_stamp(model_path) + _cohort_stamp(manifest)
    return _case_uncertainty(str(root), str(model_path), str(manifest), case_id, method, keys)

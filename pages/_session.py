"""Who is using this browser session, in which workspace, and what the session writes to its audit log.

Identity comes from single-user mode, the identity provider, or a local account signed in with the form here (its
attempts limited per browser, a keyed hash of the token in the browser's XSRF cookie, and per network address); a
local account is re-read on every run, so a disabled or changed account's session ends at its next action.
:func:`guard` is the first call of every page. :func:`guard_server_messages` drops the browser messages that act on
the whole server unless a signed-in admin's session sent them. Sign-in, sign-out, a model opened on a cohort and
every export are entries in the chosen workspace's audit log.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import math
from pathlib import Path

import pandas as pd
import streamlit as st

from data_adapters.errors import GlassboxError
from data_adapters.records import Cohort, ModelHandle
from pages._navigation import TITLES
from workspace.access import ADMIN_MESSAGES, NO_ROLE, PAGES, Identity, Users, attempt_actor, auth_mode, single_user
from workspace.review import Record, spreadsheet_safe
from workspace.keys import identifier_key
from workspace.store import allowed_workspace

IDENTITY = "_identity"  # session state: set only by sign-in below (no widget carries this key)
#: what a session holds about who is signed in (the identity, the workspace whose log has its sign-in, what it opened)
SIGNED_IN = (IDENTITY, "_signed_in_logged", "_opened")

#: why this session's sign-in ended (shown once above the sign-in form)
ENDED = "_session_ended"

log = logging.getLogger("glassbox.app")


def chosen_workspace() -> Path:
    """The chosen workspace if the operator allowed it, else the first allowed one: never a typed path."""
    return allowed_workspace(st.session_state.get("workspace"))


def record(root: Path | None = None) -> Record:
    """The workspace's review record (verdicts and audit log)."""
    return Record(root or chosen_workspace())


def _end_session(current: Identity, why: str) -> None:
    """The account behind this session changed (disabled, role or password changed): the session ends here."""
    record().log(current, "session_ended", why=why)
    for key in SIGNED_IN:
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
    if current is not None and st.session_state.get("_signed_in_logged") != str(chosen_workspace()):
        st.session_state["_signed_in_logged"] = str(chosen_workspace())
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
        st.error(f"{TITLES[page]} is not open to the {who.role} role (it is open to: {allowed}).")
        st.stop()
    return who


def sign_out() -> None:
    """The sidebar's Sign out: logged, and the session forgets who was signed in."""
    current = st.session_state.get(IDENTITY)
    if current is not None:
        record().log(current, "sign_out")
    for key in SIGNED_IN:
        st.session_state.pop(key, None)


def opened(handle: ModelHandle, loaded_cohort: Cohort) -> None:
    """Record in the audit log, once per session, that this identity opened this model on this cohort."""
    who = st.session_state.get(IDENTITY)
    seen = st.session_state.setdefault("_opened", set())
    key = (str(chosen_workspace()), handle.weights_hash, loaded_cohort.content_hash)
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

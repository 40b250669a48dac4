"""Who is using Glassbox and what their role lets them do. The operator decides both, outside the browser.

Roles (``glassbox user add NAME --role ROLE``):

- ``radiologist``: reads cases and records verdicts;
- ``developer``: every technical page (comparison, explanation quality, concepts), no verdicts, no sign-off;
- ``board``: aggregate views only (no case images or case lists, groups under k suppressed), signs off reports;
- ``admin``: everything, and the audit log.

How people sign in (``glassbox serve --auth``): ``local`` accounts, kept in a SQLite file outside every workspace
(``$GLASSBOX_USERS_FILE``, default ``$XDG_CONFIG_HOME/glassbox/users.sqlite``) with argon2id password hashes
(argon2-cffi), never a password in clear; ``oidc``, Streamlit's own ``st.login`` against the site's identity provider
(configured in ``.streamlit/secrets.toml``), with roles still given here by e-mail; or ``single``, one person on
their own machine: no sign-in, every action recorded as the operating-system user with the admin role, and every
page says so. Without ``--auth``, a server whose users file holds accounts asks for sign-in; one without runs
single-user.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import getpass
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from data_adapters.errors import InvalidInputError

__all__ = ["ROLES", "PAGES", "ACTIONS", "AUTH_MODES", "Identity", "Users", "users_file", "auth_mode",
           "single_user", "operator", "board_k"]

ROLES = ("radiologist", "developer", "board", "admin")
EVERYONE = ROLES
#: page (its file's stem) → the roles that may open it
PAGES = {
    "home": EVERYONE,
    "case_review": ("radiologist", "developer", "admin"),
    "subgroups": ("developer", "board", "admin"),
    "compare": ("developer", "admin"),
    "quality": ("developer", "admin"),
    "uncertainty": ("radiologist", "developer", "admin"),
    "concepts": ("developer", "admin"),
    "agreement": EVERYONE,
    "report": ("developer", "board", "admin"),
    "monitoring": ("developer", "board", "admin"),
    "audit": ("admin",),
}
#: action → the roles that may take it
ACTIONS = {
    "record_verdict": ("radiologist", "admin"),
    "see_cases": ("radiologist", "developer", "admin"),  # case images, case ids, per-case rows
    "export_verdicts": ("radiologist", "developer", "admin"),
    "view_audit": ("admin",),
    "sign_off": ("board",),
}
#: the role of someone not signed in (a failed sign-in attempt, in the audit log): it opens nothing
NO_ROLE = "none"
AUTH_MODES = ("single", "local", "oidc")
MIN_PASSWORD = 10
#: sign-in attempts allowed per account in LOCKOUT_MINUTES before it is refused for that long
MAX_FAILURES = 5
LOCKOUT_MINUTES = 15
MSG_ROLE = "role must be one of {roles}, not {value!r}"


@dataclasses.dataclass(frozen=True)
class Identity:
    """Who is acting: a name, a role, and how they were identified (``local account``, ``identity provider``,
    ``single-user mode``, ``operator`` for the command line)."""

    name: str
    role: str
    how: str = "local account"

    def __post_init__(self) -> None:
        if self.role not in (*ROLES, NO_ROLE):
            raise InvalidInputError(MSG_ROLE.format(roles=", ".join(ROLES), value=self.role))

    def can(self, action: str) -> bool:
        return self.role in ACTIONS[action]

    def opens(self, page: str) -> bool:
        return self.role in PAGES[page]

    @property
    def is_board(self) -> bool:
        return self.role == "board"


def operator() -> Identity:
    """The person at the command line (``glassbox user``, ``glassbox audit``): the operating-system user."""
    return Identity(getpass.getuser(), "admin", "operator")


def single_user() -> Identity:
    return Identity(getpass.getuser(), "admin", "single-user mode")


def users_file() -> Path:
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return Path(os.environ.get("GLASSBOX_USERS_FILE") or config / "glassbox" / "users.sqlite")


def auth_mode() -> str:
    """``$GLASSBOX_AUTH`` as ``glassbox serve --auth`` set it; else ``local`` when the users file holds an active
    account, ``single`` when it holds none."""
    mode = os.environ.get("GLASSBOX_AUTH", "").strip()
    if mode:
        if mode not in AUTH_MODES:
            raise InvalidInputError(f"GLASSBOX_AUTH must be one of {', '.join(AUTH_MODES)}, not {mode!r}")
        return mode
    return "local" if users_file().exists() and Users().any_active() else "single"


def board_k() -> int:
    """The smallest group a board view shows (``glassbox serve --board-k``, default 10): board members may raise it
    for a view, never lower it."""
    try:
        return max(2, int(os.environ.get("GLASSBOX_BOARD_K", "10")))
    except ValueError:
        return 10


class Users:
    """The operator's accounts: name, role, argon2id hash of the password (none for identity-provider accounts),
    whether active. Failed sign-ins are counted per account to refuse guessing."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else users_file()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        with self._connect() as db:
            db.executescript("""
                CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, role TEXT NOT NULL, password TEXT,
                    active INTEGER NOT NULL DEFAULT 1, created TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS failures (name TEXT NOT NULL, at TEXT NOT NULL);""")
        if new:
            os.chmod(self.path, 0o600)
        self._hasher = PasswordHasher()

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        try:
            with db:
                yield db
        finally:
            db.close()

    def _check(self, name: str, role: str | None = None) -> None:
        if not name or name != name.strip() or len(name) > 120:
            raise InvalidInputError(f"user name {name!r}: give 1-120 characters without leading or trailing spaces")
        if role is not None and role not in ROLES:
            raise InvalidInputError(MSG_ROLE.format(roles=", ".join(ROLES), value=role))

    def _hash(self, password: str | None) -> str | None:
        if password is None:
            return None
        if len(password) < MIN_PASSWORD:
            raise InvalidInputError(f"password: at least {MIN_PASSWORD} characters")
        return self._hasher.hash(password)

    def add(self, name: str, role: str, password: str | None) -> None:
        """A new account; ``password`` None for one that signs in through the identity provider (by e-mail)."""
        self._check(name, role)
        hashed = self._hash(password)
        try:
            with self._connect() as db:
                db.execute("INSERT INTO users (name, role, password, created) VALUES (?,?,?,?)",
                           (name, role, hashed, dt.datetime.now(dt.timezone.utc).isoformat()))
        except sqlite3.IntegrityError as e:
            raise InvalidInputError(f"user {name!r} exists; change it with `glassbox user role` or "
                                    "`glassbox user password`") from e

    def _update(self, name: str, sql: str, *params) -> None:
        with self._connect() as db:
            if db.execute(f"UPDATE users SET {sql} WHERE name = ?", (*params, name)).rowcount == 0:
                raise InvalidInputError(f"no user {name!r}; `glassbox user list` shows who exists")

    def set_role(self, name: str, role: str) -> None:
        self._check(name, role)
        self._update(name, "role = ?", role)

    def set_password(self, name: str, password: str) -> None:
        self._update(name, "password = ?", self._hash(password))
        with self._connect() as db:
            db.execute("DELETE FROM failures WHERE name = ?", (name,))

    def set_active(self, name: str, active: bool) -> None:
        self._update(name, "active = ?", int(active))

    def frame(self) -> pd.DataFrame:
        """Every account without its hash: name, role, whether it has a password, active, created."""
        with self._connect() as db:
            return pd.read_sql_query("SELECT name, role, password IS NOT NULL AS password, active, created "
                                     "FROM users ORDER BY name", db)

    def any_active(self) -> bool:
        with self._connect() as db:
            return db.execute("SELECT 1 FROM users WHERE active = 1 LIMIT 1").fetchone() is not None

    def role_of(self, name: str) -> str | None:
        """The role of an active account (identity-provider users are looked up by e-mail), else None."""
        with self._connect() as db:
            row = db.execute("SELECT role FROM users WHERE name = ? AND active = 1", (name,)).fetchone()
        return row[0] if row else None

    def locked(self, name: str) -> bool:
        since = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=LOCKOUT_MINUTES)).isoformat()
        with self._connect() as db:
            (n,) = db.execute("SELECT COUNT(*) FROM failures WHERE name = ? AND at >= ?", (name, since)).fetchone()
        return n >= MAX_FAILURES

    def authenticate(self, name: str, password: str) -> Identity | None:
        """The account's identity if ``password`` is right and the account active and not locked, else None (the
        caller says only "not signed in", never which part was wrong)."""
        with self._connect() as db:
            row = db.execute("SELECT role, password, active FROM users WHERE name = ?", (name,)).fetchone()
        if self.locked(name):
            return None
        ok = False
        if row and row[1] and row[2]:
            try:
                ok = self._hasher.verify(row[1], password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                ok = False
        else:  # spend the same time on an unknown name as on a wrong password
            with contextlib.suppress(VerificationError, InvalidHashError):
                self._hasher.verify(_DUMMY, password)
        with self._connect() as db:
            if ok:
                db.execute("DELETE FROM failures WHERE name = ?", (name,))
                if self._hasher.check_needs_rehash(row[1]):
                    db.execute("UPDATE users SET password = ? WHERE name = ?", (self._hasher.hash(password), name))
            else:
                db.execute("INSERT INTO failures (name, at) VALUES (?, ?)",
                           (name, dt.datetime.now(dt.timezone.utc).isoformat()))
        return Identity(name, row[0], "local account") if ok else None


_DUMMY = PasswordHasher().hash("not a password of anyone")

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

Sessions follow the account: every page run re-reads the signed-in account (:meth:`Users.refresh`), so disabling
it, changing its role or its password ends its open sessions at their next action (each change bumps the account's
``epoch``, which a session carries). Sign-in attempts are limited per (client, account) and per client, with a
backoff that doubles (:meth:`Users.wait`): a stranger's failures slow that stranger, never the account's owner
signing in from elsewhere. A name typed at sign-in that is no account is never stored as written (it may be a
password typed into the wrong box): the audit log gets ``unknown user #<keyed hash>`` (:func:`attempt_actor`), the
users file a keyed hash.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import getpass
import hashlib
import hmac
import os
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from data_adapters.errors import InvalidInputError

__all__ = ["ROLES", "PAGES", "ACTIONS", "AUTH_MODES", "Identity", "Users", "users_file", "auth_mode",
           "single_user", "operator", "attempt_actor", "ADMIN_MESSAGES", "MAX_CLIENT_FAILURES", "NO_ROLE"]

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
    # every reader's verdicts (a reader exports only their own, so that reads stay independent)
    "export_all_verdicts": ("developer", "admin"),
    "view_audit": ("admin",),
    "sign_off": ("board",),
    "server_admin": ("admin",),  # clear every user's caches and the other server-wide messages
}
#: the browser messages that act on the whole server (Streamlit's "Clear caches" clears every user's): a signed-in
#: admin's only; the app drops them from anyone else
ADMIN_MESSAGES = ("clear_cache", "set_run_on_save", "load_git_info")
#: the role of someone not signed in (a failed sign-in attempt, in the audit log): it opens nothing
NO_ROLE = "none"
AUTH_MODES = ("single", "local", "oidc")
MIN_PASSWORD = 10
#: failed sign-ins allowed per (client, account) in LOCKOUT_MINUTES before that client waits for that account
MAX_FAILURES = 5
#: failed sign-ins allowed per network, over every account, in LOCKOUT_MINUTES (guessing many names)
MAX_CLIENT_FAILURES = 20
#: failed sign-ins allowed per account from browsers it never signed in from, over every network (a spread guess)
MAX_ACCOUNT_FAILURES = 50
LOCKOUT_MINUTES = 15
#: the first wait after MAX_FAILURES (seconds); it doubles with each further failure, up to LOCKOUT_MINUTES
BACKOFF_S = 2.0
MSG_ROLE = "role must be one of {roles}, not {value!r}"


@dataclasses.dataclass(frozen=True)
class Identity:
    """Who is acting: a name, a role, and how they were identified (``local account``, ``identity provider``,
    ``single-user mode``, ``operator`` for the command line)."""

    name: str
    role: str
    how: str = "local account"
    #: the account's epoch when the session signed in (None: not known, e.g. made by a test or the command line)
    epoch: int | None = dataclasses.field(default=None, compare=False)

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
    """The operator's sign-in mode (``glassbox serve --auth``, read by :func:`workspace.settings.operator_settings`);
    when none was set, ``local`` when the users file holds an active account, ``single`` when it holds none."""
    from workspace.settings import operator_settings

    mode = operator_settings().auth
    if mode:
        return mode
    return "local" if users_file().exists() and Users().any_active() else "single"


def attempt_actor(name: str, key: str, known: bool) -> str:
    """How a sign-in attempt's user name enters the audit log: an account's name as it is; anything else as
    ``unknown user #<HMAC of it under the operator's key>``, so that a password typed into the user-name box is
    never stored, and repeated attempts with one name still group together."""
    if known:
        return name
    digest = hmac.new(key.encode(), b"sign-in-name\x00" + name.encode("utf-8", "replace"), hashlib.sha256)
    return f"unknown user #{digest.hexdigest()[:10]}"


class Users:
    """The operator's accounts: name, role, argon2id hash of the password (none for identity-provider accounts),
    whether active, and an epoch that every change of role, state or password bumps (ending open sessions).
    Failed sign-ins are counted per (client, account) and per client to refuse guessing without letting anyone
    lock an account's owner out."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else users_file()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        try:
            with self._connect() as db:  # reads only, on every page run, once the file is made
                ready = self._ready(db)
            if not ready:
                self._create()
        except sqlite3.DatabaseError as e:
            raise InvalidInputError(f"{self.path}: not a Glassbox users file (SQLite: {e}); the operator's "
                                    "$GLASSBOX_USERS_FILE must name one made by `glassbox user add`") from e
        if new:
            os.chmod(self.path, 0o600)
        self._hasher = PasswordHasher()

    #: every table and column this version needs
    _SCHEMA = {"users": {"name", "role", "password", "active", "created", "epoch"},
               "failures": {"name", "at", "client", "network"}, "meta": {"key", "value"},
               "devices": {"name", "client", "at"}}

    def _ready(self, db: sqlite3.Connection) -> bool:
        for table, columns in self._SCHEMA.items():
            if not columns <= {r[1] for r in db.execute(f"PRAGMA table_info({table})")}:
                return False
        row = db.execute("SELECT value FROM meta WHERE key = 'name_key'").fetchone()
        if row is None:
            return False
        self._name_key = row[0]
        return True

    def _create(self) -> None:
        """Make the tables (or bring a users file of an older version up to date)."""
        with self._connect() as db:
            db.executescript("""
                CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, role TEXT NOT NULL, password TEXT,
                    active INTEGER NOT NULL DEFAULT 1, created TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS failures (name TEXT NOT NULL, at TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS devices (name TEXT NOT NULL, client TEXT NOT NULL, at TEXT NOT NULL,
                    PRIMARY KEY (name, client));""")
            db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('name_key', ?)", (secrets.token_hex(32),))
            self._name_key = db.execute("SELECT value FROM meta WHERE key = 'name_key'").fetchone()[0]
            columns = {t: {r[1] for r in db.execute(f"PRAGMA table_info({t})")} for t in ("users", "failures")}
            if "epoch" not in columns["users"]:  # a users file made before sessions followed the account
                db.execute("ALTER TABLE users ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0")
            if "client" not in columns["failures"]:
                db.execute("ALTER TABLE failures ADD COLUMN client TEXT NOT NULL DEFAULT ''")
            if "network" not in columns["failures"]:
                db.execute("ALTER TABLE failures ADD COLUMN network TEXT NOT NULL DEFAULT ''")

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        try:
            with db:
                yield db
        finally:
            db.close()

    def check(self) -> None:
        """The users file as the operator's file schema wants it: every role one of :data:`ROLES`, every name
        well formed; a problem is named (file, account, field)."""
        with self._connect() as db:
            rows = db.execute("SELECT name, role, active FROM users").fetchall()
        for name, role, active in rows:
            try:
                self._check(str(name), str(role))
            except InvalidInputError as e:
                raise InvalidInputError(f"{self.path}: account {str(name)[:40]!r}: {e}") from e
            if active not in (0, 1):
                raise InvalidInputError(f"{self.path}: account {name!r}: active must be 0 or 1, got {active!r}")

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
        """Change an account and bump its epoch: its open sessions end at their next action."""
        with self._connect() as db:
            if db.execute(f"UPDATE users SET {sql}, epoch = epoch + 1 WHERE name = ?", (*params, name)).rowcount == 0:
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

    def exists(self, name: str) -> bool:
        with self._connect() as db:
            return db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone() is not None

    def role_of(self, name: str) -> str | None:
        """The role of an active account (identity-provider users are looked up by e-mail), else None."""
        with self._connect() as db:
            row = db.execute("SELECT role FROM users WHERE name = ? AND active = 1", (name,)).fetchone()
        return row[0] if row else None

    def refresh(self, identity: Identity) -> Identity | None:
        """``identity`` as its account stands now: None when the account is gone, disabled, or its role or epoch
        changed since the session signed in (a demotion ends the session too: its pages and cached views were
        the old role's). Identities that are not accounts (single-user mode, the operator) are returned as
        they are; an identity-provider user takes the role the operator gives their e-mail now."""
        if identity.how not in ("local account", "identity provider"):
            return identity
        with self._connect() as db:
            row = db.execute("SELECT role, active, epoch FROM users WHERE name = ?", (identity.name,)).fetchone()
        if row is None or not row[1]:
            return None
        role, _, epoch = row
        if identity.how == "identity provider":
            return Identity(identity.name, role, identity.how, epoch)
        if role != identity.role or (identity.epoch is not None and epoch != identity.epoch):
            return None
        return identity if identity.epoch is not None else Identity(identity.name, role, identity.how, epoch)

    def _attempted(self, db: sqlite3.Connection, name: str) -> str:
        """How a sign-in name is kept in ``failures``: an account's name as it is, any other name (perhaps a
        password typed into the wrong box) as a keyed hash, never in clear."""
        if db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone() is not None:
            return name
        return "#" + hmac.new(self._name_key.encode(), name.encode("utf-8", "replace"), hashlib.sha256).hexdigest()[:20]

    def _failures(self, db: sqlite3.Connection, where: str, *params) -> tuple[int, str | None]:
        since = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=LOCKOUT_MINUTES)).isoformat()
        n, last = db.execute(f"SELECT COUNT(*), MAX(at) FROM failures WHERE {where} AND at >= ?",
                             (*params, since)).fetchone()
        return int(n), last

    def wait(self, name: str, client: str = "", network: str = "") -> float:
        """Seconds this client must wait before its next attempt on ``name`` (0: it may try now).

        ``client`` is the browser (a keyed hash of its Streamlit cookie), ``network`` its address. After
        :data:`MAX_FAILURES` failures on the account from this client, :data:`MAX_CLIENT_FAILURES` from its
        network on any account, or :data:`MAX_ACCOUNT_FAILURES` on the account from anywhere (the last two counting
        only browsers the account never signed in from), the wait doubles from
        :data:`BACKOFF_S` with each further failure, up to :data:`LOCKOUT_MINUTES`. A browser the account has
        signed in from before is held only to its own failures: a stranger on the same network (or the same
        loopback) cannot lock the owner out, and rotating cookies does not buy a stranger more guesses."""
        now = dt.datetime.now(dt.timezone.utc)
        with self._connect() as db:
            who = self._attempted(db, name)
            pair = self._failures(db, "name = ? AND client = ?", who, client)
            known = db.execute("SELECT 1 FROM devices WHERE name = ? AND client = ?", (who, client)).fetchone()
            checks = [(pair, MAX_FAILURES)]
            strangers = "client NOT IN (SELECT client FROM devices WHERE devices.name = failures.name)"
            if not known:
                checks.append((self._failures(db, f"name = ? AND {strangers}", who), MAX_ACCOUNT_FAILURES))
                if network:
                    checks.append((self._failures(db, f"network = ? AND {strangers}", network), MAX_CLIENT_FAILURES))
        waits = [0.0]
        for (n, last), limit in checks:
            if n >= limit and last:
                backoff = min(BACKOFF_S * 2 ** (n - limit), LOCKOUT_MINUTES * 60.0)
                elapsed = (now - dt.datetime.fromisoformat(last)).total_seconds()
                waits.append(max(0.0, backoff - elapsed))
        return max(waits)

    def locked(self, name: str, client: str = "", network: str = "") -> bool:
        """Whether this client must wait before trying ``name`` again (:meth:`wait`)."""
        return self.wait(name, client, network) > 0

    def failures(self, name: str, client: str = "") -> int:
        """Failed attempts on ``name`` from ``client`` in the last :data:`LOCKOUT_MINUTES`."""
        with self._connect() as db:
            return self._failures(db, "name = ? AND client = ?", self._attempted(db, name), client)[0]

    def authenticate(self, name: str, password: str, client: str = "", network: str = "") -> Identity | None:
        """The account's identity if ``password`` is right, the account active and this client not waiting
        (:meth:`wait`), else None (the caller says only "not signed in", never which part was wrong). A waiting
        client's attempt is refused before any hash is computed (no CPU spent on a flood) and not counted."""
        if self.locked(name, client, network):
            return None
        with self._connect() as db:
            row = db.execute("SELECT role, password, active, epoch FROM users WHERE name = ?", (name,)).fetchone()
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
                db.execute("DELETE FROM failures WHERE name = ? AND client = ?", (name, client))
                if client:  # this browser is now the account's own: a stranger's failures no longer hold it
                    db.execute("INSERT OR REPLACE INTO devices (name, client, at) VALUES (?, ?, ?)",
                               (name, client, dt.datetime.now(dt.timezone.utc).isoformat()))
                if self._hasher.check_needs_rehash(row[1]):
                    db.execute("UPDATE users SET password = ? WHERE name = ?", (self._hasher.hash(password), name))
            else:
                since = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=LOCKOUT_MINUTES)).isoformat()
                db.execute("DELETE FROM failures WHERE at < ?", (since,))  # bounded under a flood
                db.execute("INSERT INTO failures (name, at, client, network) VALUES (?, ?, ?, ?)",
                           (self._attempted(db, name), dt.datetime.now(dt.timezone.utc).isoformat(), client[:200],
                            network[:200]))
        return Identity(name, row[0], "local account", row[3]) if ok else None


_DUMMY = PasswordHasher().hash("not a password of anyone")

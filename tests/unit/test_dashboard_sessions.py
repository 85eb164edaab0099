"""Dashboard sessions in the database: lifetimes, sign-out, revoked keys, hashed ids, and the
one-use OpenID Connect sign-in state; plus the OIDC settings and group-to-role mapping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from radvigil.config import Settings
from radvigil.service.oidc import role_for
from radvigil.store import Database, KeyStore, upgrade_database
from radvigil.store.keys import hash_token
from radvigil.store.sessions import LOGIN_SECONDS, SessionStore
from radvigil.store.tables import DashboardSessionRow


class Clock:
    """A settable clock: lifetimes are checked without waiting."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture()
def db(tmp_path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'sessions.db'}")
    upgrade_database(database)
    return database


def test_a_key_session_lives_while_used_and_ends_when_idle(db: Database) -> None:
    clock = Clock()
    sessions = SessionStore(db, idle_seconds=1800, max_seconds=8 * 3600, clock=clock)
    _, key = KeyStore(db).create("ana", "clinician")
    sid = sessions.create_for_key(key)
    for _ in range(3):  # each use restarts the idle time
        clock.advance(1700)
        live = sessions.get(sid)
        assert live is not None and live.caller.name == "ana" and live.kind == "api_key"
    clock.advance(1801)
    assert sessions.get(sid) is None
    assert sessions.count() == 0  # an ended session is deleted when found


def test_a_busy_session_still_ends_at_its_absolute_lifetime(db: Database) -> None:
    clock = Clock()
    sessions = SessionStore(db, idle_seconds=1800, max_seconds=8 * 3600, clock=clock)
    sid = sessions.create_for_person("alice", "clinician")
    for _ in range(16):  # 7 h 57 min of use, never idle for 30 min
        clock.advance(1790)
        assert sessions.get(sid) is not None
    clock.advance(170)  # 8 h 0 min 10 s after sign-in, 170 s after the last use
    assert sessions.get(sid) is None


def test_sign_out_and_key_revocation_end_sessions(db: Database) -> None:
    sessions = SessionStore(db, idle_seconds=1800, max_seconds=3600)
    keys = KeyStore(db)
    _, key = keys.create("ops", "admin")
    first, second = sessions.create_for_key(key), sessions.create_for_key(key)
    assert sessions.delete(first) and not sessions.delete(first)
    assert sessions.get(first) is None and sessions.get(second) is not None
    keys.revoke("ops")
    assert sessions.get(second) is None


def test_a_person_session_carries_the_mapped_role_and_the_id_is_stored_hashed(
    db: Database,
) -> None:
    sessions = SessionStore(db, idle_seconds=1800, max_seconds=3600)
    sid = sessions.create_for_person("alice", "auditor")
    live = sessions.get(sid)
    assert live is not None and live.kind == "oidc"
    assert (live.caller.name, live.caller.role, live.caller.prefix) == (
        "oidc:alice",
        "auditor",
        "oidc",
    )
    with db.session("read") as session:
        stored = session.scalars(select(DashboardSessionRow.id_hash)).all()
    assert stored == [hash_token(sid)]
    assert sessions.get("not-a-session") is None and sessions.get(None) is None


def test_creating_a_session_purges_ended_ones(db: Database) -> None:
    clock = Clock()
    sessions = SessionStore(db, idle_seconds=60, max_seconds=3600, clock=clock)
    sessions.create_for_person("a", "clinician")
    clock.advance(61)
    sessions.create_for_person("b", "clinician")
    assert sessions.count() == 1


def test_a_sign_in_state_is_taken_once_and_expires(db: Database) -> None:
    clock = Clock()
    sessions = SessionStore(db, idle_seconds=60, max_seconds=3600, clock=clock)
    sessions.begin_login("state-1", "nonce-1", "verifier-1")
    taken = sessions.take_login("state-1")
    assert taken is not None and (taken.nonce, taken.code_verifier) == ("nonce-1", "verifier-1")
    assert sessions.take_login("state-1") is None
    sessions.begin_login("state-2", "n", "v")
    clock.advance(LOGIN_SECONDS + 1)
    assert sessions.take_login("state-2") is None
    assert sessions.take_login("never-started") is None and sessions.take_login(None) is None


def test_the_first_mapped_group_decides_the_role() -> None:
    role_map = {"admins": "admin", "radiologists": "clinician"}
    assert role_for(("radiologists", "admins"), role_map) == ("admins", "admin")
    assert role_for(("radiologists",), role_map) == ("radiologists", "clinician")
    assert role_for(("visitors",), role_map) is None


def _oidc(**overrides) -> Settings:
    values = dict(
        oidc_issuer="https://idp.example",
        oidc_client_id="radvigil",
        oidc_client_secret="s",
        oidc_redirect_url="https://rv.example/dashboard/oidc/callback",
        oidc_role_map={"radiologists": "clinician"},
    )
    values.update(overrides)
    return Settings(**values)


def test_oidc_settings_name_what_is_missing_or_wrong(tmp_path) -> None:
    assert _oidc().oidc_secret() == "s"
    with pytest.raises(ValidationError, match="RADVIGIL_OIDC_CLIENT_ID"):
        _oidc(oidc_client_id=None)
    with pytest.raises(ValidationError, match="RADVIGIL_OIDC_ROLE_MAP"):
        _oidc(oidc_role_map={})
    with pytest.raises(ValidationError, match="RADVIGIL_OIDC_CLIENT_SECRET"):
        _oidc(oidc_client_secret=None)
    with pytest.raises(ValidationError, match="openid"):
        _oidc(oidc_scopes="profile")
    with pytest.raises(ValidationError, match="radiologists"):
        _oidc(oidc_role_map={"radiologists": "superuser"})
    with pytest.raises(ValidationError, match="https"):
        _oidc(env="production", audit_key="k", oidc_issuer="http://idp.example")
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    assert _oidc(oidc_client_secret=None, oidc_client_secret_file=secret).oidc_secret() == (
        "from-a-file"
    )


def test_oidc_role_map_is_read_from_json_in_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("RADVIGIL_OIDC_ROLE_MAP", '{"admins": "admin", "radiologists": "clinician"}')
    settings = Settings()
    assert list(settings.oidc_role_map.items()) == [
        ("admins", "admin"),
        ("radiologists", "clinician"),
    ]

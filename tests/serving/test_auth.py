"""Password hashing, access tokens, scope rules and the signing key."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import stat
from pathlib import Path

import jwt
import pytest

from serving.auth import (
    Forbidden,
    InvalidToken,
    NotYourStudent,
    Viewer,
    create_access_token,
    decode_access_token,
    hash_password,
    password_needs_rehash,
    secret_key,
    verify_password,
    visible_classes,
)

SECRET = "s" * 40
OTHER_SECRET = "t" * 40

COUNTY = Viewer(user_id=1, username="county", role="county_admin")
HEAD_A = Viewer(user_id=2, username="head.a", role="school_admin", school_id="A")
TEACHER_A1 = Viewer(
    user_id=3, username="li", role="teacher", school_id="A", class_ids=frozenset({"A-1", "A-2"})
)
RESEARCHER = Viewer(user_id=4, username="res", role="researcher")


# -- passwords --------------------------------------------------------------------------


def test_a_password_verifies_against_its_own_hash_only() -> None:
    stored = hash_password("correct horse")
    assert stored.startswith("$argon2id$")
    assert verify_password("correct horse", stored)
    assert not verify_password("correct horsE", stored)
    assert not verify_password("", stored)
    assert hash_password("correct horse") != stored  # salted


def test_a_malformed_hash_never_verifies() -> None:
    assert not verify_password("anything", "not-a-hash")
    assert password_needs_rehash("not-a-hash")
    assert not password_needs_rehash(hash_password("x" * 8))


# -- tokens -----------------------------------------------------------------------------


def test_a_token_round_trips_user_and_role() -> None:
    now = dt.datetime.now(dt.UTC)
    claims = decode_access_token(create_access_token(TEACHER_A1, SECRET, 30, now=now), SECRET)
    assert claims.user_id == 3 and claims.role == "teacher"
    assert abs(claims.expires_at - (now + dt.timedelta(minutes=30))) < dt.timedelta(seconds=1)


def test_a_token_carries_the_users_token_version() -> None:
    raised = Viewer(user_id=3, username="li", role="teacher", school_id="A", token_version=7)
    assert decode_access_token(create_access_token(raised, SECRET, 30), SECRET).version == 7
    assert decode_access_token(create_access_token(TEACHER_A1, SECRET, 30), SECRET).version == 0
    base = {"sub": "3", "role": "teacher", "exp": 9999999999}
    for payload in (base, {**base, "ver": "7"}, {**base, "ver": True}, {**base, "ver": None}):
        with pytest.raises(InvalidToken):
            decode_access_token(jwt.encode(payload, SECRET, algorithm="HS256"), SECRET)


def test_an_expired_token_is_refused() -> None:
    issued = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=481)
    token = create_access_token(TEACHER_A1, SECRET, 480, now=issued)
    with pytest.raises(InvalidToken):
        decode_access_token(token, SECRET)


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return ".".join([header, _b64(claims | {"role": "county_admin"}), signature])


def _unsigned(token: str) -> str:
    payload = token.split(".")[1]
    return ".".join([_b64({"alg": "none", "typ": "JWT"}), payload, ""])


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(_tampered, id="payload changed"),
        pytest.param(_unsigned, id="alg none"),
        pytest.param(lambda t: t[:-3] + ("aaa" if not t.endswith("aaa") else "bbb"), id="sig"),
        pytest.param(lambda t: "not.a.token", id="garbage"),
        pytest.param(lambda t: "", id="empty"),
        pytest.param(
            lambda t: create_access_token(TEACHER_A1, OTHER_SECRET, 30), id="other secret"
        ),
        pytest.param(
            lambda t: jwt.encode({"sub": "3", "role": "teacher"}, SECRET, "HS256"), id="no exp"
        ),
        pytest.param(
            lambda t: jwt.encode({"sub": "x", "role": "teacher", "exp": 2**40}, SECRET, "HS256"),
            id="sub not an id",
        ),
        pytest.param(
            lambda t: jwt.encode({"sub": "3", "role": "king", "exp": 2**40}, SECRET, "HS256"),
            id="unknown role",
        ),
    ],
)
def test_a_tampered_or_foreign_token_is_refused(make) -> None:
    good = create_access_token(TEACHER_A1, SECRET, 30)
    with pytest.raises(InvalidToken) as caught:
        decode_access_token(make(good), SECRET)
    assert caught.value.code == "invalid_token"


# -- scope rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("viewer", "school_id", "class_id", "allowed"),
    [
        (COUNTY, "A", "A-1", True),
        (COUNTY, "B", "B-9", True),
        (COUNTY, "B", None, True),
        (HEAD_A, "A", "A-1", True),
        (HEAD_A, "A", "A-7", True),
        (HEAD_A, "A", None, True),
        (HEAD_A, "B", "B-1", False),
        (HEAD_A, "B", "A-1", False),
        (TEACHER_A1, "A", "A-1", True),
        (TEACHER_A1, "A", "A-2", True),
        (TEACHER_A1, "A", "A-3", False),
        (TEACHER_A1, "A", None, False),
        (TEACHER_A1, "B", "A-1", False),  # same class name in another school
        (TEACHER_A1, "B", "B-1", False),
        (RESEARCHER, "A", "A-1", False),
        (RESEARCHER, "B", None, False),
    ],
    ids=lambda v: v.username if isinstance(v, Viewer) else str(v),
)
def test_who_may_see_which_student(viewer, school_id, class_id, allowed) -> None:
    assert viewer.can_see(school_id, class_id) is allowed
    if allowed:
        viewer.check_can_see(school_id, class_id)
    else:
        expected = Forbidden if viewer.role == "researcher" else NotYourStudent
        with pytest.raises(expected):
            viewer.check_can_see(school_id, class_id)


@pytest.mark.parametrize(
    ("viewer", "school_id", "allowed"),
    [
        (COUNTY, None, True),
        (COUNTY, "B", True),
        (RESEARCHER, None, True),
        (RESEARCHER, "A", True),
        (HEAD_A, "A", True),
        (HEAD_A, "B", False),
        (HEAD_A, None, False),
        (TEACHER_A1, "A", True),
        (TEACHER_A1, "B", False),
        (TEACHER_A1, None, False),
    ],
    ids=lambda v: v.username if isinstance(v, Viewer) else str(v),
)
def test_who_may_read_aggregates(viewer, school_id, allowed) -> None:
    assert viewer.can_read_aggregates(school_id) is allowed


def test_a_teacher_sees_only_their_classes_of_a_list() -> None:
    assert visible_classes(TEACHER_A1, "A", ["A-3", "A-2", "A-1"]) == ["A-2", "A-1"]
    assert visible_classes(TEACHER_A1, "B", ["A-1"]) == []


def test_require_role_and_viewer_checks() -> None:
    COUNTY.require_role("county_admin", "school_admin")
    with pytest.raises(Forbidden):
        TEACHER_A1.require_role("county_admin")
    with pytest.raises(ValueError, match="role must be one of"):
        Viewer(user_id=9, username="x", role="superuser")
    assert Viewer(9, "x", "teacher", "A", {"A-1"}).class_ids == frozenset({"A-1"})  # type: ignore[arg-type]


def test_errors_do_not_name_the_student() -> None:
    assert "S1" not in str(NotYourStudent())
    assert NotYourStudent().code == "not_your_student"


# -- signing key ------------------------------------------------------------------------


def test_a_configured_key_is_used_as_is(tmp_path: Path) -> None:
    assert secret_key(tmp_path, SECRET) == SECRET
    assert not (tmp_path / "secret_key").exists()
    with pytest.raises(ValueError, match="at least 32"):
        secret_key(tmp_path, "short")


def test_a_key_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = secret_key(home, None)
    assert len(first) >= 32
    assert secret_key(home, None) == first
    if os.name == "posix":
        assert stat.S_IMODE((home / "secret_key").stat().st_mode) == 0o600
    assert [p.name for p in home.iterdir()] == ["secret_key"]  # no temp file left
    other = secret_key(tmp_path / "elsewhere", None)
    assert other != first


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_a_key_file_readable_by_others_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "secret_key"
    path.write_text("k" * 48)
    path.chmod(0o644)
    assert secret_key(tmp_path, None) == "k" * 48
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

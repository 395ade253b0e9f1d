"""User accounts on a real, migrated SQLite file."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from serving.auth import InvalidCredentials, InvalidToken, Viewer, verify_password
from serving.services import users
from serving.services.users import InvalidUser, UsernameTaken, UserNotFound
from serving.storage.tables import User

PASSWORD = "long enough"


def test_each_role_is_created_with_its_scope_and_default_staff_role(db_sessions) -> None:
    with db_sessions.begin() as session:
        county = users.add_user(session, "County.Zhao", PASSWORD, "county_admin")
        head = users.add_user(session, "head_a", PASSWORD, "school_admin", school_id="A")
        teacher = users.add_user(
            session, "li-teacher", PASSWORD, "teacher", "A", ["A-2", "A-1", "A-2"]
        )
        subject = users.add_user(
            session, "wu.math", PASSWORD, "teacher", "A", ["A-1"], staff_role="subject_teacher"
        )
        researcher = users.add_user(session, "res01", PASSWORD, "researcher")
    assert county.username == "county.zhao" and county.staff_role == "county"
    assert county.school_id is None and county.class_ids == ()
    assert head.school_id == "A" and head.staff_role == "principal"
    assert teacher.class_ids == ("A-1", "A-2") and teacher.staff_role == "homeroom_teacher"
    assert subject.staff_role == "subject_teacher"
    assert researcher.staff_role == "researcher" and researcher.active
    assert not hasattr(teacher, "password_hash")


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        ({"username": "ab"}, "username", "3 to 64 characters"),
        ({"username": "a" * 65}, "username", "3 to 64 characters"),
        ({"username": "li wei"}, "username", "letters, digits"),
        ({"username": "李老师"}, "username", "letters, digits"),
        ({"password": "short"}, "password", "at least 8 characters"),
        ({"role": "principal"}, "role", "must be one of county_admin"),
        ({"school_id": None}, "school_id", "A teacher needs a school"),
        ({"class_ids": []}, "class_ids", "at least one class"),
        ({"class_ids": [""]}, "class_ids", "1 to 64 characters"),
        ({"staff_role": "principal"}, "staff_role", "homeroom_teacher, subject_teacher"),
        ({"role": "school_admin", "school_id": None, "class_ids": []}, "school_id", "needs a"),
        ({"role": "school_admin", "class_ids": ["A-1"]}, "class_ids", "Only teachers"),
        ({"role": "county_admin", "class_ids": []}, "school_id", "takes no school"),
        ({"role": "researcher", "school_id": None}, "class_ids", "Only teachers"),
        (
            {"role": "researcher", "school_id": None, "class_ids": [], "staff_role": "county"},
            "staff_role",
            "A researcher can have staff role researcher",
        ),
    ],
)
def test_add_user_explains_what_is_wrong(db_session, kwargs, field, message) -> None:
    values = {
        "username": "li.teacher",
        "password": PASSWORD,
        "role": "teacher",
        "school_id": "A",
        "class_ids": ["A-1"],
    } | kwargs
    with pytest.raises(InvalidUser, match=message) as caught:
        users.add_user(db_session, **values)
    assert caught.value.field == field
    assert db_session.scalar(select(User)) is None


def test_usernames_are_unique_whatever_the_case(db_session) -> None:
    users.add_user(db_session, "li.teacher", PASSWORD, "researcher")
    with pytest.raises(UsernameTaken, match="taken"):
        users.add_user(db_session, "LI.Teacher", PASSWORD, "researcher")


def test_authenticate_returns_the_viewer_with_its_scope(db_sessions) -> None:
    with db_sessions.begin() as session:
        added = users.add_user(session, "li.teacher", PASSWORD, "teacher", "A", ["A-1", "A-2"])
    with db_sessions() as session:
        viewer = users.authenticate(session, "Li.Teacher", PASSWORD)
        assert viewer == Viewer(
            user_id=added.id,
            username="li.teacher",
            role="teacher",
            school_id="A",
            class_ids=frozenset({"A-1", "A-2"}),
            staff_role="homeroom_teacher",
        )
        assert users.get_viewer(session, added.id) == viewer


def test_every_failed_login_looks_the_same(db_sessions) -> None:
    with db_sessions.begin() as session:
        users.add_user(session, "li.teacher", PASSWORD, "teacher", "A", ["A-1"])
        users.add_user(session, "gone.user", PASSWORD, "researcher")
        users.deactivate(session, "gone.user")
    messages = set()
    with db_sessions() as session:
        for username, password in [
            ("li.teacher", "wrong password"),
            ("nobody", PASSWORD),
            ("gone.user", PASSWORD),
            ("x", PASSWORD),  # not even a valid username
        ]:
            with pytest.raises(InvalidCredentials) as caught:
                users.authenticate(session, username, password)
            messages.add(str(caught.value))
    assert messages == {"The username or password is wrong."}


def test_a_deactivated_user_is_listed_only_on_request_and_loses_its_tokens(db_sessions) -> None:
    with db_sessions.begin() as session:
        kept = users.add_user(session, "b.user", PASSWORD, "school_admin", "B")
        gone = users.add_user(session, "a.user", PASSWORD, "school_admin", "A")
        assert users.deactivate(session, "a.user").active is False
    with db_sessions() as session:
        assert [u.username for u in users.list_users(session)] == ["b.user"]
        everyone = users.list_users(session, include_inactive=True)
        assert [u.username for u in everyone] == ["a.user", "b.user"]
        assert users.list_users(session, school_id="B") == [kept]
        with pytest.raises(InvalidCredentials):
            users.get_viewer(session, gone.id)
        with pytest.raises(InvalidCredentials):
            users.get_viewer(session, 9999)
        with pytest.raises(UserNotFound):
            users.deactivate(session, "nobody")


def test_set_password_replaces_the_old_one(db_sessions) -> None:
    with db_sessions.begin() as session:
        users.add_user(session, "li.teacher", PASSWORD, "teacher", "A", ["A-1"])
        users.set_password(session, "li.teacher", "a new password")
        with pytest.raises(InvalidUser, match="at least 8"):
            users.set_password(session, "li.teacher", "short")
    with db_sessions() as session:
        users.authenticate(session, "li.teacher", "a new password")
        with pytest.raises(InvalidCredentials):
            users.authenticate(session, "li.teacher", PASSWORD)


def test_a_new_school_year_gives_a_teacher_new_classes(db_sessions) -> None:
    with db_sessions.begin() as session:
        users.add_user(session, "li.teacher", PASSWORD, "teacher", "A", ["A-1", "A-2"])
        assert users.set_classes(session, "li.teacher", ["A-2", "A-5"]).class_ids == (
            "A-2",
            "A-5",
        )
        with pytest.raises(InvalidUser, match="at least one class"):
            users.set_classes(session, "li.teacher", [])
    with db_sessions() as session:
        assert users.get_user(session, "li.teacher").class_ids == ("A-2", "A-5")


def test_an_old_weak_hash_is_upgraded_at_login(db_sessions) -> None:
    with db_sessions.begin() as session:
        added = users.add_user(session, "li.teacher", PASSWORD, "teacher", "A", ["A-1"])
        user = session.get(User, added.id)
        user.password_hash = PasswordHasher(time_cost=1, memory_cost=1024).hash(PASSWORD)
        weak = user.password_hash
    with db_sessions.begin() as session:
        users.authenticate(session, "li.teacher", PASSWORD)
    with db_sessions() as session:
        upgraded = session.get(User, added.id).password_hash
    assert upgraded != weak and verify_password(PASSWORD, upgraded)


# -- what `baoxue users passwd/deactivate/list/set-role` call (issue 21, item 7) ----------


def version_of(db_sessions, username: str) -> int:
    with db_sessions() as session:
        return session.scalar(select(User.token_version).where(User.username == username))


def test_a_password_change_ends_the_users_tokens_and_sessions(db_sessions) -> None:
    # Before: a token (480 minutes) and the page cookie outlived a password change.
    with db_sessions.begin() as session:
        added = users.add_user(session, "li.teacher", PASSWORD, "teacher", "A", ["A-1"])
        before = users.get_viewer(session, added.id, 0)
        assert before.token_version == 0
        assert users.set_password(session, "li.teacher", "a new password").username == (
            "li.teacher"
        )
    with db_sessions() as session:
        with pytest.raises(InvalidToken):
            users.get_viewer(session, added.id, before.token_version)
        assert users.get_viewer(session, added.id, 1).token_version == 1
        assert users.get_viewer(session, added.id).user_id == added.id  # no version asked
    with db_sessions.begin() as session, pytest.raises(UserNotFound):
        users.set_password(session, "nobody", "a new password")


def test_end_sessions_raises_the_version_once_per_call(db_sessions) -> None:
    with db_sessions.begin() as session:
        added = users.add_user(session, "county", PASSWORD, "county_admin")
        users.end_sessions(session, added.id)
        users.end_sessions(session, added.id)
    assert version_of(db_sessions, "county") == 2


def test_set_role_checks_the_new_scope_and_ends_the_old_tokens(db_sessions) -> None:
    with db_sessions.begin() as session:
        users.add_user(session, "li.teacher", PASSWORD, "teacher", "A", ["A-1"])
        promoted = users.set_role(session, "li.teacher", "school_admin", school_id="A")
        assert (promoted.role, promoted.school_id, promoted.class_ids) == ("school_admin", "A", ())
        assert promoted.staff_role == "principal"
    assert version_of(db_sessions, "li.teacher") == 1
    bad = [
        ({"role": "teacher", "school_id": "A"}, "class_ids", "at least one class"),
        ({"role": "county_admin", "school_id": "A"}, "school_id", "takes no school"),
        ({"role": "overlord"}, "role", "must be one of"),
        ({"role": "school_admin", "school_id": "A", "staff_role": "county"}, "staff_role", ""),
    ]
    for kwargs, field, message in bad:
        with db_sessions.begin() as session, pytest.raises(InvalidUser, match=message) as caught:
            users.set_role(session, "li.teacher", **kwargs)
        assert caught.value.field == field
    with db_sessions() as session:
        assert users.get_user(session, "li.teacher").role == "school_admin"  # unchanged
    with db_sessions.begin() as session, pytest.raises(UserNotFound):
        users.set_role(session, "nobody", "researcher")


def test_deactivate_ends_the_tokens_and_says_when_already_done(db_sessions) -> None:
    with db_sessions.begin() as session:
        added = users.add_user(session, "li.teacher", PASSWORD, "teacher", "A", ["A-1"])
        users.deactivate(session, "li.teacher")
    with db_sessions.begin() as session:
        with pytest.raises(InvalidUser, match="already deactivated"):
            users.deactivate(session, "li.teacher")
        with pytest.raises(InvalidCredentials):
            users.authenticate(session, "li.teacher", PASSWORD)
        with pytest.raises(InvalidCredentials):
            users.get_viewer(session, added.id, 1)
        assert users.find_login(session, "li.teacher").viewer is None
    with db_sessions.begin() as session:
        assert users.reactivate(session, "li.teacher").active is True
        with pytest.raises(InvalidUser, match="active already"):
            users.reactivate(session, "li.teacher")
    with db_sessions() as session:
        assert users.authenticate(session, "li.teacher", PASSWORD).token_version == 1


def test_list_users_names_scope_and_state_without_hashes(db_sessions) -> None:
    with db_sessions.begin() as session:
        users.add_user(session, "li.teacher", PASSWORD, "teacher", "A", ["A-2", "A-1"])
        users.add_user(session, "county", PASSWORD, "county_admin")
        users.deactivate(session, "county")
    with db_sessions() as session:
        listed = users.list_users(session, include_inactive=True)
    assert [(u.username, u.role, u.class_ids, u.active) for u in listed] == [
        ("county", "county_admin", (), False),
        ("li.teacher", "teacher", ("A-1", "A-2"), True),
    ]
    assert "password_hash" not in listed[0].model_dump()

"""Create the service tables: users, weekly scores and runs, interventions, feedback,
cases with their history, and the access log.

Enumerations are written out here rather than imported, so this revision keeps creating
the same schema when the code's lists grow (a new code needs a new revision).
Timestamps are naive UTC (`serving.storage.tables.UtcDateTime`).

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "score_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("model_version", sa.String(length=128), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("n_students", sa.Integer(), nullable=True),
        sa.Column("lists_dir", sa.String(length=1024), nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'done', 'failed')", name=op.f("ck_score_runs_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_score_runs")),
    )
    op.create_index(op.f("ix_score_runs_as_of"), "score_runs", ["as_of"])
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("staff_role", sa.String(length=32), nullable=True),
        sa.Column("school_id", sa.String(length=64), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(
            "role IN ('county_admin', 'school_admin', 'teacher', 'researcher')",
            name=op.f("ck_users_role"),
        ),
        sa.CheckConstraint(
            "staff_role IN ('homeroom_teacher', 'subject_teacher', 'principal', 'county', "
            "'researcher')",
            name=op.f("ck_users_staff_role"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("student_id", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=128), nullable=False),
        sa.Column("school_id", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_audit_log_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_at"), "audit_log", ["at"])
    op.create_index(op.f("ix_audit_log_student_id_at"), "audit_log", ["student_id", "at"])
    op.create_index(op.f("ix_audit_log_user_id_at"), "audit_log", ["user_id", "at"])
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("student_id", sa.String(length=64), nullable=False),
        sa.Column("school_id", sa.String(length=64), nullable=False),
        sa.Column("opened_at", sa.DateTime(), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("owner", sa.Integer(), nullable=True),
        sa.Column("plan", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
        sa.Column("closed_by", sa.Integer(), nullable=True),
        sa.Column("close_reason", sa.Text(), nullable=True),
        sa.CheckConstraint("reason IN ('ladder', 'high_tier')", name=op.f("ck_cases_reason")),
        sa.CheckConstraint(
            "status IN ('open', 'returned', 'transferred', 'closed_other')",
            name=op.f("ck_cases_status"),
        ),
        sa.ForeignKeyConstraint(["closed_by"], ["users.id"], name=op.f("fk_cases_closed_by_users")),
        sa.ForeignKeyConstraint(["owner"], ["users.id"], name=op.f("fk_cases_owner_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cases")),
    )
    op.create_index(op.f("ix_cases_school_id_status"), "cases", ["school_id", "status"])
    op.create_index(op.f("ix_cases_student_id_status"), "cases", ["student_id", "status"])
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("student_id", sa.String(length=64), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('useful', 'not_useful', 'wrongly_flagged')", name=op.f("ck_feedback_kind")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_feedback_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback")),
    )
    op.create_index(op.f("ix_feedback_as_of"), "feedback", ["as_of"])
    op.create_index(op.f("ix_feedback_student_id_as_of"), "feedback", ["student_id", "as_of"])
    op.create_table(
        "interventions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("student_id", sa.String(length=64), nullable=False),
        sa.Column("school_id", sa.String(length=64), nullable=False),
        sa.Column("class_id", sa.String(length=64), nullable=True),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("by_role", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("recorded_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(
            "by_role IN ('homeroom_teacher', 'subject_teacher', 'principal', 'township', 'county')",
            name=op.f("ck_interventions_by_role"),
        ),
        sa.CheckConstraint(
            "kind IN ('home_visit', 'phone_call', 'talk_at_school', 'counselling', "
            "'financial_aid', 'peer_mentor', 'proxy_parent', 'send_teaching', "
            "'vocational_referral', 'return_notice')",
            name=op.f("ck_interventions_kind"),
        ),
        sa.CheckConstraint(
            "outcome IN ('contacted', 'not_reached', 'returned', 'refused', 'other')",
            name=op.f("ck_interventions_outcome"),
        ),
        sa.ForeignKeyConstraint(
            ["recorded_by"], ["users.id"], name=op.f("fk_interventions_recorded_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_interventions")),
    )
    op.create_index(op.f("ix_interventions_school_id_date"), "interventions", ["school_id", "date"])
    op.create_index(
        op.f("ix_interventions_student_id_date"), "interventions", ["student_id", "date"]
    )
    op.create_table(
        "user_classes",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("class_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_user_classes_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "class_id", name=op.f("pk_user_classes")),
    )
    op.create_table(
        "weekly_scores",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("student_id", sa.String(length=64), nullable=False),
        sa.Column("school_id", sa.String(length=64), nullable=False),
        sa.Column("class_id", sa.String(length=64), nullable=False),
        sa.Column("grade_level", sa.Integer(), nullable=False),
        sa.Column("risk_score", sa.Float(), nullable=False),
        sa.Column("margin", sa.Float(), nullable=False),
        sa.Column("rank_in_school", sa.Integer(), nullable=False),
        sa.Column("tier", sa.String(length=8), nullable=False),
        sa.Column("escalation_level", sa.Integer(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("model_version", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("tier IN ('high', 'medium', 'low')", name=op.f("ck_weekly_scores_tier")),
        sa.CheckConstraint("escalation_level >= 0", name=op.f("ck_weekly_scores_escalation_level")),
        sa.CheckConstraint("rank_in_school >= 1", name=op.f("ck_weekly_scores_rank_in_school")),
        sa.CheckConstraint(
            "risk_score >= 0 AND risk_score <= 1", name=op.f("ck_weekly_scores_risk_score")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["score_runs.id"], name=op.f("fk_weekly_scores_run_id_score_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_weekly_scores")),
        sa.UniqueConstraint("as_of", "student_id", name=op.f("uq_weekly_scores_as_of_student_id")),
    )
    op.create_index(op.f("ix_weekly_scores_class_id_as_of"), "weekly_scores", ["class_id", "as_of"])
    op.create_index(op.f("ix_weekly_scores_run_id"), "weekly_scores", ["run_id"])
    op.create_index(
        op.f("ix_weekly_scores_school_id_as_of"), "weekly_scores", ["school_id", "as_of"]
    )
    op.create_index(
        op.f("ix_weekly_scores_student_id_as_of"), "weekly_scores", ["student_id", "as_of"]
    )
    op.create_table(
        "case_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_case_events_case_id_cases"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_case_events_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_events")),
    )
    op.create_index(op.f("ix_case_events_case_id"), "case_events", ["case_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_case_events_case_id"), table_name="case_events")
    op.drop_table("case_events")
    op.drop_index(op.f("ix_weekly_scores_student_id_as_of"), table_name="weekly_scores")
    op.drop_index(op.f("ix_weekly_scores_school_id_as_of"), table_name="weekly_scores")
    op.drop_index(op.f("ix_weekly_scores_run_id"), table_name="weekly_scores")
    op.drop_index(op.f("ix_weekly_scores_class_id_as_of"), table_name="weekly_scores")
    op.drop_table("weekly_scores")
    op.drop_table("user_classes")
    op.drop_index(op.f("ix_interventions_student_id_date"), table_name="interventions")
    op.drop_index(op.f("ix_interventions_school_id_date"), table_name="interventions")
    op.drop_table("interventions")
    op.drop_index(op.f("ix_feedback_student_id_as_of"), table_name="feedback")
    op.drop_index(op.f("ix_feedback_as_of"), table_name="feedback")
    op.drop_table("feedback")
    op.drop_index(op.f("ix_cases_student_id_status"), table_name="cases")
    op.drop_index(op.f("ix_cases_school_id_status"), table_name="cases")
    op.drop_table("cases")
    op.drop_index(op.f("ix_audit_log_user_id_at"), table_name="audit_log")
    op.drop_index(op.f("ix_audit_log_student_id_at"), table_name="audit_log")
    op.drop_index(op.f("ix_audit_log_at"), table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("users")
    op.drop_index(op.f("ix_score_runs_as_of"), table_name="score_runs")
    op.drop_table("score_runs")

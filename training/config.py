"""TrainingConfig: every choice of a training run, read from TOML or built in code."""

from __future__ import annotations

import tomllib
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TrainingConfig(BaseModel):
    """What `baoxue train` does. Field names match the CLI options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    horizon_days: int = Field(90, ge=7, le=730, description="label: dropout within this many days")
    horizon_to_enrolment_end: bool = Field(
        False,
        description="cap each label window at the end of the student's enrolment row "
        "(university courses: 'withdraws before the end of the presentation')",
    )
    as_of_every_days: int = Field(7, ge=1, le=92, description="one as_of per this many days")
    as_of_weekday: int = Field(0, ge=0, le=6, description="weekday of each as_of (0 = Monday)")
    train_until: date | None = Field(
        None, description="first test as_of; default: the start of the last school year"
    )
    test_to: date | None = Field(None, description="last test as_of; default: the last observable")
    calibration_weeks: int = Field(8, ge=2, le=52)
    split: Literal["temporal", "cohort"] = Field(
        "temporal",
        description="temporal: train/calibrate on label windows closing before the test "
        "window; cohort: test on the enrolments starting on or after train_until, train on "
        "the earlier ones (overlapping course presentations, e.g. OULAD)",
    )
    calibration_share: float = Field(
        0.2, gt=0, lt=1, description="cohort split: share of earlier students held out to calibrate"
    )
    capacity_share: float = Field(0.05, gt=0, le=1, description="visits per school per week")
    seed: int = 0
    early_stopping_rounds: int = Field(100, ge=5)
    gbm: dict[str, Any] = Field(default_factory=dict, description="LightGBM overrides")
    optuna_seconds: int = Field(0, ge=0, description="time budget for a hyper-parameter search")
    n_jobs: int = Field(2, ge=1)

    @property
    def horizon(self) -> timedelta:
        return timedelta(days=self.horizon_days)

    @model_validator(mode="after")
    def _window_order(self) -> TrainingConfig:
        if self.train_until and self.test_to and self.test_to < self.train_until:
            raise ValueError("test_to must not be before train_until")
        return self

    @classmethod
    def from_toml(cls, path: Path, **overrides: Any) -> TrainingConfig:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        data = data.get("training", data)
        return cls(**{**data, **{k: v for k, v in overrides.items() if v is not None}})

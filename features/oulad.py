"""Import the Open University Learning Analytics Dataset (OULAD) as a Baoxue export.

OULAD is a public, anonymised extract of UK Open University records (Kuzilek, Hlosta &
Zdrahal 2017, CC BY 4.0). This module maps it onto our contract so the county pipeline can
be trained and evaluated on real dropout data. The mapping is fixed (docs/oulad.md says why
for every rule) so results stay comparable:

* a module (``code_module``) is a school; a presentation ``YYYYB`` starts on YYYY-02-01 and
  ``YYYYJ`` on YYYY-10-01; OULAD day ``d`` is that start plus ``d`` days; a presentation runs
  from day 0 to day ``module_presentation_length`` inclusive;
* one pseudonymous student per (``id_student``, ``code_module``);
* assessments are the register: a missed deadline is ``absent_unexcused``, a late submission
  is ``late``;
* every submitted assessment is a grade (TMA/CMA ``monthly``, Exam ``final``);
* registration is ``enrol``, unregistration ``dropout``, a final result ``graduate``.

`read_oulad` and `import_oulad` are the file edges; `oulad_to_tables` is pure.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.sources import ExportFormat, write_export
from features.tables import COLUMNS, RawTables, empty_table

logger = logging.getLogger(__name__)

# --- what we read ---------------------------------------------------------------------

#: The OULAD tables we need and the columns we use from each (others are ignored).
#: `vle` is not read (no VLE features: `studentVle` is not shipped).
OULAD_COLUMNS: dict[str, dict[str, str]] = {
    "courses": {
        "code_module": "str",
        "code_presentation": "str",
        "module_presentation_length": "int",
    },
    "assessments": {
        "code_module": "str",
        "code_presentation": "str",
        "id_assessment": "int",
        "assessment_type": "str",
        "date": "float",
    },
    "studentInfo": {
        "code_module": "str",
        "code_presentation": "str",
        "id_student": "int",
        "gender": "str",
        "highest_education": "str",
        "imd_band": "str",
        "age_band": "str",
        "num_of_prev_attempts": "float",
        "studied_credits": "float",
        "disability": "str",
        "final_result": "str",
    },
    "studentRegistration": {
        "code_module": "str",
        "code_presentation": "str",
        "id_student": "int",
        "date_registration": "float",
        "date_unregistration": "float",
    },
    "studentAssessment": {
        "id_assessment": "int",
        "id_student": "int",
        "date_submitted": "float",
        "is_banked": "int",
        "score": "float",
    },
}
OULAD_TABLES: tuple[str, ...] = tuple(OULAD_COLUMNS)

#: Cells the original CSVs use for "missing" (empty field) and the `?` of some copies.
MISSING_MARKERS: tuple[str, ...] = ("", "?")

# --- the fixed mapping ----------------------------------------------------------------

COUNTY = "Open University"
TOWNSHIP = "OU"
#: Every OU module is one stage of study for adults; we call it a junior school and put
#: everyone in its last grade (see docs/oulad.md, "schools and grade").
SCHOOL_LEVEL = "junior"
GRADE_LEVEL = 9
MAX_SCORE = 100.0

PRESENTATION_START_MONTH: dict[str, int] = {"B": 2, "J": 10}
EXAM_BY_TYPE: dict[str, str] = {"TMA": "monthly", "CMA": "monthly", "Exam": "final"}
SEX_BY_GENDER: dict[str, str] = {"F": "F", "M": "M"}
FINAL_RESULTS: tuple[str, ...] = ("Pass", "Fail", "Distinction", "Withdrawn")

AGE_BAND_ORDINAL: dict[str, float] = {"0-35": 0.0, "35-55": 1.0, "55<=": 2.0}
#: Synthetic age at the first presentation: the middle of the band, reading "0-35" as
#: 16-35 and "55<=" as 55-75 (OU students are adults).
AGE_BAND_YEARS: dict[str, int] = {"0-35": 25, "35-55": 45, "55<=": 65}
HIGHEST_EDUCATION_ORDINAL: dict[str, float] = {
    "No Formal quals": 0.0,
    "Lower Than A Level": 1.0,
    "A Level or Equivalent": 2.0,
    "HE Qualification": 3.0,
    "Post Graduate Qualification": 4.0,
}
#: IMD deprivation decile, 0 = most deprived. OULAD spells the second band "10-20"
#: without the "%" sign; both spellings are accepted.
IMD_BAND_DECILE: dict[str, float] = {
    "0-10%": 0.0,
    "10-20": 1.0,
    "10-20%": 1.0,
    "20-30%": 2.0,
    "30-40%": 3.0,
    "40-50%": 4.0,
    "50-60%": 5.0,
    "60-70%": 6.0,
    "70-80%": 7.0,
    "80-90%": 8.0,
    "90-100%": 9.0,
}
#: The two most deprived deciles count as 建档立卡 (`poverty_registered`).
POVERTY_IMD_DECILES: tuple[float, ...] = (0.0, 1.0)

_STATUS_RANK: dict[str, int] = {"late": 1, "absent_unexcused": 2}


class OuladInputError(ValueError):
    """The OULAD folder or frames cannot be imported (names the table and column)."""


@dataclass(frozen=True)
class ImportSummary:
    """What `import_oulad` wrote, for the CLI to print."""

    out_dir: Path
    fmt: str
    rows: dict[str, int]
    registrations_read: int
    registrations_left_out: int
    dropouts_by_presentation: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


# --- reading (file edge) --------------------------------------------------------------


def read_oulad(src: Path) -> dict[str, pd.DataFrame]:
    """Read OULAD's tables from folder `src`.

    Each table is read from ``NAME.parquet`` (as shipped in /work/shared/data/oulad) or,
    failing that, from the original ``NAME.csv`` (every field quoted, CRLF line ends,
    missing values as empty fields or ``?``). ``vle`` is not needed and not read.

    Returns
    -------
    dict[str, pd.DataFrame]
        One frame per name in `OULAD_TABLES`, with the columns of `OULAD_COLUMNS` in
        normalised dtypes (``str``, ``int64``, ``float64``); other columns are dropped.

    Raises
    ------
    OuladInputError
        When a table's file is missing or a column is missing or not numeric.
    """
    src = Path(src)
    if not src.is_dir():
        raise OuladInputError(f"OULAD folder {src} does not exist or is not a folder.")
    raw: dict[str, pd.DataFrame] = {}
    for name in OULAD_TABLES:
        parquet, csv = src / f"{name}.parquet", src / f"{name}.csv"
        if parquet.is_file():
            raw[name] = pd.read_parquet(parquet)
        elif csv.is_file():
            raw[name] = pd.read_csv(
                csv,
                dtype=str,
                keep_default_na=False,
                na_values=list(MISSING_MARKERS),
                encoding="utf-8-sig",
                skipinitialspace=True,
            )
        else:
            raise OuladInputError(
                f"OULAD table {name!r} is missing: expected {name}.csv or {name}.parquet in {src}."
            )
        logger.info("read OULAD %s: %d rows", name, len(raw[name]))
    return normalise_oulad(raw)


def normalise_oulad(oulad: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The needed columns of each OULAD table in normalised dtypes (pure).

    Text cells are stripped; ``?`` and empty text are missing. Whole-number columns
    (``int``) must have no missing cells.
    """
    out: dict[str, pd.DataFrame] = {}
    for name, columns in OULAD_COLUMNS.items():
        if name not in oulad:
            raise OuladInputError(f"OULAD table {name!r} is missing.")
        frame = oulad[name].rename(columns=lambda c: str(c).strip())
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise OuladInputError(f"OULAD table {name!r} lacks column(s) {', '.join(missing)}.")
        data: dict[str, pd.Series] = {}
        for col, kind in columns.items():
            data[col] = _coerce(frame[col], kind, name, col)
        out[name] = pd.DataFrame(data)
    return out


def _coerce(values: pd.Series, kind: str, table: str, col: str) -> pd.Series:
    """One column in its normalised dtype; raise naming table and column on bad cells."""
    if _is_numeric(values):
        cleaned: pd.Series = values.astype("float64")
        numbers = cleaned
    else:
        text = values.astype("str").str.strip()
        cleaned = text.mask(text.isin(list(MISSING_MARKERS)) | values.isna())
        if kind == "str":
            return cleaned.astype("str")
        numbers = pd.to_numeric(cleaned, errors="coerce").astype("float64")
        bad = numbers.isna() & cleaned.notna()
        if bad.any():
            raise OuladInputError(
                f"OULAD table {table!r}, column {col!r}: {int(bad.sum())} cell(s) are not numbers."
            )
    if kind == "str":
        raise OuladInputError(f"OULAD table {table!r}, column {col!r}: expected text.")
    if kind == "int":
        if numbers.isna().any():
            raise OuladInputError(
                f"OULAD table {table!r}, column {col!r}: {int(numbers.isna().sum())} cell(s) "
                "are empty; whole numbers are required."
            )
        if (numbers != np.round(numbers)).any():
            raise OuladInputError(
                f"OULAD table {table!r}, column {col!r}: whole numbers are required."
            )
        return numbers.astype("int64")
    return numbers


def _is_numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


# --- the conversion (pure) ------------------------------------------------------------


def oulad_to_tables(oulad: dict[str, pd.DataFrame]) -> RawTables:
    """Convert OULAD frames (as `read_oulad` returns them) into our export's tables.

    Pure: no files, no clock. See docs/oulad.md for every rule. The result has the
    in-memory dtypes of `features.tables` and the keys of `features.schemas.KEYS`.
    """
    tables, _ = _convert(oulad)
    return tables


@dataclass(frozen=True)
class _Stats:
    registrations_read: int
    registrations_left_out: int
    dropouts_by_presentation: dict[str, int]


def _convert(oulad: dict[str, pd.DataFrame]) -> tuple[RawTables, _Stats]:
    data = normalise_oulad(oulad)
    courses = _presentations(data["courses"])
    assessments = _assessments(data["assessments"], courses)
    regs_all = _registrations(data["studentInfo"], data["studentRegistration"], courses)
    left_out = regs_all["unreg_day"] < 0
    regs = regs_all[~left_out].reset_index(drop=True)
    logger.info(
        "OULAD: %d registrations, %d left out (unregistered before day 0)",
        len(regs_all),
        int(left_out.sum()),
    )
    submissions = _submissions(data["studentAssessment"], assessments, regs)

    events, dropouts = _status_events(regs)
    tables = RawTables(
        schools=_schools(courses),
        calendar=_calendar(courses),
        students=_students(regs),
        enrolments=_enrolments(regs),
        attendance=_attendance(regs, assessments, submissions),
        grades=_grades(submissions),
        status_events=events,
        interventions=empty_table("interventions"),
        student_attributes=_student_attributes(regs),
    )
    stats = _Stats(
        registrations_read=len(regs_all),
        registrations_left_out=int(left_out.sum()),
        dropouts_by_presentation=dropouts,
    )
    return tables, stats


def _days(start: pd.Series, days: pd.Series) -> pd.Series:
    """OULAD day numbers as calendar dates (datetime64[ns])."""
    return (start + pd.to_timedelta(days.astype("float64"), unit="D")).astype("datetime64[ns]")


def _presentations(courses: pd.DataFrame) -> pd.DataFrame:
    """Courses with start date, school year and length; one row per presentation."""
    if courses.duplicated(["code_module", "code_presentation"]).any():
        raise OuladInputError("OULAD table 'courses' lists a presentation twice.")
    parts = courses["code_presentation"].str.extract(r"^(\d{4})([BJ])$")
    if parts.isna().any(axis=None):
        raise OuladInputError(
            "OULAD table 'courses', column 'code_presentation': expected codes like 2013B or 2013J."
        )
    if (courses["module_presentation_length"] <= 0).any():
        raise OuladInputError(
            "OULAD table 'courses', column 'module_presentation_length' must be positive."
        )
    out = courses.copy()
    out["school_year"] = parts[0].astype("int64")
    out["season"] = parts[1].str.lower()
    out["start"] = pd.to_datetime(
        {
            "year": out["school_year"],
            "month": parts[1].map(PRESENTATION_START_MONTH),
            "day": 1,
        }
    ).astype("datetime64[ns]")
    out["length"] = out["module_presentation_length"].astype("int64")
    out["end"] = _days(out["start"], out["length"])
    return out.drop(columns="module_presentation_length")


def _assessments(assessments: pd.DataFrame, courses: pd.DataFrame) -> pd.DataFrame:
    """Assessments with their deadline day (missing Exam dates: the last day), exam kind,
    term and numbered subject."""
    unknown = ~assessments["assessment_type"].isin(list(EXAM_BY_TYPE))
    if unknown.any():
        raise OuladInputError(
            "OULAD table 'assessments', column 'assessment_type': expected one of "
            f"{', '.join(EXAM_BY_TYPE)}."
        )
    if assessments["id_assessment"].duplicated().any():
        raise OuladInputError("OULAD table 'assessments' lists an id_assessment twice.")
    out = assessments.merge(
        courses, on=["code_module", "code_presentation"], how="left", validate="many_to_one"
    )
    if out["start"].isna().any():
        raise OuladInputError(
            "OULAD table 'assessments' names a presentation that 'courses' lacks."
        )
    missing_date = out["date"].isna()
    if (missing_date & (out["assessment_type"] != "Exam")).any():
        raise OuladInputError(
            "OULAD table 'assessments', column 'date': only Exams may lack a date."
        )
    out["deadline_day"] = out["date"].fillna(out["length"].astype("float64"))
    outside = (out["deadline_day"] < 0) | (out["deadline_day"] > out["length"])
    if outside.any():
        raise OuladInputError(
            "OULAD table 'assessments', column 'date': a deadline lies outside its presentation."
        )
    out["deadline"] = _days(out["start"], out["deadline_day"])
    out["exam"] = out["assessment_type"].map(EXAM_BY_TYPE)
    out["term"] = np.where(out["deadline_day"] * 2 < out["length"], 1, 2).astype("int64")
    out = out.sort_values(
        ["code_module", "code_presentation", "assessment_type", "deadline_day", "id_assessment"]
    )
    number = out.groupby(["code_module", "code_presentation", "assessment_type"]).cumcount() + 1
    out["subject"] = (
        out["assessment_type"].str.lower() + "_" + out["season"] + number.astype("str")
    ).astype("str")
    return out.reset_index(drop=True)


def _registrations(
    info: pd.DataFrame, registration: pd.DataFrame, courses: pd.DataFrame
) -> pd.DataFrame:
    """One row per student-presentation with its ids, dates and leaving event."""
    key = ["code_module", "code_presentation", "id_student"]
    for name, frame in (("studentInfo", info), ("studentRegistration", registration)):
        if frame.duplicated(key).any():
            raise OuladInputError(f"OULAD table {name!r} lists a student-presentation twice.")
    regs = info.merge(registration, on=key, how="outer", indicator=True)
    if (regs["_merge"] != "both").any():
        raise OuladInputError(
            "OULAD tables 'studentInfo' and 'studentRegistration' list different "
            "student-presentations."
        )
    regs = regs.drop(columns="_merge").merge(
        courses, on=["code_module", "code_presentation"], how="left"
    )
    if regs["start"].isna().any():
        raise OuladInputError(
            "OULAD table 'studentInfo' names a presentation that 'courses' lacks."
        )
    for col, allowed in (
        ("final_result", FINAL_RESULTS),
        ("gender", tuple(SEX_BY_GENDER)),
        ("age_band", tuple(AGE_BAND_ORDINAL)),
        ("highest_education", tuple(HIGHEST_EDUCATION_ORDINAL)),
        ("disability", ("Y", "N")),
    ):
        if (~regs[col].isin(list(allowed))).any():
            raise OuladInputError(
                f"OULAD table 'studentInfo', column {col!r}: expected one of {', '.join(allowed)}."
            )
    if (regs["imd_band"].notna() & ~regs["imd_band"].isin(list(IMD_BAND_DECILE))).any():
        raise OuladInputError(
            "OULAD table 'studentInfo', column 'imd_band': expected bands like 0-10% .. "
            "90-100% or empty."
        )
    regs["student_id"] = (regs["code_module"] + "-" + regs["id_student"].astype("str")).astype(
        "str"
    )
    regs["school_id"] = regs["code_module"].astype("str")
    regs["class_id"] = (regs["code_module"] + "-" + regs["code_presentation"]).astype("str")
    regs["reg_day"] = regs["date_registration"]
    regs["unreg_day"] = regs["date_unregistration"]
    # Leaving: a recorded unregistration is a dropout on that day (clamped to the last day);
    # a Withdrawn student without one leaves on the last day; everyone else graduates then.
    length = regs["length"].astype("float64")
    withdrawn = regs["final_result"] == "Withdrawn"
    has_unreg = regs["unreg_day"].notna()
    regs["leave_event"] = np.where(withdrawn | has_unreg, "dropout", "graduate")
    regs["leave_day"] = regs["unreg_day"].clip(upper=length).where(has_unreg, length)
    # A registration missing its date counts from day 0; never enrol after leaving.
    regs["enrol_day"] = regs["reg_day"].fillna(0.0).clip(upper=regs["leave_day"])
    regs["enrol_date"] = _days(regs["start"], regs["enrol_day"])
    regs["leave_date"] = _days(regs["start"], regs["leave_day"])
    return regs


def _submissions(
    student_assessment: pd.DataFrame, assessments: pd.DataFrame, regs: pd.DataFrame
) -> pd.DataFrame:
    """Submissions of kept registrations, with assessment and student details."""
    sa = student_assessment
    if sa.duplicated(["id_assessment", "id_student"]).any():
        raise OuladInputError("OULAD table 'studentAssessment' lists a submission twice.")
    scores = sa["score"].dropna()
    if ((scores < 0) | (scores > MAX_SCORE)).any():
        raise OuladInputError(
            "OULAD table 'studentAssessment', column 'score': scores must lie in 0..100."
        )
    if (~sa["is_banked"].isin([0, 1])).any():
        raise OuladInputError(
            "OULAD table 'studentAssessment', column 'is_banked': expected 0 or 1."
        )
    unknown = ~sa["id_assessment"].isin(assessments["id_assessment"])
    if unknown.any():
        raise OuladInputError(
            f"OULAD table 'studentAssessment': {int(unknown.sum())} row(s) name an "
            "id_assessment that 'assessments' lacks."
        )
    out = sa.merge(
        assessments[
            [
                "id_assessment",
                "code_module",
                "code_presentation",
                "deadline_day",
                "deadline",
                "exam",
                "term",
                "subject",
                "school_year",
                "start",
            ]
        ],
        on="id_assessment",
        how="left",
    ).merge(
        regs[["code_module", "code_presentation", "id_student", "student_id"]],
        on=["code_module", "code_presentation", "id_student"],
        how="inner",
    )
    dropped = len(sa) - len(out)
    if dropped:
        logger.info("OULAD: %d submission(s) of left-out or unknown registrations dropped", dropped)
    return out


def _schools(courses: pd.DataFrame) -> pd.DataFrame:
    modules = sorted(courses["code_module"].unique())
    return pd.DataFrame(
        {
            "school_id": pd.Series(modules, dtype="str"),
            "name": pd.Series([f"OU module {m}" for m in modules], dtype="str"),
            "county": pd.Series([COUNTY] * len(modules), dtype="str"),
            "township": pd.Series([TOWNSHIP] * len(modules), dtype="str"),
            "level": pd.Series([SCHOOL_LEVEL] * len(modules), dtype="str"),
            "rural": pd.Series([False] * len(modules), dtype="bool"),
        }
    )


def _calendar(courses: pd.DataFrame) -> pd.DataFrame:
    """Every day 0..length of every presentation, united per module."""
    parts = [
        pd.DataFrame(
            {
                "school_id": row.code_module,
                "date": pd.date_range(row.start, row.end, freq="D"),
            }
        )
        for row in courses.itertuples()
    ]
    calendar = pd.concat(parts, ignore_index=True).drop_duplicates()
    calendar["school_id"] = calendar["school_id"].astype("str")
    calendar["date"] = calendar["date"].astype("datetime64[ns]")
    return calendar.sort_values(["school_id", "date"]).reset_index(drop=True)


def _first_registrations(regs: pd.DataFrame) -> pd.DataFrame:
    """Each student's earliest kept presentation (its attributes describe the student)."""
    return (
        regs.sort_values(["student_id", "start"])
        .drop_duplicates("student_id", keep="first")
        .reset_index(drop=True)
    )


def _students(regs: pd.DataFrame) -> pd.DataFrame:
    first = _first_registrations(regs)
    decile = first["imd_band"].map(IMD_BAND_DECILE)
    years = first["age_band"].map(AGE_BAND_YEARS)
    birth = [
        start - pd.DateOffset(years=int(age))
        for start, age in zip(first["start"], years, strict=True)
    ]
    n = len(first)
    false = pd.Series(np.zeros(n, dtype=bool))
    return pd.DataFrame(
        {
            "student_id": first["student_id"].astype("str"),
            "sex": first["gender"].map(SEX_BY_GENDER).astype("str"),
            "birth_date": pd.Series(pd.to_datetime(birth), dtype="datetime64[ns]"),
            "poverty_registered": decile.isin(list(POVERTY_IMD_DECILES)).astype("bool"),
            "dibao": false.copy(),
            "tekun": false.copy(),
            "disability": (first["disability"] == "Y").astype("bool"),
            "orphan": false.copy(),
            "single_parent": false.copy(),
            "left_behind": pd.Series(["none"] * n, dtype="str"),
            "migrant_child": false.copy(),
            "guardian": pd.Series(["parents"] * n, dtype="str"),
            "boarding": false.copy(),
        }
    )


def _student_attributes(regs: pd.DataFrame) -> pd.DataFrame:
    """Extra numeric attributes, long format, from each student's first presentation."""
    first = _first_registrations(regs)
    values = {
        "age_band": first["age_band"].map(AGE_BAND_ORDINAL),
        "highest_education": first["highest_education"].map(HIGHEST_EDUCATION_ORDINAL),
        "imd_band": first["imd_band"].map(IMD_BAND_DECILE),
        "num_of_prev_attempts": first["num_of_prev_attempts"],
        "studied_credits": first["studied_credits"],
        "registration_lead_days": -first["reg_day"],
    }
    parts = [
        pd.DataFrame(
            {"student_id": first["student_id"], "attribute": name, "value": series}
        ).dropna(subset=["value"])
        for name, series in values.items()
    ]
    out = pd.concat(parts, ignore_index=True)
    out["student_id"] = out["student_id"].astype("str")
    out["attribute"] = out["attribute"].astype("str")
    out["value"] = out["value"].astype("float64") + 0.0  # -0.0 -> 0.0
    return out.sort_values(["student_id", "attribute"]).reset_index(drop=True)


def _enrolments(regs: pd.DataFrame) -> pd.DataFrame:
    """One row per student and school year, never overlapping in time.

    Two presentations of one module starting in the same year (2013B and 2013J) share one
    row (the key is student and school year): it runs from the first start to the last
    end, in the class of the later presentation. A row ends the day before the student's
    next row starts (2013J runs into 2014B).
    """
    rows = (
        regs.sort_values(["student_id", "start"])
        .groupby(["student_id", "school_year"], as_index=False, sort=False)
        .agg(
            school_id=("school_id", "last"),
            class_id=("class_id", "last"),
            start_date=("start", "first"),
            end_date=("end", "max"),
        )
        .sort_values(["student_id", "start_date"])
        .reset_index(drop=True)
    )
    next_start = rows.groupby("student_id")["start_date"].shift(-1)
    cut = next_start - pd.Timedelta(days=1)
    rows["end_date"] = rows["end_date"].where(~(cut < rows["end_date"]), cut)
    rows["grade_level"] = np.int64(GRADE_LEVEL)
    # OULAD has no class names: the optional class_name column is left out
    out = rows[[c for c in COLUMNS["enrolments"] if c in rows.columns]].copy()
    for col in ("student_id", "school_id", "class_id"):
        out[col] = out[col].astype("str")
    for col in ("school_year", "grade_level"):
        out[col] = out[col].astype("int64")
    for col in ("start_date", "end_date"):
        out[col] = out[col].astype("datetime64[ns]")
    return out


def _attendance(
    regs: pd.DataFrame, assessments: pd.DataFrame, submissions: pd.DataFrame
) -> pd.DataFrame:
    """Absent/late rows on assessment deadlines while the student was registered."""
    due = regs[
        ["student_id", "id_student", "code_module", "code_presentation", "reg_day", "leave_day"]
    ].merge(
        assessments[
            ["code_module", "code_presentation", "id_assessment", "deadline_day", "deadline"]
        ],
        on=["code_module", "code_presentation"],
    )
    registered = (due["reg_day"].isna() | (due["reg_day"] <= due["deadline_day"])) & (
        due["deadline_day"] <= due["leave_day"]
    )
    due = due[registered].merge(
        submissions[["id_assessment", "id_student", "date_submitted", "is_banked"]],
        on=["id_assessment", "id_student"],
        how="left",
    )
    submitted = due["date_submitted"].notna()
    late = submitted & (due["is_banked"] != 1) & (due["date_submitted"] > due["deadline_day"])
    status = np.select([~submitted, late], ["absent_unexcused", "late"], default="present")
    rows = pd.DataFrame(
        {"student_id": due["student_id"], "date": due["deadline"], "status": status}
    )
    rows = rows[rows["status"] != "present"]
    rows = (
        rows.assign(rank=rows["status"].map(_STATUS_RANK))
        .sort_values(["student_id", "date", "rank"])
        .drop_duplicates(["student_id", "date"], keep="last")
        .drop(columns="rank")
        .reset_index(drop=True)
    )
    rows["student_id"] = rows["student_id"].astype("str")
    rows["date"] = rows["date"].astype("datetime64[ns]")
    rows["status"] = rows["status"].astype("str")
    return rows


def _grades(submissions: pd.DataFrame) -> pd.DataFrame:
    """Every submitted (or banked) assessment; known on the later of submission and
    deadline."""
    known_day = np.maximum(
        submissions["date_submitted"].astype("float64"), submissions["deadline_day"]
    )
    out = pd.DataFrame(
        {
            "student_id": submissions["student_id"].astype("str"),
            "school_year": submissions["school_year"].astype("int64"),
            "term": submissions["term"].astype("int64"),
            "exam": submissions["exam"].astype("str"),
            "subject": submissions["subject"].astype("str"),
            "score": submissions["score"].astype("float64"),
            "max_score": np.float64(MAX_SCORE),
            "date": _days(submissions["start"], known_day),
        }
    )
    return out.sort_values(["student_id", "date", "subject"]).reset_index(drop=True)


def _status_events(regs: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """enrol / dropout / graduate events, alternating in time for each student.

    Each kept registration is a spell [enrol_date, leave_date]. Spells of one student that
    overlap or touch (the next enrol on or before the previous leaving) are merged: the
    student never left, so only the first enrol and the last leaving event are written.
    """
    spells = regs[
        [
            "student_id",
            "school_id",
            "code_presentation",
            "start",
            "enrol_date",
            "leave_date",
            "leave_event",
        ]
    ].sort_values(["student_id", "enrol_date", "start"])
    reach = spells.groupby("student_id")["leave_date"].cummax()
    previous_reach = reach.groupby(spells["student_id"]).shift()
    new_spell = previous_reach.isna() | (spells["enrol_date"] > previous_reach)
    spells = spells.assign(spell=new_spell.cumsum())
    first = spells.drop_duplicates("spell", keep="first")
    last = spells.sort_values(["spell", "leave_date", "start"]).drop_duplicates(
        "spell", keep="last"
    )
    merged = len(spells) - len(first)
    if merged:
        logger.info("OULAD: %d overlapping registration(s) merged into earlier spells", merged)
    enrol = pd.DataFrame(
        {
            "student_id": first["student_id"],
            "date": first["enrol_date"],
            "event": "enrol",
            "school_id": first["school_id"],
        }
    )
    leave = pd.DataFrame(
        {
            "student_id": last["student_id"],
            "date": last["leave_date"],
            "event": last["leave_event"],
            "school_id": last["school_id"],
        }
    )
    events = pd.concat([enrol, leave], ignore_index=True)
    events["order"] = (events["event"] != "enrol").astype("int64")
    events = (
        events.sort_values(["student_id", "date", "order"])
        .drop(columns="order")
        .reset_index(drop=True)
    )
    for col in ("student_id", "event", "school_id"):
        events[col] = events[col].astype("str")
    events["date"] = events["date"].astype("datetime64[ns]")
    dropouts = (
        last.loc[last["leave_event"] == "dropout", "code_presentation"].value_counts().sort_index()
    )
    return events, {str(k): int(v) for k, v in dropouts.items()}


# --- the command (file edges) ---------------------------------------------------------


def import_oulad(src: Path, out: Path, fmt: ExportFormat = "parquet") -> ImportSummary:
    """Read OULAD from `src`, convert it and write an export to `out` atomically.

    Returns
    -------
    ImportSummary
        Row counts per written table, registrations read and left out, and dropouts per
        presentation, for the CLI to print.
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', got {fmt!r}")
    began = time.perf_counter()
    oulad = read_oulad(Path(src))
    tables, stats = _convert(oulad)
    write_export(tables, Path(out), fmt=fmt)
    rows = {
        name: len(frame)
        for name, frame in tables.as_dict().items()
        if not (name == "interventions" and frame.empty)
    }
    seconds = time.perf_counter() - began
    logger.info("imported OULAD into %s in %.1f s: %s", out, seconds, rows)
    return ImportSummary(
        out_dir=Path(out),
        fmt=fmt,
        rows=rows,
        registrations_read=stats.registrations_read,
        registrations_left_out=stats.registrations_left_out,
        dropouts_by_presentation=stats.dropouts_by_presentation,
        seconds=seconds,
    )

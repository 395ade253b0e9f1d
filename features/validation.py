"""Validation of an export against the data contract (docs/data-contract.md).

Everything here is pure: frames in, typed frames and `Violation`s out. Reading files is
`features.sources`' job. The steps, in order:

1. `check_columns`: missing required columns are violations; extra columns a warning.
2. `parse_table`: cells (strings from CSV, or Parquet's own types) become the in-memory
   dtypes of `features.tables`; a cell that is not a date, number or boolean, or an
   empty required cell, is a violation.
3. `check_table`: the table's pandera model (`features.schemas`) checks codes, ranges
   and unique keys on the rows that parsed; its failure cases become violations.
4. `check_cross_tables`: foreign keys, attendance on school days of the enrolled school,
   `score <= max_score`, enrolment periods.

Violations of one rule in one column of one file travel as a `Finding` (row numbers in
an array), so a file with a million bad cells costs a few vector operations, not a
million Python objects; only the first `MAX_LISTED` of each become `Violation`s.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pandera.pandas as pa

from features.schemas import (
    KEYS,
    MAX_SCHOOL_YEAR,
    MIN_SCHOOL_YEAR,
    NO_CONTROL_CHARACTERS,
    NON_EMPTY_TABLES,
    Kind,
    column_kinds,
    empty_frame,
    nullable_columns,
    pandas_dtype,
    schema,
)
from features.tables import (
    ALL_TABLES,
    COLUMNS,
    OPTIONAL_COLUMNS,
    PERSONAL_COLUMNS,
    REQUIRED_TABLES,
    RawTables,
    default_enrolment_end,
    default_enrolment_start,
)

logger = logging.getLogger(__name__)

# How many violations of one rule in one column of one file are kept as objects; the
# rest are only counted.
MAX_LISTED = 100
VALUE_WIDTH = 40

# Every rule code, in the order a report lists them, with a heading.
RULES: dict[str, str] = {
    "missing_folder": "export folder not found",
    "missing_file": "required file missing",
    "both_formats": "table given both as CSV and as Parquet",
    "unreadable_file": "file cannot be opened",
    "empty_file": "empty file",
    "encoding": "file is not UTF-8 or GBK text",
    "bad_csv": "CSV file cannot be parsed",
    "bad_parquet": "not a readable Parquet file",
    "missing_column": "required column missing",
    "no_rows": "table has no rows",
    "missing_value": "empty cell in a required column",
    "bad_date": "not a date",
    "bad_number": "not a number",
    "bad_boolean": "not true/false",
    "bad_value": "value of the wrong type",
    "unknown_value": "value not in the allowed list",
    "out_of_range": "value out of range",
    "duplicate_key": "duplicate key",
    "foreign_key": "unknown id",
    "start_after_end": "enrolment starts after it ends",
    "overlapping_enrolment": "overlapping enrolment rows",
    "not_enrolled": "attendance outside every enrolment",
    "not_school_day": "attendance on a day that is not a school day",
    "score_above_max": "score above max_score",
    "too_long": "text too long",
    "control_character": "text with a control character",
    "invalid_value": "value fails a check",
}

_FK_STUDENT_TABLES = (
    "enrolments",
    "attendance",
    "grades",
    "status_events",
    "interventions",
    "student_attributes",
)
_FK_SCHOOL_TABLES = ("calendar", "enrolments", "status_events")
_GRADE_RANGE = {"primary": (1, 6), "junior": (7, 9), "nine_year": (1, 9)}
_DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d")
_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})


@dataclass(frozen=True)
class Violation:
    """One broken rule: which file, row (as a spreadsheet shows it), column and value."""

    rule: str
    file: str
    row: int | None
    column: str | None
    value: str | None
    expected: str


class InputTableError(Exception):
    """An export broke the data contract; `violations` lists what, `report()` says it.

    `violations` holds up to `MAX_LISTED` violations per rule, file and column; `omitted`
    counts, per rule, the further ones that were found but not listed.
    """

    def __init__(self, violations: Sequence[Violation], omitted: Mapping[str, int] | None = None):
        self.violations: list[Violation] = list(violations)
        self.omitted: dict[str, int] = {k: v for k, v in (omitted or {}).items() if v}
        super().__init__(self.report())

    @property
    def total(self) -> int:
        """How many violations were found, listed or not."""
        return len(self.violations) + sum(self.omitted.values())

    def counts(self) -> dict[str, int]:
        """Violations found per rule, listed or not."""
        counts = Counter(v.rule for v in self.violations)
        counts.update(self.omitted)
        return dict(counts)

    def report(self, per_rule: int = 20) -> str:
        """Every violation grouped by rule: the first `per_rule` lines, then a count."""
        counts = self.counts()
        files = sorted({v.file for v in self.violations})
        lines = [
            f"The export breaks the data contract in {_plural(self.total, 'place')}"
            f" ({_plural(len(files), 'file')}: {', '.join(files)}); nothing was read."
        ]
        for rule in _rule_order(counts):
            listed = [v for v in self.violations if v.rule == rule]
            lines.append("")
            lines.append(f"{rule}: {RULES.get(rule, rule)} ({counts[rule]:,})")
            lines.extend(f"  {_describe(v)}" for v in listed[:per_rule])
            more = counts[rule] - min(len(listed), per_rule)
            if more > 0:
                lines.append(f"  ... and {more:,} more")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.report()


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _rule_order(counts: Mapping[str, int]) -> list[str]:
    known = [r for r in RULES if r in counts]
    return known + sorted(r for r in counts if r not in RULES)


def _describe(v: Violation) -> str:
    """One report line: file, row, column, value, expectation."""
    where = v.file
    if v.row is not None:
        where += f", row {v.row}"
    if v.column is not None:
        where += f", column {v.column}"
    if v.value is not None:
        where += f": found {v.value!r}"
    return f"{where}; expected {v.expected}"


# --------------------------------------------------------------------------- findings


@dataclass(frozen=True)
class Finding:
    """Violations of one rule in one column of one file, as arrays.

    `rows` are spreadsheet row numbers (None for a problem with the whole file);
    `values` is aligned with `rows` (a Series, or a frame whose columns are joined
    into one value with `value_format` or " / ").
    """

    rule: str
    file: str
    column: str | None
    expected: str
    rows: np.ndarray | None = None
    values: pd.Series | pd.DataFrame | None = None
    value_format: str | None = None
    value: str | None = None

    @property
    def count(self) -> int:
        return 1 if self.rows is None else len(self.rows)

    def violations(self, limit: int) -> list[Violation]:
        """The first `limit` violations as objects."""
        if self.rows is None:
            return [Violation(self.rule, self.file, None, self.column, self.value, self.expected)]
        rows = self.rows[:limit]
        values = _value_texts(self.values, len(rows), self.value_format)
        return [
            Violation(self.rule, self.file, int(r), self.column, val, self.expected)
            for r, val in zip(rows, values, strict=True)
        ]


def _value_texts(
    values: pd.Series | pd.DataFrame | None, n: int, value_format: str | None
) -> list[str | None]:
    """The first `n` values as short strings."""
    if values is None:
        return [None] * n
    head = values.iloc[:n]
    if isinstance(head, pd.DataFrame):
        records = head.to_dict("records")
        if value_format is not None:
            texts = [
                value_format.format(**{k: _cell_text(x) for k, x in r.items()}) for r in records
            ]
        else:
            texts = [" / ".join(str(_cell_text(x)) for x in r.values()) for r in records]
        return [_truncate(t) for t in texts]
    return [_cell_text(x) for x in head.tolist()]


def _cell_text(x: object) -> str | None:
    if x is None or (isinstance(x, float) and np.isnan(x)) or x is pd.NaT:
        return None
    if isinstance(x, pd.Timestamp):
        return str(x.strftime("%Y-%m-%d")) if x == x.normalize() else str(x.isoformat())
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return _truncate(str(x))


def _truncate(text: str) -> str:
    return text if len(text) <= VALUE_WIDTH else text[: VALUE_WIDTH - 1] + "…"


def mask_finding(
    rule: str,
    file: str,
    column: str | None,
    mask: pd.Series,
    values: pd.Series | pd.DataFrame | None,
    expected: str,
    value_format: str | None = None,
) -> Finding | None:
    """A finding for the rows of a frame where boolean `mask` is true (None when none).

    The frame's index holds each row's position among the file's data rows.
    """
    mask = mask.fillna(False).astype(bool)
    if not mask.any():
        return None
    hit = mask[mask]
    order = np.argsort(hit.index.to_numpy(), kind="stable")
    index = hit.index[order]
    picked = None if values is None else values.loc[index]
    return Finding(
        rule=rule,
        file=file,
        column=column,
        expected=expected,
        rows=index.to_numpy(dtype=np.int64) + 2,
        values=picked,
        value_format=value_format,
    )


def to_error(findings: Sequence[Finding], limit: int = MAX_LISTED) -> InputTableError:
    """One error holding every finding (the first `limit` of each as `Violation`s)."""
    violations: list[Violation] = []
    omitted: Counter[str] = Counter()
    for f in findings:
        listed = f.violations(limit)
        violations.extend(listed)
        omitted[f.rule] += f.count - len(listed)
    return InputTableError(violations, omitted)


# ---------------------------------------------------------------------- table checks


@dataclass
class TableCheck:
    """The outcome of checking one table: the typed frame, findings, warnings."""

    frame: pd.DataFrame | None
    findings: list[Finding] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    bad_rows: pd.Series | None = None


def check_columns(name: str, raw: pd.DataFrame, file: str) -> TableCheck:
    """Drop extra columns (warning) and report missing required ones.

    Returns the frame restricted to the contract's columns, or None as frame when a
    required column is missing.
    """
    optional = set(OPTIONAL_COLUMNS.get(name, ()))
    expected = COLUMNS[name]
    present = [c for c in expected if c in raw.columns]
    extra = [str(c) for c in raw.columns if c not in expected]
    warnings = []
    if extra:
        warnings.append(f"{file}: ignored extra column(s) {', '.join(extra)}")
    missing = [c for c in expected if c not in raw.columns and c not in optional]
    findings = [
        Finding(
            "missing_column",
            file,
            c,
            f"a column named {c} in the header row of {file}",
        )
        for c in missing
    ]
    frame = None if missing else raw[present]
    if frame is not None and name in NON_EMPTY_TABLES and frame.empty:
        findings.append(
            Finding("no_rows", file, None, f"{file} to have at least one data row below the header")
        )
        frame = None
    return TableCheck(frame, findings, warnings)


def _is_text(s: pd.Series) -> bool:
    """Whether a column holds text cells (every CSV column; string Parquet columns)."""
    if pd.api.types.is_string_dtype(s.dtype) and s.dtype != object:
        return True
    return s.dtype == object and bool(s.map(lambda x: x is None or isinstance(x, str)).all())


def _as_text(s: pd.Series) -> pd.Series:
    """Cells as stripped text, empty or missing cells as NA (dtype `str`)."""
    if pd.api.types.is_float_dtype(s.dtype):
        whole = s.notna() & np.isfinite(s) & (s == np.floor(s))
        text = s.astype("str").where(~whole, s.where(whole).astype("Int64").astype("str"))
        s = text.where(s.notna())
    elif not _is_text(s):
        s = s.astype("str").where(s.notna())
    text = s.astype("str").str.strip()
    return text.where(text != "")


def _parse_text_date(text: pd.Series) -> pd.Series:
    out = pd.to_datetime(text, format=_DATE_FORMATS[0], errors="coerce")
    for fmt in _DATE_FORMATS[1:]:
        retry = out.isna() & text.notna()
        if retry.any():
            out = out.where(~retry, pd.to_datetime(text.where(retry), format=fmt, errors="coerce"))
    return _as_ns(out)


def _as_ns(dates: pd.Series) -> pd.Series:
    """Dates as `datetime64[ns]`; a date that type cannot hold (before 1677, after 2262,
    e.g. a mistyped year 2300) becomes NaT, so it is reported as not a date."""
    if dates.dtype == "datetime64[ns]":
        return dates
    if isinstance(dates.dtype, np.dtype) and dates.dtype.kind == "M":
        # The same bounds on the raw integers (pandas' comparisons cost ~0.1 ms each).
        unit, count = np.datetime_data(dates.dtype)
        # (numpy's stubs want the unit as a literal; datetime_data gives it as str)
        per_unit = int(np.timedelta64(count, unit) // np.timedelta64(1, "ns"))  # type: ignore[call-overload]
        values = dates.to_numpy()
        ticks = values.view(np.int64)
        lowest = -(-pd.Timestamp.min.value // per_unit)
        highest = pd.Timestamp.max.value // per_unit
        if bool((np.isnat(values) | ((ticks >= lowest) & (ticks <= highest))).all()):
            return dates.astype("datetime64[ns]")
    fits = dates.isna() | ((dates >= pd.Timestamp.min) & (dates <= pd.Timestamp.max))
    return dates.where(fits).astype("datetime64[ns]")


def _parse_typed_date(s: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        out = s.dt.tz_localize(None) if getattr(s.dt, "tz", None) is not None else s
        return _as_ns(out.dt.normalize())
    if s.dtype == object:  # Parquet dates arrive as datetime.date objects
        out = pd.to_datetime(s, errors="coerce")
        if pd.api.types.is_datetime64_any_dtype(out.dtype):
            return _as_ns(out.dt.normalize())
    return pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns]")


def _parse_text_bool(text: pd.Series) -> pd.Series:
    lower = text.str.lower()
    out = pd.Series(pd.NA, index=text.index, dtype="boolean")
    out[lower.isin(_TRUE)] = True
    out[lower.isin(_FALSE)] = False
    return out


def _parse_number(s: pd.Series, whole: bool) -> pd.Series:
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        out = s.astype("float64")
    else:
        out = pd.to_numeric(s, errors="coerce").astype("float64")
    good = np.isfinite(out)
    if whole:
        good &= out == np.floor(out)
    return out.where(good)


def _parse_column(s: pd.Series, kind: Kind) -> tuple[pd.Series, pd.Series]:
    """Cells of one column in their in-memory type, and which cells were not empty.

    Unreadable or empty cells are NA in the first series.
    """
    if kind == "bool" and pd.api.types.is_bool_dtype(s.dtype):
        return s.astype("boolean"), s.notna()
    if kind == "date" and not _is_text(s):
        return _parse_typed_date(s), s.notna()
    if kind in ("int", "float") and pd.api.types.is_numeric_dtype(s.dtype):
        return _parse_number(s, whole=kind == "int"), s.notna()
    text = _as_text(s)
    if kind == "date":
        return _parse_text_date(text), text.notna()
    if kind == "bool":
        return _parse_text_bool(text), text.notna()
    if kind in ("int", "float"):
        return _parse_number(text, whole=kind == "int"), text.notna()
    return text, text.notna()


_PARSE_RULE: dict[Kind, tuple[str, str]] = {
    "date": ("bad_date", "a date written YYYY-MM-DD"),
    "bool": ("bad_boolean", "true or false (or 1 or 0)"),
    "int": ("bad_number", "a whole number"),
    "float": ("bad_number", "a number"),
}


def parse_table(name: str, raw: pd.DataFrame, file: str) -> TableCheck:
    """Turn cells into typed columns; unreadable and missing required cells are findings.

    `raw` has the contract's columns (optional ones may be absent) and an index of data
    row positions. Missing enrolment `start_date`/`end_date` get their defaults. The
    returned `bad_rows` marks rows with any such finding.
    """
    kinds = column_kinds(name)
    nullable = nullable_columns(name)
    columns: dict[str, pd.Series] = {}
    bad = pd.Series(False, index=raw.index)
    findings: list[Finding] = []
    unreadable: dict[str, pd.Series] = {}
    for col in raw.columns:
        kind = kinds[col]
        parsed, filled = _parse_column(raw[col], kind)
        columns[col] = parsed
        unreadable[col] = parsed.isna() & filled
        if kind == "str" or not unreadable[col].any():
            continue
        rule, expected = _PARSE_RULE[kind]
        if col == "score":
            expected = "a number, or an empty cell for a missed exam"
        finding = mask_finding(rule, file, col, unreadable[col], raw[col], expected)
        if finding is not None:
            findings.append(finding)
            bad |= unreadable[col]
    frame = pd.DataFrame(columns, index=raw.index)
    if name == "enrolments":
        frame = _with_default_dates(frame)
        for col in ("start_date", "end_date"):
            # no default without a plausible school year; that cell is reported (an
            # empty or unreadable one above, one out of range just below)
            no_default = ~_plausible_year(frame["school_year"])
            unreadable[col] = unreadable.get(col, bad & False) | no_default
        implausible = frame["school_year"].notna() & ~_plausible_year(frame["school_year"])
        expected = f"a school year from {MIN_SCHOOL_YEAR} to {MAX_SCHOOL_YEAR}"
        finding = mask_finding(
            "out_of_range", file, "school_year", implausible, raw["school_year"], expected
        )
        if finding is not None:
            findings.append(finding)
            bad |= implausible
    empty = frame.isna()
    empty_anywhere = empty.to_numpy().any(axis=0)
    for col, any_empty in zip(frame.columns, empty_anywhere, strict=True):
        if col in nullable or not any_empty:
            continue
        missing = empty[col]
        if col in unreadable:
            missing = missing & ~unreadable[col]
        finding = mask_finding(
            "missing_value", file, col, missing, None, f"a value in {col}; it may not be empty"
        )
        if finding is not None:
            findings.append(finding)
            bad |= missing
    bad |= empty.drop(columns=[c for c in nullable if c in frame.columns]).any(axis=1)
    return TableCheck(frame, findings, bad_rows=bad)


def _plausible_year(years: pd.Series) -> pd.Series:
    """School years the schema accepts (a truncated `2024` reads as `20`: no default date
    can be built for it, and the schema names it)."""
    return years.notna() & years.between(MIN_SCHOOL_YEAR, MAX_SCHOOL_YEAR)


def _with_default_dates(enrolments: pd.DataFrame) -> pd.DataFrame:
    """Fill empty `start_date`/`end_date` from `school_year` (see features.tables)."""
    out = enrolments.copy()
    years = out["school_year"].where(_plausible_year(out["school_year"]))
    known = years.dropna().unique()
    for col, default in (
        ("start_date", default_enrolment_start),
        ("end_date", default_enrolment_end),
    ):
        defaults = years.map({y: default(int(y)) for y in known}).astype("datetime64[ns]")
        if col not in out.columns:
            out[col] = defaults
        else:
            out[col] = out[col].fillna(defaults)
    return out


def typed(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` (without missing cells) cast to the table's in-memory dtypes."""
    kinds = column_kinds(name)
    wanted = {c: pandas_dtype(kinds[c]) for c in frame.columns}
    casts = {c: d for c, d in wanted.items() if frame[c].dtype != d}
    return frame.astype(casts) if casts else frame.copy(deep=False)


def check_table(name: str, frame: pd.DataFrame, file: str) -> list[Finding]:
    """Run the table's pandera model (lazily) and translate its failure cases.

    `frame`'s index holds data row positions; rows must be free of missing cells in
    required columns (run `parse_table` first) or the failures are reported as such.
    """
    model = schema(name)
    columns = [c for c in frame.columns if c in model.columns]
    model = model.select_columns(columns) if len(columns) < len(model.columns) else model
    if passes_schema(model, frame):
        return []
    try:
        model.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as err:
        return failure_findings(name, frame, err.failure_cases, file)
    return []


_DTYPE_MATCHES: dict[str, Callable[[object], bool]] = {
    "STRING": lambda d: isinstance(d, pd.StringDtype),
    "DateTime": lambda d: d == np.dtype("datetime64[ns]"),
    "Bool": lambda d: d == np.dtype(bool),
    "Int64": lambda d: d == np.dtype(np.int64),
    "Float64": lambda d: d == np.dtype(np.float64),
}
_RANGE_CHECKS: dict[str, Callable[[pd.Series, object], pd.Series]] = {
    "greater_than_or_equal_to": lambda s, v: s >= v,
    "less_than_or_equal_to": lambda s, v: s <= v,
    "greater_than": lambda s, v: s > v,
    "less_than": lambda s, v: s < v,
}


def passes_schema(model: pa.DataFrameSchema, frame: pd.DataFrame) -> bool:
    """Whether `frame` surely passes `model`, found with a few vector operations.

    pandera's `validate` costs milliseconds per table even for a handful of rows (most of
    a `POST /v1/score` for one pupil went there). This answers True only when every
    column already has the schema's dtype, no non-nullable cell is missing, every
    ``isin`` and range check holds and the unique key has no repeat; anything else
    (another dtype, a check or option it does not know) answers False, and the caller
    runs pandera for its failure cases. So it never lets through a frame pandera would
    reject; `tests/features/test_validation.py` checks that against pandera.
    """
    if model.checks or model.index is not None or model.ordered or model.strict is not True:
        return False
    if set(frame.columns) != set(model.columns):
        return False
    for name, column in model.columns.items():
        values = frame[name]
        match = _DTYPE_MATCHES.get(type(column.dtype).__name__)
        if match is None or not match(values.dtype) or column.unique or column.regex:
            return False
        if column.parsers or getattr(column, "default", None) is not None:
            return False
        missing = values.isna()
        if missing.any():
            if not column.nullable:
                return False
            values = values[~missing]
        for check in column.checks:
            stats = check.statistics or {}
            if not check.ignore_na and missing.any():
                return False
            if check.name == "isin" and "allowed_values" in stats:
                ok = values.isin(list(stats["allowed_values"]))
            elif check.name == "str_length" and _only_max_length(stats):
                ok = values.str.len() <= stats["max_value"]
            elif check.name == "str_matches" and stats.get("pattern") == NO_CONTROL_CHARACTERS:
                ok = values.str.match(NO_CONTROL_CHARACTERS)
            elif check.name in _RANGE_CHECKS and len(stats) == 1:
                ok = _RANGE_CHECKS[check.name](values, next(iter(stats.values())))
            else:
                return False
            if not bool(ok.all()):
                return False
    unique = model.unique
    if unique:
        keys = [unique] if isinstance(unique, str) else list(unique)
        if not set(keys) <= set(frame.columns) or frame.duplicated(keys, keep=False).any():
            return False
    return True


def _only_max_length(stats: Mapping[str, object]) -> bool:
    """Whether a ``str_length`` check's statistics set only a maximum length."""
    return (
        isinstance(stats.get("max_value"), int)
        and stats.get("min_value") is None
        and stats.get("exact_value") is None
    )


def is_personal(name: str, column: str | None) -> bool:
    """Whether `column` of table `name` holds personal data (its cells are never shown)."""
    return column is not None and column in PERSONAL_COLUMNS.get(name, ())


def _expectation(name: str, column: str | None, rule: str) -> str:
    """A sentence saying what the contract wants in `column` of table `name`."""
    text = _expected_value(name, column, rule)
    if is_personal(name, column) and rule not in ("missing_column", "duplicate_key"):
        text += "; the cell is not shown (names are personal data)"
    return text


def _expected_value(name: str, column: str | None, rule: str) -> str:
    if rule == "duplicate_key":
        key = ", ".join(KEYS.get(name, (column or "",)))
        return f"each ({key}) to appear only once; it already appears in an earlier row"
    if rule == "missing_column":
        return f"a column named {column}"
    if rule == "missing_value":
        return f"a value in {column}; it may not be empty"
    if column is None:
        return "a table that follows the data contract"
    kind = column_kinds(name).get(column)
    if rule in ("bad_date", "bad_number", "bad_boolean", "bad_value") and kind in _PARSE_RULE:
        return _PARSE_RULE[kind][1]
    stats: dict[str, object] = {}
    for check in schema(name).columns[column].checks:
        stats.update(check.statistics or {})
    if rule == "unknown_value" and "allowed_values" in stats:
        allowed = stats["allowed_values"]
        assert isinstance(allowed, list | tuple | set | frozenset)
        return "one of: " + ", ".join(str(a) for a in allowed)
    if rule == "too_long" and stats.get("max_value") is not None:
        return f"text of at most {stats['max_value']} characters"
    if rule == "control_character":
        return (
            "text without control characters (no line break, tab, NUL or invisible "
            "direction mark inside the cell)"
        )
    if rule == "out_of_range":
        low, high = stats.get("min_value"), stats.get("max_value")
        if low is not None and high is not None:
            return f"a number from {low} to {high}"
        if low is not None:
            return f"a number of at least {low}"
        if high is not None:
            return f"a number of at most {high}"
    return "a value allowed by the data contract"


def _rule_of_check(check: str, kind: Kind | None) -> str:
    """Our rule code for a pandera check name."""
    if check.startswith(("coerce_dtype", "dtype(")):
        return _PARSE_RULE[kind][0] if kind in _PARSE_RULE else "bad_value"
    if check == "not_nullable":
        return "missing_value"
    if check.startswith(("isin", "notin")):
        return "unknown_value"
    if check.startswith(("greater_than", "less_than", "in_range", "equal_to")):
        return "out_of_range"
    if check.startswith("str_length"):
        return "too_long"
    if check.startswith("str_matches"):
        return "control_character"
    if "uniqueness" in check or check == "unique":
        return "duplicate_key"
    if check == "column_in_dataframe":
        return "missing_column"
    return "invalid_value"


def failure_findings(
    name: str, frame: pd.DataFrame, failure_cases: pd.DataFrame, file: str
) -> list[Finding]:
    """Translate pandera's `failure_cases` into findings, with spreadsheet row numbers."""
    kinds = column_kinds(name)
    cases = failure_cases.copy()
    cases["column"] = cases["column"].where(cases["column"].notna(), None)
    cases["rule"] = [
        _rule_of_check(str(c), kinds.get(str(col)) if col is not None else None)
        for c, col in zip(cases["check"], cases["column"], strict=True)
    ]  # one entry per failed *check*, not per row: pandera lists few distinct checks
    findings: list[Finding] = []
    has_row = cases["index"].notna()
    # Cells that could not be coerced make every later check of the column fail as a
    # whole (no row); those whole-column echoes add nothing.
    coerced = set(cases.loc[has_row & cases["rule"].str.startswith("bad_"), "column"])
    for (rule, column), _group in cases[~has_row].groupby(["rule", "column"], dropna=False):
        col = None if pd.isna(column) else str(column)
        if col in coerced:
            continue
        findings.append(Finding(str(rule), file, col, _expectation(name, col, str(rule))))
    located = cases[has_row]
    if located.empty:
        return findings
    located = located.assign(index=located["index"].astype("int64"))
    dup = located["rule"] == "duplicate_key"
    findings.extend(_duplicate_findings(name, frame, located.loc[dup, "index"], file))
    located = located[~dup].drop_duplicates(["rule", "column", "index"])
    for (rule, column), group in located.groupby(["rule", "column"], sort=False, dropna=False):
        col = None if pd.isna(column) else str(column)
        rows = pd.Series(True, index=pd.Index(group["index"].to_numpy()))
        values = None
        if not is_personal(name, col):
            values = pd.Series(group["failure_case"].to_numpy(), index=rows.index)
        finding = mask_finding(
            str(rule), file, col, rows, values, _expectation(name, col, str(rule))
        )
        if finding is not None:
            findings.append(finding)
    return findings


def _duplicate_findings(
    name: str, frame: pd.DataFrame, index: pd.Series, file: str
) -> list[Finding]:
    """Rows whose key appeared in an earlier row (the first occurrence is fine)."""
    if index.empty:
        return []
    keys = list(KEYS.get(name, ()))
    rows = frame.loc[np.unique(index.to_numpy()), keys].sort_index()
    later = rows.duplicated(keep="first")
    finding = mask_finding(
        "duplicate_key",
        file,
        ", ".join(keys),
        later,
        rows,
        _expectation(name, None, "duplicate_key"),
    )
    return [] if finding is None else [finding]


def duplicate_key_findings(name: str, frame: pd.DataFrame, file: str) -> list[Finding]:
    """Rows repeating an earlier row's key, found directly (no pandera run needed)."""
    keys = [k for k in KEYS.get(name, ()) if k in frame.columns]
    if not keys or len(keys) < len(KEYS[name]):
        return []
    later = frame.duplicated(keys, keep="first") & frame[keys].notna().all(axis=1)
    finding = mask_finding(
        "duplicate_key",
        file,
        ", ".join(keys),
        later,
        frame[keys],
        _expectation(name, None, "duplicate_key"),
    )
    return [] if finding is None else [finding]


# ------------------------------------------------------------------ cross-table checks


def check_cross_tables(
    frames: Mapping[str, pd.DataFrame | None], files: Mapping[str, str]
) -> tuple[list[Finding], list[str]]:
    """Checks between tables, skipping any that needs a table that could not be read.

    `frames` maps table names to parsed frames (index = data row position; cells that
    could not be read are NA and are skipped here).
    """
    findings: list[Finding] = []
    warnings: list[str] = []

    def present(name: str) -> pd.DataFrame | None:
        return frames.get(name)

    students, schools = present("students"), present("schools")
    if students is not None:
        ids = students["student_id"].dropna().unique()
        for name in _FK_STUDENT_TABLES:
            frame = present(name)
            if frame is not None:
                findings += _foreign_key(frame, "student_id", ids, files[name], files["students"])
    if schools is not None:
        ids = schools["school_id"].dropna().unique()
        for name in _FK_SCHOOL_TABLES:
            frame = present(name)
            if frame is not None:
                findings += _foreign_key(frame, "school_id", ids, files[name], files["schools"])
    enrolments = present("enrolments")
    if enrolments is not None:
        findings += _enrolment_periods(enrolments, files["enrolments"])
        if schools is not None:
            warnings += _grade_level_warnings(enrolments, schools, files["enrolments"])
        attendance = present("attendance")
        if attendance is not None:
            if students is not None:  # unknown students are reported as foreign keys
                attendance = attendance[attendance["student_id"].isin(students["student_id"])]
            findings += _attendance_days(
                attendance, enrolments, present("calendar"), files["attendance"]
            )
    grades = present("grades")
    if grades is not None:
        over = grades["score"] > grades["max_score"]
        finding = mask_finding(
            "score_above_max",
            files["grades"],
            "score",
            over,
            grades[["score", "max_score"]],
            "a score no higher than the row's max_score",
            value_format="{score} (max_score {max_score})",
        )
        findings += [] if finding is None else [finding]
    return findings, warnings


def _foreign_key(
    frame: pd.DataFrame, column: str, known: np.ndarray, file: str, parent: str
) -> list[Finding]:
    unknown = frame[column].notna() & ~frame[column].isin(known)
    finding = mask_finding(
        "foreign_key",
        file,
        column,
        unknown,
        frame[column],
        f"a {column} listed in {parent}",
    )
    return [] if finding is None else [finding]


def _enrolment_periods(enrolments: pd.DataFrame, file: str) -> list[Finding]:
    """start_date <= end_date, and no two rows of one student in force on one day."""
    findings: list[Finding] = []
    e = enrolments[["student_id", "start_date", "end_date"]]
    backwards = e["start_date"] > e["end_date"]
    finding = mask_finding(
        "start_after_end",
        file,
        "start_date",
        backwards,
        e[["start_date", "end_date"]],
        "a start_date on or before the end_date",
        value_format="{start_date} (end_date {end_date})",
    )
    findings += [] if finding is None else [finding]
    usable = e[~backwards].dropna()
    if usable.empty:
        return findings
    ordered = usable.sort_values(["student_id", "start_date", "end_date"], kind="stable")
    latest_end = ordered.groupby("student_id", sort=False)["end_date"].cummax()
    previous_end = latest_end.groupby(ordered["student_id"], sort=False).shift()
    overlaps = ordered["start_date"] <= previous_end
    finding = mask_finding(
        "overlapping_enrolment",
        file,
        "start_date",
        overlaps,
        ordered[["start_date", "end_date"]],
        "enrolment rows of one student not to overlap in time "
        "(this row starts before an earlier row of the student ends)",
        value_format="{start_date} .. {end_date}",
    )
    findings += [] if finding is None else [finding]
    return findings


def _attendance_days(
    attendance: pd.DataFrame,
    enrolments: pd.DataFrame,
    calendar: pd.DataFrame | None,
    file: str,
) -> list[Finding]:
    """Each attendance date lies in an enrolment of the student, on a school day there."""
    att = attendance[["student_id", "date"]].dropna()
    enr = enrolments[["student_id", "school_id", "start_date", "end_date"]].dropna()
    if att.empty:
        return []
    students, uniques = pd.factorize(pd.concat([att["student_id"], enr["student_id"]]))
    left = pd.DataFrame(
        {"sid": students[: len(att)], "date": att["date"].to_numpy(), "row": att.index}
    ).sort_values("date", kind="stable")
    right = pd.DataFrame(
        {
            "sid": students[len(att) :],
            "start": enr["start_date"].to_numpy(),
            "end": enr["end_date"].to_numpy(),
            "school_id": enr["school_id"].to_numpy(),
        }
    ).sort_values("start", kind="stable")
    matched = pd.merge_asof(
        left, right, left_on="date", right_on="start", by="sid", direction="backward"
    ).set_index("row")
    enrolled = matched["end"].notna() & (matched["date"] <= matched["end"])
    findings: list[Finding] = []
    finding = mask_finding(
        "not_enrolled",
        file,
        "date",
        ~enrolled,
        attendance["date"],
        "a date inside one of the student's enrolment rows (start_date..end_date)",
    )
    findings += [] if finding is None else [finding]
    if calendar is None:
        return findings
    cal = calendar[["school_id", "date"]].dropna()
    schools = pd.Index(pd.concat([cal["school_id"], matched["school_id"]]).dropna().unique())
    day = np.int64(1 << 20)

    def keys(school: pd.Series, date: pd.Series) -> np.ndarray:
        days = date.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]").astype(np.int64)
        codes: np.ndarray = schools.get_indexer(school) * day + days
        return codes

    school_days = pd.Index(keys(cal["school_id"], cal["date"])).unique()
    in_force = matched[enrolled]
    on_day = pd.Series(
        pd.Index(keys(in_force["school_id"], in_force["date"])).isin(school_days),
        index=in_force.index,
    )
    finding = mask_finding(
        "not_school_day",
        file,
        "date",
        ~on_day,
        attendance[["date"]].join(in_force[["school_id"]]),
        "a school day (a date listed in calendar) of the school the student was enrolled in",
        value_format="{date} (school {school_id})",
    )
    findings += [] if finding is None else [finding]
    return findings


def _grade_level_warnings(enrolments: pd.DataFrame, schools: pd.DataFrame, file: str) -> list[str]:
    """Warn about grade levels a school of that level does not teach."""
    levels = schools.drop_duplicates("school_id").set_index("school_id")["level"]
    level = enrolments["school_id"].map(levels)
    grade = enrolments["grade_level"]
    low = level.map({k: v[0] for k, v in _GRADE_RANGE.items()})
    high = level.map({k: v[1] for k, v in _GRADE_RANGE.items()})
    outside = grade.notna() & low.notna() & ((grade < low) | (grade > high))
    if not outside.any():
        return []
    rows = (outside[outside].index.to_numpy() + 2)[:5]
    shown = ", ".join(str(r) for r in rows)
    return [
        f"{file}: {int(outside.sum()):,} row(s) have a grade_level outside their school's "
        f"level (primary 1-6, junior 7-9, nine_year 1-9), e.g. row(s) {shown}"
    ]


# ---------------------------------------------------------------------- whole exports


@dataclass(frozen=True)
class Validated:
    """Typed, validated tables and the warnings found on the way."""

    tables: RawTables
    warnings: list[str]


def validate_raw(
    raw: Mapping[str, pd.DataFrame | None],
    files: Mapping[str, str],
    findings: Sequence[Finding] = (),
) -> Validated:
    """Check and type the raw tables of one export; raise `InputTableError` on any finding.

    `raw` maps each table name to its cells as read (strings for CSV, typed for Parquet;
    index = data row position) or None when the table could not be read; `findings`
    are file-level problems found while reading. Absent optional tables are None.
    """
    all_findings = list(findings)
    warnings: list[str] = []
    parsed: dict[str, pd.DataFrame | None] = {}
    typed_frames: dict[str, pd.DataFrame] = {}  # of tables without a bad row, for _final
    for name in ALL_TABLES:
        frame = raw.get(name)
        if frame is None:
            parsed[name] = None
            continue
        file = files[name]
        columns = check_columns(name, frame, file)
        all_findings += columns.findings
        warnings += columns.warnings
        if columns.frame is None:
            parsed[name] = None
            continue
        table = parse_table(name, columns.frame, file)
        all_findings += table.findings
        assert table.frame is not None and table.bad_rows is not None
        every_row = not table.bad_rows.any()
        clean = typed(name, table.frame if every_row else table.frame[~table.bad_rows])
        all_findings += check_table(name, clean, file)
        parsed[name] = table.frame
        if every_row:
            typed_frames[name] = clean
    cross, cross_warnings = check_cross_tables(parsed, _files_for(files))
    all_findings += cross
    warnings += cross_warnings
    if all_findings:
        error = to_error(all_findings)
        logger.info("export rejected: %d violation(s)", error.total)
        raise error
    tables = {n: _final(n, parsed[n], typed_frames.get(n)) for n in ALL_TABLES}
    return Validated(RawTables(**tables), warnings)


def _files_for(files: Mapping[str, str]) -> dict[str, str]:
    """File names for every table (the CSV name where the export has no such file)."""
    return {n: files.get(n, f"{n}.csv") for n in ALL_TABLES}


def _final(
    name: str, frame: pd.DataFrame | None, typed_frame: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The frame as it leaves validation: contract columns, in-memory dtypes, 0..n-1.

    `typed_frame` is `typed(name, frame)` when the caller already has it."""
    if frame is None:
        return empty_frame(name)
    out = (typed(name, frame) if typed_frame is None else typed_frame).reset_index(drop=True)
    if name == "students" and "ethnic_minority" not in out.columns:
        out["ethnic_minority"] = pd.Series(pd.NA, index=out.index, dtype="boolean")
    for col in OPTIONAL_COLUMNS.get(name, ()):
        if col not in out.columns and column_kinds(name)[col] == "str":
            # an absent optional text column (names, class names) reads as all-missing
            out[col] = pd.Series(None, index=out.index, dtype="str")
    return out[list(COLUMNS[name])]


def validate_tables(tables: RawTables, files: Mapping[str, str] | None = None) -> list[str]:
    """Validate tables built in memory (e.g. by `features.synthetic`); return warnings.

    Runs every table's pandera model (so wrong dtypes are reported too) and, when those
    pass, the cross-table checks. Rows are numbered as if the frames were written to CSV.
    Raises `InputTableError`.
    """
    names = _files_for(files or {})
    findings: list[Finding] = []
    frames: dict[str, pd.DataFrame | None] = {}
    for name in ALL_TABLES:
        frame = getattr(tables, name).reset_index(drop=True)
        if name not in REQUIRED_TABLES and frame.empty:
            frames[name] = None
            continue
        if (
            name == "students"
            and "ethnic_minority" in frame
            and frame["ethnic_minority"].isna().all()
        ):
            frame = frame.drop(columns="ethnic_minority")
        columns = check_columns(name, frame, names[name])
        findings += columns.findings
        if columns.frame is None:
            frames[name] = None
            continue
        findings += check_table(name, columns.frame, names[name])
        frames[name] = columns.frame
    if findings:
        raise to_error(findings)
    cross, warnings = check_cross_tables(frames, names)
    if cross:
        raise to_error(cross)
    return warnings

"""The Chinese compulsory-school calendar used by the synthetic county.

One calendar per school year (a school year starts in September of `school_year` and ends
in July of `school_year + 1`). All schools of a county share it, as a county education
bureau (县教育局) publishes one 校历 for its schools.

The lunar holidays (Spring Festival, Qingming, Dragon Boat, Mid-Autumn) are hard-coded
for 2019-2031 from the published Gregorian dates; the term boundaries are rules that
reproduce typical county 校历 (see docs/synthetic-county.md):

* term 1 starts on September 1 (the next Monday when it falls on a weekend) and ends on
  the last Friday on or before the earlier of "8 days before Spring Festival" and 23 January;
* term 2 starts on the first Monday on or after Spring Festival + 10 days (after the
  Lantern Festival week) and ends on the last Friday on or before 12 July;
* weekends are off, and so are National Day (1-7 Oct), Mid-Autumn, New Year's Day,
  Qingming, Labour Day (1-5 May) and Dragon Boat; a lunar holiday or New Year's Day that
  falls on a weekend gives the following Monday off;
* one make-up school day (调休) per holiday block: 8 October when it is a weekend day and
  the last Sunday of April between 26 and 30 April.

That gives 186-199 school days a year (190-195 in most years).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

# Gregorian dates of the lunar-calendar holidays (春节, 清明, 端午, 中秋), 2019-2031.
SPRING_FESTIVAL: dict[int, date] = {
    2019: date(2019, 2, 5),
    2020: date(2020, 1, 25),
    2021: date(2021, 2, 12),
    2022: date(2022, 2, 1),
    2023: date(2023, 1, 22),
    2024: date(2024, 2, 10),
    2025: date(2025, 1, 29),
    2026: date(2026, 2, 17),
    2027: date(2027, 2, 6),
    2028: date(2028, 1, 26),
    2029: date(2029, 2, 13),
    2030: date(2030, 2, 3),
    2031: date(2031, 1, 23),
}
QINGMING: dict[int, date] = {
    2019: date(2019, 4, 5),
    2020: date(2020, 4, 4),
    2021: date(2021, 4, 4),
    2022: date(2022, 4, 5),
    2023: date(2023, 4, 5),
    2024: date(2024, 4, 4),
    2025: date(2025, 4, 4),
    2026: date(2026, 4, 5),
    2027: date(2027, 4, 5),
    2028: date(2028, 4, 4),
    2029: date(2029, 4, 4),
    2030: date(2030, 4, 5),
    2031: date(2031, 4, 5),
}
DRAGON_BOAT: dict[int, date] = {
    2019: date(2019, 6, 7),
    2020: date(2020, 6, 25),
    2021: date(2021, 6, 14),
    2022: date(2022, 6, 3),
    2023: date(2023, 6, 22),
    2024: date(2024, 6, 10),
    2025: date(2025, 5, 31),
    2026: date(2026, 6, 19),
    2027: date(2027, 6, 9),
    2028: date(2028, 5, 28),
    2029: date(2029, 6, 16),
    2030: date(2030, 6, 5),
    2031: date(2031, 6, 24),
}
MID_AUTUMN: dict[int, date] = {
    2019: date(2019, 9, 13),
    2020: date(2020, 10, 1),
    2021: date(2021, 9, 21),
    2022: date(2022, 9, 10),
    2023: date(2023, 9, 29),
    2024: date(2024, 9, 17),
    2025: date(2025, 10, 6),
    2026: date(2026, 9, 25),
    2027: date(2027, 9, 15),
    2028: date(2028, 10, 3),
    2029: date(2029, 9, 22),
    2030: date(2030, 9, 12),
    2031: date(2031, 10, 1),
}

FIRST_SCHOOL_YEAR = min(MID_AUTUMN)  # 2019: the Mid-Autumn of 2018 is not tabled
LAST_SCHOOL_YEAR = max(SPRING_FESTIVAL) - 1


@dataclass(frozen=True)
class SchoolYearCalendar:
    """The school days of one school year, in order, and where term 2 begins.

    Attributes
    ----------
    school_year : the year the school year starts in.
    days : `datetime64[D]` array of school days, ascending.
    term2_start : index into `days` of the first day of term 2.
    spring_festival : the Spring Festival date inside this school year's winter break.
    """

    school_year: int
    days: np.ndarray
    term2_start: int
    spring_festival: date

    @property
    def n_days(self) -> int:
        return int(self.days.shape[0])

    def term_of(self, index: np.ndarray) -> np.ndarray:
        """Term (1 or 2) of school-day indices."""
        return np.where(np.asarray(index) >= self.term2_start, 2, 1)


def _next_weekday(d: date) -> date:
    while d.weekday() >= 5:
        d += timedelta(days=1)
    return d


def _monday_on_or_after(d: date) -> date:
    return d + timedelta(days=(7 - d.weekday()) % 7)


def _friday_on_or_before(d: date) -> date:
    return d - timedelta(days=(d.weekday() - 4) % 7)


def _with_weekend_monday(d: date) -> list[date]:
    """A one-day holiday, plus the following Monday when it falls on a weekend."""
    if d.weekday() >= 5:
        return [d, d + timedelta(days=7 - d.weekday())]
    return [d]


def holidays_off(school_year: int) -> set[date]:
    """Public holidays (weekday or not) that are days off in this school year."""
    y1, y2 = school_year, school_year + 1
    off: set[date] = set()
    off.update(date(y1, 10, d) for d in range(1, 8))
    off.update(_with_weekend_monday(MID_AUTUMN[y1]))
    off.update(_with_weekend_monday(date(y2, 1, 1)))
    off.update(_with_weekend_monday(QINGMING[y2]))
    off.update(date(y2, 5, d) for d in range(1, 6))
    off.update(_with_weekend_monday(DRAGON_BOAT[y2]))
    return off


def makeup_days(school_year: int) -> set[date]:
    """Weekend days that are school days (调休) in this school year."""
    out: set[date] = set()
    oct8 = date(school_year, 10, 8)
    if oct8.weekday() >= 5:
        out.add(oct8)
    for day in range(30, 25, -1):
        d = date(school_year + 1, 4, day)
        if d.weekday() == 6:
            out.add(d)
            break
    return out


def school_year_calendar(school_year: int) -> SchoolYearCalendar:
    """The school days of `school_year` (September `school_year` to July next year).

    Raises `ValueError` for school years whose holidays are not tabled (2019-2030).
    """
    if not (FIRST_SCHOOL_YEAR <= school_year <= LAST_SCHOOL_YEAR):
        raise ValueError(
            f"school_year {school_year} outside the tabled range "
            f"{FIRST_SCHOOL_YEAR}-{LAST_SCHOOL_YEAR}"
        )
    sf = SPRING_FESTIVAL[school_year + 1]
    t1_start = _next_weekday(date(school_year, 9, 1))
    t1_end = _friday_on_or_before(min(sf - timedelta(days=8), date(school_year + 1, 1, 23)))
    t2_start = _monday_on_or_after(sf + timedelta(days=10))
    t2_end = _friday_on_or_before(date(school_year + 1, 7, 12))

    off = holidays_off(school_year)
    extra = makeup_days(school_year)

    def term_days(start: date, end: date) -> list[date]:
        all_days = np.arange(np.datetime64(start), np.datetime64(end) + 1)
        out = []
        for d64 in all_days:
            d = d64.astype(object)
            if (d.weekday() < 5 and d not in off) or d in extra:
                out.append(d)
        return out

    term1 = term_days(t1_start, t1_end)
    term2 = term_days(t2_start, t2_end)
    days = np.array(term1 + term2, dtype="datetime64[D]")
    return SchoolYearCalendar(
        school_year=school_year, days=days, term2_start=len(term1), spring_festival=sf
    )

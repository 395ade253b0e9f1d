"""The HTML pages: login, a teacher's week, a student's page, a principal's overview.

Thin routes (STYLE §10): each reads the session, calls one function of
`serving.pages.views` or `serving.services`, and renders a template. The pages call the
same services as the JSON API, never the API itself. Every student page view and every
refused attempt is audited (`serving.audit.record_access` through the API's `Auditor`);
forms are protected by the session's CSRF token and redirect after a successful POST.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from features.tables import INTERVENTION_KINDS, OUTCOMES
from serving.api.deps import (
    Auditor,
    LoginGuardDep,
    SessionDep,
    client_address,
    get_settings,
    make_auditor,
)
from serving.audit import record_access
from serving.auth import (
    AuthError,
    Forbidden,
    InvalidCredentials,
    LoginBusy,
    NotYourStudent,
    TooManyAttempts,
    Viewer,
)
from serving.pages import views
from serving.pages.i18n import RULE_KEYS, SUBJECT_KEYS, translate
from serving.pages.session import (
    LoginRequired,
    PageSession,
    check_csrf,
    clear_session,
    keep_lang,
    new_session,
    page_lang,
    read_session,
    safe_next,
    write_session,
)
from serving.services import cases, students, uploads
from serving.services.scoring import StudentNotFound
from serving.services.users import end_sessions, get_viewer
from serving.services.weekly_lists import ListNotFound
from serving.storage.queries import NOTE_MAX
from serving.storage.tables import FEEDBACK_KINDS, ID_LENGTH, ROW_ID_MAX, Case, utcnow

logger = logging.getLogger(__name__)

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).resolve().parent.parent / "templates"))
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
STUDENT_PAGE = "GET /students/{student_id}"

router = APIRouter(include_in_schema=False)


# -- session and viewer -----------------------------------------------------------------


def current_viewer(request: Request, session: SessionDep) -> Viewer:
    """The logged-in viewer from the session cookie; `LoginRequired` otherwise."""
    page_session = read_session(request)
    if page_session is None or page_session.user_id is None:
        raise LoginRequired(request.url.path)
    try:
        return get_viewer(session, page_session.user_id, page_session.version)
    except AuthError as error:  # deactivated, or logged out or password changed since
        raise LoginRequired(request.url.path) from error


PageViewer = Annotated[Viewer, Depends(current_viewer)]


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    viewer: Viewer | None = None,
    page_session: PageSession | None = None,
) -> HTMLResponse:
    """Render `name` with the language, the viewer and the form token filled in."""
    lang = page_lang(request)
    page_session = page_session or read_session(request)
    response = TEMPLATES.TemplateResponse(
        request,
        name,
        {
            "lang": lang,
            "t": translate(lang),
            "viewer": viewer,
            "csrf": page_session.csrf if page_session else "",
            **(context or {}),
        },
        status_code=status_code,
    )
    response.headers["Content-Security-Policy"] = PAGE_CSP
    keep_lang(request, response)
    return response


def error_page(
    request: Request, status_code: int, title: str, message: str, viewer: Viewer | None = None
) -> HTMLResponse:
    """A refusal or not-found page (keys of `i18n.STRINGS`)."""
    return render(
        request,
        "error.html",
        {"title_key": title, "message_key": message},
        status_code=status_code,
        viewer=viewer,
    )


def _auditor(request: Request, session: SessionDep, viewer: Viewer, action: str) -> Auditor:
    return make_auditor(request, session, viewer, action)


def _refusal(request: Request, error: Exception, viewer: Viewer) -> HTMLResponse:
    if isinstance(error, StudentNotFound):
        return error_page(request, 404, "not_found_title", "student_not_found", viewer)
    if isinstance(error, cases.CaseNotFound):
        return error_page(request, 404, "not_found_title", "case_not_found", viewer)
    if isinstance(error, NotYourStudent):
        return error_page(request, 403, "forbidden_title", "not_your_student", viewer)
    return error_page(request, 403, "forbidden_title", "forbidden_role", viewer)


# -- login and logout -------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/", notice: str | None = None) -> Response:
    """The login form (an anonymous session carries its CSRF token)."""
    page_session = read_session(request)
    if page_session is None or page_session.user_id is not None:
        page_session = new_session()
    notice_key = notice if notice in ("logged_out", "session_ended") else None
    response = render(
        request,
        "login.html",
        {"next": safe_next(next), "notice_key": notice_key, "error": None},
        page_session=page_session,
    )
    write_session(request, response, page_session)
    return response


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request,
    guard: LoginGuardDep,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    next: Annotated[str, Form(max_length=512)] = "/",
) -> Response:
    """Check the password (through the app's `LoginGuard`, as the API does); on success
    a fresh session and a redirect to `next`."""
    check_csrf(read_session(request), csrf_token)
    t = translate(page_lang(request))
    context: dict[str, Any] = {"next": next}
    try:
        sessions = request.app.state.sessions
        viewer = await guard.login(sessions, username, password, client_address(request))
    except TooManyAttempts as error:
        context["error"] = t("login_locked", n=error.retry_after_s)
        response = render(request, "login.html", context, status_code=429)
        response.headers["Retry-After"] = str(error.retry_after_s)
        return response
    except LoginBusy as error:
        context["error"] = t("login_busy", n=error.retry_after_s)
        response = render(request, "login.html", context, status_code=503)
        response.headers["Retry-After"] = str(error.retry_after_s)
        return response
    except InvalidCredentials:
        context["error"] = t("login_failed")
        return render(request, "login.html", context, status_code=401)
    done = RedirectResponse(safe_next(next), status_code=303)
    write_session(request, done, new_session(viewer.user_id, viewer.token_version))
    return done


@router.post("/logout")
def logout(
    request: Request, session: SessionDep, csrf_token: Annotated[str, Form(max_length=128)] = ""
) -> Response:
    """End the session, and every other session and token of the same user (a copy of
    the cookie kept elsewhere is no longer a session)."""
    page_session = read_session(request)
    check_csrf(page_session, csrf_token)
    if page_session is not None and page_session.user_id is not None:
        try:
            get_viewer(session, page_session.user_id, page_session.version)
        except AuthError:
            pass  # already ended
        else:
            end_sessions(session, page_session.user_id)
    response = RedirectResponse("/login?notice=logged_out", status_code=303)
    clear_session(request, response)
    return response


# -- pages ------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def home(request: Request, session: SessionDep, viewer: PageViewer) -> Response:
    """A teacher's week; a school admin's overview; the county's dashboard; else a notice.

    Opening a home page first opens the cases of the newest week (`cases.sync_cases`,
    idempotent), so overdue follow-ups are current.
    """
    now = utcnow()
    if viewer.role in ("teacher", "school_admin", "county_admin"):
        cases.sync_cases(session, None, now)
        students.warm_export_index(request.app.state.settings.paths.data)
    if viewer.role == "teacher":
        record_access(session, viewer, None, "GET / (week)", viewer.school_id)
        try:
            week = views.teacher_week(session, viewer)
        except ListNotFound:
            week = None
        late = cases.overdue(session, viewer, now)
        return render(request, "week.html", {"week": week, "overdue": late}, viewer=viewer)
    if viewer.role == "school_admin":
        record_access(session, viewer, None, "GET / (school)", viewer.school_id)
        try:
            overview = views.school_overview(session, viewer)
        except ListNotFound:
            overview = None
        late = cases.overdue(session, viewer, now)
        context = {"overview": overview, "overdue": late}
        return render(request, "school.html", context, viewer=viewer)
    if viewer.role == "county_admin":
        record_access(session, viewer, None, "GET / (county)", None)
        try:
            data_dir = get_settings(request).paths.data
            county = views.county_dashboard(session, viewer, now, data_dir=data_dir)
        except ListNotFound:
            county = None
        return render(request, "county.html", {"county": county, "now": now}, viewer=viewer)
    return render(request, "no_page.html", viewer=viewer)


DOWNLOAD = "GET /lists/{school_id}/{as_of}.xlsx"


@router.get("/lists/{school_id}/{as_of}.xlsx", response_model=None)
def download_list(
    request: Request,
    session: SessionDep,
    viewer: PageViewer,
    school_id: str,
    as_of: dt.date,
) -> Response:
    """The week's school list as the batch wrote it (XLSX), for the school's admin and the
    county. Audited without a student id, like a list read."""
    if not 0 < len(school_id) <= ID_LENGTH:  # no school of the contract has this id
        record_access(session, viewer, None, f"{DOWNLOAD} -> not_found", None)
        return error_page(request, 404, "not_found_title", "list_not_found", viewer)
    action = f"GET /lists/{school_id}/{as_of.isoformat()}.xlsx"
    if viewer.role != "county_admin" and not (
        viewer.role == "school_admin" and viewer.school_id == school_id
    ):
        record_access(session, viewer, None, f"{action} -> refused", school_id)
        return error_page(request, 403, "forbidden_title", "forbidden_role", viewer)
    lists_root = request.app.state.settings.paths.lists.resolve()
    path = (lists_root / as_of.isoformat() / f"{school_id}.xlsx").resolve()
    if lists_root not in path.parents or not path.is_file():
        return error_page(request, 404, "not_found_title", "list_not_found", viewer)
    record_access(session, viewer, None, action, school_id)
    return FileResponse(
        path,
        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        filename=f"{school_id}-{as_of.isoformat()}.xlsx",
    )


@router.get("/students/{student_id}", response_class=HTMLResponse)
def student(request: Request, session: SessionDep, viewer: PageViewer, student_id: str) -> Response:
    """A student's page (audited; refused attempts too)."""
    if not 0 < len(student_id) <= 64:
        return error_page(request, 404, "not_found_title", "student_not_found", viewer)
    try:
        with _auditor(request, session, viewer, STUDENT_PAGE).access(student_id) as entry:
            page = _student_page(request, session, viewer, student_id)
            entry.school_id = page.record.place.school_id
    except (AuthError, StudentNotFound) as error:
        return _refusal(request, error, viewer)
    return _student_response(request, viewer, page)


def _student_page(
    request: Request, session: SessionDep, viewer: Viewer, student_id: str
) -> views.StudentPage:
    data_dir = request.app.state.settings.paths.data
    return views.student_page(session, viewer, student_id, data_dir=data_dir, now=utcnow())


def _student_response(
    request: Request,
    viewer: Viewer,
    page: views.StudentPage,
    *,
    form_error: list[str] | None = None,
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "student.html",
        {
            "page": page,
            "record": page.record,
            "kinds": INTERVENTION_KINDS,
            "outcomes": OUTCOMES,
            "feedback_choices": FEEDBACK_KINDS,
            "today": dt.date.today().isoformat(),
            "horizon_days": request.app.state.settings.training.horizon_days,
            "form": form or {},
            "form_error": form_error,
            "saved": request.query_params.get("saved"),
            "day_states": views.DAY_STATES,
            "subject_keys": SUBJECT_KEYS,
            "now": utcnow(),
        },
        status_code=status_code,
        viewer=viewer,
    )


@router.post("/students/{student_id}/interventions", response_class=HTMLResponse)
def add_intervention(
    request: Request,
    session: SessionDep,
    viewer: PageViewer,
    student_id: str,
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    kind: Annotated[str, Form(max_length=64)] = "",
    date: Annotated[str, Form(max_length=32)] = "",
    outcome: Annotated[str, Form(max_length=64)] = "",
    note: Annotated[str, Form(max_length=8000)] = "",
) -> Response:
    """Record a visit or action; the note is stored for the school's staff, never logged."""
    check_csrf(read_session(request), csrf_token)
    form = {"kind": kind, "date": date, "outcome": outcome, "note": note}
    on, bad = _checked_visit(kind, date, outcome, note)
    if on is None or bad:
        return _visit_refused(request, session, viewer, student_id, bad, form)
    action = "POST /students/{student_id}/interventions"
    try:
        with _auditor(request, session, viewer, action).access(student_id) as entry:
            row = students.add_intervention(
                session,
                viewer,
                student_id,
                date=on,
                kind=kind,
                outcome=outcome,
                note=note.strip() or None,
                today=dt.date.today(),  # the server's local date, as the form's default
                data_dir=request.app.state.settings.paths.data,
            )
            entry.school_id = row.school_id
    except students.InvalidVisit as error:  # a date before enrolment or after today
        return _visit_refused(request, session, viewer, student_id, [error.field], form)
    except (AuthError, StudentNotFound) as error:
        return _refusal(request, error, viewer)
    return RedirectResponse(f"/students/{student_id}?saved=visit#done", status_code=303)


def _visit_refused(
    request: Request,
    session: SessionDep,
    viewer: Viewer,
    student_id: str,
    bad: list[str],
    form: dict[str, str],
) -> Response:
    """The student's page again with the visit form's fields at fault (422)."""
    try:
        with _auditor(request, session, viewer, STUDENT_PAGE).access(student_id) as entry:
            page = _student_page(request, session, viewer, student_id)
            entry.school_id = page.record.place.school_id
    except (AuthError, StudentNotFound) as error:
        return _refusal(request, error, viewer)
    return _student_response(request, viewer, page, form_error=bad, form=form, status_code=422)


def _checked_visit(
    kind: str, date: str, outcome: str, note: str
) -> tuple[dt.date | None, list[str]]:
    """The visit's date and the names of the fields that are not valid (before saving)."""
    bad = []
    if kind not in INTERVENTION_KINDS:
        bad.append("kind")
    try:
        on: dt.date | None = dt.date.fromisoformat(date)
    except ValueError:
        on = None
        bad.append("date")
    if outcome not in OUTCOMES:
        bad.append("outcome")
    if len(note.strip()) > NOTE_MAX:
        bad.append("note")
    return on, bad


@router.post("/students/{student_id}/feedback", response_class=HTMLResponse)
def add_feedback(
    request: Request,
    session: SessionDep,
    viewer: PageViewer,
    student_id: str,
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    kind: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    """Record the teacher's verdict on this week's flag."""
    check_csrf(read_session(request), csrf_token)
    if kind not in FEEDBACK_KINDS:
        return error_page(request, 422, "error_title", "bad_request", viewer)
    action = "POST /students/{student_id}/feedback"
    try:
        with _auditor(request, session, viewer, action).access(student_id):
            students.add_feedback(session, viewer, student_id, kind=kind)
    except (AuthError, StudentNotFound) as error:
        return _refusal(request, error, viewer)
    return RedirectResponse(f"/students/{student_id}?saved=feedback#feedback", status_code=303)


# -- the school's upload of its weekly export files --------------------------------------

UPLOAD_PER_RULE = 20


def _may_upload(viewer: Viewer) -> bool:
    """A school's administrator (the principal's account), for their own school; the
    county's administrator, for a school they name (the only upload that may move a
    pupil from one school to another: a transfer)."""
    return (viewer.role == "school_admin" and bool(viewer.school_id)) or (
        viewer.role == "county_admin"
    )


def _upload_response(
    request: Request,
    viewer: Viewer,
    result: uploads.UploadResult | None = None,
    status_code: int = 200,
    school_id: str = "",
) -> HTMLResponse:
    settings = request.app.state.settings
    groups = uploads.grouped(result.error, UPLOAD_PER_RULE) if result and result.error else []
    return render(
        request,
        "upload.html",
        {
            "result": result,
            "groups": groups,
            "per_rule": UPLOAD_PER_RULE,
            "max_mb": settings.serving.upload_max_mb,
            "tables": uploads.ALL_TABLES,
            "rule_heading": uploads.rule_heading,
            "rule_keys": RULE_KEYS,
            "county": viewer.role == "county_admin",
            "school_id": school_id or viewer.school_id or "",
        },
        status_code=status_code,
        viewer=viewer,
    )


@router.get("/upload", response_class=HTMLResponse)
def upload_page(request: Request, session: SessionDep, viewer: PageViewer) -> Response:
    """The form where a school admin uploads the week's export files of their school
    (the county admin: of a school they name)."""
    if not _may_upload(viewer):
        record_access(session, viewer, None, "GET /upload -> refused", viewer.school_id)
        return error_page(request, 403, "forbidden_title", "upload_forbidden", viewer)
    record_access(session, viewer, None, "GET /upload", viewer.school_id)
    return _upload_response(request, viewer)


@router.post("/upload", response_class=HTMLResponse)
def upload(
    request: Request,
    session: SessionDep,
    viewer: PageViewer,
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    school_id: Annotated[str, Form(max_length=ID_LENGTH)] = "",
    files: Annotated[list[UploadFile] | None, File()] = None,
) -> Response:
    """Check the files as part of the data folder; replace the school's rows or show why
    not (every violation by file, row and column). Audited without student ids.

    A principal's upload is for their own school (a `school_id` field is ignored) and
    may not touch another school's pupils; the county's names the school and may move
    pupils to it (a transfer)."""
    check_csrf(read_session(request), csrf_token)
    if not _may_upload(viewer):
        record_access(session, viewer, None, "POST /upload -> refused", viewer.school_id)
        return error_page(request, 403, "forbidden_title", "upload_forbidden", viewer)
    county = viewer.role == "county_admin"
    school = school_id.strip() if county else viewer.school_id or ""
    settings = request.app.state.settings
    if not school:
        record_access(session, viewer, None, "POST /upload -> rejected", None)
        return _upload_response(request, viewer, uploads.no_school_named(), 422)
    max_bytes = settings.serving.upload_max_mb * 1_000_000
    sent = [
        uploads.UploadedFile(f.filename or "", f.file.read(max_bytes + 1))
        for f in files or []
        if f.filename
    ]
    serving = settings.serving
    limits = uploads.XlsxLimits(
        max_rows=serving.upload_xlsx_max_rows,
        max_unpacked_mb=serving.upload_xlsx_max_unpacked_mb,
        max_seconds=serving.upload_xlsx_max_seconds,
    )
    result = uploads.apply_upload(
        settings.paths.data, school, sent, max_bytes=max_bytes, xlsx=limits, transfer=county
    )
    outcome = "accepted" if result.accepted else "rejected"
    record_access(session, viewer, None, f"POST /upload -> {outcome}", school)
    return _upload_response(request, viewer, result, 200 if result.accepted else 422, school)


# -- cases (包保责任人, 一生一策, 销号) ---------------------------------------------------

CASE_PAGE = "GET /cases/{case_id}"
# Ids a request names are checked against the database's range first: a bigger number
# once reached the database and answered 500 (issue 21 item 9).
CaseId = Annotated[int, PathParam(ge=1, le=ROW_ID_MAX, description="the case's id")]


def _case_student(session: SessionDep, case_id: int) -> str | None:
    """The student of a case, for the audit row (None when there is no such case)."""
    row = session.get(Case, case_id)
    return None if row is None else row.student_id


def _case_response(
    request: Request,
    session: SessionDep,
    viewer: Viewer,
    case_id: int,
    action: str,
    *,
    form_error: str | None = None,
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    try:
        with _auditor(request, session, viewer, action).access(
            _case_student(session, case_id)
        ) as entry:
            page = views.case_page(session, viewer, case_id)
            entry.school_id = page.view.case.school_id
    except (AuthError, cases.CaseNotFound) as error:
        return _refusal(request, error, viewer)
    return render(
        request,
        "case.html",
        {
            "page": page,
            "c": page.view.case,
            "close_statuses": cases.CLOSE_STATUSES,
            "form": form or {},
            "form_error": form_error,
            "saved": request.query_params.get("saved"),
        },
        status_code=status_code,
        viewer=viewer,
    )


@router.get("/cases/{case_id}", response_class=HTMLResponse)
def case(request: Request, session: SessionDep, viewer: PageViewer, case_id: CaseId) -> Response:
    """A case: history, plan, responsible adult and the 销号 form (audited, scoped)."""
    return _case_response(request, session, viewer, case_id, CASE_PAGE)


def _case_change(
    request: Request,
    session: SessionDep,
    viewer: Viewer,
    case_id: int,
    action: str,
    change: Any,
    form: dict[str, str],
    saved: str,
    back: str | None = None,
) -> Response:
    """Apply `change`; refusals are audited with their code, a change the case cannot take
    re-renders the page (422) without rolling back the request."""
    student_id = _case_student(session, case_id)
    auditor = _auditor(request, session, viewer, action)
    invalid = False
    try:
        with auditor.access(student_id, on_success=False):
            try:
                view = change()
            except cases.InvalidCaseChange:
                invalid = True
    except (AuthError, cases.CaseNotFound) as error:
        return _refusal(request, error, viewer)
    if invalid:
        return _case_response(
            request,
            session,
            viewer,
            case_id,
            CASE_PAGE,
            form_error="case_invalid",
            form=form,
            status_code=422,
        )
    auditor.record([view.case.student_id], view.case.school_id)
    if back == "student":
        target = f"/students/{view.case.student_id}?saved={saved}#case"
        return RedirectResponse(target, status_code=303)
    return RedirectResponse(f"/cases/{case_id}?saved={saved}", status_code=303)


@router.post("/cases/{case_id}/plan", response_class=HTMLResponse)
def case_plan(
    request: Request,
    session: SessionDep,
    viewer: PageViewer,
    case_id: CaseId,
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    plan: Annotated[str, Form(max_length=8000)] = "",
    back: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    """Replace the plan (一生一策); `back=student` returns to the student's page."""
    check_csrf(read_session(request), csrf_token)
    return _case_change(
        request,
        session,
        viewer,
        case_id,
        "POST /cases/{case_id}/plan",
        lambda: cases.update_plan(session, viewer, case_id, plan),
        {"plan": plan},
        "plan",
        back,
    )


@router.post("/cases/{case_id}/owner", response_class=HTMLResponse)
def case_owner(
    request: Request,
    session: SessionDep,
    viewer: PageViewer,
    case_id: CaseId,
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    owner: Annotated[int, Form(ge=1, le=ROW_ID_MAX)] = 0,
) -> Response:
    """Name the responsible adult (包保责任人)."""
    check_csrf(read_session(request), csrf_token)
    return _case_change(
        request,
        session,
        viewer,
        case_id,
        "POST /cases/{case_id}/owner",
        lambda: cases.assign_owner(session, viewer, case_id, owner),
        {},
        "owner",
    )


@router.post("/cases/{case_id}/close", response_class=HTMLResponse)
def case_close(
    request: Request,
    session: SessionDep,
    viewer: PageViewer,
    case_id: CaseId,
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    status: Annotated[str, Form(max_length=32)] = "",
    reason: Annotated[str, Form(max_length=8000)] = "",
) -> Response:
    """Close the case (销号): county admin or the school's admin, with a reason."""
    check_csrf(read_session(request), csrf_token)
    return _case_change(
        request,
        session,
        viewer,
        case_id,
        "POST /cases/{case_id}/close",
        lambda: cases.close_case(session, viewer, case_id, status, reason),
        {"status": status, "reason": reason},
        "closed",
    )


__all__ = ["router", "render", "error_page", "Forbidden"]

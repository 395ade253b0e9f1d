"""Every string the pages show, in Chinese (the default) and English.

Templates call `t("key")` (or `t("key", n=3)` for a string with `{n}` in it). A key
missing from either language is a bug the tests catch (`test_every_string_has_both`).
Sentences about students (reasons, ladder actions, suggested actions) come with their
own zh/en texts from `models.reasons` and `features.catalog`; only labels live here.
"""

from __future__ import annotations

from collections.abc import Callable

STRINGS: dict[str, tuple[str, str]] = {
    # frame
    "app_name": ("保学 · 控辍保学预警", "Baoxue · dropout early warning"),
    "skip_to_content": ("跳到正文", "Skip to content"),
    "switch_lang": ("English", "中文"),
    "logout": ("退出登录", "Log out"),
    "logged_in_as": ("当前用户", "Logged in as"),
    "footer": (
        "学生信息仅限本校教职工查看，每次查看都会记录。",
        "Student records are for your school's staff only; every view is recorded.",
    ),
    # login
    "login_title": ("登录", "Log in"),
    "login_lead": (
        "请用学校分配的账号登录，查看本周需要关注的学生。",
        "Log in with the account your school gave you to see this week's students.",
    ),
    "username": ("用户名", "Username"),
    "password": ("密码", "Password"),
    "login_button": ("登录", "Log in"),
    "login_failed": ("用户名或密码不正确。", "The username or password is wrong."),
    "login_locked": (
        "登录失败次数过多，请 {n} 秒后再试。",
        "Too many failed logins. Please try again in {n} seconds.",
    ),
    "logged_out": ("您已退出登录。", "You have logged out."),
    "session_ended": ("登录已过期，请重新登录。", "Your session has ended. Please log in again."),
    # errors
    "error_title": ("无法打开此页", "This page cannot be opened"),
    "csrf_title": ("表单已过期", "This form has expired"),
    "csrf_body": (
        "为了安全，表单提交没有通过校验，内容未保存。请返回、刷新页面后重新提交。",
        "For your safety this form was not accepted and nothing was saved. "
        "Go back, reload the page and submit it again.",
    ),
    "forbidden_title": ("没有权限查看", "Not allowed"),
    "not_your_student": (
        "这名学生不在您的班级。如需查看，请联系学校管理员。此次访问已记录。",
        "This student is not in your classes. Ask your school administrator if you need "
        "to see the record. This attempt has been recorded.",
    ),
    "forbidden_role": ("您的角色不能查看此页。", "Your role does not allow this page."),
    "not_found_title": ("找不到记录", "No record found"),
    "student_not_found": ("系统中没有这名学生的记录。", "We have no record of this student."),
    "list_not_found": (
        "这一周的名单文件还没有生成。",
        "This week's list file has not been written yet.",
    ),
    "download_xlsx": ("下载本周名单（Excel）", "Download this week's list (Excel)"),
    "bad_request": ("提交的内容无效，未保存。", "What was sent is not valid; nothing was saved."),
    "back_home": ("返回本周名单", "Back to this week's list"),
    # roles without a page yet
    "no_page_title": ("此角色暂无网页", "No page for this role yet"),
    "no_page_body": (
        "研究人员账号只能查看汇总数据，请使用接口或导出的汇总。",
        "Research accounts see aggregates only; use the API or the exported summaries.",
    ),
    # week page
    "week_title": ("本周关注名单", "This week"),
    "week_of": ("{d} 这一周", "Week of {d}"),
    "class_label": ("班级", "Class"),
    "grade_label": ("{n} 年级", "Grade {n}"),
    "visits_progress": ("本学期家访", "Home visits this semester"),
    "visits_count": (
        "已家访 {done} 人 / 至少 {need} 人（全班 {size} 人的一半）",
        "{done} students visited / at least {need} (half of the class of {size})",
    ),
    "visits_met": ("已达到要求", "Minimum reached"),
    "visits_left": ("还差 {n} 人", "{n} more to go"),
    "alerts_title": ("旷课预警（按制度必须处理）", "Absence alerts (the written rules apply)"),
    "alerts_none": ("本周没有旷课预警。", "No absence alerts this week."),
    "ranked_title": ("本周优先关注", "Who to see first this week"),
    "ranked_lead": (
        "按风险从高到低排列；红色为最需关注，黄色为其次。",
        "Riskiest first; red needs attention most, amber next.",
    ),
    "ranked_none": (
        "本周您的班级没有需要优先关注的学生。",
        "Nobody in your classes needs a visit first this week.",
    ),
    "no_list": (
        "还没有本周名单：每周计算尚未运行。请稍后再来或联系学校管理员。",
        "There is no list yet: the weekly run has not happened. Check back later or ask "
        "your school administrator.",
    ),
    "col_rank": ("序", "#"),
    "col_student": ("学生", "Student"),
    "col_why": ("主要原因", "Main reasons"),
    "col_action": ("建议措施", "Suggested action"),
    "col_last_visit": ("最近一次", "Last contact"),
    "col_visits": ("本学期家访", "Visits this term"),
    "due_today": ("今天内", "Today"),
    "due_within_2_days": ("2天内", "Within 2 days"),
    "due_within_1_hour": ("1小时内", "Within the hour"),
    "due_label": ("时限", "Due"),
    "absent_days": ("连续旷课 {n} 天", "{n} days absent without leave"),
    "never_visited": ("尚无记录", "None yet"),
    "open_student": ("查看并记录", "Open and record"),
    "left_list": ("已移出名单", "Left the list"),
    # tiers, changes
    "tier_high": ("高", "High"),
    "tier_medium": ("中", "Medium"),
    "tier_low": ("低", "Low"),
    "tier_label": ("风险", "Risk"),
    "change_new": ("新进名单", "New"),
    "change_rising": ("上升", "Rising"),
    "change_falling": ("下降", "Falling"),
    "change_unchanged": ("持平", "Unchanged"),
    "change_left": ("移出", "Left"),
    # student page
    "student_title": ("学生 {id}", "Student {id}"),
    "current_risk": ("当前风险", "Current risk"),
    "risk_history": ("风险变化", "Risk over the weeks"),
    "chart_caption": (
        "每周一次的风险估计（未来{days}天内辍学的可能性）",
        "Weekly risk estimate (chance of dropping out within {days} days)",
    ),
    "no_history": ("还没有每周风险记录。", "No weekly scores yet."),
    "reasons_title": ("原因", "Reasons"),
    "reasons_none": ("本周没有需要说明的原因。", "No reasons to show this week."),
    "weight": ("影响", "Weight"),
    "interventions_title": ("已做的工作", "What has been done"),
    "interventions_none": ("还没有记录。", "Nothing recorded yet."),
    "note_hidden": ("（备注仅本校教职工可见）", "(notes are for the school's staff only)"),
    "record_title": ("记录一次家访或措施", "Record a visit or action"),
    "record_lead": (
        "备注只保存给本校教职工查看，不会写入系统日志。",
        "The note is kept for your school's staff only and never written to logs.",
    ),
    "field_kind": ("方式", "Kind"),
    "field_date": ("日期", "Date"),
    "field_outcome": ("结果", "Outcome"),
    "field_note": ("备注（可选）", "Note (optional)"),
    "save": ("保存", "Save"),
    "saved": ("已保存。", "Saved."),
    "invalid_form": ("有内容需要修改：{fields}", "Please correct: {fields}"),
    "feedback_title": ("这次提醒有用吗？", "Was this flag useful?"),
    "feedback_lead": (
        "您的反馈帮助县里改进预警。",
        "Your answer helps the county improve the warnings.",
    ),
    "feedback_useful": ("有用", "Useful"),
    "feedback_not_useful": ("没用", "Not useful"),
    "feedback_wrongly_flagged": ("不该被标记", "Wrongly flagged"),
    "feedback_given": ("已反馈：{kind}（{d}）", "Your answer: {kind} ({d})"),
    "feedback_thanks": ("谢谢，已记录您的反馈。", "Thank you, your answer is recorded."),
    "ladder_now": ("旷课预警", "Absence alert"),
    # intervention kinds and outcomes
    "kind_home_visit": ("家访", "Home visit"),
    "kind_phone_call": ("电话联系", "Phone call"),
    "kind_talk_at_school": ("在校谈心", "Talk at school"),
    "kind_counselling": ("心理辅导", "Counselling"),
    "kind_financial_aid": ("资助", "Financial aid"),
    "kind_peer_mentor": ("一帮一结对", "Peer mentor"),
    "kind_proxy_parent": ("代理家长", "Proxy parent"),
    "kind_send_teaching": ("送教上门", "Home-delivered teaching"),
    "kind_vocational_referral": ("推荐职业学校", "Vocational referral"),
    "kind_return_notice": ("返学通知书", "Return notice"),
    "outcome_contacted": ("已联系上", "Contacted"),
    "outcome_not_reached": ("未联系上", "Not reached"),
    "outcome_returned": ("已返校", "Returned to school"),
    "outcome_refused": ("家长拒绝", "Refused"),
    "outcome_other": ("其他", "Other"),
    "by_homeroom_teacher": ("班主任", "Homeroom teacher"),
    "by_subject_teacher": ("任课教师", "Subject teacher"),
    "by_principal": ("校长", "Principal"),
    "by_township": ("乡镇", "Township"),
    "by_county": ("县教育局", "County"),
    # school dashboard
    "school_title": ("全校概况", "School overview"),
    "school_tiers": ("各班风险分布", "Students per risk tier, by class"),
    "col_class": ("班级", "Class"),
    "col_students": ("人数", "Students"),
    "open_alerts": ("未处理的旷课预警", "Open absence alerts"),
    "staff_visits": ("教职工本学期家访进度", "Home visits this semester, per staff member"),
    "col_staff": ("教职工", "Staff"),
    "col_staff_role": ("职务", "Role"),
    "col_done": ("已家访", "Visited"),
    "col_need": ("最低要求", "Minimum"),
    "staff_homeroom_teacher": ("班主任", "Homeroom teacher"),
    "staff_subject_teacher": ("任课教师", "Subject teacher"),
    "staff_principal": ("校长", "Principal"),
    # county dashboard and cases
    "county_title": ("全县控辍保学概况", "County overview"),
    "term_since": ("本学期自 {d} 起", "term since {d}"),
    "county_schools": ("各校对比", "Schools side by side"),
    "col_school": ("学校", "School"),
    "col_enrolled": ("在籍人数", "Enrolled"),
    "col_suspected": ("疑似辍学（旷课3天）", "Suspected dropouts (3 days)"),
    "col_confirmed": ("确认辍学", "Confirmed dropouts"),
    "col_open_cases": ("在办个案", "Open cases"),
    "col_term_visits": ("本学期家访", "Home visits this term"),
    "col_status": ("状态", "Status"),
    "col_closed_by": ("销号人 · 时间", "Closed by · when"),
    "roster_title": ("辍学生花名册", "Dropout roster"),
    "roster_lead": (
        "连续旷课3天按疑似辍学上报的学生；一周未返校即为确认辍学，逐一销号清零。",
        "Students reported as suspected dropouts after 3 days absent; not back within a "
        "week they are confirmed dropouts. Each is closed one by one.",
    ),
    "roster_none": ("花名册为空。", "The roster is empty."),
    "trend_title": ("每周高风险学生人数", "High-risk students per week"),
    "trend_caption": (
        "全县各校每周高风险名单的人数合计。",
        "Students in the high tier each week, all schools together.",
    ),
    "opened_on": ("{d} 立案", "opened {d}"),
    "status_open": ("在办", "Open"),
    "status_suspected": ("疑似辍学", "Suspected dropout"),
    "status_confirmed": ("确认辍学", "Confirmed dropout"),
    "status_returned": ("已返校", "Returned to school"),
    "status_transferred": ("已转学（手续齐全）", "Transferred with papers"),
    "status_closed_other": ("其他原因销号", "Closed for another reason"),
    "case_title": ("个案 {id}", "Case {id}"),
    "case_state": ("个案情况", "The case"),
    "case_reason": ("立案原因", "Opened because"),
    "case_reason_ladder": ("旷课预警", "Absence alert"),
    "case_reason_high_tier": ("高风险", "High risk"),
    "ladder_level": ("第 {n} 级", "Level {n}"),
    "case_owner": ("包保责任人", "Responsible adult"),
    "unassigned": ("未指定", "Not assigned"),
    "open_student_page": ("查看学生", "Open the student"),
    "plan_title": ("一生一策", "Plan for this student"),
    "close_title": ("销号", "Close the case"),
    "close_lead": (
        "学生返校、办齐手续转学或其他原因解决后，逐一销号并写明原因。",
        "Close a case once the student is back, transferred with papers, or otherwise "
        "resolved, and say why.",
    ),
    "close_reason": ("销号原因", "Reason for closing"),
    "close_button": ("确认销号", "Close the case"),
    "case_history": ("处理记录", "History"),
    "case_invalid": (
        "无法保存：个案已销号，或内容为空或过长。",
        "Not saved: the case is closed, or the text is empty or too long.",
    ),
    "case_not_found": ("没有这个个案。", "There is no such case."),
    "event_opened": ("立案", "Opened"),
    "event_due": ("跟进时限", "Follow-up due"),
    "event_owner_set": ("指定包保责任人", "Responsible adult named"),
    "event_plan_set": ("修改一生一策", "Plan changed"),
    "event_closed": ("销号", "Closed"),
    "by_system": ("系统", "System"),
    "overdue_title": ("逾期未跟进", "Overdue follow-ups"),
    "overdue_none": ("没有逾期的跟进。", "No overdue follow-ups."),
    "due_was": ("应于 {d} 前完成", "due {d}"),
    # student page: open case, attendance calendar, score trend
    "case_on_student": ("包保个案", "Case"),
    "case_none": ("这名学生目前没有未销号的个案。", "This student has no open case."),
    "case_overdue": ("已逾期", "overdue"),
    "case_followed_up": ("已跟进", "followed up"),
    "save_plan": ("保存一生一策", "Save the plan"),
    "open_case_page": ("打开个案页", "Open the case page"),
    "calendar_title": ("本学年出勤日历", "Attendance this school year"),
    "calendar_lead": (
        "{since} 至 {until} 前的 {n} 个上学日；空白格不是上学日。",
        "{n} school days from {since} to before {until}; blank cells are not school days.",
    ),
    "calendar_none": ("本学年没有这名学生的上学日记录。", "No school days on record this year."),
    "export_missing": (
        "没有记录：数据文件夹中找不到学校导出的数据。",
        "No records: the school export is not in the data folder.",
    ),
    "day_present": ("出勤", "Present"),
    "day_late": ("迟到", "Late"),
    "day_leave": ("请假", "Leave"),
    "day_unexcused": ("旷课", "Unexcused"),
    "month_label": ("{y}年{m}月", "{y}-{m}"),
    "weekday_0": ("一", "M"),
    "weekday_1": ("二", "T"),
    "weekday_2": ("三", "W"),
    "weekday_3": ("四", "T"),
    "weekday_4": ("五", "F"),
    "weekday_5": ("六", "S"),
    "weekday_6": ("日", "S"),
    "scores_title": ("各科成绩走势", "Scores by subject"),
    "trend_lead": (
        "每次考试得分占满分的比例；虚线为及格线（60%）。",
        "Each exam's score as a share of full marks; the dashed line is a pass (60%).",
    ),
    "trend_none": ("没有这名学生的考试成绩。", "No exam results on record."),
    "latest_share": ("最近 {p}%", "latest {p}%"),
    "missed_exams": ("缺考 {n} 次", "missed {n}"),
    "subject_chinese": ("语文", "Chinese"),
    "subject_math": ("数学", "Maths"),
    "subject_english": ("英语", "English"),
    "subject_physics": ("物理", "Physics"),
    "subject_chemistry": ("化学", "Chemistry"),
    "exam_monthly": ("月考", "monthly test"),
    "exam_midterm": ("期中", "midterm"),
    "exam_final": ("期末", "final"),
}

SUBJECT_KEYS = frozenset(k for k in STRINGS if k.startswith("subject_"))


def translate(lang: str) -> Callable[..., str]:
    """`t(key, **values)` for one language (`zh` or `en`)."""
    index = 1 if lang == "en" else 0

    def t(key: str, **values: object) -> str:
        text = STRINGS[key][index]
        return text.format(**values) if values else text

    return t

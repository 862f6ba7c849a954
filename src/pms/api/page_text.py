"""The words of the server's own HTML pages (sign-in, second factor, patient picker, consent, sign-out,
waitlist answers, reminder confirm/cancel links) in each language, and the choice of language for a
request.

The language: the first tag of OpenID Connect Core 1.0 §3.1.2.1 `ui_locales` (space-separated BCP 47 tags,
most preferred first) that we have words for, else the browser's `Accept-Language` (RFC 9110 §12.5.4, by
q-value), else English. Chinese in Simplified script (`zh`, `zh-CN`, `zh-Hans`, `zh-SG`, ...) reads the
`zh-CN` catalogue; Traditional-script tags (`zh-Hant`, `zh-TW`, `zh-HK`, `zh-MO`) have none yet, so the
next preference (or English) applies, as for reminders (docs/reminders.md).

Add a language by adding a catalogue to `TEXTS` (with every key of the English one; a unit test checks),
a rule to `supported`, a date format to `WHEN` and a scope phrasing to `_DESCRIBE`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from html import escape

from pms.auth.scopes import Scope, parse_scope
from pms.domains.reminders.messages import EN_MONTHS, EN_WEEKDAYS, ZH_WEEKDAYS

DEFAULT = "en"
LANGUAGES = ("en", "zh-CN")  # advertised as ui_locales_supported
_MAX_TAGS = 20  # a preference list longer than this is cut (the rest cannot matter)
_TAG = re.compile(r"^[A-Za-z]{1,8}(?:[-_][A-Za-z0-9]{1,8})*$")
_TRADITIONAL = frozenset({"hant", "tw", "hk", "mo"})

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        # the page frame and the error page
        "error_title": "This request cannot be completed",
        "error_note": (
            "Go back to the application you came from and try again. If the problem persists, tell its "
            "developer or your administrator."
        ),
        "malformed": "Malformed request: {problem}.",
        "unknown_client": "Unknown or disabled application (client_id).",
        "unregistered_redirect": "The redirect_uri is not registered for this application.",
        # sign-in
        "login_title": "Sign in",
        "login_intro": "{client} wants to connect to your health record.",
        "username": "Username",
        "password": "Password",
        "sign_in": "Sign in",
        "missing_credentials": "Enter your username and password.",
        "wrong_password": "Wrong username or password.",
        "account_disabled": "This account is disabled. Contact your administrator.",
        "locked": "Too many failed attempts. Try again later.",
        "locked_for_one": (
            "Too many failed attempts: this account is locked for {minutes} more minute (until {until} UTC)."
        ),
        "locked_for_other": (
            "Too many failed attempts: this account is locked for {minutes} more minutes (until {until} UTC)."
        ),
        "form_expired": "This form expired. Please try again.",
        "session_ended": "Your session ended. Please sign in again.",
        # second factor
        "totp_title": "Two-step verification",
        "totp_label": "Code from your authenticator app",
        "totp_hint": (
            "Enter the 6-digit code, or one of your recovery codes (like abcde-12345) if you do not have "
            "your phone."
        ),
        "verify": "Verify",
        "bad_code": "That code is not valid. Try the current code from your app.",
        "enroll_title": "Set up two-step verification",
        "enroll_intro": (
            "Your account needs two-step verification. Scan this code with an authenticator app "
            "(for example FreeOTP, Aegis or Google Authenticator):"
        ),
        "enroll_key": "Or type this key into the app: {key}",
        "enroll_label": "Code shown by the app",
        "enroll_submit": "Turn on two-step verification",
        "bad_enroll_code": (
            "That code is not valid. Check the app shows this account and try the current code."
        ),
        "recovery_title": "Save your recovery codes",
        "recovery_intro": (
            "Two-step verification is on. Keep these recovery codes somewhere safe: each one signs you in "
            "once if you lose your phone. They are shown only now."
        ),
        "recovery_list": "Recovery codes",
        "recovery_continue": "I have saved my codes - continue",
        # patient picker
        "picker_title": "Select a patient",
        "picker_search": "Find a patient by name",
        "search": "Search",
        "picker_legend": "Choose the patient",
        "picker_continue": "Continue with this patient",
        "picker_none": "No patient matches that name.",
        "patient_gone": "That patient no longer exists.",
        "unnamed_patient": "Unnamed patient",
        "patient_born": "{name} (born {born})",
        "patient_label": "{name} - id {id}",
        # consent
        "consent_title": "Allow access?",
        "consent_intro": "{client} asks to:",
        "consent_patient": "Patient: {patient}",
        "consent_user": "Signed in as {username}.",
        "allow": "Allow",
        "deny": "Deny",
        # sign-out
        "signed_out_title": "Signed out",
        "signed_out": "You are signed out. You can close this window.",
        # waitlist offer links
        "waitlist_title": "Waitlist",
        "offer_title": "An earlier appointment",
        "link_invalid_title": "Link not valid",
        "link_invalid": "This link is not valid or has expired.",
        "accept": "Accept",
        "decline": "Decline",
        "choose_answer": "Choose accept or decline.",
        "offer_accepted": "Booked - see you then.",
        "offer_declined": "Thank you - we offered the time to someone else.",
        "offer_expired": "Sorry, this offer has expired.",
        "offer_withdrawn": "Sorry, this time is no longer available.",
        "offer_unknown": "This offer is not known.",
        # reminder confirm / cancel links
        "confirm_title": "Confirm your appointment",
        "cancel_title": "Cancel your appointment",
        "appointment_on": "Appointment on {when}.",
        "confirm": "Confirm",
        "cancel_appointment": "Cancel the appointment",
        "appointment_gone_title": "Appointment not found",
        "appointment_gone": "This appointment no longer exists.",
        "link_refused_title": "This link cannot be used",
        "link_refused": "The link is invalid or has expired.",
        "reply_confirmed": "Thank you: your appointment is confirmed.",
        "reply_cancelled": "Your appointment is cancelled. The time is free for someone else.",
        "reply_already-cancelled": "This appointment was already cancelled.",
        "reply_closed": "This appointment can no longer be changed online. Please call the clinic.",
        # scopes that are not resource scopes
        "scope_openid": "Confirm who you are",
        "scope_fhirUser": "See your user profile (who you are in the record)",
        "scope_profile": "See your user profile (who you are in the record)",
        "scope_launch": "Open in the context of your current session (patient, encounter)",
        "scope_launch/patient": "Work with one patient you choose",
        "scope_launch/encounter": "Work with one encounter",
        "scope_offline_access": "Keep access after you sign out",
        "scope_online_access": "Keep access while you stay signed in",
    },
    "zh-CN": {
        "error_title": "无法完成此请求",
        "error_note": "请返回您来自的应用程序并重试。如果问题仍然存在，请告知该应用的开发者或您的管理员。",
        "malformed": "请求格式不正确：{problem}。",
        "unknown_client": "应用程序未知或已停用（client_id）。",
        "unregistered_redirect": "此应用程序未登记该 redirect_uri。",
        "login_title": "登录",
        "login_intro": "{client} 请求连接到您的健康档案。",
        "username": "用户名",
        "password": "密码",
        "sign_in": "登录",
        "missing_credentials": "请输入用户名和密码。",
        "wrong_password": "用户名或密码错误。",
        "account_disabled": "此账户已停用。请联系您的管理员。",
        "locked": "失败次数过多。请稍后再试。",
        "locked_for_one": "失败次数过多：此账户已被锁定，请 {minutes} 分钟后再试（UTC {until} 解锁）。",
        "locked_for_other": "失败次数过多：此账户已被锁定，请 {minutes} 分钟后再试（UTC {until} 解锁）。",
        "form_expired": "此表单已过期。请重试。",
        "session_ended": "您的会话已结束。请重新登录。",
        "totp_title": "两步验证",
        "totp_label": "身份验证器应用中的验证码",
        "totp_hint": "请输入 6 位验证码；如果手机不在身边，也可以输入一个恢复码（例如 abcde-12345）。",
        "verify": "验证",
        "bad_code": "验证码无效。请输入应用中当前显示的验证码。",
        "enroll_title": "设置两步验证",
        "enroll_intro": (
            "您的账户需要启用两步验证。请用身份验证器应用（例如 FreeOTP、Aegis 或 Google Authenticator）"
            "扫描此二维码："
        ),
        "enroll_key": "或者在应用中手动输入此密钥：{key}",
        "enroll_label": "应用中显示的验证码",
        "enroll_submit": "启用两步验证",
        "bad_enroll_code": "验证码无效。请确认应用中显示的是此账户，并输入当前的验证码。",
        "recovery_title": "保存您的恢复码",
        "recovery_intro": (
            "两步验证已启用。请将这些恢复码保存在安全的地方：如果手机丢失，每个恢复码可供您登录一次。"
            "恢复码仅在此时显示。"
        ),
        "recovery_list": "恢复码",
        "recovery_continue": "我已保存恢复码，继续",
        "picker_title": "选择患者",
        "picker_search": "按姓名查找患者",
        "search": "搜索",
        "picker_legend": "选择患者",
        "picker_continue": "为此患者继续",
        "picker_none": "没有与该姓名匹配的患者。",
        "patient_gone": "该患者已不存在。",
        "unnamed_patient": "未命名患者",
        "patient_born": "{name}（出生日期 {born}）",
        "patient_label": "{name} - 编号 {id}",
        "consent_title": "允许访问？",
        "consent_intro": "{client} 请求：",
        "consent_patient": "患者：{patient}",
        "consent_user": "当前登录用户：{username}。",
        "allow": "允许",
        "deny": "拒绝",
        "signed_out_title": "已退出登录",
        "signed_out": "您已退出登录。现在可以关闭此窗口。",
        "waitlist_title": "候补",
        "offer_title": "更早的预约",
        "link_invalid_title": "链接无效",
        "link_invalid": "此链接无效或已过期。",
        "accept": "接受",
        "decline": "放弃",
        "choose_answer": "请选择接受或放弃。",
        "offer_accepted": "已预约成功，届时见。",
        "offer_declined": "谢谢，我们已将该时间提供给其他人。",
        "offer_expired": "抱歉，此预约邀请已过期。",
        "offer_withdrawn": "抱歉，该时间已不可用。",
        "offer_unknown": "找不到此预约邀请。",
        "confirm_title": "确认您的预约",
        "cancel_title": "取消您的预约",
        "appointment_on": "预约时间：{when}。",
        "confirm": "确认",
        "cancel_appointment": "取消预约",
        "appointment_gone_title": "找不到预约",
        "appointment_gone": "此预约已不存在。",
        "link_refused_title": "此链接无法使用",
        "link_refused": "此链接无效或已过期。",
        "reply_confirmed": "谢谢，您的预约已确认。",
        "reply_cancelled": "您的预约已取消，该时间已留给其他人。",
        "reply_already-cancelled": "此预约此前已被取消。",
        "reply_closed": "此预约已无法在线更改，请致电诊所。",
        "scope_openid": "确认您的身份",
        "scope_fhirUser": "查看您的用户资料（您在档案中的身份）",
        "scope_profile": "查看您的用户资料（您在档案中的身份）",
        "scope_launch": "在您当前会话的情境（患者、就诊）中打开",
        "scope_launch/patient": "处理您选择的一位患者的信息",
        "scope_launch/encounter": "处理一次就诊的信息",
        "scope_offline_access": "在您退出登录后继续保持访问",
        "scope_online_access": "在您保持登录期间保持访问",
    },
}


# -- choosing the language ---------------------------------------------------------------------------------


def supported(tag: str) -> str | None:
    """Our catalogue for one BCP 47 language tag (case-insensitive; `_` taken as `-`), or None."""
    tag = tag.strip()
    if not _TAG.match(tag):
        return None
    subtags = tag.lower().replace("_", "-").split("-")
    if subtags[0] == "en":
        return "en"
    if subtags[0] == "zh":
        rest = set(subtags[1:])
        if "hans" in rest or not rest & _TRADITIONAL:
            return "zh-CN"
    return None


def _accept_language(header: str) -> list[str]:
    """The tags of an Accept-Language header, best first (by q, then as listed); q=0 and `*` dropped."""
    weighted: list[tuple[float, int, str]] = []
    for position, item in enumerate(header.split(",")[: _MAX_TAGS * 2]):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if tag.strip() and tag.strip() != "*" and 0 < quality <= 1:
            weighted.append((-quality, position, tag.strip()))
    return [tag for _, _, tag in sorted(weighted)]


def choose_language(ui_locales: str | None = None, accept_language: str | None = None) -> str:
    """`ui_locales` first, then Accept-Language, then English (OpenID Connect Core 1.0 §3.1.2.1)."""
    candidates = (ui_locales or "").split()[:_MAX_TAGS] + _accept_language(accept_language or "")[:_MAX_TAGS]
    for tag in candidates:
        language = supported(tag)
        if language is not None:
            return language
    return DEFAULT


# -- looking words up --------------------------------------------------------------------------------------


def text(lang: str, key: str, /, **values: object) -> str:
    """Plain text in `lang` (English when the catalogue lacks it), with `{name}` placeholders filled in.
    Escape the result before putting it in HTML."""
    template = TEXTS.get(lang, {}).get(key) or TEXTS[DEFAULT][key]
    return template.format(**values) if values else template


def html(lang: str, key: str, /, **markup: str) -> str:
    """HTML: the escaped text, its placeholders filled with the given HTML fragments (escape them first)."""
    template = escape(TEXTS.get(lang, {}).get(key) or TEXTS[DEFAULT][key])
    return template.format(**markup) if markup else template


def plural(lang: str, key: str, count: int, /, **values: object) -> str:
    """`key_one` or `key_other` by count (English rules; Chinese has one form, kept under both keys)."""
    return text(lang, f"{key}_{'one' if count == 1 else 'other'}", count=count, **values)


# -- dates -------------------------------------------------------------------------------------------------

# Day and month names: the reminders' own (the pages a reminder's links open write dates the same way).
WHEN: dict[str, Callable[[datetime], str]] = {
    "en": lambda at: (
        f"{EN_WEEKDAYS[at.weekday()]} {at.day:02d} {EN_MONTHS[at.month - 1]} {at.year}, {at:%H:%M}"
    ),
    "zh-CN": lambda at: f"{at.year}年{at.month}月{at.day}日（{ZH_WEEKDAYS[at.weekday()]}）{at:%H:%M}",
}


def when(lang: str, moment: datetime) -> str:
    """A day and time (already in the clinic's zone) as people write it in `lang`."""
    return WHEN.get(lang, WHEN[DEFAULT])(moment)


# -- scopes in plain words (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html) ----------

_INTERACTIONS = ("read", "search", "create", "update", "delete")
_EN_VERBS = {"read": "read", "search": "search", "create": "create", "update": "change", "delete": "delete"}
_ZH_VERBS = {"read": "读取", "search": "搜索", "create": "创建", "update": "修改", "delete": "删除"}

# What Chinese readers call the record types an app is likely to ask for; any other type keeps its FHIR
# name ("Basic 记录"), which is what the app's documentation will call it too.
_ZH_TYPES = {
    "Account": "账户",
    "AllergyIntolerance": "过敏与不耐受",
    "Appointment": "预约",
    "AppointmentResponse": "预约回复",
    "AuditEvent": "审计事件",
    "CarePlan": "护理计划",
    "CareTeam": "护理团队",
    "ChargeItem": "收费项目",
    "Claim": "理赔申请",
    "ClaimResponse": "理赔答复",
    "ClinicalImpression": "临床评估",
    "Communication": "沟通",
    "Composition": "临床文书",
    "Condition": "疾病与诊断",
    "Consent": "知情同意",
    "Coverage": "医疗保险",
    "Device": "医疗器械",
    "DiagnosticReport": "诊断报告",
    "DocumentReference": "文档",
    "Encounter": "就诊",
    "EpisodeOfCare": "诊疗周期",
    "ExplanationOfBenefit": "理赔结算说明",
    "FamilyMemberHistory": "家族病史",
    "Flag": "提示标记",
    "Goal": "健康目标",
    "Group": "群组",
    "HealthcareService": "医疗服务",
    "ImagingStudy": "影像检查",
    "Immunization": "疫苗接种",
    "Invoice": "发票",
    "List": "列表",
    "Location": "地点",
    "Media": "影像资料",
    "Medication": "药品",
    "MedicationAdministration": "给药",
    "MedicationDispense": "配药",
    "MedicationRequest": "用药医嘱",
    "MedicationStatement": "用药情况",
    "NutritionOrder": "营养医嘱",
    "Observation": "检查与观察结果",
    "Organization": "机构",
    "Patient": "患者信息",
    "Person": "人员",
    "Practitioner": "医护人员",
    "PractitionerRole": "医护人员职务",
    "Procedure": "诊疗操作",
    "Provenance": "来源",
    "Questionnaire": "问卷",
    "QuestionnaireResponse": "问卷答复",
    "RelatedPerson": "相关人员",
    "RiskAssessment": "风险评估",
    "Schedule": "排班",
    "ServiceRequest": "检查检验申请",
    "Slot": "号源时段",
    "Specimen": "标本",
    "Task": "任务",
}


def _describe_en(scope: Scope) -> str:
    verbs = [_EN_VERBS[name] for name in _INTERACTIONS if name in scope.interactions]
    action = ", ".join(verbs[:-1]) + f" and {verbs[-1]}" if len(verbs) > 1 else (verbs or ["use"])[0]
    if scope.resource_type == "*":
        records = "all kinds of records"
    else:
        records = re.sub(r"(?<!^)(?=[A-Z])", " ", scope.resource_type).lower() + " records"
    whose = {
        "patient": "of the selected patient",
        "user": "that you are allowed to see",
        "system": "(system-wide)",
    }[scope.context]
    limited = " (only those matching: " + scope.text.split("?", 1)[1] + ")" if scope.restriction else ""
    return f"{action.capitalize()} {records} {whose}{limited}"


def _describe_zh(scope: Scope) -> str:
    # "读取和搜索所选患者的检查与观察结果记录": verbs, then whose, then what (Chinese puts the owner first).
    verbs = [_ZH_VERBS[name] for name in _INTERACTIONS if name in scope.interactions]
    action = "、".join(verbs[:-1]) + f"和{verbs[-1]}" if len(verbs) > 1 else (verbs or ["使用"])[0]
    whose = {"patient": "所选患者的", "user": "您有权查看的", "system": "全系统范围内的"}[scope.context]
    if scope.resource_type == "*":
        records = "所有类型的记录"
    elif scope.resource_type in _ZH_TYPES:
        records = _ZH_TYPES[scope.resource_type] + "记录"
    else:
        records = f" {scope.resource_type} 记录"
    limited = "（仅限符合 " + scope.text.split("?", 1)[1] + " 的记录）" if scope.restriction else ""
    return f"{action}{whose}{records}{limited}"


_DESCRIBE: dict[str, Callable[[Scope], str]] = {"en": _describe_en, "zh-CN": _describe_zh}


def describe_scope(scope_text: str, lang: str = DEFAULT) -> str:
    """A SMART scope in plain words, e.g. `patient/Observation.rs` -> "Read and search observation records
    of the selected patient" / "读取和搜索所选患者的检查与观察结果记录". Unknown scopes are shown as
    they are."""
    key = f"scope_{scope_text}"
    if key in TEXTS[DEFAULT]:
        return text(lang, key)
    scope = parse_scope(scope_text)
    if scope is None:
        return scope_text
    return _DESCRIBE.get(lang, _describe_en)(scope)

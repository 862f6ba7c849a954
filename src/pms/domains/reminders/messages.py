"""Reminder texts per language (English and Simplified Chinese to start). Pure: no I/O, no clock.

Add a language by adding a `Templates` to `TEMPLATES`; a patient whose language has none gets English.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

EN_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
EN_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
ZH_WEEKDAYS = ("星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期日")


@dataclass(frozen=True)
class Message:
    language: str
    subject: str
    text: str  # the email body
    sms: str


@dataclass(frozen=True)
class Templates:
    subject: str
    text: str
    sms: str
    with_practitioner: str
    when: Callable[[datetime], str]


def _when_en(start: datetime) -> str:
    return (
        f"{EN_WEEKDAYS[start.weekday()]} {start.day} {EN_MONTHS[start.month - 1]} {start.year}, {start:%H:%M}"
    )


def _when_zh(start: datetime) -> str:
    return f"{start.year}年{start.month}月{start.day}日（{ZH_WEEKDAYS[start.weekday()]}）{start:%H:%M}"


TEMPLATES: dict[str, Templates] = {
    "en": Templates(
        subject="Reminder: your appointment on {when}",
        text=(
            "Hello {name},\n\n"
            "This is a reminder of your appointment at {clinic} on {when}{with_practitioner}.\n\n"
            "Confirm you are coming: {confirm}\n"
            "Cancel the appointment: {cancel}\n\n"
            "To change the time, please call us.\n"
        ),
        sms="{clinic}: reminder of your appointment on {when}. Confirm: {confirm} Cancel: {cancel}",
        with_practitioner=" with {practitioner}",
        when=_when_en,
    ),
    "zh-CN": Templates(
        subject="预约提醒：{when}",
        text=(
            "{name}，您好：\n\n"
            "提醒您于 {when} 在{clinic}就诊{with_practitioner}。\n\n"
            "确认就诊：{confirm}\n"
            "取消预约：{cancel}\n\n"
            "如需改期，请致电我们。\n"
        ),
        sms="{clinic}提醒：您的预约时间为{when}。确认：{confirm} 取消：{cancel}",
        with_practitioner="（医生：{practitioner}）",
        when=_when_zh,
    ),
}


def template_language(tag: str) -> str:
    """The templates' language for a BCP 47 tag: any Chinese but Traditional-script ones -> zh-CN."""
    lowered = tag.lower()
    if lowered.startswith("zh") and not any(t in lowered for t in ("hant", "-tw", "-hk", "-mo")):
        return "zh-CN"
    return "en"


def render(
    *,
    language: str,
    name: str,
    clinic: str,
    start: datetime,
    practitioner: str | None,
    confirm_url: str,
    cancel_url: str,
) -> Message:
    """`start` already in the clinic's time zone."""
    chosen = template_language(language)
    templates = TEMPLATES[chosen]
    when = templates.when(start)
    values = {
        "name": name or ("Patient" if chosen == "en" else "患者"),
        "clinic": clinic,
        "when": when,
        "with_practitioner": templates.with_practitioner.format(practitioner=practitioner)
        if practitioner
        else "",
        "confirm": confirm_url,
        "cancel": cancel_url,
    }
    return Message(
        language=chosen,
        subject=templates.subject.format(**values),
        text=templates.text.format(**values),
        sms=templates.sms.format(**values),
    )

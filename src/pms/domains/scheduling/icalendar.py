"""A practitioner's appointments as an iCalendar feed (RFC 5545), for the calendar app on their phone.

What a phone calendar shows is outside the clinic's control, so an event carries the least that makes
the day workable: visit type, the patient's initials, room, video link and status - no names, no
reasons, no notes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from pms.domains.scheduling.codes import TELEHEALTH_LINK_URL, extension_value

_STATUS = {"pending": "TENTATIVE", "proposed": "TENTATIVE", "cancelled": "CANCELLED", "noshow": "CANCELLED"}


def escape(text: str) -> str:
    """TEXT value escaping (RFC 5545 §3.3.11)."""
    return (
        text.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
    )


def fold(line: str) -> str:
    """Lines longer than 75 octets continue on the next line after CRLF and a space (§3.1)."""
    encoded = line.encode()
    if len(encoded) <= 75:
        return line
    parts: list[str] = []
    current = b""
    for char in line:
        piece = char.encode()
        if len(current) + len(piece) > (75 if not parts else 74):
            parts.append(current.decode())
            current = b""
        current += piece
    parts.append(current.decode())
    return "\r\n ".join(parts)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _instant(value: str) -> str:
    return _stamp(datetime.fromisoformat(value.replace("Z", "+00:00")))


def initials(patient: Mapping[str, Any] | None) -> str:
    names = (patient or {}).get("name") or []
    if not names:
        return "patient"
    name = names[0]
    parts = [*(name.get("given") or []), name.get("family") or ""]
    letters = "".join(p[0].upper() for p in parts if p)
    return ".".join(letters) + "." if letters else "patient"


def _summary(appointment: Mapping[str, Any], patients: Mapping[str, Mapping[str, Any]]) -> str:
    visit = "Appointment"
    for concept in appointment.get("serviceType") or ():
        coding = (concept.get("coding") or [{}])[0]
        visit = concept.get("text") or coding.get("display") or coding.get("code") or visit
        break
    who = [
        initials(patients.get(p["actor"]["reference"]))
        for p in appointment.get("participant") or ()
        if str((p.get("actor") or {}).get("reference", "")).startswith("Patient/")
    ]
    return f"{visit} - {', '.join(who)}" if who else visit


def calendar(
    name: str,
    appointments: Iterable[Mapping[str, Any]],
    *,
    patients: Mapping[str, Mapping[str, Any]],
    locations: Mapping[str, str],
    host: str,
    now: datetime,
) -> str:
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//PMS//Scheduling//EN",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        f"X-WR-CALNAME:{escape(name)}",
    ]
    for appointment in appointments:
        if not appointment.get("start") or not appointment.get("end"):
            continue
        lines += [
            "BEGIN:VEVENT",
            f"UID:{appointment['id']}@{host}",
            f"DTSTAMP:{_stamp(now)}",
            f"DTSTART:{_instant(appointment['start'])}",
            f"DTEND:{_instant(appointment['end'])}",
            f"SUMMARY:{escape(_summary(appointment, patients))}",
            f"STATUS:{_STATUS.get(appointment.get('status', ''), 'CONFIRMED')}",
            f"SEQUENCE:{int((appointment.get('meta') or {}).get('versionId', '1'))}",
        ]
        rooms = [
            locations[ref]
            for p in appointment.get("participant") or ()
            if (ref := str((p.get("actor") or {}).get("reference", ""))) in locations
        ]
        if rooms:
            lines.append(f"LOCATION:{escape(', '.join(rooms))}")
        link = extension_value(appointment, TELEHEALTH_LINK_URL, "valueUrl")
        if link:
            lines += [f"URL:{link}", f"DESCRIPTION:{escape('Video visit: ' + link)}"]
        lines.append("END:VEVENT")
    lines.append("END:VCALENDAR")
    return "".join(fold(line) + "\r\n" for line in lines)

"""The pure parts of reminders: offsets, due times, languages, contact points, signed links."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pms.domains.reminders.links import LinkSigner
from pms.domains.reminders.messages import render, template_language
from pms.domains.reminders.patients import OPT_OUT_URL, contact, reachable
from pms.domains.reminders.sweep import due_offset, parse_offsets

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
H = timedelta(hours=1)


class TestOffsets:
    def test_parsed_largest_first(self) -> None:
        assert parse_offsets("2h, 48h,90m,1d") == (48 * H, 24 * H, 2 * H, timedelta(minutes=90))

    @pytest.mark.parametrize("spec", ["", "2", "h", "0h", "-2h", "2w", "2h,x"])
    def test_bad_specs_are_refused(self, spec: str) -> None:
        with pytest.raises(ValueError):
            parse_offsets(spec)

    @pytest.mark.parametrize(
        ("start", "due"),
        [
            (NOW + 50 * H, None),  # not yet
            (NOW + 48 * H, 48 * H),
            (NOW + 30 * H, 48 * H),
            (NOW + 2 * H, 2 * H),  # both reached: the smaller one
            (NOW + timedelta(minutes=1), 2 * H),
            (NOW, None),  # started
            (NOW - H, None),
        ],
    )
    def test_the_smallest_offset_reached_is_due(self, start: datetime, due: timedelta | None) -> None:
        assert due_offset(start, NOW, (48 * H, 2 * H)) == due


class TestLanguages:
    @pytest.mark.parametrize(
        ("tag", "templates"),
        [("zh", "zh-CN"), ("zh-CN", "zh-CN"), ("zh-Hans-SG", "zh-CN"), ("zh-TW", "en"), ("zh-Hant", "en"),
         ("en-GB", "en"), ("fr", "en"), ("", "en")],
    )  # fmt: skip
    def test_template_choice(self, tag: str, templates: str) -> None:
        assert template_language(tag) == templates

    def test_chinese_message(self) -> None:
        message = render(
            language="zh-CN", name="王伟", clinic="港湾诊所", start=datetime(2026, 12, 1, 14, 30),
            practitioner="李医生", confirm_url="https://c/1", cancel_url="https://c/2",
        )  # fmt: skip
        assert message.subject == "预约提醒：2026年12月1日（星期二）14:30"
        assert "王伟，您好" in message.text and "（医生：李医生）" in message.text
        assert message.sms.endswith("确认：https://c/1 取消：https://c/2")


class TestPatients:
    def test_best_ranked_current_email_and_a_mobile_never_a_landline(self) -> None:
        patient = {
            "resourceType": "Patient",
            "name": [{"given": ["Ada"], "family": "Lovelace"}],
            "telecom": [
                {"system": "email", "value": "old@x.test", "rank": 1, "period": {"end": "2020-01-01"}},
                {"system": "email", "value": "second@x.test", "rank": 3},
                {"system": "email", "value": "first@x.test", "rank": 2},
                {"system": "phone", "use": "home", "value": "+100"},
                {"system": "phone", "use": "mobile", "value": "+200"},
            ],
            "communication": [
                {"language": {"coding": [{"code": "en"}]}},
                {"language": {"coding": [{"code": "zh-CN"}]}, "preferred": True},
            ],
        }
        found = contact(patient)
        assert (found.name, found.email, found.phone, found.language) == (
            "Ada Lovelace", "first@x.test", "+200", "zh-CN",
        )  # fmt: skip
        assert contact({"telecom": [{"system": "phone", "use": "home", "value": "+1"}]}).phone is None

    @pytest.mark.parametrize(
        ("patient", "expected"),
        [
            ({}, True),
            ({"extension": [{"url": OPT_OUT_URL, "valueBoolean": True}]}, False),
            ({"extension": [{"url": OPT_OUT_URL, "valueBoolean": False}]}, True),
            ({"active": False}, False),
            ({"deceasedBoolean": True}, False),
            ({"deceasedDateTime": "2026-01-01"}, False),
        ],
    )
    def test_who_may_be_reminded(self, patient: dict[str, object], expected: bool) -> None:
        assert reachable(patient) is expected


class TestLinks:
    signer = LinkSigner(b"k")

    def test_a_token_is_bound_to_appointment_action_and_time(self) -> None:
        token = self.signer.token("a1", "cancel", expires=NOW + H)
        assert self.signer.verify(token, "a1", "cancel", now=NOW)
        assert not self.signer.verify(token, "a1", "cancel", now=NOW + 2 * H)  # expired
        assert not self.signer.verify(token, "a2", "cancel", now=NOW)
        assert not self.signer.verify(token, "a1", "confirm", now=NOW)
        assert not LinkSigner(b"other").verify(token, "a1", "cancel", now=NOW)
        stamp, mac = token.split(".")
        assert not self.signer.verify(f"{int(stamp) + 3600}.{mac}", "a1", "cancel", now=NOW)
        assert not self.signer.verify("garbage", "a1", "cancel", now=NOW)

    def test_url(self) -> None:
        url = self.signer.url("https://clinic.test/", "a1", "confirm", expires=NOW)
        assert url.startswith("https://clinic.test/api/appointments/a1/respond?action=confirm&token=")

"""AuditEvent builder: R4-valid events with the codes, agents and entities the audit trail relies on."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from pms.audit.events import (
    INTERACTIONS,
    Actor,
    Outcome,
    Source,
    Touched,
    access_denied_event,
    break_glass_event,
    login_event,
    logout_event,
    outcome_for_status,
    rest_event,
    token_event,
)
from pms.fhir.validation import validate_resource

NOW = datetime(2026, 11, 22, 12, 30, 15, 123456, tzinfo=UTC)
USER = Actor(
    username="alice",
    fhir_user="Practitioner/p1",
    client_id="pms-spa",
    address="203.0.113.7",
    roles=("physician",),
    token_id="jti-1",
)
BACKEND = Actor(client_id="acme-lab", address="198.51.100.2", token_id="jti-2")


def valid(event: dict[str, Any]) -> dict[str, Any]:
    assert validate_resource(event) == []
    return event


def codes(coding: dict[str, Any]) -> tuple[str, str]:
    return coding["system"], coding["code"]


def entity_refs(event: dict[str, Any], role: str) -> list[str]:
    return [e["what"]["reference"] for e in event.get("entity", []) if e.get("role", {}).get("code") == role]


class TestRestInteractions:
    @pytest.mark.parametrize("interaction", sorted(INTERACTIONS))
    def test_every_interaction_gives_a_valid_rest_event(self, interaction: Any) -> None:
        event = valid(rest_event(interaction=interaction, actor=USER, recorded=NOW, resources=["Patient/1"]))
        assert codes(event["type"]) == ("http://terminology.hl7.org/CodeSystem/audit-event-type", "rest")
        assert [codes(c) for c in event["subtype"]] == [
            ("http://hl7.org/fhir/restful-interaction", interaction)
        ]

    @pytest.mark.parametrize(
        "interaction, action",
        [
            ("create", "C"),
            ("read", "R"),
            ("vread", "R"),
            ("history-instance", "R"),
            ("update", "U"),
            ("patch", "U"),
            ("delete", "D"),
            ("search-type", "E"),
            ("transaction", "E"),
            ("operation", "E"),
        ],
    )
    def test_actions(self, interaction: Any, action: str) -> None:
        assert rest_event(interaction=interaction, actor=USER, recorded=NOW)["action"] == action

    def test_recorded_is_a_utc_instant(self) -> None:
        local = NOW.astimezone(timezone(timedelta(hours=2)))
        assert (
            rest_event(interaction="read", actor=USER, recorded=local)["recorded"]
            == "2026-11-22T12:30:15.123Z"
        )
        with pytest.raises(ValueError):
            rest_event(interaction="read", actor=USER, recorded=NOW.replace(tzinfo=None))

    def test_unknown_interactions_are_refused(self) -> None:
        with pytest.raises(ValueError):
            rest_event(interaction="frobnicate", actor=USER, recorded=NOW)  # type: ignore[arg-type]

    def test_outcome_and_description(self) -> None:
        event = valid(
            rest_event(
                interaction="read",
                actor=USER,
                recorded=NOW,
                outcome=outcome_for_status(500),
                outcome_desc="database unavailable",
            )
        )
        assert (event["outcome"], event["outcomeDesc"]) == ("8", "database unavailable")
        assert "purposeOfEvent" not in event


class TestAgents:
    def test_the_user_is_the_requestor_and_the_app_is_not(self) -> None:
        user, app = valid(rest_event(interaction="read", actor=USER, recorded=NOW))["agent"]
        assert user["who"] == {"reference": "Practitioner/p1", "display": "alice"}
        assert user["altId"] == "alice"
        assert user["requestor"] is True
        assert user["role"] == [{"text": "physician"}]
        assert user["policy"] == ["jti-1"]
        assert user["network"] == {"address": "203.0.113.7", "type": "2"}
        assert app["who"] == {"display": "pms-spa"}
        assert app["requestor"] is False
        assert codes(app["type"]["coding"][0]) == ("http://dicom.nema.org/resources/ontology/DCM", "110150")
        assert "network" not in app

    def test_a_user_without_fhir_user_is_named_by_username(self) -> None:
        user = rest_event(interaction="read", actor=Actor(username="bob"), recorded=NOW)["agent"][0]
        assert user["who"] == {"display": "bob"}

    def test_a_backend_service_is_the_requestor(self) -> None:
        (app,) = valid(rest_event(interaction="create", actor=BACKEND, recorded=NOW))["agent"]
        assert app["who"] == {"display": "acme-lab"}
        assert app["requestor"] is True
        assert app["network"] == {"address": "198.51.100.2", "type": "2"}
        assert app["policy"] == ["jti-2"]

    def test_an_anonymous_caller_still_has_one_agent(self) -> None:
        (agent,) = valid(
            access_denied_event(interaction="read", actor=Actor(), recorded=NOW, reason="no token")
        )["agent"]
        assert agent["requestor"] is True

    def test_the_source_is_this_server(self) -> None:
        event = valid(
            rest_event(
                interaction="read", actor=USER, recorded=NOW, source=Source("PMS", "https://ehr.example")
            )
        )
        assert event["source"]["observer"] == {"display": "PMS"}
        assert event["source"]["site"] == "https://ehr.example"


class TestEntities:
    def test_resources_are_versioned_references_with_their_type(self) -> None:
        event = valid(
            rest_event(
                interaction="update",
                actor=USER,
                recorded=NOW,
                resources=[Touched("Observation", "o1", "3"), "Condition/c1"],
            )
        )
        first, second = event["entity"]
        assert first["what"] == {"reference": "Observation/o1/_history/3"}
        assert codes(first["type"]) == ("http://hl7.org/fhir/resource-types", "Observation")
        assert codes(first["role"]) == ("http://terminology.hl7.org/CodeSystem/object-role", "4")
        assert second["what"] == {"reference": "Condition/c1"}

    def test_each_patient_of_a_search_result_is_an_entity_with_the_query(self) -> None:
        query = "Observation?code=http://loinc.org|1234-5&_count=50"
        event = valid(
            rest_event(
                interaction="search-type",
                actor=USER,
                recorded=NOW,
                resources=["Observation/o1", "Observation/o2", "Patient/a"],
                patients=["a", "Patient/b", "b"],
                query=query,
            )
        )
        assert entity_refs(event, "1") == ["Patient/a", "Patient/b"]  # deduplicated
        (query_entity,) = [e for e in event["entity"] if e.get("role", {}).get("code") == "24"]
        assert base64.b64decode(query_entity["query"]).decode() == query
        assert "name" not in query_entity  # sev-1: name or query, not both

    def test_an_operation_is_named(self) -> None:
        event = valid(
            rest_event(
                interaction="operation",
                actor=USER,
                recorded=NOW,
                resources=["Patient/a"],
                operation="everything",
            )
        )
        assert event["entity"][-1]["name"] == "$everything"

    def test_parsing_references(self) -> None:
        assert Touched.parse("Patient/1/_history/2") == Touched("Patient", "1", "2")
        assert Touched.parse("Observation") == Touched("Observation")
        assert Touched("Observation").reference is None
        with pytest.raises(ValueError):
            Touched.parse("Patient/1/extra")


class TestDenials:
    def test_a_denial_is_a_failed_rest_event_with_its_reason(self) -> None:
        event = valid(
            access_denied_event(
                interaction="read",
                actor=USER,
                recorded=NOW,
                reason="role physician may not read AuditEvent",
                resources=["AuditEvent/x"],
            )
        )
        assert event["outcome"] == "4"
        assert event["outcomeDesc"] == "role physician may not read AuditEvent"
        assert codes(event["subtype"][0]) == ("http://hl7.org/fhir/restful-interaction", "read")

    def test_a_serious_denial(self) -> None:
        event = access_denied_event(
            interaction="transaction",
            actor=USER,
            recorded=NOW,
            reason="patient B's data asked for with patient A's token",
            patients=["B"],
            outcome=Outcome.SERIOUS_FAILURE,
        )
        assert valid(event)["outcome"] == "8"
        assert entity_refs(event, "1") == ["Patient/B"]

    def test_a_denial_cannot_succeed(self) -> None:
        with pytest.raises(ValueError):
            access_denied_event(
                interaction="read", actor=USER, recorded=NOW, reason="x", outcome=Outcome.SUCCESS
            )

    @pytest.mark.parametrize("status, outcome", [(200, "0"), (304, "0"), (401, "4"), (403, "4"), (503, "8")])
    def test_outcome_from_http_status(self, status: int, outcome: str) -> None:
        assert outcome_for_status(status) == outcome


DCM = "http://dicom.nema.org/resources/ontology/DCM"


class TestSignIn:
    def test_login(self) -> None:
        event = valid(login_event(actor=USER, recorded=NOW))
        assert codes(event["type"]) == (DCM, "110114")
        assert [codes(c) for c in event["subtype"]] == [(DCM, "110122")]
        assert (event["action"], event["outcome"]) == ("E", "0")

    def test_a_failed_login_names_the_attempted_username(self) -> None:
        event = valid(
            login_event(
                actor=Actor(username="mallory", address="192.0.2.1"),
                recorded=NOW,
                outcome=Outcome.MINOR_FAILURE,
                outcome_desc="invalid credentials",
            )
        )
        assert event["outcome"] == "4"
        assert event["agent"][0]["altId"] == "mallory"
        assert event["agent"][0]["network"]["address"] == "192.0.2.1"

    def test_logout(self) -> None:
        event = valid(logout_event(actor=USER, recorded=NOW, outcome_desc="idle timeout"))
        assert [codes(c) for c in event["subtype"]] == [(DCM, "110123")]
        assert event["outcomeDesc"] == "idle timeout"


class TestTokenGrants:
    def test_a_granted_token_records_grant_scope_and_patient(self) -> None:
        event = valid(
            token_event(
                actor=USER,
                recorded=NOW,
                grant_type="authorization_code",
                scope="launch/patient patient/*.read",
                patient="p9",
            )
        )
        assert codes(event["type"]) == (DCM, "110114")
        assert codes(event["subtype"][0]) == ("urn:ihe:event-type-code", "ITI-71")
        details = {d["type"]: d["valueString"] for d in event["entity"][0]["detail"]}
        assert details == {"grant_type": "authorization_code", "scope": "launch/patient patient/*.read"}
        assert entity_refs(event, "1") == ["Patient/p9"]

    def test_a_refused_token_request(self) -> None:
        event = valid(
            token_event(
                actor=BACKEND,
                recorded=NOW,
                grant_type="client_credentials",
                outcome=Outcome.MINOR_FAILURE,
                outcome_desc="invalid_client: assertion signature",
            )
        )
        assert event["outcome"] == "4"
        assert entity_refs(event, "1") == []


class TestBreakTheGlass:
    def test_the_grant_is_a_security_alert_for_one_patient_with_the_reason(self) -> None:
        event = valid(
            break_glass_event(
                actor=USER,
                recorded=NOW,
                patient="Patient/p7",
                reason="unconscious patient in the emergency room",
                expires=NOW + timedelta(hours=1),
            )
        )
        assert codes(event["type"]) == (DCM, "110113")
        assert codes(event["subtype"][0]) == (DCM, "110127")
        btg = ("http://terminology.hl7.org/CodeSystem/v3-ActReason", "BTG")
        assert codes(event["purposeOfEvent"][0]["coding"][0]) == btg
        assert codes(event["agent"][0]["purposeOfUse"][0]["coding"][0]) == btg
        (patient,) = event["entity"]
        assert patient["what"] == {"reference": "Patient/p7"}
        details = {d["type"]: d["valueString"] for d in patient["detail"]}
        assert details == {
            "reason": "unconscious patient in the emergency room",
            "expires": "2026-11-22T13:30:15.123Z",
        }

    def test_access_under_emergency_is_flagged(self) -> None:
        event = valid(
            rest_event(interaction="read", actor=USER, recorded=NOW, resources=["Patient/p7"], emergency=True)
        )
        assert event["purposeOfEvent"][0]["coding"][0]["code"] == "BTG"

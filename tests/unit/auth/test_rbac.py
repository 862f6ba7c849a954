"""Roles as data: the shipped roles.json and the loader of auth_role rows."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from pms.auth.rbac import (
    Role,
    RoleError,
    default_roles,
    role_from_grants,
    role_rows,
    roles_from_rows,
    shipped_document,
)
from pms.auth.scopes import INTERACTIONS, WRITES
from pms.fhir.definitions import resource_types
from pms.fhir.searchparams import default_registry

ALL_TYPES = frozenset(resource_types())
DOC: Any = shipped_document()
CLINICAL = frozenset(DOC["type_groups"]["@clinical"]["types"])
FINANCIAL = frozenset(DOC["type_groups"]["@financial"]["types"])
READS = ("read", "vread", "history", "search")


def granted(role: Role, resource_type: str) -> set[str]:
    return {i for i in INTERACTIONS if role.access(i, resource_type) is not None}


class TestShippedDocument:
    def test_the_six_roles_with_descriptions(self) -> None:
        roles = default_roles()
        assert set(roles) == {"admin", "physician", "nurse", "receptionist", "billing", "patient"}
        assert all(len(role.description) > 80 for role in roles.values())

    def test_type_groups_partition_the_r4_types(self) -> None:
        listed = Counter(t for group in DOC["type_groups"].values() for t in group["types"])
        assert set(listed) == ALL_TYPES
        assert [t for t, n in listed.items() if n > 1] == []
        assert all(group["description"] for group in DOC["type_groups"].values())

    def test_patient_compartment_group_is_the_r4_definition(self) -> None:
        listed = set(DOC["derived_groups"]["@patient-compartment"]["types"])
        assert listed == set(default_registry().compartment_members("Patient"))

    def test_rows_round_trip(self) -> None:
        assert roles_from_rows(role_rows()) == dict(default_roles())


class TestAdmin:
    def test_everything_but_audit_event_writes(self) -> None:
        admin = default_roles()["admin"]
        for t in ALL_TYPES - {"AuditEvent"}:
            assert granted(admin, t) == set(INTERACTIONS), t
        assert granted(admin, "AuditEvent") == set(READS)


class TestAuditEventIsAppendOnlyForEveryRole:
    @pytest.mark.parametrize("name", sorted(default_roles()))
    def test_no_role_changes_audit_events(self, name: str) -> None:
        assert granted(default_roles()[name], "AuditEvent") & (WRITES | {"operation"}) == set()


class TestClinicians:
    @pytest.mark.parametrize("name", ["physician", "nurse"])
    def test_clinical_and_administrative_records(self, name: str) -> None:
        role = default_roles()[name]
        for t in ("Observation", "Condition", "DocumentReference", "Encounter", "Appointment", "Slot"):
            assert {"read", "search", "create", "update", "patch"} <= granted(role, t), t
        for t in ("Practitioner", "Organization", "Medication", "ValueSet", "Coverage"):
            assert granted(role, t) == set(READS), t
        assert granted(role, "AuditEvent") == set()
        assert granted(role, "Claim") == set()
        assert "delete" not in granted(role, "Patient")

    def test_physician_deletes_clinical_records_nurse_does_not(self) -> None:
        physician, nurse = default_roles()["physician"], default_roles()["nurse"]
        for t in CLINICAL:
            assert "delete" in granted(physician, t), t
            assert "delete" not in granted(nurse, t), t
            assert granted(nurse, t) == granted(physician, t) - {"delete"}, t


class TestReceptionist:
    def test_sees_no_clinical_content(self) -> None:
        receptionist = default_roles()["receptionist"]
        for t in CLINICAL | {"Consent", "Group", "Person", "AuditEvent"}:
            assert granted(receptionist, t) == set(), t
        for t in ("Observation", "Condition", "DocumentReference", "Communication", "Composition"):
            assert t in CLINICAL

    def test_front_desk_types(self) -> None:
        receptionist = default_roles()["receptionist"]
        edit = {*READS, "create", "update", "patch"}
        for t in ("Patient", "Coverage", "RelatedPerson"):
            assert granted(receptionist, t) == edit, t
        for t in ("Appointment", "AppointmentResponse", "Schedule", "Slot"):
            assert granted(receptionist, t) == edit | {"delete"}, t
        for t in ("Practitioner", "PractitionerRole", "Organization", "Location", "HealthcareService"):
            assert granted(receptionist, t) == set(READS), t


class TestBilling:
    def test_financial_records_and_demographics_only(self) -> None:
        billing = default_roles()["billing"]
        for t in FINANCIAL:
            assert granted(billing, t) == {*READS, "create", "update", "patch"}, t
        assert granted(billing, "Patient") == set(READS)
        for t in CLINICAL:
            assert granted(billing, t) == set(), t


class TestPatientRole:
    def test_own_compartment_reads_and_three_creates(self) -> None:
        patient = default_roles()["patient"]
        assert patient.access("read", "Observation") == "compartment"
        assert patient.access("search", "Patient") == "compartment"
        for t in ("Appointment", "QuestionnaireResponse", "Communication"):
            assert patient.access("create", t) == "compartment"
        assert patient.access("create", "Observation") is None
        assert patient.access("update", "Appointment") is None
        assert patient.access("read", "Group") is None  # lists other patients
        assert patient.access("read", "Practitioner") == "all"  # directory, to book
        assert patient.access("read", "Claim") == "compartment"


class TestLoader:
    def test_rows_with_json_text_and_groups(self) -> None:
        rows = [
            {
                "name": "lab-tech",
                "description": "Lab results",
                "grants": json.dumps(
                    {
                        "allow": [
                            {
                                "types": ["Observation", "DiagnosticReport"],
                                "interactions": ["@read", "@edit"],
                            },
                            {"types": ["@directory"], "interactions": ["read"]},
                        ],
                        "deny": [{"types": ["Observation"], "interactions": ["patch"]}],
                    }
                ),
            }
        ]
        role = roles_from_rows(rows)["lab-tech"]
        assert granted(role, "Observation") == {*READS, "create", "update"}
        assert granted(role, "DiagnosticReport") == {*READS, "create", "update", "patch"}
        assert granted(role, "Location") == {"read"}
        assert granted(role, "Condition") == set()

    def test_wildcards_and_exclusions(self) -> None:
        role = role_from_grants(
            "r", "", {"allow": [{"types": ["*"], "except_types": ["@financial"], "interactions": ["*"]}]}
        )
        assert granted(role, "Observation") == set(INTERACTIONS)
        assert granted(role, "Claim") == set()

    def test_deny_wins(self) -> None:
        role = role_from_grants(
            "r",
            "",
            {
                "allow": [{"types": ["Patient"], "interactions": ["*"]}],
                "deny": [{"types": ["*"], "interactions": ["delete"]}],
            },
        )
        assert granted(role, "Patient") == set(INTERACTIONS) - {"delete"}

    @pytest.mark.parametrize(
        "grants",
        [
            {"allow": [{"types": ["Foo"], "interactions": ["read"]}]},
            {"allow": [{"types": ["@nope"], "interactions": ["read"]}]},
            {"allow": [{"types": ["Patient"], "interactions": ["write"]}]},
            {"allow": [{"types": ["Patient"], "interactions": []}]},
            {"allow": [{"types": "Patient", "interactions": ["read"]}]},
            {"allow": [{"types": ["Patient"], "interactions": ["read"], "compartment": "Encounter"}]},
            {"allow": [{"types": ["Patient"], "interactions": ["read"], "effect": "allow"}]},
            {"allow": {"types": ["Patient"]}},
            {"grant": []},
            [],
        ],
    )
    def test_invalid_definitions_raise(self, grants: Any) -> None:
        with pytest.raises(RoleError):
            role_from_grants("bad", "", grants)

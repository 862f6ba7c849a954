"""The access policy: scopes x roles, compartments, registrations, break-the-glass, append-only audit."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pms.auth.context import AccessContext, Principal
from pms.auth.policy import (
    AnyOf,
    Restriction,
    check_resource,
    check_search,
    decide,
    include_restrictions,
    may_access_resource,
    may_write,
    require,
    search_restrictions,
)
from pms.auth.rbac import Role, Rule, shipped_document
from pms.auth.scopes import INTERACTIONS, Interaction, parse_scopes
from pms.core.errors import AppError
from pms.fhir import extract
from pms.fhir.definitions import resource_types
from pms.fhir.search import Criterion, ReferenceValue, parse_search
from pms.fhir.searchparams import default_registry

LAB = "http://terminology.hl7.org/CodeSystem/observation-category"


def user(roles: str, scopes: str = "user/*.*", **kw: Any) -> AccessContext:
    principal = Principal(
        "u-1", "user", username="u", roles=frozenset(roles.split()), scopes=parse_scopes(scopes), **kw
    )
    return AccessContext.create(principal)


def patient_user(patient_id: str, scopes: str = "patient/*.cruds", **kw: Any) -> AccessContext:
    principal = Principal(
        f"p-{patient_id}",
        "patient",
        fhir_user=f"Patient/{patient_id}",
        roles=frozenset({"patient"}),
        scopes=parse_scopes(scopes),
        patient=patient_id,
        **kw,
    )
    return AccessContext.create(principal)


def client(scopes: str, registered: str | None) -> AccessContext:
    principal = Principal("lab", "client", client_id="lab", scopes=parse_scopes(scopes))
    return AccessContext.create(principal, client_scopes=registered)


def observation(
    patient: str, *, category: str = "laboratory", oid: str = "o1", **extra: Any
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "category": [{"coding": [{"system": LAB, "code": category}]}],
        "code": {"text": "x"},
        "subject": {"reference": f"Patient/{patient}"},
        **extra,
    }


def references(restrictions: list[Restriction]) -> Iterator[str]:
    """Every reference value in the restrictions (through AnyOf)."""
    for r in restrictions:
        if isinstance(r, AnyOf):
            for group in r.alternatives:
                yield from references(list(group))
        else:
            yield from (v.value for v in r.values if isinstance(v, ReferenceValue))


class TestPatientCannotReadAnotherPatient:
    def test_by_resource_check(self) -> None:
        a = patient_user("A")
        assert may_access_resource(a, observation("A"))
        assert not may_access_resource(a, observation("B"))
        assert not may_access_resource(a, observation("B"), interaction="vread")
        assert not check_resource(a, "read", observation("B")).allowed

    def test_by_search_restriction(self) -> None:
        restrictions = search_restrictions(patient_user("A"), "Observation")
        assert restrictions == [
            AnyOf(
                (
                    (
                        Criterion(
                            "subject", "reference", values=(ReferenceValue("Patient/A", "Patient", "A"),)
                        ),
                    ),
                    (
                        Criterion(
                            "performer", "reference", values=(ReferenceValue("Patient/A", "Patient", "A"),)
                        ),
                    ),
                )
            )
        ]
        assert set(references(restrictions)) == {"Patient/A"}

    def test_criteria_are_what_the_search_parser_builds(self) -> None:
        """So the storage compiles them like any search parameter."""
        registry = default_registry()
        (anyof,) = search_restrictions(patient_user("A"), "Observation")
        assert isinstance(anyof, AnyOf)
        parsed = [
            parse_search("Observation", [(c, "Patient/A")], registry).criteria
            for c in ("subject", "performer")
        ]
        assert list(anyof.alternatives) == parsed
        (patient,) = search_restrictions(patient_user("A"), "Patient")
        assert isinstance(patient, AnyOf)
        assert patient.alternatives[0] == parse_search("Patient", [("_id", "A")], registry).criteria

    def test_own_patient_resource_is_in_the_compartment(self) -> None:
        a = patient_user("A")
        assert may_access_resource(a, {"resourceType": "Patient", "id": "A"})
        assert not may_access_resource(a, {"resourceType": "Patient", "id": "B"})
        (anyof,) = search_restrictions(a, "Patient")
        assert isinstance(anyof, AnyOf)
        assert {group[0].code for group in anyof.alternatives if isinstance(group[0], Criterion)} == {
            "_id",
            "link",
        }

    def test_any_compartment_parameter_counts(self) -> None:
        a = patient_user("A")
        performed = observation("B", performer=[{"reference": "Patient/A"}])
        assert may_access_resource(a, performed)

    def test_references_elsewhere_do_not_count(self) -> None:
        a = patient_user("A")
        remote = observation("A")
        remote["subject"] = {"reference": "https://other.example/fhir/Patient/A"}
        assert not may_access_resource(a, remote)
        assert not may_access_resource(a, observation("A", oid="x") | {"subject": {"display": "A"}})

    def test_types_outside_the_compartment_are_refused(self) -> None:
        decision = decide(patient_user("A"), "read", "Practitioner")
        assert not decision.allowed and "compartment" in decision.reason
        assert not decide(patient_user("A", "patient/Practitioner.rs"), "search", "Practitioner").allowed

    def test_patient_scope_without_patient_context_grants_nothing(self) -> None:
        ctx = user("physician", "patient/*.rs")
        decision = decide(ctx, "read", "Observation")
        assert not decision.allowed and "launch/patient" in decision.reason

    def test_clinician_app_with_patient_context(self) -> None:
        ctx = user("physician", "patient/*.rs", patient="A")
        assert may_access_resource(ctx, observation("A"))
        assert not may_access_resource(ctx, observation("B"))
        assert set(references(search_restrictions(ctx, "Condition"))) == {"Patient/A"}

    def test_portal_patient_with_user_scopes_is_still_limited_by_the_role(self) -> None:
        a = patient_user("A", "user/*.*")
        assert may_access_resource(a, observation("A"))
        assert not may_access_resource(a, observation("B"))
        assert set(references(search_restrictions(a, "Observation"))) == {"Patient/A"}
        assert not decide(a, "read", "Group").allowed


class TestResourceChecksAgreeWithTheIndexer:
    @pytest.mark.parametrize(
        "resource",
        [
            observation("A", performer=[{"reference": "Patient/A"}, {"reference": "Practitioner/1"}]),
            {
                "resourceType": "Patient",
                "id": "A",
                "link": [{"other": {"reference": "Patient/B"}, "type": "seealso"}],
            },
            {"resourceType": "Coverage", "id": "c", "beneficiary": {"reference": "Patient/A"}, "payor": []},
            {"resourceType": "Observation", "id": "bad", "subject": "Patient/A"},  # malformed
        ],
    )
    def test_same_values_as_extract_by_param(self, resource: dict[str, Any]) -> None:
        from pms.auth.policy import _IndexValues

        registry = default_registry()
        rtype = resource["resourceType"]
        expected = extract.extractor_for(rtype, registry).extract_by_param(resource)
        values = _IndexValues(registry, rtype, resource)
        for code in (*registry.compartment_params("Patient", rtype), "_id"):
            assert list(values.get(code)) == expected.get(code, []), code


class TestIncludesOutsideTheCompartment:
    def test_included_types_carry_the_same_restrictions(self) -> None:
        a = patient_user("A")
        restrictions = include_restrictions(a, "Observation")
        assert restrictions is not None and set(references(restrictions)) == {"Patient/A"}
        patient = include_restrictions(a, "Patient")
        assert patient is not None and "Patient/A" in set(references(patient))

    def test_included_types_outside_are_left_out(self) -> None:
        a = patient_user("A")
        assert include_restrictions(a, "Practitioner") is None
        assert include_restrictions(a, "Group") is None  # the role leaves Group out

    def test_receptionist_includes_no_clinical_types(self) -> None:
        receptionist = user("receptionist")
        assert include_restrictions(receptionist, "Observation") is None
        assert include_restrictions(receptionist, "Patient") == []


class TestChainsAndHas:
    def search(self, ctx: AccessContext, resource_type: str, query: list[tuple[str, str]]) -> bool:
        return check_search(ctx, parse_search(resource_type, query, default_registry())).allowed

    def test_has_through_a_hidden_type_is_refused(self) -> None:
        query = [("_has:Observation:subject:code", "1234-5")]
        assert not self.search(user("receptionist"), "Patient", query)
        assert not self.search(user("billing"), "Patient", query)
        assert self.search(user("physician"), "Patient", query)

    def test_chain_through_a_hidden_type_is_refused(self) -> None:
        query = [("encounter:Encounter.reason-code", "x")]
        assert not self.search(user("billing"), "Claim", [("encounter.status", "finished")])
        assert not self.search(
            user("receptionist"), "Appointment", [("reason-reference:Condition.code", "x")]
        )
        assert self.search(user("physician"), "Observation", query)
        assert self.search(user("receptionist"), "Appointment", [("patient.name", "smith")])

    def test_searched_type_itself(self) -> None:
        assert not self.search(user("receptionist"), "Observation", [])


class TestQueryRestrictedScopes:
    def test_restriction_and_compartment_are_both_applied(self) -> None:
        ctx = patient_user("A", f"patient/Observation.rs?category={LAB}|laboratory")
        restrictions = search_restrictions(ctx, "Observation")
        assert len(restrictions) == 2
        assert any(isinstance(r, Criterion) and r.code == "category" for r in restrictions)
        assert may_access_resource(ctx, observation("A", category="laboratory"))
        assert not may_access_resource(ctx, observation("A", category="vital-signs"))
        assert not may_access_resource(ctx, observation("B", category="laboratory"))

    def test_several_restricted_scopes_are_or_ed(self) -> None:
        ctx = user(
            "physician", "user/Observation.rs?category=laboratory user/Observation.rs?category=vital-signs"
        )
        (anyof,) = search_restrictions(ctx, "Observation")
        assert isinstance(anyof, AnyOf) and len(anyof.alternatives) == 2
        assert may_access_resource(ctx, observation("B", category="vital-signs"))
        assert not may_access_resource(ctx, observation("B", category="social-history"))

    def test_an_unrestricted_scope_lifts_the_restriction(self) -> None:
        ctx = user("physician", "user/Observation.rs?category=laboratory user/Observation.s")
        assert search_restrictions(ctx, "Observation") == []
        assert search_restrictions(ctx, "Observation", interaction="read") != []

    def test_writes_must_match_the_restriction(self) -> None:
        ctx = user("physician", "user/Observation.c?category=vital-signs")
        assert may_write(ctx, observation("B", category="vital-signs"))
        assert not may_write(ctx, observation("B", category="laboratory"))


class TestWritesInThePatientCompartment:
    def appointment(self, patient: str) -> dict[str, Any]:
        return {
            "resourceType": "Appointment",
            "status": "proposed",
            "participant": [{"actor": {"reference": f"Patient/{patient}"}, "status": "needs-action"}],
        }

    def test_patient_books_for_self_only(self) -> None:
        a = patient_user("A")
        assert may_write(a, self.appointment("A"))
        assert not may_write(a, self.appointment("B"))
        assert not may_write(a, self.appointment("A"), interaction="update")  # role: create only

    def test_patient_cannot_write_clinical_records(self) -> None:
        a = patient_user("A")
        assert not may_write(a, observation("A"))
        assert not decide(a, "delete", "Observation").allowed


class TestReceptionistAndBilling:
    @pytest.mark.parametrize(
        "resource_type", ["Observation", "Condition", "DocumentReference", "Composition"]
    )
    @pytest.mark.parametrize("role", ["receptionist", "billing"])
    def test_no_clinical_content(self, role: str, resource_type: str) -> None:
        ctx = user(role)
        for interaction in INTERACTIONS:
            assert not decide(ctx, interaction, resource_type).allowed
        assert not may_access_resource(ctx, {"resourceType": resource_type, "id": "1"})

    def test_what_they_do_see(self) -> None:
        assert decide(user("receptionist"), "update", "Patient").allowed
        assert decide(user("receptionist"), "delete", "Slot").allowed
        assert decide(user("billing"), "create", "Claim").allowed
        assert decide(user("billing"), "read", "Patient").allowed
        assert not decide(user("billing"), "update", "Patient").allowed


class TestScopeEscalation:
    def test_scopes_never_exceed_the_role(self) -> None:
        ctx = user("receptionist", "user/*.* system/*.* patient/*.*", patient="A")
        assert not decide(ctx, "read", "Observation").allowed
        assert not decide(ctx, "delete", "Patient").allowed

    def test_role_never_exceeds_the_scopes(self) -> None:
        ctx = user("physician", "user/Observation.rs")
        assert decide(ctx, "read", "Observation").allowed
        assert not decide(ctx, "create", "Observation").allowed
        assert not decide(ctx, "read", "Condition").allowed

    def test_user_tokens_ignore_system_scopes(self) -> None:
        assert not decide(user("admin", "system/*.*"), "read", "Patient").allowed

    def test_unknown_roles_grant_nothing(self) -> None:
        decision = decide(user("superuser"), "read", "Patient")
        assert not decision.allowed and "no role" in decision.reason

    @pytest.mark.parametrize("role", ["admin", "physician", "nurse", "receptionist", "billing"])
    def test_effective_is_the_intersection(self, role: str) -> None:
        scopes = "user/Patient.r user/Observation.cruds user/Claim.s user/Slot.d user/AuditEvent.rs"
        narrow, wide = user(role, scopes), user(role)
        token = parse_scopes(scopes).resources
        for t in ("Patient", "Observation", "Claim", "Slot", "AuditEvent", "Condition"):
            for i in INTERACTIONS:
                expected = decide(wide, i, t).allowed and any(s.grants(i, t) for s in token)
                assert decide(narrow, i, t).allowed == expected, (role, t, i)


class TestSystemScopesLimitedByRegistration:
    REGISTERED = "system/Observation.cu system/DiagnosticReport.cu system/ServiceRequest.rs system/Patient.rs"

    def test_lab_registration(self) -> None:
        lab = client("system/*.*", self.REGISTERED)
        assert decide(lab, "create", "Observation").allowed
        assert decide(lab, "update", "DiagnosticReport").allowed
        assert decide(lab, "search", "ServiceRequest").allowed
        assert decide(lab, "read", "Patient").allowed
        assert not decide(lab, "read", "Observation").allowed
        assert not decide(lab, "delete", "Observation").allowed
        assert not decide(lab, "read", "Condition").allowed
        assert not decide(lab, "create", "Patient").allowed

    def test_token_narrows_the_registration(self) -> None:
        lab = client("system/Observation.c", self.REGISTERED)
        assert decide(lab, "create", "Observation").allowed
        assert not decide(lab, "read", "Patient").allowed

    def test_registration_restrictions_apply(self) -> None:
        lab = client("system/Observation.cu", "system/Observation.cu?category=laboratory")
        assert may_write(lab, observation("A", category="laboratory"))
        assert not may_write(lab, observation("A", category="vital-signs"))

    def test_no_registration_no_access(self) -> None:
        decision = decide(client("system/*.*", None), "read", "Patient")
        assert not decision.allowed and "registration" in decision.reason

    def test_clients_ignore_user_and_patient_scopes(self) -> None:
        assert not decide(client("user/*.* patient/*.*", "user/*.* patient/*.*"), "read", "Patient").allowed

    def test_registration_also_narrows_a_users_app(self) -> None:
        principal = Principal("u", "user", roles=frozenset({"physician"}), scopes=parse_scopes("user/*.*"))
        app = AccessContext.create(principal, client_scopes="user/*.rs")
        assert decide(app, "read", "Observation").allowed
        assert not decide(app, "create", "Observation").allowed


class TestBreakTheGlass:
    def test_override_grants_reads_of_that_patient_flagged(self) -> None:
        ctx = user("receptionist", break_glass=frozenset({"P"}))
        decision = decide(ctx, "search", "Observation")
        assert decision.allowed and decision.emergency
        assert set(references(list(decision.restrictions))) == {"Patient/P"}
        read = check_resource(ctx, "read", observation("P"))
        assert read.allowed and read.emergency
        assert not may_access_resource(ctx, observation("Q"))

    def test_no_delete_or_write(self) -> None:
        ctx = user("receptionist", break_glass=frozenset({"P"}))
        for interaction in ("create", "update", "patch", "delete", "operation"):
            assert not decide(ctx, interaction, "Observation").allowed, interaction

    def test_not_flagged_when_the_role_allows(self) -> None:
        ctx = user("physician", break_glass=frozenset({"P"}))
        decision = decide(ctx, "read", "Observation")
        assert decision.allowed and not decision.emergency and decision.restrictions == ()
        assert not check_resource(ctx, "read", observation("P")).emergency

    def test_role_granted_types_keep_unflagged(self) -> None:
        ctx = user("receptionist", break_glass=frozenset({"P"}))
        assert not decide(ctx, "read", "Patient").emergency

    def test_scopes_still_cap_the_override(self) -> None:
        ctx = user("receptionist", "user/Patient.rs", break_glass=frozenset({"P"}))
        assert not decide(ctx, "read", "Observation").allowed

    def test_patient_scopes_stay_pinned_to_the_launch_patient(self) -> None:
        ctx = user("receptionist", "patient/*.rs", patient="A", break_glass=frozenset({"P"}))
        assert not decide(ctx, "read", "Observation").allowed
        assert not may_access_resource(ctx, observation("P"))

    def test_partial_override_combines_with_a_compartment_role(self) -> None:
        own = Role("self", "", (Rule(frozenset({"Observation"}), frozenset({"read", "search"}), True),))
        principal = Principal(
            "u",
            "user",
            fhir_user="Patient/A",
            roles=frozenset({"self"}),
            scopes=parse_scopes("user/*.rs"),
            break_glass=frozenset({"P"}),
        )
        ctx = AccessContext.create(principal, roles={"self": own})
        decision = decide(ctx, "search", "Observation")
        assert decision.allowed and decision.emergency
        (anyof,) = decision.restrictions
        assert isinstance(anyof, AnyOf) and len(anyof.alternatives) == 4  # subject|performer x A|P
        assert set(references([anyof])) == {"Patient/A", "Patient/P"}
        assert not check_resource(ctx, "read", observation("A")).emergency
        assert check_resource(ctx, "read", observation("P")).emergency
        assert not may_access_resource(ctx, observation("Q"))

    def test_only_for_staff_users(self) -> None:
        a = patient_user("A", break_glass=frozenset({"B"}))
        assert not may_access_resource(a, observation("B"))


class TestAuditEventsAreAppendOnly:
    @pytest.mark.parametrize("interaction", ["update", "patch", "delete"])
    def test_nobody_changes_them(self, interaction: Interaction) -> None:
        for ctx in (
            user("admin"),
            AccessContext.internal("audit-writer"),
            client("system/*.*", "system/*.*"),
        ):
            decision = decide(ctx, interaction, "AuditEvent")
            assert not decision.allowed and "append-only" in decision.reason

    def test_admin_reads_and_searches(self) -> None:
        admin = user("admin")
        assert decide(admin, "search", "AuditEvent").allowed
        assert decide(admin, "read", "AuditEvent").allowed
        assert not decide(admin, "create", "AuditEvent").allowed
        assert decide(AccessContext.internal("audit-writer"), "create", "AuditEvent").allowed


class TestRequire:
    def test_denied_raises_403_forbidden(self) -> None:
        with pytest.raises(AppError) as caught:
            require(decide(user("receptionist"), "read", "Observation"))
        assert caught.value.status == 403
        (issue,) = caught.value.issues
        assert issue.code == "forbidden" and "receptionist" in issue.diagnostics

    def test_allowed_passes_through(self) -> None:
        decision = decide(user("physician"), "read", "Observation")
        assert require(decision) is decision

    def test_search_restrictions_of_a_denied_type_raise(self) -> None:
        with pytest.raises(AppError):
            search_restrictions(user("receptionist"), "Observation")

    def test_unknown_type_and_untyped_resource(self) -> None:
        assert not decide(user("admin"), "read", "Foo").allowed
        assert not check_resource(user("admin"), "read", {"id": "x"}).allowed


# --- the role x type x interaction matrix, derived from roles.json independently of rbac.py ------------


def _expected_matrix() -> dict[str, dict[tuple[str, str], str]]:
    """role -> (type, interaction) -> "all" | "compartment", read straight from the JSON document."""
    doc: Any = shipped_document()
    groups = {**doc["type_groups"], **doc["derived_groups"]}
    every = set(resource_types())

    def types(names: list[str]) -> set[str]:
        out: set[str] = set()
        for n in names:
            out |= every if n == "*" else set(groups[n]["types"]) if n.startswith("@") else {n}
        return out

    def interactions(names: list[str]) -> set[str]:
        out: set[str] = set()
        for n in names:
            out |= set(INTERACTIONS) if n == "*" else set(doc["interaction_groups"].get(n, [n]))
        return out

    matrix: dict[str, dict[tuple[str, str], str]] = {}
    for name, body in doc["roles"].items():
        cells: dict[tuple[str, str], str] = {}
        for rule in body["grants"]["allow"]:
            kind = "compartment" if rule.get("compartment") else "all"
            for t in types(rule["types"]) - types(rule.get("except_types", [])):
                for i in interactions(rule["interactions"]):
                    if cells.get((t, i)) != "all":
                        cells[(t, i)] = kind
        for rule in body["grants"]["deny"]:
            for t in types(rule["types"]) - types(rule.get("except_types", [])):
                for i in interactions(rule["interactions"]):
                    cells.pop((t, i), None)
        matrix[name] = cells
    return matrix


EXPECTED = _expected_matrix()


class TestRoleMatrix:
    """Every (role, type, interaction) decision, for a token with every scope, against roles.json."""

    @pytest.mark.parametrize("role", sorted(EXPECTED))
    def test_decisions_follow_the_role_json(self, role: str) -> None:
        ctx = patient_user("M", "user/*.*") if role == "patient" else user(role)
        compartment = default_registry().compartment_members("Patient")
        mismatches = []
        for t in resource_types():
            for i in INTERACTIONS:
                cell = EXPECTED[role].get((t, i))
                if t == "AuditEvent" and i in ("update", "patch", "delete"):
                    cell = None  # append-only, whatever the JSON says
                if cell == "compartment" and t not in compartment:
                    cell = None  # a compartment rule cannot reach a type outside it
                decision = decide(ctx, i, t)
                got = None if not decision.allowed else "compartment" if decision.restrictions else "all"
                if got != cell:
                    mismatches.append((t, i, cell, got))
        assert mismatches == []

    def test_the_matrix_is_not_trivial(self) -> None:
        assert len(EXPECTED["admin"]) == len(resource_types()) * len(INTERACTIONS) - 5
        assert all(
            cell == "compartment" for (t, _), cell in EXPECTED["patient"].items() if t == "Observation"
        )
        assert ("Observation", "read") not in EXPECTED["receptionist"]

"""SMART scopes parsed into typed grants (scopes-and-launch-context.html)."""

from __future__ import annotations

import pytest

from pms.auth.scopes import (
    INTERACTIONS,
    NON_RESOURCE_SCOPES,
    READS,
    Scope,
    parse_scope,
    parse_scopes,
    scope_within,
)
from pms.fhir.search import Criterion, ReferenceValue, TokenValue

READ_LIKE = {"read", "vread", "history", "search", "operation"}
WRITE_LIKE = {"create", "update", "patch", "delete"}


def one(text: str) -> Scope:
    scope = parse_scope(text)
    assert scope is not None, text
    return scope


class TestV1Scopes:
    def test_read_is_rs(self) -> None:
        scope = one("patient/*.read")
        assert (scope.context, scope.resource_type) == ("patient", "*")
        assert scope.interactions == READ_LIKE
        assert scope.restriction == ()

    def test_write_is_cud(self) -> None:
        scope = one("user/Observation.write")
        assert (scope.context, scope.resource_type) == ("user", "Observation")
        assert scope.interactions == WRITE_LIKE

    def test_star_is_everything(self) -> None:
        assert one("system/*.*").interactions == set(INTERACTIONS)
        assert one("patient/Observation.*").interactions == set(INTERACTIONS)

    def test_v1_read_equals_v2_rs(self) -> None:
        assert one("patient/Observation.read").interactions == one("patient/Observation.rs").interactions

    def test_reads_constant_matches(self) -> None:
        assert READS == READ_LIKE


class TestV2Scopes:
    @pytest.mark.parametrize(
        ("letters", "expected"),
        [
            ("c", {"create"}),
            ("r", {"read", "vread", "history", "operation"}),
            ("u", {"update", "patch"}),
            ("d", {"delete"}),
            ("s", {"search"}),
            ("rs", READ_LIKE),
            ("cud", WRITE_LIKE),
            ("cruds", set(INTERACTIONS)),
            ("cs", {"create", "search"}),
        ],
    )
    def test_letters(self, letters: str, expected: set[str]) -> None:
        assert one(f"patient/Observation.{letters}").interactions == expected

    def test_keeps_the_requested_text(self) -> None:
        assert one("user/Patient.rs").text == "user/Patient.rs"


class TestQueryRestrictedScopes:
    def test_category_becomes_a_token_criterion(self) -> None:
        scope = one("patient/Observation.rs?category=laboratory")
        assert scope.restriction == (
            Criterion("category", "token", values=(TokenValue(None, "laboratory"),)),
        )
        assert scope.interactions == READ_LIKE

    def test_system_and_several_parameters(self) -> None:
        scope = one(
            "user/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category"
            "|vital-signs&subject=Patient/1"
        )
        assert scope.restriction == (
            Criterion(
                "category",
                "token",
                values=(
                    TokenValue("http://terminology.hl7.org/CodeSystem/observation-category", "vital-signs"),
                ),
            ),
            Criterion("subject", "reference", values=(ReferenceValue("Patient/1", "Patient", "1"),)),
        )

    def test_url_encoded_values_are_decoded(self) -> None:
        scope = one("patient/Observation.rs?code=http%3A%2F%2Floinc.org%7C1234-5")
        assert scope.restriction[0].values == (TokenValue("http://loinc.org", "1234-5"),)

    def test_wildcard_type_takes_common_parameters(self) -> None:
        scope = one("user/*.rs?_security=R")
        assert scope.restriction == (Criterion("_security", "token", values=(TokenValue(None, "R"),)),)

    @pytest.mark.parametrize(
        "text",
        [
            "patient/Observation.rs?",  # empty query
            "patient/Observation.rs?unknown=1",  # not a parameter of Observation
            "patient/Observation.rs?_count=10",  # result parameter, not a criterion
            "patient/Observation.rs?_include=Observation:subject",
            "patient/Observation.rs?_sort=date",
            "patient/Observation.rs?subject.name=smith",  # chains cannot be checked on one resource
            "patient/Patient.rs?_has:Observation:subject:code=1234",
            "patient/Observation.rs?date=notadate",  # invalid value
            "patient/Observation.read?category=laboratory",  # v1 has no query form
            "user/*.rs?category=laboratory",  # not a common parameter
        ],
    )
    def test_invalid_queries_are_rejected(self, text: str) -> None:
        assert parse_scope(text) is None
        assert parse_scopes(text).rejected == (text,)


class TestNonResourceScopes:
    def test_identity_launch_and_refresh_scopes(self) -> None:
        text = "openid fhirUser launch launch/patient launch/encounter offline_access online_access profile"
        parsed = parse_scopes(text)
        assert parsed.other == NON_RESOURCE_SCOPES
        assert parsed.resources == () and parsed.rejected == ()

    def test_mixed_with_resource_scopes(self) -> None:
        parsed = parse_scopes("openid patient/Patient.read launch/patient")
        assert parsed.other == {"openid", "launch/patient"}
        assert [s.text for s in parsed.resources] == ["patient/Patient.read"]
        assert parsed.text == "patient/Patient.read launch/patient openid"


class TestInvalidScopes:
    @pytest.mark.parametrize(
        "text",
        [
            "patient/Foo.read",  # unknown type
            "patient/observation.read",  # types are case-sensitive
            "admin/Patient.read",  # unknown context
            "patient/Patient",  # no permission
            "patient/Patient.",  # empty permission
            "patient/Patient.sr",  # letters out of order
            "patient/Patient.rr",  # repeated letter
            "patient/Patient.x",
            "patient/Patient.readwrite",
            "patient/*.read/extra",
            "Patient.read",
            "launch/other",
            "OPENID",
            "patient/Patient.rs?" + "a" * 2000,
        ],
    )
    def test_rejected_not_raised(self, text: str) -> None:
        parsed = parse_scopes(f"openid {text} patient/Patient.r")
        assert parsed.rejected == (text,)
        assert [s.text for s in parsed.resources] == ["patient/Patient.r"]
        assert parsed.other == {"openid"}

    def test_duplicates_collapse(self) -> None:
        parsed = parse_scopes("patient/Patient.r  patient/Patient.r\topenid openid")
        assert len(parsed.resources) == 1 and parsed.other == {"openid"}

    def test_iterable_input(self) -> None:
        assert parse_scopes(["openid", "", "user/Patient.rs"]).other == {"openid"}


class TestScopeWithin:
    def test_narrower_scope_is_within(self) -> None:
        allowed = parse_scopes("user/*.rs system/Observation.cud").resources
        assert scope_within(one("user/Observation.r"), allowed)
        assert scope_within(one("user/Observation.rs?category=laboratory"), allowed)
        assert scope_within(one("system/Observation.c"), allowed)

    def test_wider_scope_is_not(self) -> None:
        allowed = parse_scopes("user/Observation.rs?category=laboratory patient/*.rs").resources
        assert not scope_within(one("user/Observation.rs"), allowed)  # drops the restriction
        assert not scope_within(one("user/Observation.cruds?category=laboratory"), allowed)
        assert not scope_within(one("user/*.rs"), allowed)
        assert not scope_within(one("system/Observation.rs"), allowed)  # other context

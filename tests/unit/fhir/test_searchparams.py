"""The search parameter registry built from the official R4 definitions."""

from __future__ import annotations

import pytest

from pms.fhir.searchparams import (
    Registry,
    SearchParamError,
    default_registry,
    expression_for_base,
    split_union,
)


@pytest.fixture(scope="module")
def registry() -> Registry:
    return default_registry()


class TestLookups:
    def test_patient_has_its_own_and_the_common_parameters(self, registry: Registry) -> None:
        params = registry.params_for("Patient")
        for code in (
            "name",
            "birthdate",
            "identifier",
            "_id",
            "_lastUpdated",
            "_tag",
            "_profile",
            "_security",
        ):
            assert code in params
        assert params["birthdate"].type == "date"
        assert params["birthdate"].expression == "Patient.birthDate"
        assert params["_id"].expression == "Resource.id"
        assert params["_text"].expression is None  # special: no FHIRPath in the bundle

    def test_bundle_is_not_a_domain_resource(self, registry: Registry) -> None:
        assert "_text" not in registry.params_for("Bundle")
        assert "_id" in registry.params_for("Bundle")

    def test_unknown_type_or_code(self, registry: Registry) -> None:
        assert registry.params_for("NoSuchType") == {}
        assert registry.get("Patient", "no-such-param") is None

    def test_satisfies_the_search_parser_lookup(self, registry: Registry) -> None:
        assert registry.param("Patient", "name") is registry.get("Patient", "name")
        assert registry.is_resource_type("Observation")
        assert not registry.is_resource_type("Resource")

    def test_every_definition_is_loaded(self, registry: Registry) -> None:
        urls = {p.url for t in registry.resource_types for p in registry.params_for(t).values()}
        assert len(urls) == 1375
        assert len(registry.resource_types) == 146

    def test_registry_is_immutable(self, registry: Registry) -> None:
        with pytest.raises(TypeError):
            registry.params_for("Patient")["x"] = registry.params_for("Patient")["name"]  # type: ignore[index]


class TestExpressionsPerBase:
    def test_multi_base_expression_is_split(self, registry: Registry) -> None:
        assert registry.get("Practitioner", "phonetic") is not None
        patient_phone = registry.get("Patient", "phone")
        assert patient_phone is not None
        assert patient_phone.expression == "Patient.telecom.where(system='phone')"
        encounter = registry.get("Observation", "encounter")
        assert encounter is not None and encounter.expression == "Observation.encounter"

    def test_where_resolve_is_kept_per_base(self, registry: Registry) -> None:
        param = registry.get("Observation", "patient")
        assert param is not None
        assert param.expression == "Observation.subject.where(resolve() is Patient)"
        assert "Patient" in param.targets

    def test_split_union_ignores_bars_inside_parentheses_and_strings(self) -> None:
        assert split_union("(A.b as X) | A.c.where(d='x|y') | A.e") == [
            "(A.b as X)",
            "A.c.where(d='x|y')",
            "A.e",
        ]

    def test_untyped_members_apply_to_every_base(self) -> None:
        assert expression_for_base("name | alias", "InsurancePlan", ["InsurancePlan", "X"]) == "name | alias"
        assert expression_for_base("A.x | B.y", "B", ["A", "B"]) == "B.y"
        assert expression_for_base("A.x", "B", ["A", "B"]) is None


class TestComposites:
    def test_code_value_quantity_components(self, registry: Registry) -> None:
        param = registry.get("Observation", "code-value-quantity")
        assert param is not None and param.type == "composite"
        assert param.expression == "Observation"
        assert [(c.code, c.type, c.expression) for c in param.components] == [
            ("code", "token", "code"),
            ("value-quantity", "quantity", "value.as(Quantity)"),
        ]

    def test_component_code_value_quantity_is_per_component(self, registry: Registry) -> None:
        param = registry.get("Observation", "component-code-value-quantity")
        assert param is not None and param.expression == "Observation.component"
        assert [c.code for c in param.components] == ["component-code", "component-value-quantity"]


class TestCompartments:
    def test_patient_compartment_includes_observation(self, registry: Registry) -> None:
        assert registry.compartment_params("Patient", "Observation") == ("subject", "performer")
        assert registry.compartment_params("Patient", "Encounter") == ("patient",)
        assert "Observation" in registry.compartment_members("Patient")

    def test_types_outside_a_compartment(self, registry: Registry) -> None:
        assert registry.compartment_params("Patient", "CodeSystem") == ()
        assert registry.compartment_params("NoSuch", "Observation") == ()
        assert set(registry.compartment_types) == {
            "Device",
            "Encounter",
            "Patient",
            "Practitioner",
            "RelatedPerson",
        }

    def test_own_compartment_marker(self, registry: Registry) -> None:
        assert registry.compartment_params("Encounter", "Encounter") == ("{def}",)


CUSTOM = {
    "resourceType": "SearchParameter",
    "url": "http://example.org/SearchParameter/patient-eye-colour",
    "code": "eye-colour",
    "base": ["Patient"],
    "type": "token",
    "expression": "Patient.extension('http://example.org/eye-colour').value",
}


class TestCustomParameters:
    def test_with_custom_returns_a_new_registry(self, registry: Registry) -> None:
        custom = registry.with_custom([CUSTOM])
        assert custom is not registry
        assert registry.get("Patient", "eye-colour") is None
        param = custom.get("Patient", "eye-colour")
        assert param is not None and param.custom and param.type == "token"
        assert custom.get("Patient", "name") == registry.get("Patient", "name")

    def test_custom_replaces_same_base_and_code(self, registry: Registry) -> None:
        replacement = {
            **CUSTOM,
            "url": "http://example.org/sp/gender",
            "code": "gender",
            "expression": "Patient.id",
        }
        custom = registry.with_custom([replacement])
        gender = custom.get("Patient", "gender")
        assert gender is not None and gender.expression == "Patient.id"
        # the official multi-base definition it shadowed stays for the other bases
        person_gender = custom.get("Person", "gender")
        assert person_gender is not None and person_gender.expression == "Person.gender"

    def test_custom_composite_resolves_components_by_url(self, registry: Registry) -> None:
        composite = {
            "resourceType": "SearchParameter",
            "url": "http://example.org/sp/obs-code-status",
            "code": "code-status",
            "base": ["Observation"],
            "type": "composite",
            "expression": "Observation",
            "component": [
                {"definition": "http://hl7.org/fhir/SearchParameter/clinical-code", "expression": "code"},
                {
                    "definition": "http://hl7.org/fhir/SearchParameter/Observation-status",
                    "expression": "status",
                },
            ],
        }
        param = registry.with_custom([composite]).get("Observation", "code-status")
        assert param is not None
        assert [(c.code, c.type) for c in param.components] == [("code", "token"), ("status", "token")]

    @pytest.mark.parametrize(
        "bad",
        [
            {**CUSTOM, "type": "nonsense"},
            {**CUSTOM, "code": ""},
            {**CUSTOM, "base": []},
            {**CUSTOM, "expression": None},
            {**CUSTOM, "resourceType": "Patient"},
        ],
    )
    def test_invalid_custom_parameters_are_rejected(self, registry: Registry, bad: dict[str, object]) -> None:
        with pytest.raises(SearchParamError):
            registry.with_custom([bad])

"""Search index extraction: hand-computed values per search type, and the compiled fast path against
fhirpathpy over the official R4 examples."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from pms.fhir.definitions import is_resource_type
from pms.fhir.extract import (
    MAX_INSTANT,
    MIN_INSTANT,
    CompositeValue,
    DateValue,
    IndexValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
    date_range,
    extract,
    extractor_for,
    normalize_string,
    number_range,
)
from pms.fhir.fhirpath_compile import Unsupported, compile_expression
from pms.fhir.searchparams import default_registry

SHARED = Path(__file__).resolve().parents[3].parent / "shared"
EXAMPLES = SHARED / "fhir" / "hl7.fhir.r4.examples-4.0.1.tgz"
END = timedelta(microseconds=1)


def values(resource: dict[str, Any], code: str) -> set[IndexValue]:
    return {v for v in extract(resource) if v.param == code}


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


class TestString:
    PATIENT: dict[str, Any] = {
        "resourceType": "Patient",
        "id": "p1",
        "name": [
            {"family": "Müller", "given": ["José", "Ana"], "prefix": ["Dr."], "text": "Dr. José Müller"}
        ],
        "address": [{"line": ["Rue de l'Église 1"], "city": "Zürich", "postalCode": "8001", "country": "CH"}],
    }

    def test_human_name_parts_normalized_and_exact(self) -> None:
        assert values(self.PATIENT, "name") == {
            StringValue("name", "muller", "Müller"),
            StringValue("name", "jose", "José"),
            StringValue("name", "ana", "Ana"),
            StringValue("name", "dr.", "Dr."),
            StringValue("name", "dr. jose muller", "Dr. José Müller"),
        }
        assert StringValue("family", "muller", "Müller") in values(self.PATIENT, "family")
        assert values(self.PATIENT, "given") == {
            StringValue("given", "jose", "José"),
            StringValue("given", "ana", "Ana"),
        }

    def test_address_parts(self) -> None:
        assert values(self.PATIENT, "address") == {
            StringValue("address", "rue de l'eglise 1", "Rue de l'Église 1"),
            StringValue("address", "zurich", "Zürich"),
            StringValue("address", "8001", "8001"),
            StringValue("address", "ch", "CH"),
        }
        assert values(self.PATIENT, "address-city") == {StringValue("address-city", "zurich", "Zürich")}

    def test_normalize(self) -> None:
        assert normalize_string("  ÉLODIE Straße ") == "elodie strasse"
        assert normalize_string("ﬁ") == "fi"  # NFKD compatibility decomposition


class TestToken:
    def test_codeable_concept_codings_and_text(self) -> None:
        obs = {
            "resourceType": "Observation",
            "status": "final",
            "code": {
                "coding": [
                    {"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"},
                    {"system": "http://snomed.info/sct", "code": "364075005"},
                ],
                "text": "Pulsé",
            },
        }
        assert values(obs, "code") == {
            TokenValue("code", "http://loinc.org", "8867-4", "heart rate"),
            TokenValue("code", "http://snomed.info/sct", "364075005", None),
            TokenValue("code", None, None, "pulse"),
        }
        assert values(obs, "status") == {TokenValue("status", None, "final")}

    def test_identifier_with_type_for_of_type(self) -> None:
        patient = {
            "resourceType": "Patient",
            "identifier": [
                {
                    "system": "urn:oid:1.2.36.146.595.217.0.1",
                    "value": "12345",
                    "type": {
                        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]
                    },
                },
                {"system": "http://ns.example/ssn", "value": "999"},
            ],
        }
        assert values(patient, "identifier") == {
            TokenValue(
                "identifier",
                "urn:oid:1.2.36.146.595.217.0.1",
                "12345",
                None,
                "http://terminology.hl7.org/CodeSystem/v2-0203",
                "MR",
            ),
            TokenValue("identifier", "http://ns.example/ssn", "999"),
        }

    def test_boolean_code_and_contact_point(self) -> None:
        patient = {
            "resourceType": "Patient",
            "active": False,
            "gender": "female",
            "telecom": [{"system": "phone", "value": "+41 44 123"}, {"system": "email", "value": "a@b.ch"}],
        }
        assert values(patient, "active") == {TokenValue("active", None, "false")}
        assert values(patient, "gender") == {TokenValue("gender", None, "female")}
        assert values(patient, "telecom") == {
            TokenValue("telecom", None, "+41 44 123"),
            TokenValue("telecom", None, "a@b.ch"),
        }
        # `.where(system='phone')`: only the phone number
        assert values(patient, "phone") == {TokenValue("phone", None, "+41 44 123")}
        assert values(patient, "email") == {TokenValue("email", None, "a@b.ch")}

    def test_id_and_meta(self) -> None:
        patient = {
            "resourceType": "Patient",
            "id": "p1",
            "meta": {"tag": [{"system": "urn:t", "code": "vip"}], "profile": ["http://example.org/P"]},
        }
        assert values(patient, "_id") == {TokenValue("_id", None, "p1")}
        assert values(patient, "_tag") == {TokenValue("_tag", "urn:t", "vip")}
        assert values(patient, "_profile") == {UriValue("_profile", "http://example.org/P")}  # R4: a uri

    @pytest.mark.parametrize(
        ("deceased", "expected"),
        [
            ({"deceasedBoolean": True}, "true"),
            ({"deceasedBoolean": False}, "false"),
            ({"deceasedDateTime": "2020-01-01"}, "true"),
            ({}, "false"),
        ],
    )
    def test_patient_deceased_expression(self, deceased: dict[str, Any], expected: str) -> None:
        # `Patient.deceased.exists() and Patient.deceased != false`, with FHIRPath's three-valued logic
        patient = {"resourceType": "Patient", **deceased}
        assert values(patient, "deceased") == {TokenValue("deceased", None, expected)}


class TestDate:
    @pytest.mark.parametrize(
        ("text", "low", "high"),
        [
            ("2020", utc(2020, 1, 1), utc(2021, 1, 1) - END),
            ("2020-02", utc(2020, 2, 1), utc(2020, 3, 1) - END),
            ("2020-03", utc(2020, 3, 1), utc(2020, 4, 1) - END),
            ("2020-03-04", utc(2020, 3, 4), utc(2020, 3, 5) - END),
            ("2020-03-04T10:00:00+02:00", utc(2020, 3, 4, 8), utc(2020, 3, 4, 8, 0, 1) - END),
            ("2020-03-04T23:30:00-05:00", utc(2020, 3, 5, 4, 30), utc(2020, 3, 5, 4, 30, 1) - END),
            ("2020-03-04T10:00:00Z", utc(2020, 3, 4, 10), utc(2020, 3, 4, 10, 0, 1) - END),
            ("2020-03-04T10:00:00", utc(2020, 3, 4, 10), utc(2020, 3, 4, 10, 0, 1) - END),  # no zone: UTC
            ("2020-03-04T10:00:00.5Z", utc(2020, 3, 4, 10, 0, 0, 500000), utc(2020, 3, 4, 10, 0, 0, 599999)),
            (
                "2020-03-04T10:00:00.123Z",
                utc(2020, 3, 4, 10, 0, 0, 123000),
                utc(2020, 3, 4, 10, 0, 0, 123999),
            ),
        ],
    )
    def test_precision_ranges(self, text: str, low: datetime, high: datetime) -> None:
        assert date_range(text) == (low, high)
        patient = {"resourceType": "Patient", "birthDate": text}
        assert values(patient, "birthdate") == {DateValue("birthdate", low, high)}

    def test_values_are_aware_utc(self) -> None:
        found = date_range("2020-03-04T10:00:00+05:30")
        assert found is not None
        assert found[0].tzinfo is UTC
        assert found[0] == datetime(2020, 3, 4, 10, tzinfo=timezone(timedelta(hours=5, minutes=30)))

    def test_unparsable(self) -> None:
        assert date_range("2020-13-01") is None
        assert date_range("yesterday") is None

    def test_period_with_open_ends(self) -> None:
        open_end = {"resourceType": "Encounter", "period": {"start": "2020-03-04T10:00:00Z"}}
        assert values(open_end, "date") == {DateValue("date", utc(2020, 3, 4, 10), MAX_INSTANT)}
        open_start = {"resourceType": "Encounter", "period": {"end": "2020-03"}}
        assert values(open_start, "date") == {DateValue("date", MIN_INSTANT, utc(2020, 4, 1) - END)}

    def test_choice_element(self) -> None:
        obs = {"resourceType": "Observation", "effectivePeriod": {"start": "2020", "end": "2021"}}
        assert values(obs, "date") == {DateValue("date", utc(2020, 1, 1), utc(2022, 1, 1) - END)}

    def test_timing_outer_limits(self) -> None:
        care_plan = {
            "resourceType": "CarePlan",
            "activity": [
                {
                    "detail": {
                        "status": "scheduled",
                        "scheduledTiming": {
                            "event": ["2020-05-01", "2020-03-01T10:00:00Z"],
                            "repeat": {"boundsPeriod": {"start": "2020-02-01", "end": "2020-06-30"}},
                        },
                    }
                }
            ],
        }
        assert values(care_plan, "activity-date") == {
            DateValue("activity-date", utc(2020, 2, 1), utc(2020, 7, 1) - END)
        }


class TestNumberAndQuantity:
    @pytest.mark.parametrize(
        ("value", "low", "high"),
        [
            (Decimal("1.5"), Decimal("1.45"), Decimal("1.55")),
            (Decimal("100"), Decimal("99.5"), Decimal("100.5")),
            (Decimal("0.25"), Decimal("0.245"), Decimal("0.255")),
            (Decimal("1E+2"), Decimal("50"), Decimal("150")),
        ],
    )
    def test_number_precision(self, value: Decimal, low: Decimal, high: Decimal) -> None:
        assert number_range(value) == (low, high)

    def test_number_parameter(self) -> None:
        risk = {"resourceType": "RiskAssessment", "prediction": [{"probabilityDecimal": Decimal("0.25")}]}
        assert values(risk, "probability") == {
            NumberValue("probability", Decimal("0.25"), Decimal("0.245"), Decimal("0.255"))
        }
        seq = {"resourceType": "MolecularSequence", "variant": [{"start": 100}]}
        assert values(seq, "variant-start") == {
            NumberValue("variant-start", Decimal(100), Decimal("99.5"), Decimal("100.5"))
        }

    def test_quantity(self) -> None:
        obs = {
            "resourceType": "Observation",
            "valueQuantity": {
                "value": Decimal("5.40"),
                "unit": "mmol/L",
                "system": "http://unitsofmeasure.org",
                "code": "mmol/L",
            },
        }
        assert values(obs, "value-quantity") == {
            QuantityValue(
                "value-quantity",
                Decimal("5.40"),
                Decimal("5.395"),
                Decimal("5.405"),
                "http://unitsofmeasure.org",
                "mmol/L",
                "mmol/L",
            )
        }

    def test_money_age_and_range(self) -> None:
        invoice = {"resourceType": "Invoice", "totalNet": {"value": Decimal("10.00"), "currency": "EUR"}}
        assert values(invoice, "totalnet") == {
            QuantityValue(
                "totalnet",
                Decimal("10.00"),
                Decimal("9.995"),
                Decimal("10.005"),
                "urn:iso:std:iso:4217",
                "EUR",
                None,
            )
        }
        age = {
            "resourceType": "Condition",
            "onsetAge": {"value": 40, "system": "http://unitsofmeasure.org", "code": "a"},
        }
        assert values(age, "onset-age") == {
            QuantityValue(
                "onset-age",
                Decimal(40),
                Decimal("39.5"),
                Decimal("40.5"),
                "http://unitsofmeasure.org",
                "a",
                None,
            )
        }
        span = {"resourceType": "Condition", "onsetRange": {"low": {"value": 10, "code": "a"}}}
        assert values(span, "onset-age") == {
            QuantityValue("onset-age", None, Decimal(10), Decimal("Infinity"), None, "a", None)
        }


class TestReference:
    def obs(self, subject: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {"resourceType": "Observation", "subject": subject, **extra}

    def test_relative_and_versioned(self) -> None:
        assert values(self.obs({"reference": "Patient/123"}), "subject") == {
            ReferenceValue("subject", "relative", "Patient", "123", None, None)
        }
        assert values(self.obs({"reference": "Patient/123/_history/2"}), "subject") == {
            ReferenceValue("subject", "relative", "Patient", "123", "2", None)
        }

    def test_absolute_url_and_urn(self) -> None:
        url = "http://other.example/fhir/Patient/9"
        assert values(self.obs({"reference": url}), "subject") == {
            ReferenceValue("subject", "absolute", "Patient", "9", None, url)
        }
        urn = "urn:uuid:2b1c4a6e-3f4f-4c5f-9b9f-0a6f3d2f0d11"
        assert values(self.obs({"reference": urn}), "subject") == {
            ReferenceValue("subject", "absolute", None, None, None, urn)
        }

    def test_contained(self) -> None:
        obs = self.obs({"reference": "#p1"}, contained=[{"resourceType": "Patient", "id": "p1"}])
        assert values(obs, "subject") == {ReferenceValue("subject", "contained", "Patient", "p1", None, None)}
        # resolve() is Patient looks into the contained resource
        assert values(obs, "patient") == {ReferenceValue("patient", "contained", "Patient", "p1", None, None)}

    def test_where_resolve_is_filters_by_target_type(self) -> None:
        group = self.obs({"reference": "Group/g"})
        assert values(group, "subject") == {ReferenceValue("subject", "relative", "Group", "g", None, None)}
        assert values(group, "patient") == set()
        typed_urn = self.obs({"reference": "urn:uuid:x", "type": "Patient"})
        assert values(typed_urn, "patient") == {
            ReferenceValue("patient", "absolute", None, None, None, "urn:uuid:x")
        }

    def test_logical_reference_is_not_indexed(self) -> None:
        assert values(self.obs({"identifier": {"system": "s", "value": "v"}}), "subject") == set()

    def test_canonical(self) -> None:
        plan = {
            "resourceType": "PlanDefinition",
            "relatedArtifact": [
                {"type": "depends-on", "resource": "http://example.org/Library/lib|1.2"},
                {"type": "successor", "resource": "http://example.org/PlanDefinition/next"},
            ],
        }
        assert values(plan, "depends-on") == {
            ReferenceValue("depends-on", "canonical", None, None, "1.2", "http://example.org/Library/lib")
        }
        assert values(plan, "successor") == {
            ReferenceValue(
                "successor", "canonical", None, None, None, "http://example.org/PlanDefinition/next"
            )
        }


class TestUriAndSpecial:
    def test_uri(self) -> None:
        value_set = {"resourceType": "ValueSet", "url": "http://example.org/ValueSet/vs"}
        assert values(value_set, "url") == {UriValue("url", "http://example.org/ValueSet/vs")}

    def test_special_is_skipped(self) -> None:
        location = {"resourceType": "Location", "position": {"longitude": 1, "latitude": 2}}
        assert values(location, "near") == set()
        assert "_text" not in {v.param for v in extract({"resourceType": "Patient", "text": {"div": "x"}})}


class TestComposite:
    OBS: dict[str, Any] = {
        "resourceType": "Observation",
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}], "text": "BP"},
        "valueQuantity": {"value": 120, "code": "mm[Hg]", "system": "http://unitsofmeasure.org"},
        "component": [
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                "valueQuantity": {"value": 120, "code": "mm[Hg]"},
            },
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                "valueQuantity": {"value": 80, "code": "mm[Hg]"},
            },
        ],
    }

    def test_code_value_quantity(self) -> None:
        found = values(self.OBS, "code-value-quantity")
        assert found == {
            CompositeValue(
                "code-value-quantity",
                (
                    TokenValue("code", "http://loinc.org", "85354-9", None),
                    QuantityValue(
                        "value-quantity",
                        Decimal(120),
                        Decimal("119.5"),
                        Decimal("120.5"),
                        "http://unitsofmeasure.org",
                        "mm[Hg]",
                        None,
                    ),
                ),
            )
        }

    def test_components_pair_within_one_component_only(self) -> None:
        pairs = {
            (c.components[0].code, c.components[1].value)  # type: ignore[union-attr]
            for c in values(self.OBS, "component-code-value-quantity")
        }
        assert pairs == {("8480-6", Decimal(120)), ("8462-4", Decimal(80))}

    def test_combo_covers_observation_and_components(self) -> None:
        pairs = {
            (c.components[0].code, c.components[1].value)  # type: ignore[union-attr]
            for c in values(self.OBS, "combo-code-value-quantity")
        }
        assert pairs == {("85354-9", Decimal(120)), ("8480-6", Decimal(120)), ("8462-4", Decimal(80))}

    def test_component_from_resource_root(self) -> None:
        seq = {
            "resourceType": "MolecularSequence",
            "referenceSeq": {"chromosome": {"coding": [{"code": "1"}]}},
            "variant": [{"start": 10, "end": 20}],
        }
        found = values(seq, "chromosome-variant-coordinate")
        assert len(found) == 1
        (value,) = found
        assert isinstance(value, CompositeValue)
        assert [type(c).__name__ for c in value.components] == ["TokenValue", "NumberValue", "NumberValue"]


class TestRobustness:
    def test_malformed_values_leave_the_parameter_unindexed(self) -> None:
        patient = {"resourceType": "Patient", "name": "not-a-list-of-objects", "gender": "male"}
        assert values(patient, "gender") == {TokenValue("gender", None, "male")}
        assert values(patient, "name") == set()

    def test_primitive_arrays_with_nulls(self) -> None:
        patient = {
            "resourceType": "Patient",
            "name": [{"given": [None, "Eve"], "_given": [{"id": "x"}, None]}],
        }
        assert values(patient, "given") == {StringValue("given", "eve", "Eve")}

    def test_no_resource_type(self) -> None:
        with pytest.raises(ValueError, match="resourceType"):
            extract({"id": "x"})


class TestCustomParameters:
    def test_extension_on_the_fast_path(self) -> None:
        registry = default_registry().with_custom(
            [
                {
                    "resourceType": "SearchParameter",
                    "url": "http://example.org/sp/eye",
                    "code": "eye",
                    "base": ["Patient"],
                    "type": "token",
                    "expression": "Patient.extension('http://example.org/eye').value",
                }
            ]
        )
        extractor = extractor_for("Patient", registry)
        assert extractor.fallback_codes == ()
        patient = {
            "resourceType": "Patient",
            "extension": [
                {
                    "url": "http://example.org/eye",
                    "valueCodeableConcept": {"coding": [{"system": "s", "code": "blue"}]},
                },
                {"url": "http://example.org/other", "valueCode": "x"},
            ],
        }
        assert {v for v in extract(patient, registry) if v.param == "eye"} == {TokenValue("eye", "s", "blue")}

    def test_unsupported_expression_falls_back_to_fhirpathpy(self) -> None:
        registry = default_registry().with_custom(
            [
                {
                    "resourceType": "SearchParameter",
                    "url": "http://example.org/sp/first-given",
                    "code": "first-given",
                    "base": ["Patient"],
                    "type": "string",
                    "expression": "Patient.name.select(given.first())",
                }
            ]
        )
        assert extractor_for("Patient", registry).fallback_codes == ("first-given",)
        patient = {"resourceType": "Patient", "name": [{"given": ["Ana", "Maria"]}, {"given": ["Jo"]}]}
        assert {v for v in extract(patient, registry) if v.param == "first-given"} == {
            StringValue("first-given", "ana", "Ana"),
            StringValue("first-given", "jo", "Jo"),
        }

    def test_unsupported_is_raised_by_the_compiler(self) -> None:
        with pytest.raises(Unsupported):
            compile_expression("Patient.name.select(given)", "Patient")


# --- the fast path against fhirpathpy --------------------------------------------------------------------


def test_every_official_expression_compiles_to_the_fast_path() -> None:
    registry = default_registry()
    fallbacks = {t: extractor_for(t, registry).fallback_codes for t in registry.resource_types}
    assert {t: codes for t, codes in fallbacks.items() if codes} == {}


def _examples() -> Iterator[dict[str, Any]]:
    skip = (
        "StructureDefinition-",
        "SearchParameter-",
        "ValueSet-",
        "CodeSystem-",
        "ConceptMap-",
        "OperationDefinition-",
        "CompartmentDefinition-",
        "ImplementationGuide-",
    )
    with tarfile.open(EXAMPLES) as tar:
        for member in tar.getmembers():
            name = member.name.rsplit("/", 1)[-1]
            if not name.endswith(".json") or name.startswith(skip) or name in ("package.json", ".index.json"):
                continue
            handle = tar.extractfile(member)
            assert handle is not None
            resource = json.load(handle, parse_float=Decimal)
            if isinstance(resource, dict) and is_resource_type(str(resource.get("resourceType"))):
                yield resource


@pytest.mark.skipif(not EXAMPLES.exists(), reason=f"official examples not found at {EXAMPLES}")
def test_fast_path_agrees_with_fhirpathpy_on_official_examples() -> None:
    registry = default_registry()
    checked = non_empty = 0
    mismatches: list[str] = []
    for resource in _examples():
        resource_type = resource["resourceType"]
        fast = extractor_for(resource_type, registry)
        slow = extractor_for(resource_type, registry, "fhirpathpy")
        for fast_param, slow_param in zip(fast.params, slow.params, strict=True):
            assert fast_param.code == slow_param.code
            expected = set(slow_param.run([resource], resource))
            got = set(fast_param.run([resource], resource))
            checked += 1
            non_empty += bool(expected)
            if got != expected:
                mismatches.append(f"{resource_type}/{resource.get('id')} {fast_param.code}: {got ^ expected}")
    assert checked > 16000 and non_empty > 6000
    assert mismatches == []

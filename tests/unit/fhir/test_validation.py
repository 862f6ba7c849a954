"""pms.fhir.validation: the official R4 examples pass, and each kind of problem is reported precisely."""

from __future__ import annotations

import copy
import gzip
import importlib.util
import json
import tarfile
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from pms.core.errors import Issue
from pms.fhir.validation import MAX_ISSUES, is_resource_type, resource_types, validate_resource

ROOT = Path(__file__).resolve().parents[3]
SHARED = ROOT.parent / "shared"
PACKAGE = SHARED / "fhir" / "hl7.fhir.r4.examples-4.0.1.tgz"
SCHEMA = ROOT / "src" / "pms" / "fhir" / "data" / "r4-validation.json.gz"

# Files of the official package that are invalid in the spec itself: (code, expression) of the first issue.
KNOWN_INVALID: dict[str, tuple[str, str]] = {
    # name and status are 1..1 but the package's own IG resource omits them
    "ImplementationGuide-fhir.json": ("required", "ImplementationGuide.name"),
    # nested items lack the mandatory linkId
    "Questionnaire-qs1.json": ("required", "Questionnaire.item[0].item[0].linkId"),
    # extension search parameters published without the mandatory `base`
    **{
        f"SearchParameter-{kind}-extensions-{rt}-{code}.json": ("required", "SearchParameter.base")
        for kind, rt in (("codesystem", "CodeSystem"), ("valueset", "ValueSet"))
        for code in ("author", "effective", "end", "keyword", "workflow")
    },
    # its id has 68 characters; R4 ids are at most 64
    "SearchParameter-questionnaireresponse-extensions-QuestionnaireResponse-item-subject.json": (
        "value",
        "SearchParameter.id",
    ),
}


@cache
def _package() -> dict[str, dict[str, Any]]:
    """Every resource file of the official package, by file name."""
    found: dict[str, dict[str, Any]] = {}
    with tarfile.open(PACKAGE) as tar:
        for member in tar.getmembers():
            name = member.name.rsplit("/", 1)[-1]
            if not name.endswith(".json") or name in ("package.json", "ig-r4.json"):
                continue
            handle = tar.extractfile(member)
            assert handle is not None
            doc = json.load(handle)
            if isinstance(doc, dict) and "resourceType" in doc:
                found[name] = doc
    return found


def _groups() -> list[str]:
    """Test ids: one per file-name prefix (Patient, Observation, StructureDefinition, ...)."""
    if not PACKAGE.exists():
        return ["(package missing)"]
    return sorted({name.split("-", 1)[0] for name in _package()})


@pytest.fixture
def package() -> dict[str, dict[str, Any]]:
    if not PACKAGE.exists():
        pytest.skip(f"official R4 package not found at {PACKAGE} (../shared is only needed by tests)")
    return _package()


@pytest.mark.parametrize("group", _groups())
def test_official_examples_are_accepted(package: dict[str, dict[str, Any]], group: str) -> None:
    problems = {}
    for name, doc in package.items():
        if name.split("-", 1)[0] != group or name in KNOWN_INVALID:
            continue
        found = validate_resource(doc)
        if found:
            problems[name] = [f"{i.code} {i.expression}: {i.diagnostics}" for i in found[:3]]
    assert not problems, json.dumps(problems, indent=1)


@pytest.mark.parametrize("name", sorted(KNOWN_INVALID))
def test_known_invalid_examples_are_rejected_for_their_defect(
    package: dict[str, dict[str, Any]], name: str
) -> None:
    code, expression = KNOWN_INVALID[name]
    found = validate_resource(package[name])
    assert found, f"{name} is no longer rejected: drop it from KNOWN_INVALID"
    assert (found[0].code, found[0].expression) == (code, (expression,))


def test_committed_schema_matches_the_generator(package: dict[str, dict[str, Any]]) -> None:
    spec = importlib.util.spec_from_file_location(
        "gen_validation_schema", ROOT / "tools" / "gen_validation_schema.py"
    )
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    schema, _ = generator.compile_schema(PACKAGE)
    committed = json.loads(gzip.decompress(SCHEMA.read_bytes()))
    assert committed == json.loads(json.dumps(schema)), (
        "run tools/gen_validation_schema.py and commit the output"
    )


# --- targeted cases ---------------------------------------------------------------------------------------


def patient(**fields: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "p1", **fields}


def observation(**fields: Any) -> dict[str, Any]:
    base = {"resourceType": "Observation", "status": "final", "code": {"text": "weight"}}
    return {**base, **fields}


def only(resource: dict[str, Any]) -> Issue:
    found = validate_resource(resource)
    assert len(found) == 1, found
    return found[0]


def where(issue: Issue) -> tuple[str, str]:
    return issue.code, issue.expression[0]


class TestValid:
    def test_minimal_resources(self) -> None:
        assert validate_resource({"resourceType": "Patient"}) == []
        assert validate_resource(observation()) == []

    def test_full_patient(self) -> None:
        resource = patient(
            meta={"lastUpdated": "2024-01-02T03:04:05.678+01:00", "profile": ["http://example.org/p|1"]},
            name=[{"family": "Doe", "given": ["Jane", "Q"]}],
            gender="female",
            birthDate="2020-02-29",
            deceasedDateTime="2024",
            multipleBirthInteger=2,
            photo=[{"contentType": "image/png", "data": "iVBORw0K\nGgo="}],
            contact=[{"gender": "other", "period": {"start": "2020-01"}}],
        )
        assert validate_resource(resource) == []

    def test_primitive_extensions_aligned_with_nulls(self) -> None:
        ext = {"extension": [{"url": "http://example.org/x", "valueString": "y"}]}
        resource = patient(
            name=[{"given": ["Jane", None], "_given": [None, ext]}],
            _birthDate=ext,
            _gender={"id": "g1"},
        )
        assert validate_resource(resource) == []

    def test_decimal_parsed_as_decimal(self) -> None:
        text = '{"resourceType": "Observation", "status": "final", "code": {"text": "t"}, '
        text += '"valueQuantity": {"value": 1.50}}'
        assert validate_resource(json.loads(text, parse_float=Decimal)) == []

    def test_content_reference_and_nested_resources(self) -> None:
        questionnaire = {
            "resourceType": "Questionnaire",
            "status": "draft",
            "item": [{"linkId": "1", "type": "group", "item": [{"linkId": "1.1", "type": "string"}]}],
        }
        bundle = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": questionnaire}, {"resource": patient(contained=[observation(id="o")])}],
        }
        assert validate_resource(bundle) == []

    def test_coding_from_another_system_is_not_judged_by_the_binding(self) -> None:
        condition = {
            "resourceType": "Condition",
            "subject": {"reference": "Patient/p1"},
            "clinicalStatus": {"coding": [{"system": "http://example.org/local", "code": "whatever"}]},
        }
        assert validate_resource(condition) == []

    def test_resource_types(self) -> None:
        assert len(resource_types()) == 146
        assert is_resource_type("Patient") and is_resource_type("MedicinalProduct")
        assert not is_resource_type("DomainResource") and not is_resource_type("HumanName")


class TestStructure:
    def test_unknown_element(self) -> None:
        issue = only(patient(name=[{"family": "Doe", "foo": 1}]))
        assert where(issue) == ("structure", "Patient.name[0].foo")
        assert issue.diagnostics == "Unknown element 'foo' in Patient.name[0]"

    def test_wrong_json_type(self) -> None:
        assert where(only(patient(active="true"))) == ("structure", "Patient.active")
        assert where(only(patient(name=[{"family": 42}]))) == ("structure", "Patient.name[0].family")
        assert where(only(patient(maritalStatus="M"))) == ("structure", "Patient.maritalStatus")

    def test_array_where_single_and_single_where_array(self) -> None:
        assert where(only(patient(gender=["male"]))) == ("structure", "Patient.gender")
        assert where(only(patient(name={"family": "Doe"}))) == ("structure", "Patient.name")
        assert where(only(patient(name=[{"given": "Jane"}]))) == ("structure", "Patient.name[0].given")

    def test_empty_string_object_and_array(self) -> None:
        assert where(only(patient(name=[{"family": ""}]))) == ("value", "Patient.name[0].family")
        assert where(only(patient(maritalStatus={}))) == ("structure", "Patient.maritalStatus")
        assert where(only(patient(name=[]))) == ("structure", "Patient.name")
        assert where(only(patient(name=[{}]))) == ("structure", "Patient.name[0]")

    def test_null_values(self) -> None:
        assert where(only(patient(gender=None))) == ("structure", "Patient.gender")
        assert where(only(patient(name=[{"given": ["a", None]}]))) == (
            "structure",
            "Patient.name[0].given[1]",
        )
        assert where(only(patient(name=[None]))) == ("structure", "Patient.name[0]")

    def test_two_choice_values(self) -> None:
        issue = only(observation(valueString="x", valueBoolean=True))
        assert where(issue) == ("structure", "Observation.valueBoolean")
        assert "value[x]" in issue.diagnostics
        # a primitive extension counts as using its choice variant
        assert where(only(observation(valueBoolean=True, _valueString={"id": "x"}))) == (
            "structure",
            "Observation.valueString",
        )

    def test_invalid_choice_suffix(self) -> None:
        issue = only(observation(valueFoo="x"))
        assert where(issue) == ("structure", "Observation.valueFoo")
        assert "value[x] allows valueQuantity" in issue.diagnostics
        assert where(only(patient(deceasedString="yes"))) == ("structure", "Patient.deceasedString")

    def test_content_reference_is_walked(self) -> None:
        questionnaire = {
            "resourceType": "Questionnaire",
            "status": "draft",
            "item": [
                {"linkId": "1", "type": "group", "item": [{"linkId": "1.1", "type": "string", "foo": 1}]}
            ],
        }
        assert where(only(questionnaire)) == ("structure", "Questionnaire.item[0].item[0].foo")

    def test_resource_type(self) -> None:
        assert where(only({"resourceType": "Foo"})) == ("structure", "Resource")
        assert where(only({"id": "x"})) == ("required", "Resource")
        assert where(only({"resourceType": "DomainResource"})) == ("structure", "Resource")
        assert where(only(patient(name=[{"resourceType": "HumanName"}]))) == (
            "structure",
            "Patient.name[0].resourceType",
        )


class TestRequired:
    def test_missing_required_elements(self) -> None:
        found = validate_resource({"resourceType": "Observation"})
        assert [where(i) for i in found] == [
            ("required", "Observation.status"),
            ("required", "Observation.code"),
        ]
        assert (
            found[0].diagnostics == "Missing required element 'status' in Observation (minimum cardinality 1)"
        )

    def test_required_choice_and_backbone(self) -> None:
        assert where(only({"resourceType": "Linkage", "item": [{"type": "source"}]})) == (
            "required",
            "Linkage.item[0].resource",
        )
        request: dict[str, Any] = {"resourceType": "MedicationRequest", "status": "active", "intent": "order"}
        request["subject"] = {"reference": "Patient/p1"}
        issue = only(request)
        assert where(issue) == ("required", "MedicationRequest.medication[x]")
        assert validate_resource({**request, "medicationReference": {"reference": "Medication/m"}}) == []
        issue = only(
            {"resourceType": "Observation", "status": "final", "code": {"text": "t"}, "component": [{}]}
        )
        assert where(issue) == ("structure", "Observation.component[0]")

    def test_primitive_present_only_through_extension_counts(self) -> None:
        absent = {
            "extension": [
                {"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}
            ]
        }
        resource = {"resourceType": "Observation", "_status": absent, "code": {"text": "t"}}
        assert validate_resource(resource) == []


class TestPrimitives:
    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("birthDate", "2020-13-01"),
            ("birthDate", "2021-02-29"),
            ("birthDate", "20200101"),
            ("deceasedDateTime", "2020-01-01T10:00:00"),  # a time needs a zone
            ("deceasedDateTime", "2020-01-01T25:00:00Z"),
        ],
    )
    def test_bad_dates(self, field: str, value: str) -> None:
        issue = only(patient(**{field: value}))
        assert where(issue) == ("value", f"Patient.{field}")
        assert value in issue.diagnostics

    def test_message_wording(self) -> None:
        assert only(patient(birthDate="2020-13-01")).diagnostics.startswith(
            "Invalid date '2020-13-01' at Patient.birthDate"
        )

    def test_bad_instant(self) -> None:
        assert where(only(patient(meta={"lastUpdated": "2020-01-01"}))) == (
            "value",
            "Patient.meta.lastUpdated",
        )

    @pytest.mark.parametrize("value", ["has space", "a" * 65, "under_score", ""])
    def test_invalid_id(self, value: str) -> None:
        assert where(only(patient(id=value))) == ("value", "Patient.id")

    def test_numbers(self) -> None:
        assert where(only(patient(multipleBirthInteger=1.5))) == ("value", "Patient.multipleBirthInteger")
        assert where(only(patient(multipleBirthInteger=2**31))) == ("value", "Patient.multipleBirthInteger")
        assert where(only(patient(multipleBirthInteger=True))) == (
            "structure",
            "Patient.multipleBirthInteger",
        )
        assert where(only(observation(valueQuantity={"value": "1.5"}))) == (
            "structure",
            "Observation.valueQuantity.value",
        )
        rank = {"system": "phone", "value": "1", "rank": 0}  # positiveInt
        assert where(only(patient(telecom=[rank]))) == ("value", "Patient.telecom[0].rank")

    def test_code_uri_base64_and_friends(self) -> None:
        assert where(only(patient(gender=" male"))) == ("value", "Patient.gender")
        assert where(only(patient(implicitRules="has space"))) == ("value", "Patient.implicitRules")
        assert where(only(patient(photo=[{"data": "not base64!"}]))) == ("value", "Patient.photo[0].data")
        assert where(only(patient(text={"status": "generated", "div": "<p>x</p>"}))) == (
            "value",
            "Patient.text.div",
        )


class TestBindings:
    def test_bad_code(self) -> None:
        issue = only(patient(gender="male2"))
        assert where(issue) == ("code-invalid", "Patient.gender")
        assert issue.diagnostics == (
            "'male2' is not a valid code for Patient.gender: "
            "it must be one of male | female | other | unknown (required binding to http://hl7.org/fhir/ValueSet/administrative-gender)"
        )

    def test_bad_code_in_datatype_and_array(self) -> None:
        assert where(only(patient(name=[{"use": "nick"}]))) == ("code-invalid", "Patient.name[0].use")
        resource = {
            "resourceType": "CapabilityStatement",
            "status": "draft",
            "date": "2020",
            "kind": "instance",
            "fhirVersion": "4.0.1",
            "format": ["json"],
            "rest": [
                {
                    "mode": "server",
                    "resource": [{"type": "Patient", "interaction": [{"code": "read"}, {"code": "fly"}]}],
                }
            ],
        }
        assert where(only(resource)) == (
            "code-invalid",
            "CapabilityStatement.rest[0].resource[0].interaction[1].code",
        )

    def test_coding_in_required_codeable_concept(self) -> None:
        condition = {
            "resourceType": "Condition",
            "subject": {"reference": "Patient/p1"},
            "clinicalStatus": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"},
                    {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "bogus"},
                ]
            },
        }
        issue = only(condition)
        assert where(issue) == ("code-invalid", "Condition.clinicalStatus.coding[1].code")
        assert "condition-clinical" in issue.diagnostics

    def test_unexpandable_value_sets_are_skipped(self) -> None:
        # Attachment.contentType binds to BCP-13 MIME types, which the package cannot expand
        assert validate_resource(patient(photo=[{"contentType": "application/x-made-up"}])) == []


class TestExtensions:
    def test_extension_without_url(self) -> None:
        assert where(only(patient(extension=[{"valueString": "x"}]))) == (
            "required",
            "Patient.extension[0].url",
        )

    def test_extension_with_both_or_neither(self) -> None:
        both = {"url": "http://e", "valueString": "x", "extension": [{"url": "a", "valueString": "y"}]}
        assert where(only(patient(extension=[both]))) == ("invalid", "Patient.extension[0]")
        assert where(only(patient(modifierExtension=[{"url": "http://e"}]))) == (
            "required",
            "Patient.modifierExtension[0]",
        )

    def test_nested_extension_problems(self) -> None:
        nested = {
            "url": "http://e",
            "extension": [{"url": "a", "valueInteger": "1"}, {"url": "b", "valueFoo": 1}],
        }
        found = validate_resource(patient(extension=[nested]))
        assert [where(i) for i in found] == [
            ("structure", "Patient.extension[0].extension[0].valueInteger"),
            ("structure", "Patient.extension[0].extension[1].valueFoo"),
        ]

    def test_bad_primitive_extension(self) -> None:
        assert where(only(patient(_birthDate="x"))) == ("structure", "Patient.birthDate")
        assert where(only(patient(_birthDate={}))) == ("structure", "Patient.birthDate")
        assert where(only(patient(_birthDate={"foo": 1}))) == ("structure", "Patient.birthDate.foo")
        assert where(only(patient(_birthDate={"extension": [{"url": "u"}]}))) == (
            "required",
            "Patient.birthDate.extension[0]",
        )
        assert where(only(patient(_name={"id": "x"}))) == ("structure", "Patient.name")  # not a primitive

    def test_primitive_extension_arrays(self) -> None:
        ext = {"extension": [{"url": "http://e", "valueString": "x"}]}
        assert where(only(patient(name=[{"given": ["a"], "_given": [ext, ext]}]))) == (
            "structure",
            "Patient.name[0].given",
        )
        assert where(only(patient(name=[{"given": ["a"], "_given": ext}]))) == (
            "structure",
            "Patient.name[0].given",
        )
        assert where(only(patient(name=[{"_given": [ext, None]}]))) == (
            "structure",
            "Patient.name[0].given[1]",
        )

    def test_xhtml_takes_no_extensions(self) -> None:
        ext = [{"url": "http://e", "valueString": "x"}]
        text = {"status": "generated", "div": "<div>x</div>", "_div": {"extension": ext}}
        assert where(only(patient(text=text))) == ("structure", "Patient.text.div.extension")


class TestNestedResources:
    def test_bad_contained_resource(self) -> None:
        resource = patient(contained=[{"resourceType": "Practitioner", "id": "pr", "gender": "robot"}])
        assert where(only(resource)) == ("code-invalid", "Patient.contained[0].gender")
        assert where(only(patient(contained=[{"resourceType": "Nope"}]))) == (
            "structure",
            "Patient.contained[0]",
        )
        assert where(only(patient(contained=["x"]))) == ("structure", "Patient.contained[0]")

    def test_bundle_entry_resource_invalid(self) -> None:
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"resource": patient(), "request": {"method": "POST", "url": "Patient"}},
                {"resource": observation(status="done"), "request": {"method": "POST", "url": "Observation"}},
            ],
        }
        assert where(only(bundle)) == ("code-invalid", "Bundle.entry[1].resource.status")

    def test_bundle_entry_link_content_reference(self) -> None:
        bundle = {"resourceType": "Bundle", "type": "searchset", "entry": [{"link": [{"relation": "self"}]}]}
        assert where(only(bundle)) == ("required", "Bundle.entry[0].link[0].url")

    def test_parameters_resource(self) -> None:
        parameters = {
            "resourceType": "Parameters",
            "parameter": [{"name": "p", "resource": {"resourceType": "Patient", "x": 1}}],
        }
        assert where(only(parameters)) == ("structure", "Parameters.parameter[0].resource.x")


def test_all_problems_are_reported_up_to_the_cap() -> None:
    found = validate_resource(patient(name=[{"family": i} for i in range(300)], gender="x"))
    assert len(found) == MAX_ISSUES
    two = validate_resource(patient(gender="x", birthDate="y"))
    assert [i.expression for i in two] == [("Patient.gender",), ("Patient.birthDate",)]


def test_validation_does_not_modify_the_resource() -> None:
    resource = patient(name=[{"given": ["a", None], "_given": [None, {"id": "x"}]}], gender="male2")
    before = copy.deepcopy(resource)
    validate_resource(resource)
    assert resource == before

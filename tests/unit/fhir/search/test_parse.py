"""The search query parser against http://hl7.org/fhir/R4/search.html; expectations worked out by hand."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import parse_qsl

import pytest

from pms.core.errors import AppError
from pms.fhir.search import (
    MAX_PARAMS,
    MAX_VALUE_LENGTH,
    CompositeValue,
    Criterion,
    DateValue,
    Handling,
    Include,
    MissingValue,
    NumberValue,
    OfTypeValue,
    QuantityValue,
    ReferenceValue,
    ReverseChain,
    SearchRequest,
    SortKey,
    SpecialValue,
    StringValue,
    TokenValue,
    UriValue,
    handling_from_prefer,
    parse_search,
)

# --- a small registry with real R4 definitions (search-parameters.json) --------------------------------


@dataclass(frozen=True)
class P:
    code: str
    type: str
    targets: tuple[str, ...] = ()
    components: tuple[P, ...] = ()


TYPES = frozenset(
    {
        "Patient",
        "Observation",
        "Encounter",
        "Organization",
        "ValueSet",
        "Practitioner",
        "PractitionerRole",
        "Appointment",
        "MedicationRequest",
        "Provenance",
        "Group",
        "Device",
        "Location",
        "AuditEvent",
        "DiagnosticReport",
        "RiskAssessment",
        "EpisodeOfCare",
        "RelatedPerson",
        "HealthcareService",
        "Medication",
        "Substance",
        "Condition",
    }
)
ANY = tuple(sorted(TYPES))
COMMON = (P("_id", "token"), P("_lastUpdated", "date"), P("_tag", "token"), P("_profile", "uri"))
PARAMS: dict[str, tuple[P, ...]] = {
    "Patient": (
        P("name", "string"),
        P("given", "string"),
        P("family", "string"),
        P("birthdate", "date"),
        P("gender", "token"),
        P("identifier", "token"),
        P("organization", "reference", ("Organization",)),
        P("general-practitioner", "reference", ("Practitioner", "Organization", "PractitionerRole")),
    ),
    "Observation": (
        P("subject", "reference", ("Group", "Device", "Patient", "Location")),
        P("patient", "reference", ("Patient", "Group")),
        P("code", "token"),
        P("date", "date"),
        P("value-quantity", "quantity"),
        P("code-value-quantity", "composite", (), (P("code", "token"), P("value-quantity", "quantity"))),
        P(
            "component-code-value-quantity",
            "composite",
            (),
            (P("component-code", "token"), P("component-value-quantity", "quantity")),
        ),
        P("encounter", "reference", ("Encounter", "EpisodeOfCare")),
        P("category", "token"),
        P("status", "token"),
    ),
    "Encounter": (
        P("patient", "reference", ("Patient", "Group")),
        P("date", "date"),
        P("subject", "reference", ("Group", "Patient")),
    ),
    "Organization": (P("name", "string"), P("partof", "reference", ("Organization",))),
    "ValueSet": (P("url", "uri"),),
    "Practitioner": (P("name", "string"),),
    "Appointment": (
        P("date", "date"),
        P("practitioner", "reference", ("Practitioner",)),
        P(
            "actor",
            "reference",
            (
                "Practitioner",
                "PractitionerRole",
                "RelatedPerson",
                "Device",
                "Patient",
                "HealthcareService",
                "Location",
            ),
        ),
    ),
    "MedicationRequest": (P("patient", "reference", ("Patient", "Group")),),
    "Provenance": (P("target", "reference", ANY),),
    "AuditEvent": (
        P("entity", "reference", ANY),
        P("agent", "reference", ("Practitioner", "Organization", "Device", "Patient", "PractitionerRole")),
    ),
    "DiagnosticReport": (
        P("subject", "reference", ("Group", "Device", "Patient", "Location")),
        P("result", "reference", ("Observation",)),
    ),
    "Location": (
        P("name", "string"),
        P("organization", "reference", ("Organization",)),
        P("near", "special"),
    ),
    "Device": (P("organization", "reference", ("Organization",)),),
    "Group": (P("member", "reference", ("Practitioner", "Group", "Device", "Patient")),),
    "RiskAssessment": (P("probability", "number"),),
}


class FakeLookup:
    def param(self, resource_type: str, code: str) -> P | None:
        if resource_type not in TYPES:
            return None
        return next((p for p in COMMON + PARAMS.get(resource_type, ()) if p.code == code), None)

    def is_resource_type(self, name: str) -> bool:
        return name in TYPES


LOOKUP = FakeLookup()


def parse(
    query: str | list[tuple[str, str]],
    resource_type: str | None = "Patient",
    *,
    handling: Handling = "lenient",
    max_count: int = 1000,
) -> SearchRequest:
    """Parse a query string (URL-decoded like a web framework would) or ready pairs."""
    pairs = parse_qsl(query, keep_blank_values=True) if isinstance(query, str) else query
    return parse_search(resource_type, pairs, LOOKUP, handling=handling, max_count=max_count)


def only(query: str | list[tuple[str, str]], resource_type: str | None = "Patient") -> Criterion:
    request = parse(query, resource_type)
    assert len(request.criteria) == 1, request
    return request.criteria[0]


def value(query: str | list[tuple[str, str]], resource_type: str | None = "Patient") -> object:
    criterion = only(query, resource_type)
    assert len(criterion.values) == 1, criterion
    return criterion.values[0]


def fails(
    query: str | list[tuple[str, str]],
    resource_type: str | None = "Patient",
    *,
    handling: Handling = "lenient",
) -> str:
    """The diagnostics of the 400 error the query raises."""
    with pytest.raises(AppError) as caught:
        parse(query, resource_type, handling=handling)
    assert caught.value.status == 400
    return str(caught.value)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


# --- behaviours ------------------------------------------------------------------------------------------


class TestBasics:
    def test_no_parameters(self) -> None:
        assert parse("") == SearchRequest("Patient")

    def test_simple_string(self) -> None:
        assert only("name=peter") == Criterion("name", "string", None, (StringValue("peter"),))

    def test_unknown_resource_type_is_an_error(self) -> None:
        assert fails("name=x", "Patients") == "Unknown resource type 'Patients'"

    def test_search_parameter_names_are_case_sensitive(self) -> None:
        request = parse("Name=peter")
        assert request.criteria == () and len(request.issues) == 1


class TestEmptyAndIgnored:
    # search.html#errors: "Empty parameters are not an error - they are just ignored"
    def test_empty_value_is_ignored(self) -> None:
        assert parse("name=&birthdate=&_count=&_sort=") == SearchRequest("Patient")

    def test_only_commas_is_empty(self) -> None:
        assert parse("gender=,,") == SearchRequest("Patient")

    def test_empty_or_items_are_skipped(self) -> None:
        assert only("gender=male,,female").values == (TokenValue(None, "male"), TokenValue(None, "female"))

    def test_format_and_pretty_are_not_criteria(self) -> None:
        assert parse("_format=json&_pretty=true") == SearchRequest("Patient")


class TestAndOr:
    # search.html#combining: `,` is OR within a parameter, repeating a parameter is AND
    def test_comma_is_or(self) -> None:
        assert only("gender=male,female").values == (TokenValue(None, "male"), TokenValue(None, "female"))

    def test_repetition_is_and(self) -> None:
        request = parse("given=eve&given=lyn,ann")
        assert [c.values for c in request.criteria] == [
            (StringValue("eve"),),
            (StringValue("lyn"), StringValue("ann")),
        ]


class TestEscaping:
    # search.html#escaping
    def test_escaped_comma_is_literal(self) -> None:
        assert only(r"category=a\,b", "Observation").values == (TokenValue(None, "a,b"),)

    def test_unescaped_comma_splits(self) -> None:
        assert only("category=a,b", "Observation").values == (TokenValue(None, "a"), TokenValue(None, "b"))

    def test_escaped_pipe_is_part_of_the_code(self) -> None:
        assert value(r"identifier=http://x.org|a\|b") == TokenValue("http://x.org", "a|b")

    def test_escaped_backslash(self) -> None:
        assert value(r"name=xx\\xx") == StringValue("xx\\xx")

    def test_escaped_dollar_in_string(self) -> None:
        assert value(r"name=xx\$xx") == StringValue("xx$xx")

    def test_lone_backslash_is_illegal(self) -> None:
        assert "Invalid escape in parameter 'name'" in fails(r"name=xx\xx")

    def test_trailing_backslash_is_illegal(self) -> None:
        assert "Invalid escape" in fails([("name", "xx\\")])

    def test_spec_value_set_urls(self) -> None:
        plain = only(
            "url=http://acme.org/fhir/ValueSet/123,http://acme.org/fhir/ValueSet/124,125", "ValueSet"
        )
        assert plain.values == (
            UriValue("http://acme.org/fhir/ValueSet/123"),
            UriValue("http://acme.org/fhir/ValueSet/124"),
            UriValue("125"),
        )
        escaped = only(
            r"url=http://acme.org/fhir/ValueSet/123,http://acme.org/fhir/ValueSet/124\,125", "ValueSet"
        )
        assert escaped.values == (
            UriValue("http://acme.org/fhir/ValueSet/123"),
            UriValue("http://acme.org/fhir/ValueSet/124,125"),
        )

    def test_percent_encoded_comma_is_still_a_separator(self) -> None:
        # % decoding happens first; the `\` escape is a different level.
        assert len(only("category=a%2Cb", "Observation").values) == 2
        assert only("category=a%5C%2Cb", "Observation").values == (TokenValue(None, "a,b"),)


class TestModifiers:
    # search.html#modifiers
    def test_missing(self) -> None:
        assert only("gender:missing=true") == Criterion("gender", "token", "missing", (MissingValue(True),))
        assert value("birthdate:missing=false") == MissingValue(False)
        assert value("organization:missing=true") == MissingValue(True)

    def test_missing_needs_a_boolean(self) -> None:
        assert "expected true or false" in fails("gender:missing=yes")

    def test_string_modifiers(self) -> None:
        for modifier in ("exact", "contains", "text"):
            criterion = only(f"given:{modifier}=Eve")
            assert (criterion.modifier, criterion.values) == (modifier, (StringValue("Eve"),))

    def test_token_text_is_a_string(self) -> None:
        assert only("code:text=headache", "Observation").values == (StringValue("headache"),)

    def test_token_not_above_below(self) -> None:
        assert only("gender:not=male").modifier == "not"
        assert value("code:below=126851005", "Observation") == TokenValue(None, "126851005")
        assert value("code:above=http://snomed.info/sct|126851005", "Observation") == TokenValue(
            "http://snomed.info/sct", "126851005"
        )

    def test_token_in_takes_a_value_set(self) -> None:
        criterion = only("code:in=http%3A%2F%2Fsnomed.info%2Fsct%3Ffhir_vs%3Disa%2F126851005", "Observation")
        assert criterion.values == (UriValue("http://snomed.info/sct?fhir_vs=isa/126851005"),)
        assert value("code:not-in=http://acme.org/fhir/ValueSet/cardiac", "Observation") == UriValue(
            "http://acme.org/fhir/ValueSet/cardiac"
        )

    def test_token_of_type(self) -> None:
        criterion = only("identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|446053")
        assert criterion.values == (
            OfTypeValue("http://terminology.hl7.org/CodeSystem/v2-0203", "MR", "446053"),
        )

    def test_of_type_needs_three_parts(self) -> None:
        assert "system|code|value" in fails("identifier:of-type=MR|446053")
        assert "system|code|value" in fails("identifier:of-type=|MR|446053")

    def test_uri_above_below(self) -> None:
        assert only("url:below=http://acme.org/fhir/", "ValueSet").modifier == "below"
        assert value("url:above=http://acme.org/fhir/ValueSet/123/_history/5", "ValueSet") == UriValue(
            "http://acme.org/fhir/ValueSet/123/_history/5"
        )

    def test_modifier_not_defined_for_the_type_is_rejected(self) -> None:
        # "Server SHALL reject any search request that contains ... a modifier that the server does not
        # support for that parameter" -- also in lenient mode.
        assert (
            fails("birthdate:exact=2020")
            == "Modifier ':exact' is not supported on parameter 'birthdate:exact' (type date)"
        )
        assert "not supported" in fails("name:below=x")
        assert "not supported" in fails("gender:foo=x")
        assert "not supported" in fails("gender:contains=x")

    def test_composite_takes_no_modifiers(self) -> None:
        assert "not supported" in fails("code-value-quantity:missing=true", "Observation")

    def test_empty_or_double_modifier(self) -> None:
        assert "Empty modifier" in fails("name:=x")
        assert "not supported" in fails("name:exact:contains=x")


class TestPrefixes:
    # search.html#prefix
    @pytest.mark.parametrize("prefix", ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"])
    def test_all_prefixes(self, prefix: str) -> None:
        number = value(f"probability={prefix}0.8", "RiskAssessment")
        assert isinstance(number, NumberValue) and number.prefix == prefix
        date = value(f"birthdate={prefix}2020")
        assert isinstance(date, DateValue) and date.prefix == prefix
        quantity = value(f"value-quantity={prefix}5.4", "Observation")
        assert isinstance(quantity, QuantityValue) and quantity.prefix == prefix

    def test_default_is_eq(self) -> None:
        assert isinstance(date := value("birthdate=2020"), DateValue) and date.prefix == "eq"

    def test_unknown_prefix(self) -> None:
        assert fails("birthdate=zz2020") == "Unknown prefix 'zz' in parameter 'birthdate'"
        assert "Unknown prefix 'xx'" in fails("probability=xx5", "RiskAssessment")

    def test_prefix_needs_a_following_number(self) -> None:
        assert fails("birthdate=gt") == "Invalid date 'gt' in parameter 'birthdate'"
        assert fails("birthdate=ge") == "Invalid date 'ge' in parameter 'birthdate'"

    def test_prefixes_apply_only_to_ordered_types(self) -> None:
        assert value("name=ge5") == StringValue("ge5")
        assert value("gender=gt100") == TokenValue(None, "gt100")

    def test_uppercase_prefix_is_not_a_prefix(self) -> None:
        assert "Unknown prefix 'GE'" in fails("birthdate=GE2020")


class TestDates:
    # search.html#date: a value is the implicit range of its precision
    @pytest.mark.parametrize(
        ("text", "low", "high", "precision"),
        [
            ("2020", utc(2020, 1, 1), utc(2021, 1, 1), "year"),
            ("2020-03", utc(2020, 3, 1), utc(2020, 4, 1), "month"),
            ("2020-12", utc(2020, 12, 1), utc(2021, 1, 1), "month"),
            ("2020-02-29", utc(2020, 2, 29), utc(2020, 3, 1), "day"),
            ("2013-01-14T10:00", utc(2013, 1, 14, 10), utc(2013, 1, 14, 10, 1), "minute"),
            ("2013-01-14T10:00:05", utc(2013, 1, 14, 10, 0, 5), utc(2013, 1, 14, 10, 0, 6), "second"),
            (
                "2013-01-14T10:00:05.5",
                utc(2013, 1, 14, 10, 0, 5, 500000),
                utc(2013, 1, 14, 10, 0, 5, 600000),
                "fraction",
            ),
            (
                "2013-01-14T10:00:05.123",
                utc(2013, 1, 14, 10, 0, 5, 123000),
                utc(2013, 1, 14, 10, 0, 5, 124000),
                "fraction",
            ),
            (
                "2013-01-14T10:00:05.1234567",
                utc(2013, 1, 14, 10, 0, 5, 123456),
                utc(2013, 1, 14, 10, 0, 5, 123457),
                "fraction",
            ),
        ],
    )
    def test_precision_ranges(self, text: str, low: datetime, high: datetime, precision: str) -> None:
        assert value(f"birthdate={text}") == DateValue("eq", text, low, high, precision, False)  # type: ignore[arg-type]

    def test_spec_ge_2013_01_14(self) -> None:
        assert value("birthdate=ge2013-01-14") == DateValue(
            "ge", "2013-01-14", utc(2013, 1, 14), utc(2013, 1, 15), "day", False
        )

    def test_spec_two_year_period(self) -> None:
        request = parse("date=ge2010-01-01&date=le2011-12-31", "Encounter")
        assert [(c.values[0].prefix, c.values[0].low) for c in request.criteria] == [  # type: ignore[union-attr]
            ("ge", utc(2010, 1, 1)),
            ("le", utc(2011, 12, 31)),
        ]

    def test_time_zones_convert_to_utc(self) -> None:
        zulu = value([("birthdate", "2020-01-01T10:00:00Z")])
        assert isinstance(zulu, DateValue) and zulu.has_timezone and zulu.low == utc(2020, 1, 1, 10)
        plus = value([("birthdate", "2020-01-01T10:00+01:00")])
        assert isinstance(plus, DateValue) and (plus.low, plus.high) == (
            utc(2020, 1, 1, 9),
            utc(2020, 1, 1, 9, 1),
        )
        minus = value([("birthdate", "2020-01-01T23:30:00-05:30")])
        assert isinstance(minus, DateValue) and minus.low == utc(2020, 1, 2, 5)

    def test_form_decoded_plus_is_accepted(self) -> None:
        # An unencoded `+` arrives as a space after form decoding.
        decoded = value("birthdate=2020-01-01T10:00:00+01:00")
        assert isinstance(decoded, DateValue)
        assert (decoded.value, decoded.low) == ("2020-01-01T10:00:00+01:00", utc(2020, 1, 1, 9))

    def test_no_time_zone_is_utc(self) -> None:
        local = value("birthdate=2020-01-01T10:00")
        assert isinstance(local, DateValue) and not local.has_timezone and local.low == utc(2020, 1, 1, 10)

    def test_last_year_has_an_open_end(self) -> None:
        last = value("birthdate=9999")
        assert isinstance(last, DateValue) and last.high == datetime.max.replace(tzinfo=UTC)

    @pytest.mark.parametrize(
        "text",
        [
            "2020-13",
            "2020-02-30",
            "2021-02-29",
            "2020-1-01",
            "20",
            "2020-01-01T10",  # minutes SHALL be present if an hour is
            "2020-01-01T24:00",
            "2020-01-01T10:60",
            "2020-01-01T10:00:61",
            "2020-01-01Z",  # a date has no time zone
            "2020-01-01T10:00+15:00",
            "2020-01-01T10:00+0100",
            "23 May 2009",  # the spec's own "incorrect format" example
            "0000",
            "2020-01-01T10:00:00.",
            "\uff12\uff10\uff12\uff10",  # non-ASCII digits
        ],
    )
    def test_invalid_dates(self, text: str) -> None:
        assert fails([("birthdate", text)]) == f"Invalid date '{text}' in parameter 'birthdate'"

    def test_invalid_date_in_or_list(self) -> None:
        assert fails("birthdate=2020,2020-13") == "Invalid date '2020-13' in parameter 'birthdate'"


class TestNumbers:
    # search.html#number: eq ranges by significant figures
    @pytest.mark.parametrize(
        ("text", "low", "high"),
        [
            ("100", "99.5", "100.5"),
            ("100.00", "99.995", "100.005"),
            ("1.00e2", "99.5", "100.5"),  # same significant digits as "100"
            ("1e2", "50", "150"),  # 1 significant figure (the spec's table says [95, 105): inconsistent)
            ("0.8", "0.75", "0.85"),
            ("8e-1", "0.75", "0.85"),
            ("-100", "-100.5", "-99.5"),
            ("0", "-0.5", "0.5"),
            ("2.0", "1.95", "2.05"),
        ],
    )
    def test_implicit_range(self, text: str, low: str, high: str) -> None:
        number = value(f"probability={text}", "RiskAssessment")
        assert number == NumberValue("eq", Decimal(text), Decimal(low), Decimal(high))

    def test_spec_gt_examples(self) -> None:
        assert value("probability=gt0.8", "RiskAssessment") == value("probability=gt8e-1", "RiskAssessment")

    @pytest.mark.parametrize(
        "text", ["abc", "1.", ".5", "1e", "NaN", "Infinity", "1_000", "0x10", "\u0661\u0660"]
    )
    def test_invalid_numbers(self, text: str) -> None:
        assert (
            fails([("probability", text)], "RiskAssessment")
            == f"Invalid number '{text}' in parameter 'probability'"
        )

    def test_out_of_range(self) -> None:
        assert "out of range" in fails("probability=1e99999", "RiskAssessment")
        assert "Invalid number" in fails("probability=" + "9" * 200, "RiskAssessment")


class TestQuantity:
    # search.html#quantity
    def test_full(self) -> None:
        assert value("value-quantity=5.4|http://unitsofmeasure.org|mg", "Observation") == QuantityValue(
            "eq", Decimal("5.4"), Decimal("5.35"), Decimal("5.45"), "http://unitsofmeasure.org", "mg"
        )

    def test_exponent_precision(self) -> None:
        # "a value of 0.0054(+/-0.000005) g"
        quantity = value("value-quantity=5.40e-3|http://unitsofmeasure.org|g", "Observation")
        assert isinstance(quantity, QuantityValue)
        assert (quantity.value, quantity.low, quantity.high) == (
            Decimal("0.0054"),
            Decimal("0.005395"),
            Decimal("0.005405"),
        )

    def test_code_without_system(self) -> None:
        quantity = value("value-quantity=5.4||mg", "Observation")
        assert isinstance(quantity, QuantityValue) and (quantity.system, quantity.code) == (None, "mg")

    def test_number_only(self) -> None:
        quantity = value("value-quantity=5.4", "Observation")
        assert isinstance(quantity, QuantityValue) and (quantity.system, quantity.code) == (None, None)

    def test_prefixes(self) -> None:
        quantity = value("value-quantity=le5.4|http://unitsofmeasure.org|mg", "Observation")
        assert isinstance(quantity, QuantityValue) and (quantity.prefix, quantity.value) == (
            "le",
            Decimal("5.4"),
        )

    def test_invalid(self) -> None:
        assert (
            fails("value-quantity=5.4|mg", "Observation")
            == "Invalid quantity '5.4|mg' in parameter 'value-quantity'"
        )
        assert "Invalid quantity" in fails("value-quantity=5.4|a|b|c", "Observation")
        assert "Invalid number 'mg'" in fails("value-quantity=mg||mg", "Observation")

    def test_escaped_unit(self) -> None:
        quantity = value(r"value-quantity=1|http://u|a\|b", "Observation")
        assert isinstance(quantity, QuantityValue) and quantity.code == "a|b"


class TestTokens:
    # search.html#token
    def test_code_only(self) -> None:
        assert value("gender=male") == TokenValue(None, "male")

    def test_spec_system_and_code(self) -> None:
        assert value("identifier=http://acme.org/patient|2345") == TokenValue(
            "http://acme.org/patient", "2345"
        )

    def test_no_system(self) -> None:
        assert value("identifier=|2345") == TokenValue("", "2345")

    def test_any_code_in_system(self) -> None:
        assert value("identifier=http://acme.org/patient|") == TokenValue("http://acme.org/patient", None)

    def test_cda_root_example(self) -> None:
        assert only("identifier=|1.2.3,1.2.3").values == (TokenValue("", "1.2.3"), TokenValue(None, "1.2.3"))

    def test_invalid(self) -> None:
        assert fails("identifier=|") == "Invalid token '|' in parameter 'identifier'"
        assert "Invalid token" in fails("identifier=a|b|c")

    def test_tag_and_id(self) -> None:
        assert value("_tag=http://acme.org/codes|needs-review") == TokenValue(
            "http://acme.org/codes", "needs-review"
        )
        assert only("_id=23") == Criterion("_id", "token", None, (TokenValue(None, "23"),))


class TestReferences:
    # search.html#reference
    def test_id_with_several_targets(self) -> None:
        assert value("subject=23", "Observation") == ReferenceValue("23", None, "23")

    def test_id_with_a_single_target_gets_its_type(self) -> None:
        assert value("practitioner=123", "Appointment") == ReferenceValue("123", "Practitioner", "123")

    def test_type_and_id(self) -> None:
        assert value("subject=Patient/23", "Observation") == ReferenceValue("Patient/23", "Patient", "23")

    def test_versioned(self) -> None:
        assert value("subject=Patient/23/_history/2", "Observation") == ReferenceValue(
            "Patient/23/_history/2", "Patient", "23", "2"
        )

    def test_absolute_url_is_kept_and_split(self) -> None:
        url = "http://example.org/fhir/Patient/123"
        assert value(f"subject={url}", "Observation") == ReferenceValue(url, "Patient", "123", None, url)

    def test_absolute_url_without_type_and_id(self) -> None:
        urn = "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"
        assert value(f"subject={urn}", "Observation") == ReferenceValue(urn, url=urn)

    def test_canonical_with_version(self) -> None:
        assert value("subject=http://acme.com/some-profile|1.0", "Observation") == ReferenceValue(
            "http://acme.com/some-profile", url="http://acme.com/some-profile", canonical_version="1.0"
        )

    def test_type_modifier(self) -> None:
        criterion = only("subject:Patient=23", "Observation")
        assert criterion == Criterion(
            "subject", "reference", None, (ReferenceValue("23", "Patient", "23"),), target_type="Patient"
        )
        assert value("subject:Patient=Patient/23", "Observation") == ReferenceValue(
            "Patient/23", "Patient", "23"
        )

    def test_type_modifier_mismatch(self) -> None:
        assert "not a Patient" in fails("subject:Patient=Group/23", "Observation")
        assert "a plain id" in fails("subject:Patient=http://x.org/Patient/1", "Observation")

    def test_type_modifier_must_be_a_target(self) -> None:
        assert fails("subject:Medication=1", "Observation") == (
            "Invalid parameter 'subject:Medication': 'subject' cannot refer to a Medication"
        )

    def test_identifier_modifier_is_a_token(self) -> None:
        criterion = only("subject:identifier=http://acme.org/fhir/identifier/mrn|123456", "Observation")
        assert criterion.modifier == "identifier"
        assert criterion.values == (TokenValue("http://acme.org/fhir/identifier/mrn", "123456"),)

    def test_hierarchy_modifiers(self) -> None:
        assert only("partof:below=42", "Organization").modifier == "below"

    @pytest.mark.parametrize(
        "text", ["Foo/123", "Patient/", "a b", "Patient/1/2", "_history/1", "x" * 65, "1|2"]
    )
    def test_invalid(self, text: str) -> None:
        assert "Invalid reference" in fails([("subject", text)], "Observation")


class TestUri:
    # search.html#uri
    def test_exact_and_oid(self) -> None:
        assert value("url=http://acme.org/fhir/ValueSet/123", "ValueSet") == UriValue(
            "http://acme.org/fhir/ValueSet/123"
        )
        assert value("url=urn:oid:1.2.3.4.5", "ValueSet") == UriValue("urn:oid:1.2.3.4.5")

    def test_canonical_version(self) -> None:
        assert value("url=http://hl7.org/fhir/ValueSet/example|3.0", "ValueSet") == UriValue(
            "http://hl7.org/fhir/ValueSet/example", "3.0"
        )

    def test_profile(self) -> None:
        assert value("_profile=http://hl7.org/fhir/StructureDefinition/lipid") == UriValue(
            "http://hl7.org/fhir/StructureDefinition/lipid"
        )


class TestComposite:
    # search.html#composite
    def test_spec_code_value_quantity(self) -> None:
        criterion = only(
            "code-value-quantity=http://loinc.org|12907-2$ge150|http://unitsofmeasure.org|mmol/L",
            "Observation",
        )
        assert criterion.values == (
            CompositeValue(
                (
                    TokenValue("http://loinc.org", "12907-2"),
                    QuantityValue(
                        "ge",
                        Decimal("150"),
                        Decimal("149.5"),
                        Decimal("150.5"),
                        "http://unitsofmeasure.org",
                        "mmol/L",
                    ),
                )
            ),
        )

    def test_spec_component_code_value_quantity(self) -> None:
        composite = value("component-code-value-quantity=http://loinc.org|8480-6$lt60", "Observation")
        assert isinstance(composite, CompositeValue)
        assert composite.components[0] == TokenValue("http://loinc.org", "8480-6")
        assert isinstance(quantity := composite.components[1], QuantityValue)
        assert (quantity.prefix, quantity.value, quantity.code) == ("lt", Decimal("60"), None)

    def test_or_of_composites(self) -> None:
        assert len(only("code-value-quantity=a$1,b$2", "Observation").values) == 2

    def test_component_count(self) -> None:
        message = fails("code-value-quantity=http://loinc.org|8480-6", "Observation")
        assert message == (
            "Invalid value 'http://loinc.org|8480-6' in parameter 'code-value-quantity': "
            "expected 2 components separated by '$'"
        )
        assert "expected 2 components" in fails("code-value-quantity=a$1$2", "Observation")

    def test_escaped_dollar(self) -> None:
        composite = value(r"code-value-quantity=a\$b$1", "Observation")
        assert isinstance(composite, CompositeValue) and composite.components[0] == TokenValue(None, "a$b")

    def test_component_values_are_validated(self) -> None:
        assert "Invalid number 'abc'" in fails("code-value-quantity=a$abc", "Observation")


class TestChaining:
    # search.html#chaining
    def test_spec_typed_chain(self) -> None:
        assert only("subject:Patient.name=peter", "DiagnosticReport") == Criterion(
            "subject",
            "reference",
            target_type="Patient",
            chain=Criterion("name", "string", None, (StringValue("peter"),)),
        )

    def test_spec_untyped_chain_is_ambiguous(self) -> None:
        # subject may be a Patient or a Location, which both have `name`.
        assert fails("subject.name=peter", "DiagnosticReport") == (
            "Chained parameter 'subject.name' is ambiguous: 'subject' may refer to Patient, Location; "
            "name the type, e.g. 'subject:Patient.name'"
        )

    def test_single_target(self) -> None:
        assert only("organization.name=acme") == Criterion(
            "organization",
            "reference",
            target_type="Organization",
            chain=Criterion("name", "string", None, (StringValue("acme"),)),
        )

    def test_target_narrowed_to_types_defining_the_next_parameter(self) -> None:
        # Observation.patient targets Patient and Group; only Patient has `organization`.
        criterion = only("patient.organization.name=x", "Observation")
        assert criterion.target_type == "Patient"
        assert isinstance(inner := criterion.chain, Criterion)
        assert (inner.code, inner.target_type) == ("organization", "Organization")
        assert inner.chain == Criterion("name", "string", None, (StringValue("x"),))

    def test_spec_independent_chains(self) -> None:
        request = parse(
            "general-practitioner:Practitioner.name=Joe&general-practitioner:Practitioner.name=Jane"
        )
        assert len(request.criteria) == 2

    def test_chain_end_has_modifiers_and_prefixes(self) -> None:
        exact = only("subject:Patient.name:exact=Peter", "Observation").chain
        assert isinstance(exact, Criterion) and exact.modifier == "exact"
        dated = only("subject:Patient.birthdate=lt2000", "Observation").chain
        assert isinstance(dated, Criterion) and isinstance(dated.values[0], DateValue)
        assert dated.values[0].prefix == "lt"

    def test_spec_chain_to_composite(self) -> None:
        criterion = only(
            "result.code-value-quantity=http://loinc.org|2823-3$gt5.4|http://unitsofmeasure.org|mmol/L",
            "DiagnosticReport",
        )
        assert criterion.target_type == "Observation"
        assert isinstance(inner := criterion.chain, Criterion) and inner.type == "composite"

    def test_values_are_validated_at_the_chain_end(self) -> None:
        assert fails("subject:Patient.birthdate=2020-13", "Observation") == (
            "Invalid date '2020-13' in parameter 'subject:Patient.birthdate'"
        )

    def test_only_references_chain(self) -> None:
        assert "is not a reference and cannot be chained" in fails("name.family=x")

    def test_identifier_modifier_cannot_chain(self) -> None:
        assert "cannot be used in a chain" in fails("subject:identifier.name=x", "Observation")

    def test_unknown_chained_parameter_is_an_unknown_parameter(self) -> None:
        request = parse("subject:Patient.foo=x", "Observation")
        assert request.criteria == ()
        assert "'foo' is not a search parameter of Patient" in request.issues[0].diagnostics

    def test_ambiguous_common_parameter(self) -> None:
        assert "is ambiguous" in fails("subject._id=example", "Observation")
        assert only("subject:Patient._id=example", "Observation").target_type == "Patient"

    def test_four_links_allowed_five_rejected(self) -> None:
        four = only("patient.organization.partof.partof.name=x", "Observation")
        assert four.target_type == "Patient"
        assert fails("patient.organization.partof.partof.partof.name=x", "Observation") == (
            "Parameter 'patient.organization.partof.partof.partof.name' chains more than 4 references"
        )

    def test_trailing_dot(self) -> None:
        assert "nothing after '.'" in fails("organization.=x")


class TestReverseChaining:
    # search.html#has
    def test_spec_example(self) -> None:
        request = parse("_has:Observation:patient:code=1234-5")
        assert request.criteria == ()
        assert request.has == (
            ReverseChain(
                "Observation", "patient", Criterion("code", "token", None, (TokenValue(None, "1234-5"),))
            ),
        )

    def test_or_and_multiple(self) -> None:
        request = parse("_has:Observation:patient:code=123,456&_has:Observation:patient:code=789")
        assert [len(h.criterion.values) for h in request.has] == [2, 1]  # type: ignore[union-attr]

    def test_spec_nested(self) -> None:
        request = parse("_has:Observation:patient:_has:AuditEvent:entity:agent=MyUserId")
        assert request.has == (
            ReverseChain(
                "Observation",
                "patient",
                ReverseChain(
                    "AuditEvent",
                    "entity",
                    Criterion("agent", "reference", None, (ReferenceValue("MyUserId", None, "MyUserId"),)),
                ),
            ),
        )

    def test_inner_modifier_and_chain(self) -> None:
        (has,) = parse("_has:Observation:patient:code:not=1234-5").has
        assert isinstance(has.criterion, Criterion) and has.criterion.modifier == "not"
        (chained,) = parse("_has:Observation:patient:encounter:Encounter.date=2020", "Patient").has
        assert isinstance(chained.criterion, Criterion) and chained.criterion.target_type == "Encounter"

    def test_chain_into_has(self) -> None:
        criterion = only("organization._has:Location:organization:name=x")
        assert criterion.target_type == "Organization" and isinstance(criterion.chain, ReverseChain)

    def test_malformed(self) -> None:
        assert "expected _has:[type]:[reference parameter]:[parameter]" in fails("_has:Observation:patient=1")
        assert "expected _has" in fails("_has=1")
        assert "unknown resource type 'Foo'" in fails("_has:Foo:patient:code=1")
        assert "'code' is not a reference parameter" in fails("_has:Observation:code:status=final")

    def test_reference_must_point_back(self) -> None:
        assert fails("_has:Observation:encounter:code=1") == (
            "Invalid parameter '_has:Observation:encounter:code': "
            "Observation.encounter does not refer to Patient"
        )

    def test_unknown_parameters_inside_are_dropped_when_lenient(self) -> None:
        request = parse("_has:Observation:patient:nope=1")
        assert request.has == () and len(request.issues) == 1

    def test_depth_limit(self) -> None:
        four = "_has:Observation:patient:" + "_has:Provenance:target:" * 3 + "_id"
        assert len(parse([(four, "1")]).has) == 1
        five = "_has:Observation:patient:" + "_has:Provenance:target:" * 4 + "_id"
        assert fails([(five, "1")]) == f"Parameter '{five}' chains more than 4 references"


class TestSort:
    # search.html#sort
    def test_spec_example(self) -> None:
        assert parse("_sort=status,-date,category", "Observation").sort == (
            SortKey("status"),
            SortKey("date", True),
            SortKey("category"),
        )

    def test_repeats_for_inner_orders(self) -> None:
        assert parse("_sort=-date&_sort=code", "Observation").sort == (SortKey("date", True), SortKey("code"))

    def test_common_parameters_and_score(self) -> None:
        assert parse("_sort=-_lastUpdated,_score").sort == (SortKey("_lastUpdated", True), SortKey("_score"))

    def test_unknown_is_an_error(self) -> None:
        assert fails("_sort=-nope") == "Unknown search parameter 'nope' in _sort"
        assert "Unknown search parameter" in fails("_sort=-")


class TestCount:
    # search.html#count
    def test_values(self) -> None:
        assert parse("_count=10").count == 10
        assert parse("_count=0").count == 0

    def test_capped(self) -> None:
        assert parse("_count=5000", max_count=100).count == 100
        assert parse("_count=" + "9" * 50).count == 1000
        assert parse("_count=5000", max_count=100).used == (("_count", "100"),)

    @pytest.mark.parametrize("text", ["abc", "-1", "1.5", "+5", "1e3", " 5", "\u0665"])
    def test_invalid(self, text: str) -> None:
        assert (
            fails([("_count", text)])
            == f"Invalid value '{text}' in parameter '_count': expected a whole number"
        )

    def test_once(self) -> None:
        assert fails("_count=1&_count=2") == "Parameter '_count' may only appear once"


class TestResultParameters:
    def test_total_summary_contained(self) -> None:
        request = parse("_total=accurate&_summary=count&_contained=both&_containedType=contained")
        assert (request.total, request.summary, request.contained, request.contained_type) == (
            "accurate",
            "count",
            "both",
            "contained",
        )

    @pytest.mark.parametrize("name", ["_total", "_summary", "_contained", "_containedType"])
    def test_invalid_enums(self, name: str) -> None:
        assert f"Invalid value 'bogus' in parameter '{name}'" in fails(f"{name}=bogus")

    def test_elements(self) -> None:
        assert parse("_elements=identifier,active,link").elements == ("identifier", "active", "link")
        assert "Invalid element name" in fails("_elements=name;drop")

    def test_summary_text_excludes_includes(self) -> None:
        assert "cannot be combined" in fails("_summary=text&_include=Patient:organization")

    def test_no_modifiers(self) -> None:
        assert fails("_count:exact=1") == "Modifier ':exact' is not supported on '_count'"
        assert "not supported" in fails("_summary:x=true")

    def test_page_token_passthrough(self) -> None:
        assert parse("_page=abc.DEF-123_==").page_token == "abc.DEF-123_=="

    def test_list(self) -> None:
        assert parse("_list=42&_list=$current-allergies").lists == ("42", "$current-allergies")
        assert "Invalid value" in fails("_list=http://x/List/1")

    def test_text_and_content(self) -> None:
        request = parse("_text=(bone OR liver) and metastases&_content=cancer,tumour")
        assert request.text == (("(bone OR liver) and metastases",),)
        assert request.content == (("cancer", "tumour"),)


class TestIncludes:
    # search.html#include
    def test_spec_examples(self) -> None:
        request = parse(
            "_include=MedicationRequest:patient&_revinclude=Provenance:target", "MedicationRequest"
        )
        assert request.include == (Include("MedicationRequest", "patient"),)
        assert request.revinclude == (Include("Provenance", "target"),)

    def test_target_type(self) -> None:
        assert parse("_include=Observation:subject:Patient", "Observation").include == (
            Include("Observation", "subject", "Patient"),
        )

    def test_iterate(self) -> None:
        request = parse(
            "_include=Observation:patient&_include:iterate=Patient:general-practitioner", "Observation"
        )
        assert request.include == (
            Include("Observation", "patient"),
            Include("Patient", "general-practitioner", None, True),
        )
        assert parse("_revinclude:iterate=Provenance:target").revinclude[0].iterate

    def test_wildcards(self) -> None:
        assert parse("_include=*").include == (Include("*", "*"),)
        assert parse("_revinclude=Observation:*").revinclude == (Include("Observation", "*"),)

    def test_invalid(self) -> None:
        assert "expected Type:searchParam[:targetType]" in fails("_include=Observation")
        assert "expected Type" in fails("_include=Observation:subject:Patient:x")
        assert "unknown type 'Foo'" in fails("_include=Foo:bar")
        assert "'code' is not a reference" in fails("_include=Observation:code", "Observation")
        assert "bad target type 'Medication'" in fails(
            "_include=Observation:subject:Medication", "Observation"
        )
        assert "not supported on '_include'" in fails("_include:deep=Observation:subject")

    def test_unknown_parameter_follows_handling(self) -> None:
        request = parse("_include=Observation:nope", "Observation")
        assert request.include == () and len(request.issues) == 1
        assert fails("_include=Observation:nope", "Observation", handling="strict") == (
            "Unknown or unsupported search parameter '_include': "
            "'nope' is not a search parameter of Observation"
        )


class TestWholeSystemSearch:
    # search.html#searchcontexts and #_type
    def test_common_parameters_only(self) -> None:
        request = parse("_id=1&_lastUpdated=gt2010-10-01&name=x", None)
        assert [c.code for c in request.criteria] == ["_id", "_lastUpdated"]
        assert "'name' is not a search parameter of all resource types" in request.issues[0].diagnostics

    def test_type_scopes_the_parameters(self) -> None:
        request = parse("name=peter&_type=Patient,Practitioner", None)
        assert request.types == ("Patient", "Practitioner")
        assert request.criteria == (Criterion("name", "string", None, (StringValue("peter"),)),)

    def test_parameter_must_be_common_to_all_types(self) -> None:
        request = parse("_type=Patient,Observation&name=peter", None)
        assert request.criteria == ()
        assert "not a search parameter of Patient or Observation" in request.issues[0].diagnostics

    def test_invalid_type(self) -> None:
        assert (
            fails("_type=Patient,Nope", None)
            == "Invalid value 'Nope' in parameter '_type': not a resource type"
        )

    def test_type_on_a_type_search_is_unsupported(self) -> None:
        request = parse("_type=Patient")
        assert request.types == () and len(request.issues) == 1


class TestHandling:
    # search.html#errors: unknown/unsupported parameters and Prefer: handling
    def test_lenient_drops_with_a_warning(self) -> None:
        request = parse("foo=bar&name=x")
        assert [c.code for c in request.criteria] == ["name"]
        (issue,) = request.issues
        assert (issue.severity, issue.code) == ("warning", "not-supported")
        assert issue.diagnostics == (
            "Unknown or unsupported search parameter 'foo': "
            "'foo' is not a search parameter of Patient; it was ignored"
        )
        assert request.used == (("name", "x"),)

    def test_strict_is_an_error(self) -> None:
        with pytest.raises(AppError) as caught:
            parse("foo=bar", handling="strict")
        assert caught.value.status == 400 and caught.value.issues[0].code == "not-supported"

    def test_invalid_values_are_errors_even_when_lenient(self) -> None:
        assert "Invalid date" in fails("birthdate=2020-13", handling="lenient")

    def test_filter_is_unsupported_and_query_refused(self) -> None:
        assert "_filter is not supported" in parse("_filter=name eq x").issues[0].diagnostics
        assert fails("_query=current") == "Named query 'current' (_query) is not supported"

    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            (None, "lenient"),
            ("handling=strict", "strict"),
            ("return=minimal, handling=strict", "strict"),
            ("HANDLING = Strict", "strict"),
            ("handling=lenient", "lenient"),
            ("respond-async", "lenient"),
        ],
    )
    def test_prefer_header(self, header: str | None, expected: str) -> None:
        assert handling_from_prefer(header) == expected


class TestSpecialParameters:
    def test_special_value_kept_as_given(self) -> None:
        assert value("near=-83.694810|42.256500|11.20|km", "Location") == SpecialValue(
            "-83.694810|42.256500|11.20|km"
        )


class TestUsed:
    def test_used_pairs_in_order(self) -> None:
        request = parse("_format=json&name=x&bogus=1&_sort=name&_count=5&gender=")
        assert request.used == (("name", "x"), ("_sort", "name"), ("_count", "5"))

    def test_type_keeps_its_position(self) -> None:
        request = parse("_id=1&_type=Patient&_count=2", None)
        assert request.used == (("_id", "1"), ("_type", "Patient"), ("_count", "2"))


class TestHostileInput:
    def test_quotes_and_sql_are_plain_text(self) -> None:
        text = "O'Brien\"; DROP TABLE resources; --"
        assert value([("name", text)]) == StringValue(text)

    def test_like_wildcards_stay_literal(self) -> None:
        assert value([("name", "100%_x")]) == StringValue("100%_x")
        assert value("name=50%25") == StringValue("50%")

    def test_unicode(self) -> None:
        assert value("name=Zo%C3%AB") == StringValue("Zoë")
        assert value([("name", "名前 🩺 \u202eevil")]) == StringValue("名前 🩺 \u202eevil")
        assert value([("identifier", "урн|κωδ")]) == TokenValue("урн", "κωδ")

    def test_value_length_limit(self) -> None:
        assert value([("name", "a" * MAX_VALUE_LENGTH)]) == StringValue("a" * MAX_VALUE_LENGTH)
        assert fails([("name", "a" * (MAX_VALUE_LENGTH + 1))]) == (
            "Value of parameter 'name' is too long (at most 2000 characters)"
        )

    def test_long_name(self) -> None:
        assert "is too long" in fails([("n" * 300, "x")])

    def test_parameter_count_limit(self) -> None:
        assert len(parse([("name", "x")] * MAX_PARAMS).criteria) == MAX_PARAMS
        assert fails([("name", "x")] * (MAX_PARAMS + 1)) == "Too many search parameters (at most 100)"

    def test_parameter_count_limit_stops_reading(self) -> None:
        def endless() -> Iterator[tuple[str, str]]:
            while True:
                yield ("name", "x")

        with pytest.raises(AppError):
            parse_search("Patient", endless(), LOOKUP)

    def test_nul_character(self) -> None:
        assert "NUL" in fails([("name", "a\x00b")])

    def test_deep_chains(self) -> None:
        assert "chains more than 4 references" in fails("organization.partof.partof.partof.partof.name=x")
        hostile = "_has:" + ":_has:".join(["Observation:subject"] * 30) + ":code"
        assert "is too long" in fails([(hostile, "1")], "Observation")  # the name limit comes first

    def test_many_or_values(self) -> None:
        assert len(only([("gender", ",".join(["m"] * 1000))]).values) == 1000

    def test_huge_numbers_and_dates(self) -> None:
        assert "out of range" in fails("probability=1e1000000", "RiskAssessment")
        assert "Invalid date" in fails([("birthdate", "9" * 2000)])

    def test_odd_names_are_unknown(self) -> None:
        for name in ("__class__", "name)--", "'", "..", "%", "_"):
            assert parse([(name, "x")]).criteria == ()

    def test_sort_injection(self) -> None:
        assert "Unknown search parameter" in fails([("_sort", "name; DROP TABLE x")])

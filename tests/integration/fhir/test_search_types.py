"""Search by parameter type and modifier over HTTP (http://hl7.org/fhir/R4/search.html#ptypes).

Every class stores its own small set of resources (ids `<run>-<label>`, tagged with a tag unique to the
class) and searches within that tag, so the expected results are exact whatever else the database holds.
Expectations are worked out by hand from the fixtures; comments cite the spec section they come from.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from tests.support import fhir_client

TAG_SYSTEM = "urn:pms-test:search-types"
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"


@pytest.fixture(scope="module")
async def client(server_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """One HTTP client per module: the shared per-test `client` costs more to build than most searches."""
    async with fhir_client(server_url) as http:
        yield http


class Fixture:
    """A class's resources: ids are `<run>-<label>`, all carry the tag `<TAG_SYSTEM>|<run>`."""

    def __init__(self) -> None:
        self.run = uuid.uuid4().hex[:10]

    def id(self, label: str) -> str:
        return f"{self.run}-{label}"

    def label(self, id_: str) -> str:
        assert id_.startswith(f"{self.run}-"), id_
        return id_[len(self.run) + 1 :]

    def resource(self, resource_type: str, label: str, **body: Any) -> dict[str, Any]:
        meta = dict(body.pop("meta", {}))
        meta["tag"] = [*meta.get("tag", []), {"system": TAG_SYSTEM, "code": self.run}]
        return {"resourceType": resource_type, "id": self.id(label), "meta": meta, **body}

    async def store(self, server_url: str, resources: list[dict[str, Any]]) -> None:
        """PUT every resource (with its chosen id) in one transaction. A string `"#num:5.40"` is sent as
        the JSON number 5.40, exactly as written (precision matters to number search)."""
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                for r in resources
            ],
        }
        text = re.sub(r'"#num:([-+0-9.eE]+)"', r"\1", json.dumps(bundle))
        async with fhir_client(server_url) as http:
            response = await http.post("", content=text, headers={"Content-Type": "application/fhir+json"})
        assert response.status_code == 200, response.text[:2000]

    async def search(
        self, client: httpx.AsyncClient, resource_type: str, *params: tuple[str, str]
    ) -> list[str]:
        """Labels of the matches, in the order returned (scoped to this class's tag)."""
        query = [*params, ("_tag", f"{TAG_SYSTEM}|{self.run}"), ("_count", "200")]
        response = await client.get(f"/{resource_type}", params=query)
        assert response.status_code == 200, response.text[:2000]
        bundle = response.json()
        return [
            self.label(e["resource"]["id"]) for e in bundle.get("entry", []) if e["search"]["mode"] == "match"
        ]

    async def labels(
        self, client: httpx.AsyncClient, resource_type: str, *params: tuple[str, str]
    ) -> set[str]:
        found = await self.search(client, resource_type, *params)
        assert len(found) == len(set(found)), found
        return set(found)


async def status_of(
    client: httpx.AsyncClient, path: str, *params: tuple[str, str]
) -> tuple[int, dict[str, Any]]:
    response = await client.get(path, params=list(params))
    return response.status_code, response.json()


def observation(fx: Fixture, label: str, **body: Any) -> dict[str, Any]:
    body.setdefault("status", "final")
    body.setdefault("code", {"text": "test"})
    return fx.resource("Observation", label, **body)


# --- string (search.html#string) ------------------------------------------------------------------------


class TestString:
    @pytest.fixture(scope="class")
    @classmethod
    async def fx(cls, server_url: str) -> Fixture:
        fx = Fixture()
        await fx.store(
            server_url,
            [
                fx.resource("Patient", "jose", name=[{"family": "Núñez", "given": ["José"]}]),
                fx.resource("Patient", "joseph", name=[{"family": "Smith", "given": ["Joseph"]}]),
                fx.resource("Patient", "upper", name=[{"family": "JOSEFSSON", "given": ["Anna"]}]),
                fx.resource(
                    "Patient",
                    "macdonald",
                    name=[{"family": "MacDonald", "given": ["Ronald"]}],
                    address=[{"line": ["1 Main St"], "city": "Zürich", "postalCode": "8001"}],
                ),
                fx.resource("Patient", "text-only", name=[{"text": "Dr. Eve Lyn"}]),
                fx.resource("Patient", "noname", gender="other"),
            ],
        )
        return fx

    async def test_default_is_starts_with_case_and_accent_insensitive(
        self, client: httpx.AsyncClient, fx: Fixture
    ) -> None:
        # search.html#string: "name=jose" matches José (accents and case are ignored) and any name part
        # that starts with it (Joseph, JOSEFSSON).
        assert await fx.labels(client, "Patient", ("name", "jose")) == {"jose", "joseph", "upper"}
        assert await fx.labels(client, "Patient", ("name", "JOSÉ")) == {"jose", "joseph", "upper"}
        assert await fx.labels(client, "Patient", ("name", "josep")) == {"joseph"}
        assert await fx.labels(client, "Patient", ("family", "nunez")) == {"jose"}
        assert await fx.labels(client, "Patient", ("family", "NÚÑ")) == {"jose"}

    async def test_starts_with_is_not_contains(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        assert await fx.labels(client, "Patient", ("name", "donald")) == set()
        assert await fx.labels(client, "Patient", ("name", "seph")) == set()

    async def test_exact_is_case_and_accent_sensitive_whole_string(
        self, client: httpx.AsyncClient, fx: Fixture
    ) -> None:
        # search.html#modifiers :exact: the whole string, case and accents included.
        assert await fx.labels(client, "Patient", ("name:exact", "José")) == {"jose"}
        assert await fx.labels(client, "Patient", ("name:exact", "Jose")) == set()
        assert await fx.labels(client, "Patient", ("name:exact", "josé")) == set()
        assert await fx.labels(client, "Patient", ("name:exact", "Jos")) == set()
        assert await fx.labels(client, "Patient", ("family:exact", "MacDonald")) == {"macdonald"}

    async def test_contains_anywhere(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        assert await fx.labels(client, "Patient", ("name:contains", "donald")) == {"macdonald"}
        assert await fx.labels(client, "Patient", ("name:contains", "SEPH")) == {"joseph"}
        assert await fx.labels(client, "Patient", ("name:contains", "uñe")) == {"jose"}

    async def test_human_name_text_and_address_parts(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        # search.html#string: HumanName matches family, given, prefix, suffix and text; Address its parts.
        assert await fx.labels(client, "Patient", ("name", "Dr. Eve")) == {"text-only"}
        assert await fx.labels(client, "Patient", ("address", "zurich")) == {"macdonald"}
        assert await fx.labels(client, "Patient", ("address-city", "ZÜR")) == {"macdonald"}
        assert await fx.labels(client, "Patient", ("address-postalcode", "800")) == {"macdonald"}
        assert await fx.labels(client, "Patient", ("address", "1 main")) == {"macdonald"}

    async def test_or_values(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        assert await fx.labels(client, "Patient", ("family", "smith,macd")) == {"joseph", "macdonald"}

    async def test_and_of_string_criteria_needs_every_one_on_the_same_resource(
        self, client: httpx.AsyncClient, fx: Fixture
    ) -> None:
        # search.html#combining: repeated parameters are AND-ed (the words typed into a name search);
        # two or more string criteria are answered as one intersection of their index matches.
        assert await fx.labels(client, "Patient", ("name", "jose"), ("name", "nunez")) == {"jose"}
        assert await fx.labels(client, "Patient", ("name", "jose"), ("name", "smi")) == {"joseph"}
        assert await fx.labels(client, "Patient", ("name", "jose"), ("name", "josep")) == {"joseph"}
        assert await fx.labels(client, "Patient", ("name", "jose"), ("name", "ronald")) == set()
        both = await fx.labels(client, "Patient", ("name", "jose,ronald"), ("family", "smith,macd"))
        assert both == {"joseph", "macdonald"}
        mixed = [("name", "ron"), ("address-city", "zur"), ("name:contains", "donald"), ("_id:not", "x")]
        assert await fx.labels(client, "Patient", *mixed) == {"macdonald"}
        assert await fx.labels(client, "Patient", ("name", "jose"), ("address-city", "zur")) == set()
        exact = [("name:exact", "José"), ("family:exact", "Núñez")]
        assert await fx.labels(client, "Patient", *exact) == {"jose"}


# --- token (search.html#token) --------------------------------------------------------------------------


class TestToken:
    @pytest.fixture(scope="class")
    @classmethod
    async def fx(cls, server_url: str) -> Fixture:
        fx = Fixture()
        await fx.store(
            server_url,
            [
                observation(
                    fx, "loinc", code={"coding": [{"system": LOINC, "code": "1234-5", "display": "Glucose"}]}
                ),
                observation(fx, "snomed", code={"coding": [{"system": SNOMED, "code": "1234-5"}]}),
                observation(fx, "nosystem", code={"coding": [{"code": "1234-5"}]}),
                observation(
                    fx,
                    "weight",
                    code={"coding": [{"system": LOINC, "code": "29463-7"}], "text": "Body Weight"},
                ),
                observation(
                    fx, "upper", code={"coding": [{"system": LOINC, "code": "1234-5".upper() + "X"}]}
                ),
            ],
        )
        return fx

    async def test_code_any_system(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        assert await fx.labels(client, "Observation", ("code", "1234-5")) == {"loinc", "snomed", "nosystem"}

    async def test_system_and_code(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        assert await fx.labels(client, "Observation", ("code", f"{LOINC}|1234-5")) == {"loinc"}

    async def test_bar_code_means_no_system(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        # search.html#token "|[code]": the code has no system.
        assert await fx.labels(client, "Observation", ("code", "|1234-5")) == {"nosystem"}

    async def test_system_bar_means_any_code_in_system(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        assert await fx.labels(client, "Observation", ("code", f"{LOINC}|")) == {"loinc", "weight", "upper"}

    async def test_codes_are_matched_exactly(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        assert await fx.labels(client, "Observation", ("code", "1234")) == set()
        assert await fx.labels(client, "Observation", ("code", "1234-5x")) == set()

    async def test_not(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        # search.html#modifiers :not: every resource without a matching value.
        assert await fx.labels(client, "Observation", ("code:not", f"{LOINC}|1234-5")) == {
            "snomed",
            "nosystem",
            "weight",
            "upper",
        }
        assert await fx.labels(client, "Observation", ("code:not", "1234-5")) == {"weight", "upper"}

    async def test_text_matches_display_and_codeable_concept_text(
        self, client: httpx.AsyncClient, fx: Fixture
    ) -> None:
        # search.html#modifiers :text: string matching on Coding.display / CodeableConcept.text.
        assert await fx.labels(client, "Observation", ("code:text", "gluc")) == {"loinc"}
        assert await fx.labels(client, "Observation", ("code:text", "body weight")) == {"weight"}
        assert await fx.labels(client, "Observation", ("code:text", "1234")) == set()

    async def test_or(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        assert await fx.labels(client, "Observation", ("code", f"{SNOMED}|1234-5,{LOINC}|29463-7")) == {
            "snomed",
            "weight",
        }


class TestTokenOnOtherTypes:
    @pytest.fixture(scope="class")
    @classmethod
    async def fx(cls, server_url: str) -> Fixture:
        fx = Fixture()
        mrn = {"coding": [{"system": V2_0203, "code": "MR"}], "text": "Medical record number"}
        await fx.store(
            server_url,
            [
                fx.resource(
                    "Patient",
                    "a",
                    gender="female",
                    active=True,
                    telecom=[{"system": "phone", "value": "555-1"}],
                    identifier=[
                        {"type": mrn, "system": "urn:mrn", "value": "12345"},
                        {"system": "urn:ssn", "value": "999"},
                    ],
                ),
                fx.resource(
                    "Patient",
                    "b",
                    gender="male",
                    active=False,
                    identifier=[{"system": "urn:other", "value": "12345"}],
                ),
                fx.resource(
                    "Patient",
                    "c",
                    gender="female",
                    identifier=[
                        {
                            "type": {"coding": [{"system": V2_0203, "code": "DL"}]},
                            "system": "urn:dl",
                            "value": "12345",
                        }
                    ],
                ),
            ],
        )
        return fx

    async def test_code_boolean_and_contact_point(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        assert await fx.labels(client, "Patient", ("gender", "female")) == {"a", "c"}
        assert await fx.labels(client, "Patient", ("gender:not", "female")) == {"b"}
        assert await fx.labels(client, "Patient", ("active", "true")) == {"a"}
        assert await fx.labels(client, "Patient", ("active", "false")) == {"b"}
        assert await fx.labels(client, "Patient", ("active:not", "true")) == {"b", "c"}
        assert await fx.labels(client, "Patient", ("phone", "555-1")) == {"a"}

    async def test_identifier(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        assert await fx.labels(client, "Patient", ("identifier", "12345")) == {"a", "b", "c"}
        assert await fx.labels(client, "Patient", ("identifier", "urn:mrn|12345")) == {"a"}
        assert await fx.labels(client, "Patient", ("identifier", "urn:ssn|")) == {"a"}
        assert await fx.labels(client, "Patient", ("identifier", "urn:ssn|12345")) == set()

    async def test_of_type(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        # search.html#token :of-type: [type system]|[type code]|[identifier value].
        assert await fx.labels(client, "Patient", ("identifier:of-type", f"{V2_0203}|MR|12345")) == {"a"}
        assert await fx.labels(client, "Patient", ("identifier:of-type", f"{V2_0203}|DL|12345")) == {"c"}
        assert await fx.labels(client, "Patient", ("identifier:of-type", f"{V2_0203}|MR|999")) == set()

    async def test_of_type_needs_three_parts(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        status, body = await status_of(client, "/Patient", ("identifier:of-type", "MR|12345"))
        assert status == 400 and "identifier:of-type" in body["issue"][0]["diagnostics"]

    async def test_identifier_text(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        # :text on an Identifier searches Identifier.type.text.
        assert await fx.labels(client, "Patient", ("identifier:text", "medical record")) == {"a"}


class TestTokenTerminologyModifiers:
    """`:in` / `:not-in` (value sets) and `:below` / `:above` (subsumption) from stored ValueSets and
    CodeSystems (search.html#token)."""

    @pytest.fixture(scope="class")
    @classmethod
    async def fx(cls, server_url: str) -> Fixture:
        fx = Fixture()
        cs = code_system_url(fx)

        def concept(code: str, *children: dict[str, Any]) -> dict[str, Any]:
            return {"code": code, **({"concept": list(children)} if children else {})}

        def value_set(label: str, **body: Any) -> dict[str, Any]:
            return fx.resource("ValueSet", label, url=f"{cs}/{label}", status="active", **body)

        await fx.store(
            server_url,
            [
                fx.resource(
                    "CodeSystem",
                    "cs",
                    url=cs,
                    status="active",
                    content="complete",
                    concept=[concept("A", concept("A1", concept("A1a")), concept("A2")), concept("B")],
                ),
                value_set(
                    "enum",
                    version="1.0",
                    compose={"include": [{"system": cs, "concept": [{"code": "A1"}, {"code": "B"}]}]},
                ),
                value_set(
                    "import",
                    compose={
                        "include": [{"valueSet": [f"{cs}/enum"]}],
                        "exclude": [{"system": cs, "concept": [{"code": "B"}]}],
                    },
                ),
                value_set(
                    "expansion",
                    expansion={
                        "timestamp": "2020-01-01",
                        "contains": [
                            {"system": cs, "code": "A2"},
                            {"abstract": True, "contains": [{"system": cs, "code": "A1a"}]},
                        ],
                    },
                ),
                value_set("whole", compose={"include": [{"system": SNOMED}]}),
                value_set(
                    "filter",
                    compose={
                        "include": [
                            {"system": cs, "filter": [{"property": "concept", "op": "is-a", "value": "A"}]}
                        ]
                    },
                ),
                *(
                    observation(
                        fx,
                        f"o{code}",
                        code={"coding": [{"system": cs, "code": code}]},
                        subject={"reference": f"Patient/{fx.id('p' + code)}"},
                    )
                    for code in ("A", "A1", "A1a", "A2", "B")
                ),
                observation(fx, "sn", code={"coding": [{"system": SNOMED, "code": "123"}]}),
                observation(fx, "text-only", code={"text": "nothing coded"}),
                fx.resource("Patient", "pA1"),
                fx.resource("Patient", "pB"),
            ],
        )
        return fx

    async def test_in_enumerated_value_set(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        cs = code_system_url(fx)
        assert await fx.labels(client, "Observation", ("code:in", f"{cs}/enum")) == {"oA1", "oB"}
        assert await fx.labels(client, "Observation", ("code:in", f"{cs}/enum|1.0")) == {"oA1", "oB"}
        assert await fx.labels(client, "Observation", ("code:in", f"ValueSet/{fx.id('enum')}")) == {
            "oA1",
            "oB",
        }

    async def test_in_with_imports_exclusions_expansions_whole_systems(
        self, client: httpx.AsyncClient, fx: Fixture
    ) -> None:
        cs = code_system_url(fx)
        assert await fx.labels(client, "Observation", ("code:in", f"{cs}/import")) == {"oA1"}
        assert await fx.labels(client, "Observation", ("code:in", f"{cs}/expansion")) == {"oA2", "oA1a"}
        assert await fx.labels(client, "Observation", ("code:in", f"{cs}/whole")) == {"sn"}
        assert await fx.labels(client, "Observation", ("code:in", f"{cs}/enum,{cs}/whole")) == {
            "oA1",
            "oB",
            "sn",
        }

    async def test_not_in(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        cs = code_system_url(fx)
        found = await fx.labels(client, "Observation", ("code:not-in", f"{cs}/enum"))
        assert found == {"oA", "oA1a", "oA2", "sn", "text-only"}

    async def test_below_and_above(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        cs = code_system_url(fx)
        assert await fx.labels(client, "Observation", ("code:below", f"{cs}|A1")) == {"oA1", "oA1a"}
        assert await fx.labels(client, "Observation", ("code:below", f"{cs}|A")) == {
            "oA",
            "oA1",
            "oA1a",
            "oA2",
        }
        assert await fx.labels(client, "Observation", ("code:above", f"{cs}|A1a")) == {"oA1a", "oA1", "oA"}
        assert await fx.labels(client, "Observation", ("code:above", f"{cs}|B")) == {"oB"}

    async def test_in_inside_a_reverse_chain(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        cs = code_system_url(fx)
        found = await fx.labels(client, "Patient", ("_has:Observation:subject:code:in", f"{cs}/enum"))
        assert found == {"pA1", "pB"}

    async def test_what_cannot_be_evaluated_is_400(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        cs = code_system_url(fx)
        for name, value in (
            ("code:in", f"{cs}/filter"),
            ("code:in", f"{cs}/nothing"),
            ("code:in", f"{cs}/enum|2.0"),
            ("code:below", f"{cs}|ZZ"),
            ("code:below", "A1"),
            ("code:above", "http://unknown.org|x"),
        ):
            status, body = await status_of(client, "/Observation", (name, value))
            assert status == 400, (name, value)
            assert body["resourceType"] == "OperationOutcome"


def code_system_url(fx: Fixture) -> str:
    return f"http://example.org/{fx.run}/cs"


# --- date (search.html#date, #prefix) -------------------------------------------------------------------


class TestDatePrecisionAndPrefixes:
    """Patient.birthDate values of several precisions; the search value's precision sets its range."""

    ALL = frozenset(
        {"y1974", "m1974-12", "d1974-12-25", "d1975-01-01", "d2013-01-13", "d2013-01-14", "d2013-01-15"}
    )

    @pytest.fixture(scope="class")
    @classmethod
    async def fx(cls, server_url: str) -> Fixture:
        fx = Fixture()
        dates = {
            "y1974": "1974",
            "m1974-12": "1974-12",
            "d1974-12-25": "1974-12-25",
            "d1975-01-01": "1975-01-01",
            "d2013-01-13": "2013-01-13",
            "d2013-01-14": "2013-01-14",
            "d2013-01-15": "2013-01-15",
        }
        await fx.store(
            server_url,
            [fx.resource("Patient", k, birthDate=v) for k, v in dates.items()]
            + [fx.resource("Patient", "none")],
        )
        return fx

    async def birth(self, client: httpx.AsyncClient, fx: Fixture, value: str) -> set[str]:
        return await fx.labels(client, "Patient", ("birthdate", value))

    async def test_spec_example_birthdate_1974(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        # search.html#date: "birthdate=1974" is the range [1974-01-01, 1975-01-01); eq: the search range
        # fully contains the target's range.
        assert await self.birth(client, fx, "1974") == {"y1974", "m1974-12", "d1974-12-25"}
        assert await self.birth(client, fx, "eq1974") == {"y1974", "m1974-12", "d1974-12-25"}
        assert await self.birth(client, fx, "1974-12") == {"m1974-12", "d1974-12-25"}
        assert await self.birth(client, fx, "1974-12-25") == {"d1974-12-25"}

    async def test_spec_example_ge2013_01_14(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        assert await self.birth(client, fx, "ge2013-01-14") == {"d2013-01-14", "d2013-01-15"}

    async def test_gt_lt_le(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        assert await self.birth(client, fx, "gt2013-01-14") == {"d2013-01-15"}
        before = {"y1974", "m1974-12", "d1974-12-25", "d1975-01-01", "d2013-01-13"}
        assert await self.birth(client, fx, "lt2013-01-14") == before
        assert await self.birth(client, fx, "le2013-01-14") == before | {"d2013-01-14"}

    async def test_gt_and_lt_are_overlaps_of_ranges(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        # gt: the range above the search value overlaps the target: the year 1974 reaches past June 1974.
        assert await self.birth(client, fx, "gt1974-06") == self.ALL
        assert await self.birth(client, fx, "lt1974-06") == {"y1974"}

    async def test_sa_and_eb_exclude_overlaps(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        # sa: no overlap and the target lies above; the year 1974 overlaps 1974-06, so it is not after it.
        assert await self.birth(client, fx, "sa1974-06") == self.ALL - {"y1974"}
        assert await self.birth(client, fx, "sa1974") == {
            "d1975-01-01",
            "d2013-01-13",
            "d2013-01-14",
            "d2013-01-15",
        }
        assert await self.birth(client, fx, "eb1975") == {"y1974", "m1974-12", "d1974-12-25"}
        assert await self.birth(client, fx, "eb1974-12-25") == set()

    async def test_ne(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        # ne: the search range does not fully contain the target's (resources without a value: no match).
        assert await self.birth(client, fx, "ne1974") == {
            "d1975-01-01",
            "d2013-01-13",
            "d2013-01-14",
            "d2013-01-15",
        }
        assert await self.birth(client, fx, "ne1974-12") == self.ALL - {"m1974-12", "d1974-12-25"}

    async def test_ap(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        # ap: approximately; for a date, 10% of the gap between now and the date (a year or more here).
        assert await self.birth(client, fx, "ap2013-01-14") == {"d2013-01-13", "d2013-01-14", "d2013-01-15"}

    async def test_and_makes_a_range(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        found = await fx.labels(client, "Patient", ("birthdate", "ge1974-12"), ("birthdate", "lt2013-01-14"))
        assert found == {"m1974-12", "d1974-12-25", "d1975-01-01", "d2013-01-13"}

    async def test_invalid_dates_are_400_naming_the_parameter(self, client: httpx.AsyncClient) -> None:
        for bad in ("2013-13", "2013-02-30", "13-01-14", "xx2013", "2013-01-14T25:00", "yesterday"):
            status, body = await status_of(client, "/Patient", ("birthdate", bad))
            assert status == 400, bad
            assert "birthdate" in body["issue"][0]["diagnostics"], bad


class TestDateTimePeriodInstant:
    """Observation.effective[x]: dateTime, instant and Periods, some with an open end."""

    @pytest.fixture(scope="class")
    @classmethod
    async def fx(cls, server_url: str) -> Fixture:
        fx = Fixture()
        await fx.store(
            server_url,
            [
                observation(fx, "dt", effectiveDateTime="2013-01-14T10:00:00Z"),
                observation(fx, "inst", effectiveInstant="2013-01-14T10:00:00.123Z"),
                observation(fx, "tz", effectiveDateTime="2013-01-14T23:30:00-05:00"),  # 2013-01-15T04:30Z
                observation(fx, "per", effectivePeriod={"start": "2013-01-10", "end": "2013-01-20"}),
                observation(fx, "open-end", effectivePeriod={"start": "2013-01-10"}),
                observation(fx, "open-start", effectivePeriod={"end": "2013-01-12"}),
                observation(
                    fx, "straddle", effectivePeriod={"start": "2013-01-10", "end": "2013-01-14T12:00:00Z"}
                ),
                observation(fx, "none"),
            ],
        )
        return fx

    async def date(self, client: httpx.AsyncClient, fx: Fixture, value: str) -> set[str]:
        return await fx.labels(client, "Observation", ("date", value))

    async def test_eq_day(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        assert await self.date(client, fx, "2013-01-14") == {"dt", "inst"}
        assert await self.date(client, fx, "2013-01-15") == {"tz"}  # time zones are honoured

    async def test_eq_finer_precision(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        assert await self.date(client, fx, "2013-01-14T10:00") == {"dt", "inst"}
        assert await self.date(client, fx, "2013-01-14T10:00:00Z") == {"dt", "inst"}
        assert await self.date(client, fx, "2013-01-14T10:00:00.123Z") == {"inst"}
        assert await self.date(client, fx, "2013-01-14T23:30:00-05:00") == {"tz"}
        assert await self.date(client, fx, "2013-01-14T11:00:00+01:00") == {"dt", "inst"}

    async def test_gt_lt(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        # Periods: open ends extend for ever (search.html#date).
        assert await self.date(client, fx, "gt2013-01-14") == {"per", "open-end", "tz"}
        assert await self.date(client, fx, "lt2013-01-14") == {"per", "open-end", "open-start", "straddle"}
        assert await self.date(client, fx, "lt2013-01-14T10:00:00Z") == {
            "per",
            "open-end",
            "open-start",
            "straddle",
        }

    async def test_ge_le_are_gt_or_eq(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        # search.html#prefix ge: "the range above the search value intersects the range of the target
        # value, or the range of the search value fully contains the range of the target value". The
        # period 2013-01-10..2013-01-14T12:00 does neither for ge2013-01-14; ditto le and its mirror.
        assert await self.date(client, fx, "ge2013-01-14") == {"per", "open-end", "tz", "dt", "inst"}
        assert await self.date(client, fx, "le2013-01-14") == {
            "per",
            "open-end",
            "open-start",
            "straddle",
            "dt",
            "inst",
        }
        assert await self.date(client, fx, "le2013-01-13") == {"per", "open-end", "open-start", "straddle"}

    async def test_sa_eb(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        assert await self.date(client, fx, "sa2013-01-12") == {"dt", "inst", "tz"}
        assert await self.date(client, fx, "eb2013-01-13") == {"open-start"}
        assert await self.date(client, fx, "eb2013-01-10") == set()

    async def test_ne(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        assert await self.date(client, fx, "ne2013-01-14") == {
            "per",
            "open-end",
            "open-start",
            "straddle",
            "tz",
        }

    async def test_ap(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        # ap overlaps: every value within a year or so of 2013-01-14; the open periods reach it too.
        assert await self.date(client, fx, "ap2013-01-14") == {
            "dt",
            "inst",
            "tz",
            "per",
            "open-end",
            "open-start",
            "straddle",
        }
        assert await self.date(client, fx, "ap1990") == {"open-start"}

    async def test_last_updated(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        assert len(await fx.labels(client, "Observation", ("_lastUpdated", "gt2020"))) == 8
        assert await fx.labels(client, "Observation", ("_lastUpdated", "lt2020")) == set()


# --- number and quantity (search.html#number, #quantity) --------------------------------------------------


class TestNumber:
    """RiskAssessment.prediction.probabilityDecimal (the `probability` number parameter)."""

    VALUES = {
        "v4": "4.0",
        "v5": "5.0",
        "v5.35": "5.35",
        "v5.399": "5.399",
        "v5.4": "5.4",
        "v5.405": "5.405",
        "v5.44": "5.44",
        "v5.45": "5.45",
        "v7": "7",
        "v100": "100",
    }

    @pytest.fixture(scope="class")
    @classmethod
    async def fx(cls, server_url: str) -> Fixture:
        fx = Fixture()
        await fx.store(
            server_url,
            [
                fx.resource(
                    "RiskAssessment",
                    label,
                    status="final",
                    subject={"reference": "Patient/x"},
                    prediction=[{"probabilityDecimal": f"#num:{value}"}],
                )
                for label, value in cls.VALUES.items()
            ],
        )
        return fx

    async def prob(self, client: httpx.AsyncClient, fx: Fixture, value: str) -> set[str]:
        return await fx.labels(client, "RiskAssessment", ("probability", value))

    async def test_eq_uses_the_precision_of_the_value(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        # search.html#number: 5.4 means [5.35, 5.45); 5.40 means [5.395, 5.405).
        assert await self.prob(client, fx, "5.4") == {"v5.35", "v5.399", "v5.4", "v5.405", "v5.44"}
        assert await self.prob(client, fx, "eq5.4") == {"v5.35", "v5.399", "v5.4", "v5.405", "v5.44"}
        assert await self.prob(client, fx, "5.40") == {"v5.399", "v5.4"}
        assert await self.prob(client, fx, "100") == {"v100"}
        assert await self.prob(client, fx, "1e2") == {"v100"}
        assert await self.prob(client, fx, "5") == {
            "v5",
            "v5.35",
            "v5.399",
            "v5.4",
            "v5.405",
            "v5.44",
            "v5.45",
        }

    async def test_gt_lt_ge_le_compare_with_the_exact_value(
        self, client: httpx.AsyncClient, fx: Fixture
    ) -> None:
        assert await self.prob(client, fx, "gt5.4") == {"v5.405", "v5.44", "v5.45", "v7", "v100"}
        assert await self.prob(client, fx, "ge5.4") == {"v5.4", "v5.405", "v5.44", "v5.45", "v7", "v100"}
        assert await self.prob(client, fx, "lt5.4") == {"v4", "v5", "v5.35", "v5.399"}
        assert await self.prob(client, fx, "le5.4") == {"v4", "v5", "v5.35", "v5.399", "v5.4"}
        assert await self.prob(client, fx, "lt100") == set(self.VALUES) - {"v100"}

    async def test_ne(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        assert await self.prob(client, fx, "ne5.4") == {"v4", "v5", "v5.45", "v7", "v100"}

    async def test_sa_eb_exclude_the_search_range(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        # search.html#prefix sa: the target does not overlap the search range [5.35, 5.45) and is above it.
        assert await self.prob(client, fx, "sa5.4") == {"v5.45", "v7", "v100"}
        assert await self.prob(client, fx, "eb5.4") == {"v4", "v5"}

    async def test_ap_is_within_ten_percent(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        assert await self.prob(client, fx, "ap5.4") == set(self.VALUES) - {"v4", "v7", "v100"}
        assert await self.prob(client, fx, "ap100") == {"v100"}

    async def test_invalid_numbers_are_400(self, client: httpx.AsyncClient) -> None:
        for bad in ("five", "5,4x", "1.2.3", "zz5", "--5", "5e", "0x10"):
            status, body = await status_of(client, "/RiskAssessment", ("probability", bad))
            assert status == 400, bad
            assert "probability" in body["issue"][0]["diagnostics"], bad


class TestQuantity:
    @pytest.fixture(scope="class")
    @classmethod
    async def fx(cls, server_url: str) -> Fixture:
        fx = Fixture()

        def q(label: str, value: float, code: str | None, *, system: str | None = UCUM) -> dict[str, Any]:
            quantity: dict[str, Any] = {"value": value, "unit": code}
            if code is not None and system is not None:
                quantity.update(system=system, code=code)
            return observation(fx, label, valueQuantity=quantity)

        await fx.store(
            server_url,
            [
                q("mg5.4", 5.4, "mg"),
                q("unit-only", 5.4, "mg", system=None),
                q("g5.4", 5.4, "g"),
                q("mg5.44", 5.44, "mg"),
                q("mg5.35", 5.35, "mg"),
                q("mg5.45", 5.45, "mg"),
                q("mmol100", 100, "mmol/L"),
                observation(fx, "string-value", valueString="5.4 mg"),
            ],
        )
        return fx

    async def vq(self, client: httpx.AsyncClient, fx: Fixture, value: str) -> set[str]:
        return await fx.labels(client, "Observation", ("value-quantity", value))

    async def test_spec_example_value_system_code(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        # search.html#quantity: "value-quantity=5.4|http://unitsofmeasure.org|mg".
        assert await self.vq(client, fx, f"5.4|{UCUM}|mg") == {"mg5.4", "mg5.44", "mg5.35"}
        assert await self.vq(client, fx, f"5.40|{UCUM}|mg") == {"mg5.4"}

    async def test_spec_example_value_no_system_code(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        # "5.4||mg": no system: the code or the unit matches.
        assert await self.vq(client, fx, "5.4||mg") == {"mg5.4", "unit-only", "mg5.44", "mg5.35"}

    async def test_value_only(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        assert await self.vq(client, fx, "5.4") == {"mg5.4", "unit-only", "g5.4", "mg5.44", "mg5.35"}

    async def test_prefixes(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        assert await self.vq(client, fx, f"gt5.4|{UCUM}|mg") == {"mg5.44", "mg5.45"}
        assert await self.vq(client, fx, "le5.4||mg") == {"mg5.4", "unit-only", "mg5.35"}
        assert await self.vq(client, fx, f"ap5.4|{UCUM}|mg") == {"mg5.4", "mg5.44", "mg5.35", "mg5.45"}
        assert await self.vq(client, fx, "lt100") == {
            "mg5.4",
            "unit-only",
            "g5.4",
            "mg5.44",
            "mg5.35",
            "mg5.45",
        }
        assert await self.vq(client, fx, f"ge100|{UCUM}|mmol/L") == {"mmol100"}
        assert await self.vq(client, fx, f"ne5.4|{UCUM}|mg") == {"mg5.45"}
        assert await self.vq(client, fx, f"sa5.4|{UCUM}|mg") == {"mg5.45"}
        assert await self.vq(client, fx, f"eb5.44|{UCUM}|mg") == {"mg5.35", "mg5.4"}  # below [5.435, 5.445)

    async def test_invalid_quantity_is_400(self, client: httpx.AsyncClient) -> None:
        for bad in ("mg", "5.4|mg", "5.4|a|b|c", "x5.4||mg"):
            status, body = await status_of(client, "/Observation", ("value-quantity", bad))
            assert status == 400, bad
            assert "value-quantity" in body["issue"][0]["diagnostics"], bad


# --- reference (search.html#reference) ------------------------------------------------------------------


class TestReference:
    @pytest.fixture(scope="class")
    @classmethod
    async def fx(cls, server_url: str) -> Fixture:
        fx = Fixture()
        base = f"{server_url}/fhir"
        pat, pat2, grp = fx.id("p1"), fx.id("p2"), fx.id("g1")
        await fx.store(
            server_url,
            [
                fx.resource("Patient", "p1"),
                fx.resource("Patient", "p2"),
                fx.resource("Group", "g1", type="person", actual=True),
                observation(fx, "rel", subject={"reference": f"Patient/{pat}"}),
                observation(fx, "abs-local", subject={"reference": f"{base}/Patient/{pat}"}),
                observation(
                    fx, "external", subject={"reference": f"http://other.example.org/fhir/Patient/{pat}"}
                ),
                observation(fx, "p2", subject={"reference": f"Patient/{pat2}"}),
                observation(fx, "versioned", subject={"reference": f"Patient/{pat2}/_history/1"}),
                observation(fx, "group", subject={"reference": f"Group/{grp}"}),
                observation(fx, "group-same-id", subject={"reference": f"Group/{pat}"}),
                observation(fx, "logical", subject={"identifier": {"system": "urn:mrn", "value": "7"}}),
                observation(fx, "none"),
            ],
        )
        return fx

    async def subject(self, client: httpx.AsyncClient, fx: Fixture, name: str, value: str) -> set[str]:
        return await fx.labels(client, "Observation", (name, value))

    async def test_id(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        # search.html#reference "[id]": a local reference with that id, whatever the type.
        assert await self.subject(client, fx, "subject", fx.id("p1")) == {"rel", "abs-local", "group-same-id"}

    async def test_type_and_id(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        assert await self.subject(client, fx, "subject", f"Patient/{fx.id('p1')}") == {"rel", "abs-local"}
        assert await self.subject(client, fx, "subject", f"Group/{fx.id('g1')}") == {"group"}
        assert await self.subject(client, fx, "subject", f"Patient/{fx.id('p2')}") == {"p2", "versioned"}

    async def test_type_modifier(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        assert await self.subject(client, fx, "subject:Patient", fx.id("p1")) == {"rel", "abs-local"}
        assert await self.subject(client, fx, "subject:Group", fx.id("p1")) == {"group-same-id"}

    async def test_single_target_parameter_infers_the_type(
        self, client: httpx.AsyncClient, fx: Fixture
    ) -> None:
        # Observation `patient` refers to Patients only.
        assert await self.subject(client, fx, "patient", fx.id("p1")) == {"rel", "abs-local"}

    async def test_absolute_url_of_this_server(
        self, client: httpx.AsyncClient, fx: Fixture, server_url: str
    ) -> None:
        url = f"{server_url}/fhir/Patient/{fx.id('p1')}"
        assert await self.subject(client, fx, "subject", url) == {"rel", "abs-local"}

    async def test_external_absolute_url(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        url = f"http://other.example.org/fhir/Patient/{fx.id('p1')}"
        assert await self.subject(client, fx, "subject", url) == {"external"}

    async def test_versioned_reference(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        assert await self.subject(client, fx, "subject", f"Patient/{fx.id('p2')}/_history/1") == {"versioned"}

    async def test_or(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        value = f"Patient/{fx.id('p2')},Group/{fx.id('g1')}"
        assert await self.subject(client, fx, "subject", value) == {"p2", "versioned", "group"}

    async def test_or_of_every_form(self, client: httpx.AsyncClient, fx: Fixture, server_url: str) -> None:
        # Several ids of one type are tested as one IN list; bare ids, versions, this server's and
        # another server's URLs, and other types keep their own meaning within the same OR.
        p1, p2, g1 = fx.id("p1"), fx.id("p2"), fx.id("g1")
        values = [
            f"Patient/{p1}",
            f"Patient/{p2}",
            f"Group/{g1}",
            f"http://other.example.org/fhir/Patient/{p1}",
        ]
        found = {"rel", "abs-local", "p2", "versioned", "group", "external"}
        assert await self.subject(client, fx, "subject", ",".join(values)) == found
        values = [f"Patient/{p2}/_history/1", f"{server_url}/fhir/Group/{g1}", p1]
        assert await self.subject(client, fx, "subject", ",".join(values)) == {
            "versioned",
            "group",
            "rel",
            "abs-local",
            "group-same-id",
        }

    async def test_identifier_modifier(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        # search.html#reference :identifier: matches Reference.identifier (a logical reference).
        assert await self.subject(client, fx, "subject:identifier", "urn:mrn|7") == {"logical"}
        assert await self.subject(client, fx, "subject:identifier", "7") == {"logical"}
        assert await self.subject(client, fx, "subject:identifier", "urn:other|7") == set()

    async def test_wrong_type_modifier_is_400(self, client: httpx.AsyncClient) -> None:
        status, body = await status_of(client, "/Observation", ("encounter:Patient", "x"))
        assert status == 400 and "encounter:Patient" in body["issue"][0]["diagnostics"]
        status, body = await status_of(client, "/Observation", ("subject", "Nonsense/1"))
        assert status == 400 and "subject" in body["issue"][0]["diagnostics"]


# --- uri (search.html#uri) ------------------------------------------------------------------------------


def uri_root(fx: Fixture) -> str:
    return f"http://acme.example.org/{fx.run}/fhir"


class TestUri:
    @pytest.fixture(scope="class")
    @classmethod
    async def fx(cls, server_url: str) -> Fixture:
        fx = Fixture()
        root = uri_root(fx)
        urls = {
            "root": f"{root}/",
            "vs": f"{root}/ValueSet",
            "vs123": f"{root}/ValueSet/123",
            "vs1234": f"{root}/ValueSet/1234",
            "other": f"http://other.example.org/{fx.run}/ValueSet/123",
        }
        await fx.store(
            server_url, [fx.resource("ValueSet", k, url=v, status="active") for k, v in urls.items()]
        )
        return fx

    async def test_exact(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        root = uri_root(fx)
        assert await fx.labels(client, "ValueSet", ("url", f"{root}/ValueSet/123")) == {"vs123"}
        assert await fx.labels(client, "ValueSet", ("url", f"{root}/valueset/123")) == set()
        assert await fx.labels(client, "ValueSet", ("url", f"{root}/ValueSet/12")) == set()

    async def test_below(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        # search.html#uri :below: urls that start with the value.
        root = uri_root(fx)
        assert await fx.labels(client, "ValueSet", ("url:below", f"{root}/")) == {
            "root",
            "vs",
            "vs123",
            "vs1234",
        }
        assert await fx.labels(client, "ValueSet", ("url:below", f"{root}/ValueSet/123")) == {
            "vs123",
            "vs1234",
        }

    async def test_above(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        # search.html#uri :above: the spec's example, url:above=.../ValueSet/123/_history/5.
        root = uri_root(fx)
        found = await fx.labels(client, "ValueSet", ("url:above", f"{root}/ValueSet/123/_history/5"))
        assert found == {"root", "vs", "vs123"}

    async def test_like_wildcards_are_literal(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        root = uri_root(fx)
        assert await fx.labels(client, "ValueSet", ("url:below", f"{root}/Value_et")) == set()
        assert await fx.labels(client, "ValueSet", ("url:below", f"{root}/%")) == set()

"""Hostile search input (http://hl7.org/fhir/R4/search.html#errors): quotes, SQL and LIKE metacharacters,
backslashes, unicode, NUL, very long values, deep chains, forged tokens. The server never answers 500:
a value is data bound as a parameter (`x' OR 1=1 --` is just text that matches nothing), and input it
cannot accept is a 400 OperationOutcome.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from tests.support import fhir_client

TAG_SYSTEM = "urn:pms-test:search-hostile"
INJECTIONS = (
    "x' OR 1=1 --",
    "x' OR '1'='1",
    "'; DROP TABLE resource; --",
    '" OR ""="',
    "x) OR (1=1",
    "1; SELECT pg_sleep(10)",
    "$1",
    "%' OR '%'='",
)


@pytest.fixture(scope="module")
async def client(server_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """One HTTP client per module: the shared per-test `client` costs more to build than most searches."""
    async with fhir_client(server_url) as http:
        yield http


class Fixture:
    def __init__(self) -> None:
        self.run = uuid.uuid4().hex[:10]

    @property
    def tag(self) -> tuple[str, str]:
        return ("_tag", f"{TAG_SYSTEM}|{self.run}")

    def id(self, label: str) -> str:
        return f"{self.run}-{label}"

    def resource(self, resource_type: str, label: str, **body: Any) -> dict[str, Any]:
        return {
            "resourceType": resource_type,
            "id": self.id(label),
            "meta": {"tag": [{"system": TAG_SYSTEM, "code": self.run}]},
            **body,
        }

    async def store(self, server_url: str, resources: list[dict[str, Any]]) -> None:
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                for r in resources
            ],
        }
        async with fhir_client(server_url) as http:
            response = await http.post("", json=bundle)
        assert response.status_code == 200, response.text[:2000]

    async def labels(self, client: httpx.AsyncClient, path: str, *params: tuple[str, str]) -> set[str]:
        response = await client.get(path, params=[*params, self.tag, ("_count", "100")])
        assert response.status_code == 200, response.text[:2000]
        entries = response.json().get("entry", [])
        return {e["resource"]["id"][len(self.run) + 1 :] for e in entries if e["search"]["mode"] == "match"}


async def answer(client: httpx.AsyncClient, path: str, *params: tuple[str, str]) -> httpx.Response:
    """A response that is not a server error, with a FHIR body."""
    response = await client.get(path, params=list(params))
    assert response.status_code < 500, (params, response.text[:500])
    assert response.json()["resourceType"] in ("Bundle", "OperationOutcome")
    return response


async def rejected(client: httpx.AsyncClient, path: str, *params: tuple[str, str]) -> str:
    """The diagnostics of a 400 OperationOutcome."""
    response = await answer(client, path, *params)
    assert response.status_code == 400, (params, response.text[:500])
    diagnostics: str = response.json()["issue"][0]["diagnostics"]
    return diagnostics


class TestMetacharactersAreLiteral:
    @pytest.fixture(scope="class")
    @classmethod
    async def fx(cls, server_url: str) -> Fixture:
        fx = Fixture()
        families = {
            "pct": "100%",
            "under": "a_b",
            "axb": "axb",
            "quote": "O'Brien",
            "dquote": 'Say "hi"',
            "slash": "back\\slash",
            "semi": "x; y",
        }
        await fx.store(
            server_url,
            [
                fx.resource(
                    "Patient",
                    label,
                    name=[{"family": family}],
                    identifier=[{"system": "urn:h", "value": family}],
                )
                for label, family in families.items()
            ],
        )
        return fx

    @pytest.mark.parametrize("value", INJECTIONS)
    async def test_sql_injection_matches_nothing(
        self, client: httpx.AsyncClient, fx: Fixture, value: str
    ) -> None:
        for name in ("family", "family:exact", "family:contains", "identifier", "_id", "_content", "_text"):
            if name in ("_content", "_text") and value == "$1":
                continue  # the word "1" (every meta.versionId) legitimately matches
            assert await fx.labels(client, "/Patient", (name, value)) == set(), name
        assert len(await fx.labels(client, "/Patient")) == 7  # and nothing was harmed

    async def test_estimated_totals_bind_their_values_too(
        self, client: httpx.AsyncClient, fx: Fixture
    ) -> None:
        # _total=estimate EXPLAINs the search: with the same bound parameters, whatever their type.
        for params in (
            (("family", INJECTIONS[0]),),
            (("birthdate", "ge2000-01-01T00:00:00+01:00"),),
            (("_lastUpdated", "ap2020"),),
            (("_id", "a,b,c"),),
            (("_has:Observation:subject:code", "x' OR 1=1"),),
            (("_content", INJECTIONS[2]),),
            (("identifier", "urn:h|a_b"),),
        ):
            response = await answer(client, "/Patient", *params, ("_total", "estimate"), fx.tag)
            assert response.status_code == 200, params
            assert isinstance(response.json()["total"], int)
        assert len(await fx.labels(client, "/Patient")) == 7

    async def test_percent_and_underscore_are_not_wildcards(
        self, client: httpx.AsyncClient, fx: Fixture
    ) -> None:
        assert await fx.labels(client, "/Patient", ("family", "%")) == set()
        assert await fx.labels(client, "/Patient", ("family", "100%")) == {"pct"}
        assert await fx.labels(client, "/Patient", ("family", "a_")) == {"under"}
        assert await fx.labels(client, "/Patient", ("family", "_")) == set()
        assert await fx.labels(client, "/Patient", ("family:contains", "%")) == {"pct"}
        assert await fx.labels(client, "/Patient", ("family:contains", "_")) == {"under"}
        assert await fx.labels(client, "/Patient", ("family:exact", "a_b")) == {"under"}
        assert await fx.labels(client, "/Patient", ("identifier", "urn:h|a_b")) == {"under"}

    async def test_quotes(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        assert await fx.labels(client, "/Patient", ("family", "o'b")) == {"quote"}
        assert await fx.labels(client, "/Patient", ("family:exact", 'Say "hi"')) == {"dquote"}
        assert await fx.labels(client, "/Patient", ("identifier", "O'Brien")) == {"quote"}

    async def test_backslashes(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        # search.html#escaping: `\\` is a backslash; a backslash before anything else is an error.
        assert await fx.labels(client, "/Patient", ("family", "back\\\\")) == {"slash"}
        assert await fx.labels(client, "/Patient", ("family:contains", "\\\\")) == {"slash"}
        assert "family" in await rejected(client, "/Patient", ("family", "back\\"))
        assert "family" in await rejected(client, "/Patient", ("family", "\\n"))

    async def test_uri_above_with_metacharacters(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        for value in ("%", "_", "\\\\", "http://x/%25", *INJECTIONS):
            response = await answer(client, "/ValueSet", ("url:above", value), fx.tag)
            assert response.status_code in (200, 400)
            response = await answer(client, "/ValueSet", ("url:below", value), fx.tag)
            assert response.status_code in (200, 400)


class TestUnicode:
    @pytest.fixture(scope="class")
    @classmethod
    async def fx(cls, server_url: str) -> Fixture:
        fx = Fixture()
        families = {
            "strasse": "Straße",
            "ligature": "ﬁsher",
            "cjk": "山田",
            "emoji": "Smile😀",
            "rtl": "שלום",
            "combining": "Jose\u0301",
        }
        await fx.store(
            server_url,
            [fx.resource("Patient", label, name=[{"family": family}]) for label, family in families.items()],
        )
        return fx

    async def test_case_folding_and_compatibility(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        assert await fx.labels(client, "/Patient", ("family", "STRASSE")) == {"strasse"}
        assert await fx.labels(client, "/Patient", ("family", "fish")) == {"ligature"}
        assert await fx.labels(client, "/Patient", ("family", "josé")) == {"combining"}  # precomposed é

    async def test_non_latin_and_astral(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        assert await fx.labels(client, "/Patient", ("family", "山")) == {"cjk"}
        assert await fx.labels(client, "/Patient", ("family:contains", "😀")) == {"emoji"}
        assert await fx.labels(client, "/Patient", ("family:exact", "שלום")) == {"rtl"}

    async def test_invalid_utf8_in_the_query_is_not_a_server_error(
        self, client: httpx.AsyncClient, server_url: str
    ) -> None:
        for raw in ("family=%FF%FE", "family=%ED%A0%80", "fam%FFily=x", "family=%C0%AF"):
            response = await client.get(f"{server_url}/fhir/Patient?{raw}")
            assert response.status_code in (200, 400), raw


class TestNulAndLengths:
    async def test_nul_is_400(self, client: httpx.AsyncClient) -> None:
        for params in ((("family", "a\x00b"),), (("fam\x00ily", "x"),), (("_content", "\x00"),)):
            await rejected(client, "/Patient", *params)
        response = await client.post(
            "/Patient/_search",
            content=b"family=a%00b",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 400

    async def test_values_up_to_the_limit_are_searched(self, client: httpx.AsyncClient) -> None:
        for name in ("family", "family:contains", "identifier", "_content", "subject"):
            value = "a" * 2000 if name != "subject" else "Patient/" + "a" * 64
            response = await answer(
                client, "/Patient" if name != "subject" else "/Observation", (name, value)
            )
            assert response.status_code == 200, name
            assert "entry" not in response.json()

    async def test_too_long_values_and_names_are_400(self, client: httpx.AsyncClient) -> None:
        assert "family" in await rejected(client, "/Patient", ("family", "a" * 2001))
        await rejected(client, "/Patient", ("f" * 300, "x"))
        await rejected(client, "/Observation", ("subject", "Patient/" + "a" * 65))
        await rejected(client, "/Patient", ("_id", "x" * 5000))

    async def test_too_many_parameters_is_400(self, client: httpx.AsyncClient) -> None:
        await rejected(client, "/Patient", *[("family", f"x{i}") for i in range(101)])

    async def test_many_or_values(self, client: httpx.AsyncClient) -> None:
        value = ",".join(f"v{i}" for i in range(400))[:2000].rstrip(",")
        for name in ("family", "identifier", "_id", "birthdate"):
            response = await answer(
                client, "/Patient", (name, value if name != "birthdate" else "2000," * 399 + "2000")
            )
            assert response.status_code == 200, name

    async def test_huge_numbers_and_dates(self, client: httpx.AsyncClient) -> None:
        for value in (
            "1e999",
            "-1e999",
            "1e-999",
            "ap0",
            "-0",
            "9" * 99,
            "0." + "0" * 97 + "1",
            "sa1e-1000",
            "1e1001",
            "99999999999999999999999999999999e999",
        ):
            await answer(client, "/RiskAssessment", ("probability", value))
            await answer(client, "/Observation", ("value-quantity", f"{value}||mg"))
        for value in (
            "ap0001",
            "ap9999-12-31",
            "gt9999-12-31T23:59:59+14:00",
            "lt0001-01-01T00:00:00-14:00",
            "sa9999",
            "eb0001",
            "ne0001-01-01",
            "ap9999-12-31T23:59:59.999999999Z",
            "0000",
            "2020-01-01T00:00:00+99:00",
        ):
            await answer(client, "/Patient", ("birthdate", value))
            await answer(client, "/Patient", ("_lastUpdated", value))


class TestDeepAndOddStructure:
    async def test_chains_up_to_the_limit_run_beyond_are_400(self, client: httpx.AsyncClient) -> None:
        four = "subject:Patient.organization.partof.partof.name"
        assert (await answer(client, "/Observation", (four, "x"))).status_code == 200
        five = "subject:Patient.organization.partof.partof.partof.name"
        assert five in await rejected(client, "/Observation", (five, "x"))
        deep_has = (
            "_has:Observation:patient:_has:DiagnosticReport:result:_has:Provenance:target:" * 2 + "agent"
        )
        await rejected(client, "/Patient", (deep_has, "x"))
        assert (
            await answer(
                client,
                "/Patient",
                (
                    "_has:Observation:patient:_has:DiagnosticReport:result:_has:Provenance:target:agent",
                    "Practitioner/x",
                ),
            )
        ).status_code == 200

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("_sort", "family;DROP TABLE resource"),
            ("_sort", "family,,"),
            ("_include", "Patient:organization' OR 1=1"),
            ("_include", "*:*:*"),
            ("_revinclude", "::"),
            ("_type", "Patient' OR 1=1"),
            ("_list", "x' OR 1=1"),
            ("_elements", "name)--"),
            ("_count", "1 OR 1=1"),
            ("_total", "accurate'"),
            ("_summary", "true;"),
            ("name:exact'", "x"),
            ("name:", "x"),
            (":exact", "x"),
            ("name.", "x"),
            ("_has", "x"),
            ("_has:::", "x"),
            ("identifier", "a|b|c"),
            ("identifier:of-type", "a|b"),
            ("general-practitioner", "Patient/"),
            ("general-practitioner", "http://x/y|"),
            ("_id:above", "x"),
            ("birthdate:exact", "2000"),
            ("_query", "x"),
            ("_page", "A" * 5000),
            ("_page", "bnVsbA"),
            ("_filter", "name eq x"),
            ("_contained", "yes"),
            ("_containedType", "x"),
            ("address-use:text", "\\"),
        ],
    )
    async def test_odd_parameters_never_500(self, client: httpx.AsyncClient, name: str, value: str) -> None:
        await answer(client, "/Patient", (name, value))

    async def test_forged_page_tokens_are_400(self, client: httpx.AsyncClient) -> None:
        def token(payload: Any) -> str:
            return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")

        forged = [
            [True, [{"t": "not a date"}, 1]],
            [True, [{"n": "NaN"}, 1]],
            [True, [{"n": "abc"}, 1]],
            [True, ["text", 1]],
            [True, [None, "1"]],
            [True, [None, 2**70]],
            [True, [None, True]],
            [True, [{"t": "2020-01-01T00:00:00"}, 1]],
            [1, [None, 1]],
            [True, {"a": 1}],
            "x",
            [[[[[]]]]],
        ]
        for payload in forged:
            await rejected(client, "/Patient", ("_sort", "birthdate"), ("_page", token(payload)))
        await rejected(client, "/Patient", ("_sort", "_id"), ("_page", token([True, [{"t": "2020"}, 1]])))

    async def test_hostile_paths(self, client: httpx.AsyncClient) -> None:
        for path in (
            "/Patient/x'y/Observation",
            "/Patient/%00/Observation",
            "/Nothing/1/Observation",
            "/Patient/1/Nothing",
            "/Patient/" + "a" * 100 + "/Observation",
        ):
            response = await client.get(path)
            assert 400 <= response.status_code < 500, path

    async def test_text_search_operators_are_text(self, client: httpx.AsyncClient) -> None:
        for value in ("a & b", "!x", "a | b", "x:*", "'", "(((", "<->", "\\\\"):
            for name in ("_text", "_content"):
                response = await answer(client, "/Patient", (name, value), ("_tag", "urn:none|none"))
                assert response.status_code == 200, (name, value)

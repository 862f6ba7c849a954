"""Search features over HTTP (http://hl7.org/fhir/R4/search.html): chaining, _has, composites, :missing,
combining, escaping, sorting, paging, totals, summaries, includes, compartments, lists, text search, meta
parameters, whole-system search and error handling.

Every class stores its own small set of resources (ids `<run>-<label>`, tagged with a tag unique to the
class) and searches within that tag, so the expected results are exact whatever else the database holds.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from tests.support import fhir_client

TAG_SYSTEM = "urn:pms-test:search-features"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SUBSETTED = "SUBSETTED"


@pytest.fixture(scope="module")
async def client(server_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """One HTTP client per module: the shared per-test `client` costs more to build than most searches."""
    async with fhir_client(server_url) as http:
        yield http


class Fixture:
    """A class's resources: ids are `<run>-<label>`, all carry the tag `<TAG_SYSTEM>|<run>`."""

    def __init__(self) -> None:
        self.run = uuid.uuid4().hex[:10]

    @property
    def tag(self) -> tuple[str, str]:
        return ("_tag", f"{TAG_SYSTEM}|{self.run}")

    def id(self, label: str) -> str:
        return f"{self.run}-{label}"

    def ref(self, reference: str) -> dict[str, str]:
        """`Patient/p1` -> a Reference to this fixture's Patient p1."""
        type_, label = reference.split("/")
        return {"reference": f"{type_}/{self.id(label)}"}

    def label(self, id_: str) -> str:
        return id_[len(self.run) + 1 :] if id_.startswith(f"{self.run}-") else f"?{id_}"

    def resource(self, resource_type: str, label: str, **body: Any) -> dict[str, Any]:
        meta = dict(body.pop("meta", {}))
        meta["tag"] = [*meta.get("tag", []), {"system": TAG_SYSTEM, "code": self.run}]
        return {"resourceType": resource_type, "id": self.id(label), "meta": meta, **body}

    async def store(self, server_url: str, resources: list[dict[str, Any]]) -> None:
        """PUT every resource (with its chosen id) in one transaction."""
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                for r in resources
            ],
        }
        async with fhir_client(server_url) as http:
            response = await http.post(
                "", content=json.dumps(bundle), headers={"Content-Type": "application/fhir+json"}
            )
        assert response.status_code == 200, response.text[:2000]

    async def bundle(
        self,
        client: httpx.AsyncClient,
        path: str,
        *params: tuple[str, str],
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        response = await client.get(path, params=[*params, self.tag], headers=headers)
        assert response.status_code == 200, response.text[:2000]
        body: dict[str, Any] = response.json()
        assert body["resourceType"] == "Bundle" and body["type"] == "searchset"
        return body

    def matches(self, bundle: dict[str, Any], mode: str = "match") -> list[str]:
        return [
            f"{e['resource']['resourceType']}/{self.label(e['resource']['id'])}"
            for e in bundle.get("entry", [])
            if e["search"]["mode"] == mode
        ]

    async def labels(self, client: httpx.AsyncClient, path: str, *params: tuple[str, str]) -> set[str]:
        """Labels of the matches (the type left out), as a set; fails on duplicates."""
        found = [
            m.split("/", 1)[1]
            for m in self.matches(await self.bundle(client, path, *params, ("_count", "200")))
        ]
        assert len(found) == len(set(found)), found
        return set(found)

    async def ordered(self, client: httpx.AsyncClient, path: str, *params: tuple[str, str]) -> list[str]:
        found = self.matches(await self.bundle(client, path, *params, ("_count", "200")))
        return [m.split("/", 1)[1] for m in found]


async def error_of(
    client: httpx.AsyncClient, path: str, *params: tuple[str, str], headers: dict[str, str] | None = None
) -> tuple[int, str]:
    """(status, diagnostics of the first issue) of a request expected to fail."""
    response = await client.get(path, params=list(params), headers=headers)
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    return response.status_code, body["issue"][0].get("diagnostics", "")


def link(bundle: dict[str, Any], relation: str) -> str | None:
    return next((x["url"] for x in bundle.get("link", []) if x["relation"] == relation), None)


def obs(fx: Fixture, label: str, **body: Any) -> dict[str, Any]:
    body.setdefault("status", "final")
    body.setdefault("code", {"text": "test"})
    return fx.resource("Observation", label, **body)


def coding(code: str, system: str = LOINC) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def quantity(value: float, code: str = "mm[Hg]") -> dict[str, Any]:
    return {"value": value, "unit": code, "system": UCUM, "code": code}


# --- chaining (search.html#chaining) --------------------------------------------------------------------


class TestChaining:
    @pytest.fixture(scope="class")
    @classmethod
    async def fx(cls, server_url: str) -> Fixture:
        fx = Fixture()
        await fx.store(
            server_url,
            [
                fx.resource("Organization", "acme", name="Acme Hospital"),
                fx.resource("Organization", "zeta", name="Zeta Clinic"),
                fx.resource(
                    "Patient",
                    "peter",
                    name=[{"family": "Chalmers", "given": ["Peter"]}],
                    gender="male",
                    managingOrganization=fx.ref("Organization/acme"),
                ),
                fx.resource(
                    "Patient",
                    "paula",
                    name=[{"family": "Chalmers", "given": ["Paula"]}],
                    gender="female",
                    managingOrganization=fx.ref("Organization/zeta"),
                ),
                fx.resource("Location", "peterloc", name="Peter's Ward", status="active"),
                obs(fx, "o-peter", subject=fx.ref("Patient/peter")),
                obs(fx, "o-paula", subject=fx.ref("Patient/paula")),
                obs(fx, "o-loc", subject=fx.ref("Location/peterloc")),
                fx.resource(
                    "DiagnosticReport",
                    "dr-peter",
                    status="final",
                    code={"text": "panel"},
                    result=[fx.ref("Observation/o-peter")],
                ),
                fx.resource(
                    "DiagnosticReport",
                    "dr-both",
                    status="final",
                    code={"text": "panel"},
                    result=[fx.ref("Observation/o-paula"), fx.ref("Observation/o-loc")],
                ),
            ],
        )
        return fx

    async def test_spec_example_subject_patient_name(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        # search.html#chaining: "subject:Patient.name=peter".
        assert await fx.labels(client, "/Observation", ("subject:Patient.name", "peter")) == {"o-peter"}

    async def test_type_is_required_when_ambiguous(self, client: httpx.AsyncClient) -> None:
        # Observation.subject may be a Patient or a Location, both have `name`: the client must say which.
        status, message = await error_of(client, "/Observation", ("subject.name", "peter"))
        assert status == 400 and "subject.name" in message

    async def test_single_candidate_type_is_inferred(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        # Only Patient (of subject's targets) has `gender`.
        assert await fx.labels(client, "/Observation", ("subject.gender", "female")) == {"o-paula"}
        assert await fx.labels(client, "/Observation", ("subject:Location.name", "peter")) == {"o-loc"}

    async def test_two_links(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        found = await fx.labels(client, "/Observation", ("subject:Patient.organization.name", "acme"))
        assert found == {"o-peter"}

    async def test_three_links(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        found = await fx.labels(
            client, "/DiagnosticReport", ("result.subject:Patient.organization.name", "zeta")
        )
        assert found == {"dr-both"}
        found = await fx.labels(
            client, "/DiagnosticReport", ("result.subject:Patient.organization.name", "a,z")
        )
        assert found == {"dr-peter", "dr-both"}

    async def test_chain_to_id_and_token(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        found = await fx.labels(client, "/Observation", ("subject:Patient._id", fx.id("paula")))
        assert found == {"o-paula"}

    async def test_chains_are_independent(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        # search.html#chaining: each chained parameter is evaluated on its own: the report refers to a
        # female patient's observation and (through another observation) to a Location named Peter.
        found = await fx.labels(
            client,
            "/DiagnosticReport",
            ("result.subject:Patient.gender", "female"),
            ("result.subject:Location.name", "peter"),
        )
        assert found == {"dr-both"}

    async def test_chaining_a_non_reference_is_400(self, client: httpx.AsyncClient) -> None:
        status, message = await error_of(client, "/Observation", ("code.name", "x"))
        assert status == 400 and "code.name" in message


# --- reverse chaining (search.html#has) -----------------------------------------------------------------


class TestHas:
    @pytest.fixture(scope="class")
    @classmethod
    async def fx(cls, server_url: str) -> Fixture:
        fx = Fixture()
        await fx.store(
            server_url,
            [
                fx.resource("Patient", "p1"),
                fx.resource("Patient", "p2"),
                fx.resource("Patient", "p3"),
                fx.resource("Group", "g1", type="person", actual=True),
                obs(fx, "o1", code=coding("1234-5"), subject=fx.ref("Patient/p1")),
                obs(fx, "o2", code=coding("9999-9"), subject=fx.ref("Patient/p2")),
                obs(fx, "o3", code=coding("1234-5"), subject=fx.ref("Group/g1")),
                fx.resource(
                    "DiagnosticReport",
                    "dr",
                    status="final",
                    code=coding("panel"),
                    result=[fx.ref("Observation/o2")],
                ),
            ],
        )
        return fx

    async def test_has(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        # search.html#has: Patient?_has:Observation:patient:code=1234-5.
        assert await fx.labels(client, "/Patient", ("_has:Observation:patient:code", "1234-5")) == {"p1"}
        assert await fx.labels(client, "/Patient", ("_has:Observation:subject:code", "1234-5,9999-9")) == {
            "p1",
            "p2",
        }

    async def test_nested_has(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        # Patients with an observation that a DiagnosticReport has as a result.
        found = await fx.labels(
            client, "/Patient", ("_has:Observation:patient:_has:DiagnosticReport:result:status", "final")
        )
        assert found == {"p2"}

    async def test_has_with_a_chain(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        found = await fx.labels(
            client, "/Patient", ("_has:Observation:subject:subject:Group._id", fx.id("g1"))
        )
        assert found == set()
        found = await fx.labels(client, "/Group", ("_has:Observation:subject:code", "1234-5"))
        assert found == {"g1"}

    async def test_has_in_whole_system_search(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        found = await fx.labels(
            client, "", ("_type", "Patient,Group"), ("_has:Observation:subject:code", "1234-5")
        )
        assert found == {"p1", "g1"}
        found = await fx.labels(client, "", ("_has:Observation:subject:code", "1234-5"))
        assert found == {"p1", "g1"}

    async def test_has_and_plain_criteria_combine(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        found = await fx.labels(
            client, "/Patient", ("_has:Observation:patient:code", "1234-5"), ("_id", fx.id("p2"))
        )
        assert found == set()

    async def test_malformed_has_is_400(self, client: httpx.AsyncClient) -> None:
        status, message = await error_of(client, "/Patient", ("_has:Observation:patient", "x"))
        assert status == 400 and "_has" in message
        status, message = await error_of(client, "/Patient", ("_has:Nothing:patient:code", "x"))
        assert status == 400 and "Nothing" in message


# --- composite (search.html#composite) ------------------------------------------------------------------


class TestComposite:
    @pytest.fixture(scope="class")
    @classmethod
    async def fx(cls, server_url: str) -> Fixture:
        fx = Fixture()

        def bp(label: str, systolic: float, diastolic: float) -> dict[str, Any]:
            return obs(
                fx,
                label,
                code=coding("85354-9"),
                component=[
                    {"code": coding("8480-6"), "valueQuantity": quantity(systolic)},
                    {"code": coding("8462-4"), "valueQuantity": quantity(diastolic)},
                ],
            )

        await fx.store(
            server_url,
            [
                obs(fx, "sys55", code=coding("8480-6"), valueQuantity=quantity(55)),
                obs(fx, "sys65", code=coding("8480-6"), valueQuantity=quantity(65)),
                obs(fx, "dia55", code=coding("8462-4"), valueQuantity=quantity(55)),
                obs(fx, "dollar", code=coding("a$b", "urn:codes"), valueQuantity=quantity(1, "1")),
                obs(fx, "str", code=coding("text-code"), valueString="Positive result"),
                bp("bp-high-sys", 150, 80),
                bp("bp-high-dia", 90, 125),
            ],
        )
        return fx

    async def test_code_value_quantity(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        # search.html#composite: code-value-quantity=http://loinc.org|8480-6$lt60.
        found = await fx.labels(client, "/Observation", ("code-value-quantity", f"{LOINC}|8480-6$lt60"))
        assert found == {"sys55"}
        found = await fx.labels(client, "/Observation", ("code-value-quantity", f"8480-6$55|{UCUM}|mm[Hg]"))
        assert found == {"sys55"}

    async def test_or_of_composites(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        value = f"{LOINC}|8480-6$gt60,{LOINC}|8462-4$55"
        assert await fx.labels(client, "/Observation", ("code-value-quantity", value)) == {"sys65", "dia55"}

    async def test_and_of_composites(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        found = await fx.labels(
            client,
            "/Observation",
            ("component-code-value-quantity", f"{LOINC}|8480-6$gt100"),
            ("component-code-value-quantity", f"{LOINC}|8462-4$lt100"),
        )
        assert found == {"bp-high-sys"}

    async def test_component_values_pair_within_one_component(
        self, client: httpx.AsyncClient, fx: Fixture
    ) -> None:
        # bp-high-dia has a component > 100 (diastolic) and a systolic component, but not both in one.
        value = f"{LOINC}|8480-6$gt100"
        assert await fx.labels(client, "/Observation", ("component-code-value-quantity", value)) == {
            "bp-high-sys"
        }
        value = f"{LOINC}|8462-4$gt100"
        assert await fx.labels(client, "/Observation", ("component-code-value-quantity", value)) == {
            "bp-high-dia"
        }

    async def test_combo_covers_value_and_components(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        found = await fx.labels(client, "/Observation", ("combo-code-value-quantity", f"{LOINC}|8462-4$ge55"))
        assert found == {"dia55", "bp-high-sys", "bp-high-dia"}

    async def test_escaped_dollar_in_a_component(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        # search.html#escaping: `\\$` is a literal $ inside a component.
        found = await fx.labels(client, "/Observation", ("code-value-quantity", "urn:codes|a\\$b$1"))
        assert found == {"dollar"}

    async def test_code_value_string(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        found = await fx.labels(client, "/Observation", ("code-value-string", f"{LOINC}|text-code$posit"))
        assert found == {"str"}

    async def test_wrong_number_of_components_is_400(self, client: httpx.AsyncClient) -> None:
        status, message = await error_of(client, "/Observation", ("code-value-quantity", f"{LOINC}|8480-6"))
        assert status == 400 and "code-value-quantity" in message


# --- :missing on every type (search.html#missing) -------------------------------------------------------


class TestMissing:
    @pytest.fixture(scope="class")
    @classmethod
    async def fx(cls, server_url: str) -> Fixture:
        fx = Fixture()
        await fx.store(
            server_url,
            [
                fx.resource(
                    "Patient",
                    "full",
                    name=[{"family": "Full"}],
                    gender="male",
                    birthDate="1990-01-01",
                    meta={"profile": ["http://example.org/StructureDefinition/p"]},
                ),
                fx.resource("Patient", "empty"),
                obs(fx, "with", valueQuantity=quantity(5), subject=fx.ref("Patient/full")),
                obs(fx, "without"),
                fx.resource(
                    "RiskAssessment",
                    "with",
                    status="final",
                    subject=fx.ref("Patient/full"),
                    prediction=[{"probabilityDecimal": 0.5}],
                ),
                fx.resource("RiskAssessment", "without", status="final", subject=fx.ref("Patient/full")),
            ],
        )
        return fx

    @pytest.mark.parametrize(
        ("path", "name", "present"),
        [
            ("/Patient", "family", "full"),  # string
            ("/Patient", "gender", "full"),  # token
            ("/Patient", "birthdate", "full"),  # date
            ("/Patient", "_profile", "full"),  # uri
            ("/Observation", "value-quantity", "with"),  # quantity
            ("/Observation", "subject", "with"),  # reference
            ("/RiskAssessment", "probability", "with"),  # number
        ],
    )
    async def test_missing_true_and_false(
        self, client: httpx.AsyncClient, fx: Fixture, path: str, name: str, present: str
    ) -> None:
        absent = {"full": "empty", "with": "without"}[present]
        assert await fx.labels(client, path, (f"{name}:missing", "true")) == {absent}
        assert await fx.labels(client, path, (f"{name}:missing", "false")) == {present}

    async def test_missing_needs_true_or_false(self, client: httpx.AsyncClient) -> None:
        status, message = await error_of(client, "/Patient", ("gender:missing", "yes"))
        assert status == 400 and "gender:missing" in message


# --- combining: OR within a parameter, AND across repeats (search.html#combining) -----------------------


class TestOrAnd:
    @pytest.fixture(scope="class")
    @classmethod
    async def fx(cls, server_url: str) -> Fixture:
        fx = Fixture()
        await fx.store(
            server_url,
            [
                fx.resource(
                    "Patient", "ab", name=[{"given": ["Anna"]}, {"given": ["Berta"]}], gender="female"
                ),
                fx.resource("Patient", "a", name=[{"given": ["Anna"]}], gender="male"),
                fx.resource("Patient", "b", name=[{"given": ["Berta"]}], gender="unknown"),
            ],
        )
        return fx

    async def test_or(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        assert await fx.labels(client, "/Patient", ("given", "anna,berta")) == {"ab", "a", "b"}
        assert await fx.labels(client, "/Patient", ("gender", "male,female")) == {"ab", "a"}

    async def test_and(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        assert await fx.labels(client, "/Patient", ("given", "anna"), ("given", "berta")) == {"ab"}
        assert await fx.labels(client, "/Patient", ("given", "anna"), ("gender", "male")) == {"a"}

    async def test_and_of_ors(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        found = await fx.labels(client, "/Patient", ("given", "anna,berta"), ("gender", "female,unknown"))
        assert found == {"ab", "b"}

    async def test_empty_values_are_ignored(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        # search.html#errors: empty parameters are ignored.
        assert await fx.labels(client, "/Patient", ("given", ""), ("gender", "male")) == {"a"}


class TestRepeatedBounds:
    """AND of two bounds (search.html#combining): a single-valued parameter's one value must meet both
    (they are tested on the same index row); a multi-valued one may meet them with different values."""

    @pytest.fixture(scope="class")
    @classmethod
    async def fx(cls, server_url: str) -> Fixture:
        fx = Fixture()

        def observation(label: str, value: float, components: tuple[float, ...] = ()) -> dict[str, Any]:
            quantity = {"system": "http://unitsofmeasure.org", "code": "mg"}
            parts = [{"code": {"text": "c"}, "valueQuantity": {"value": v, **quantity}} for v in components]
            return fx.resource(
                "Observation",
                label,
                status="final",
                code={"text": "x"},
                effectiveDateTime=f"2026-03-{int(value):02d}T10:00:00Z",
                valueQuantity={"value": value, **quantity},
                **({"component": parts} if parts else {}),
            )

        await fx.store(server_url, [observation("seven", 7, (3, 10)), observation("twelve", 12)])
        return fx

    async def test_single_valued_bounds_hold_for_the_one_value(
        self, client: httpx.AsyncClient, fx: Fixture
    ) -> None:
        assert await fx.labels(
            client, "/Observation", ("value-quantity", "gt5"), ("value-quantity", "lt10")
        ) == {"seven"}
        assert await fx.labels(
            client, "/Observation", ("date", "ge2026-03-05"), ("date", "lt2026-03-10")
        ) == {"seven"}
        assert (
            await fx.labels(client, "/Observation", ("date", "ge2026-03-08"), ("date", "lt2026-03-12"))
            == set()
        )

    async def test_multi_valued_bounds_may_hold_for_different_values(
        self, client: httpx.AsyncClient, fx: Fixture
    ) -> None:
        # No component is both > 5 and < 4, but one is > 5 (10) and another < 4 (3).
        found = await fx.labels(
            client, "/Observation", ("component-value-quantity", "gt5"), ("component-value-quantity", "lt4")
        )
        assert found == {"seven"}


class TestInstantBounds:
    """Bounds on an instant-valued parameter (Appointment.start) at the edges of their precision: the
    index scan they allow (an instant starts less than a second before it ends) must not change what
    matches (search.html#prefix: ge, gt, sa against the search value's whole second)."""

    @pytest.fixture(scope="class")
    @classmethod
    async def fx(cls, server_url: str) -> Fixture:
        fx = Fixture()
        starts = {
            "before": "09:59:59.500",
            "at": "10:00:00",
            "second": "10:00:01",
            "late": "10:59:59",
            "next": "11:00:00",
        }
        await fx.store(
            server_url,
            [
                fx.resource(
                    "Appointment",
                    label,
                    status="proposed",
                    start=f"2026-03-01T{time}Z",
                    end="2026-03-01T12:00:00Z",
                    participant=[{"status": "needs-action", "actor": {"display": "Dr. X"}}],
                )
                for label, time in starts.items()
            ],
        )
        return fx

    async def test_range_of_one_hour(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        found = await fx.labels(
            client, "/Appointment", ("date", "ge2026-03-01T10:00:00Z"), ("date", "lt2026-03-01T11:00:00Z")
        )
        assert found == {"at", "second", "late"}

    async def test_prefixes_at_the_edge_of_a_second(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        async def found(value: str) -> set[str]:
            return await fx.labels(client, "/Appointment", ("date", value))

        everything = {"before", "at", "second", "late", "next"}
        later = {"second", "late", "next"}
        assert await found("ge2026-03-01T09:59:59Z") == everything
        assert await found("ge2026-03-01T10:00:00Z") == everything - {"before"}
        assert await found("gt2026-03-01T10:00:00Z") == later
        assert await found("sa2026-03-01T10:00:00Z") == later
        assert await found("ge2026-03-01T10:00:01Z") == later
        assert await found("eq2026-03-01T10:00:01Z") == {"second"}


# --- escaping (search.html#escaping) --------------------------------------------------------------------


class TestEscaping:
    @pytest.fixture(scope="class")
    @classmethod
    async def fx(cls, server_url: str) -> Fixture:
        fx = Fixture()
        await fx.store(
            server_url,
            [
                fx.resource(
                    "Patient",
                    "comma",
                    name=[{"family": "Smith,Jones"}],
                    identifier=[{"system": "urn:ids", "value": "a|b"}],
                ),
                fx.resource(
                    "Patient",
                    "smith",
                    name=[{"family": "Smith"}],
                    identifier=[{"system": "urn:ids", "value": "a"}],
                ),
                fx.resource("Patient", "jones", name=[{"family": "Jones"}]),
                fx.resource(
                    "Patient",
                    "slash",
                    name=[{"family": "back\\slash"}],
                    identifier=[{"system": "urn:ids", "value": "x$y"}],
                ),
            ],
        )
        return fx

    async def test_escaped_comma_is_not_or(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        assert await fx.labels(client, "/Patient", ("family:exact", "Smith\\,Jones")) == {"comma"}
        assert await fx.labels(client, "/Patient", ("family:exact", "Smith,Jones")) == {"smith", "jones"}

    async def test_escaped_bar_is_not_a_system(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        assert await fx.labels(client, "/Patient", ("identifier", "urn:ids|a\\|b")) == {"comma"}
        assert await fx.labels(client, "/Patient", ("identifier", "a\\|b")) == {"comma"}

    async def test_escaped_dollar_and_backslash(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        assert await fx.labels(client, "/Patient", ("identifier", "x\\$y")) == {"slash"}
        assert await fx.labels(client, "/Patient", ("family:exact", "back\\\\slash")) == {"slash"}

    async def test_invalid_escape_is_400(self, client: httpx.AsyncClient) -> None:
        status, message = await error_of(client, "/Patient", ("family", "back\\slash"))
        assert status == 400 and "family" in message


# --- _sort (search.html#sort) ---------------------------------------------------------------------------


class TestSort:
    @pytest.fixture(scope="class")
    @classmethod
    async def fx(cls, server_url: str) -> Fixture:
        fx = Fixture()
        people = [
            ("a1", "Adams", "1980-01-01"),
            ("a2", "Adams", "1990-01-01"),
            ("a3", "adams", "1970-01-01"),
            ("b1", "Baker", "1985-05-05"),
            ("c1", "Clark", None),
            ("n1", None, "2000-01-01"),
        ]
        resources = []
        for label, family, birth in people:
            body: dict[str, Any] = {}
            if family:
                body["name"] = [{"family": family}]
            if birth:
                body["birthDate"] = birth
            resources.append(fx.resource("Patient", label, **body))
        await fx.store(server_url, resources)
        return fx

    async def test_one_key_ascending_missing_last(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        found = await fx.ordered(client, "/Patient", ("_sort", "birthdate"))
        assert found == ["a3", "a1", "b1", "a2", "n1", "c1"]

    async def test_one_key_descending_missing_last(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        found = await fx.ordered(client, "/Patient", ("_sort", "-birthdate"))
        assert found == ["n1", "a2", "b1", "a1", "a3", "c1"]

    async def test_several_keys(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        # String sort is case-insensitive, like string matching; ties broken by the next key.
        found = await fx.ordered(client, "/Patient", ("_sort", "family,-birthdate"))
        assert found == ["a2", "a1", "a3", "b1", "c1", "n1"]
        found = await fx.ordered(client, "/Patient", ("_sort", "-family,birthdate"))
        assert found == ["c1", "b1", "a3", "a1", "a2", "n1"]

    async def test_repeated_sort_parameters_add_keys(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        found = await fx.ordered(client, "/Patient", ("_sort", "family"), ("_sort", "birthdate"))
        assert found == ["a3", "a1", "a2", "b1", "c1", "n1"]

    async def test_id_and_last_updated(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        assert await fx.ordered(client, "/Patient", ("_sort", "-_id")) == ["n1", "c1", "b1", "a3", "a2", "a1"]
        ordered = await fx.ordered(client, "/Patient", ("_sort", "_lastUpdated,_id"))
        assert sorted(ordered) == ["a1", "a2", "a3", "b1", "c1", "n1"]

    async def test_unknown_sort_parameter_is_400(self, client: httpx.AsyncClient) -> None:
        status, message = await error_of(client, "/Patient", ("_sort", "nonsense"))
        assert status == 400 and "nonsense" in message


# --- paging, _count and _total (search.html#count, #total, #paging) -----------------------------------


class TestPaging:
    FAMILIES = ("f0", "f1", "f2", "f3", "f4", "f5", "f6")

    @pytest.fixture(scope="class")
    @classmethod
    async def fx(cls, server_url: str) -> Fixture:
        fx = Fixture()
        await fx.store(server_url, [fx.resource("Patient", f, name=[{"family": f}]) for f in cls.FAMILIES])
        return fx

    async def walk(self, client: httpx.AsyncClient, url: str, relation: str) -> list[list[str]]:
        pages = []
        next_url: str | None = url
        while next_url is not None:
            response = await client.get(next_url)
            assert response.status_code == 200, response.text
            page = response.json()
            pages.append([e["resource"]["id"] for e in page.get("entry", [])])
            next_url = link(page, relation)
            assert len(pages) < 20
        return pages

    async def test_count_total_and_links(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        page = await fx.bundle(
            client, "/Patient", ("_sort", "family"), ("_count", "3"), ("_total", "accurate")
        )
        assert page["total"] == 7
        assert [fx.label(e["resource"]["id"]) for e in page["entry"]] == ["f0", "f1", "f2"]
        assert link(page, "self") and link(page, "first") and link(page, "next")
        assert link(page, "previous") is None
        assert "_count=3" in (link(page, "next") or "")

    async def test_walk_next_then_previous(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        first = await fx.bundle(client, "/Patient", ("_sort", "family"), ("_count", "2"))
        url = link(first, "self")
        assert url is not None
        pages = await self.walk(client, url, "next")
        assert [len(p) for p in pages] == [2, 2, 2, 1]
        forward = [fx.label(i) for p in pages for i in p]
        assert forward == list(self.FAMILIES)
        # Back from the last page, following previous links.
        last_page = await client.get(url)
        for _ in range(3):
            nxt = link(last_page.json(), "next")
            assert nxt is not None
            last_page = await client.get(nxt)
        previous = link(last_page.json(), "previous")
        assert previous is not None
        backward = await self.walk(client, previous, "previous")
        assert [fx.label(i) for p in reversed(backward) for i in p] == list(self.FAMILIES[:6])

    async def test_no_duplicates_or_gaps_while_another_client_inserts(
        self, client: httpx.AsyncClient, server_url: str
    ) -> None:
        fx = Fixture()
        await fx.store(server_url, [fx.resource("Patient", f, name=[{"family": f}]) for f in self.FAMILIES])
        page = await fx.bundle(client, "/Patient", ("_sort", "family"), ("_count", "2"))
        seen = [fx.label(e["resource"]["id"]) for e in page["entry"]]
        inserts = iter([["f0a", "f3a"], ["f1a", "f9"], ["f2a"], []])
        async with fhir_client(server_url) as other:
            while (url := link(page, "next")) is not None:
                for family in next(inserts):  # another client writes before and after the current page
                    body = fx.resource("Patient", family, name=[{"family": family}])
                    assert (await other.put(f"/Patient/{body['id']}", json=body)).status_code == 201
                page = (await client.get(url)).json()
                seen += [fx.label(e["resource"]["id"]) for e in page.get("entry", [])]
        # Inserted rows sorting before the current position are not seen; those after are; none twice.
        assert seen == ["f0", "f1", "f2", "f3", "f3a", "f4", "f5", "f6", "f9"]

    async def test_total_none_estimate_accurate(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        accurate = await fx.bundle(client, "/Patient", ("_count", "2"), ("_total", "accurate"))
        assert accurate["total"] == 7
        estimate = await fx.bundle(
            client,
            "/Patient",
            ("_count", "2"),
            ("_total", "estimate"),
            ("birthdate:missing", "true"),
            ("name", "f"),
        )
        assert isinstance(estimate["total"], int) and estimate["total"] >= 0
        none = await fx.bundle(client, "/Patient", ("_count", "2"), ("_total", "none"))
        assert "total" not in none

    async def test_count_zero_and_summary_count(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        for params in ((("_count", "0"),), (("_summary", "count"),)):
            bundle = await fx.bundle(client, "/Patient", *params)
            assert bundle["total"] == 7 and "entry" not in bundle

    async def test_invalid_values_are_400(self, client: httpx.AsyncClient) -> None:
        for name, value in (("_count", "-1"), ("_count", "ten"), ("_total", "all"), ("_summary", "maybe")):
            status, message = await error_of(client, "/Patient", (name, value))
            assert status == 400 and name in message, (name, value)

    async def test_forged_page_token_is_400(self, client: httpx.AsyncClient) -> None:
        for token in ("garbage!", "eyJ4IjoxfQ", "W3RydWUsW3siYSI6MX0sNV1d", "W3RydWUsWyJ4Il1d"):
            status, _ = await error_of(client, "/Patient", ("_page", token), ("_sort", "birthdate"))
            assert status == 400, token


# --- _summary and _elements (search.html#summary, #elements) -------------------------------------------


class TestDefaultOrderPages:
    """In the default order, a search whose criteria are all index matches takes its page of row ids from
    the index tables before reading any resource (storage/search/engine.py `_rid_page`); the pages must
    be those of the plain search (search.html#paging): every match once, none deleted, links both ways."""

    LABELS = ("p0", "p1", "p2", "p3", "p4", "p5", "p6")

    @pytest.fixture(scope="class")
    @classmethod
    async def fx(cls, server_url: str) -> Fixture:
        fx = Fixture()
        # Two names each that both match `name=smi`: two index rows per Patient for the one criterion.
        await fx.store(
            server_url,
            [
                fx.resource(
                    "Patient",
                    label,
                    gender="female",
                    name=[{"family": f"Smith{label}"}, {"family": f"Smithers{label}"}],
                )
                for label in cls.LABELS
            ],
        )
        return fx

    async def walk(self, client: httpx.AsyncClient, url: str, relation: str, fx: Fixture) -> list[list[str]]:
        pages: list[list[str]] = []
        next_url: str | None = url
        while next_url is not None:
            response = await client.get(next_url)
            assert response.status_code == 200, response.text
            pages.append([fx.label(e["resource"]["id"]) for e in response.json().get("entry", [])])
            next_url = link(response.json(), relation)
            assert len(pages) < 20
        return pages

    async def test_every_match_once_in_full_pages_both_ways(
        self, client: httpx.AsyncClient, fx: Fixture
    ) -> None:
        first = await fx.bundle(client, "/Patient", ("name", "smi"), ("gender", "female"), ("_count", "2"))
        url = link(first, "self")
        assert url is not None
        pages = await self.walk(client, url, "next", fx)
        assert [len(p) for p in pages] == [2, 2, 2, 1]
        forward = [label for p in pages for label in p]
        assert sorted(forward) == list(self.LABELS)
        last = await client.get(url)
        for _ in range(3):
            following = link(last.json(), "next")
            assert following is not None
            last = await client.get(following)
        previous = link(last.json(), "previous")
        assert previous is not None
        backward = await self.walk(client, previous, "previous", fx)
        assert [label for p in reversed(backward) for label in p] == forward[:6]

    async def test_the_same_matches_as_a_search_that_reads_resources(
        self, client: httpx.AsyncClient, fx: Fixture
    ) -> None:
        """`gender:missing=false` tests the resource row (no index-only page): same matches, same order."""
        from_index = await fx.bundle(
            client, "/Patient", ("name", "smi"), ("gender", "female"), ("_count", "50")
        )
        from_rows = await fx.bundle(
            client, "/Patient", ("name", "smi"), ("gender:missing", "false"), ("_count", "50")
        )
        assert fx.matches(from_index) == fx.matches(from_rows)
        assert len(fx.matches(from_index)) == len(self.LABELS)

    async def test_a_deleted_match_is_gone_from_the_pages(
        self, client: httpx.AsyncClient, server_url: str
    ) -> None:
        fx = Fixture()
        await fx.store(
            server_url,
            [
                fx.resource("Patient", label, gender="male", name=[{"family": "Okafor"}])
                for label in ("a", "b", "c")
            ],
        )
        assert (await client.delete(f"/Patient/{fx.id('b')}")).status_code == 200
        page = await fx.bundle(client, "/Patient", ("name", "okaf"), ("gender", "male"), ("_count", "1"))
        seen = [fx.label(e["resource"]["id"]) for e in page["entry"]]
        while (url := link(page, "next")) is not None:
            page = (await client.get(url)).json()
            seen += [fx.label(e["resource"]["id"]) for e in page.get("entry", [])]
        assert sorted(seen) == ["a", "c"]


class TestSummaryAndElements:
    @pytest.fixture(scope="class")
    @classmethod
    async def fx(cls, server_url: str) -> Fixture:
        fx = Fixture()
        await fx.store(
            server_url,
            [
                fx.resource(
                    "Patient",
                    "p",
                    name=[{"family": "Summary"}],
                    birthDate="1970-01-01",
                    gender="female",
                    maritalStatus={"text": "married"},
                    text={
                        "status": "generated",
                        "div": '<div xmlns="http://www.w3.org/1999/xhtml">Summary patient</div>',
                    },
                )
            ],
        )
        return fx

    async def only(self, client: httpx.AsyncClient, fx: Fixture, *params: tuple[str, str]) -> dict[str, Any]:
        bundle = await fx.bundle(client, "/Patient", *params)
        assert len(bundle["entry"]) == 1
        resource: dict[str, Any] = bundle["entry"][0]["resource"]
        return resource

    @staticmethod
    def subsetted(resource: dict[str, Any]) -> bool:
        return any(t.get("code") == SUBSETTED for t in resource["meta"].get("tag", []))

    async def test_summary_true(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        resource = await self.only(client, fx, ("_summary", "true"))
        assert {"name", "birthDate", "gender"} <= resource.keys()
        assert "maritalStatus" not in resource and "text" not in resource
        assert self.subsetted(resource)

    async def test_summary_text(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        resource = await self.only(client, fx, ("_summary", "text"))
        assert "text" in resource and "name" not in resource and "maritalStatus" not in resource
        assert self.subsetted(resource)

    async def test_summary_data(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        resource = await self.only(client, fx, ("_summary", "data"))
        assert "text" not in resource and {"name", "maritalStatus"} <= resource.keys()
        assert self.subsetted(resource)

    async def test_summary_false(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        resource = await self.only(client, fx, ("_summary", "false"))
        assert {"text", "name", "maritalStatus"} <= resource.keys()
        assert not self.subsetted(resource)

    async def test_summary_count(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        bundle = await fx.bundle(client, "/Patient", ("_summary", "count"))
        assert bundle["total"] == 1 and "entry" not in bundle

    async def test_elements(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        resource = await self.only(client, fx, ("_elements", "birthDate,gender"))
        assert set(resource) == {"resourceType", "id", "meta", "birthDate", "gender"}
        assert self.subsetted(resource)

    async def test_summary_text_with_include_is_400(self, client: httpx.AsyncClient) -> None:
        status, message = await error_of(
            client, "/Patient", ("_summary", "text"), ("_revinclude", "Observation:subject")
        )
        assert status == 400 and "_summary" in message


# --- _include / _revinclude (search.html#include, #revinclude) ------------------------------------------


class TestInclude:
    @pytest.fixture(scope="class")
    @classmethod
    async def fx(cls, server_url: str) -> Fixture:
        fx = Fixture()

        def medreq(label: str, patient: str, requester: str | None = None) -> dict[str, Any]:
            body: dict[str, Any] = {
                "status": "active",
                "intent": "order",
                "subject": fx.ref(patient),
                "medicationCodeableConcept": {"text": "aspirin"},
            }
            if requester:
                body["requester"] = fx.ref(requester)
            return fx.resource("MedicationRequest", label, **body)

        await fx.store(
            server_url,
            [
                fx.resource("Organization", "org", name="Org"),
                fx.resource("Practitioner", "doc", name=[{"family": "Doc"}]),
                fx.resource(
                    "Patient",
                    "p1",
                    managingOrganization=fx.ref("Organization/org"),
                    generalPractitioner=[fx.ref("Practitioner/doc")],
                ),
                fx.resource("Patient", "p2"),
                medreq("mr1", "Patient/p1", "Practitioner/doc"),
                medreq("mr2", "Patient/p2"),
                fx.resource(
                    "Provenance",
                    "prov",
                    target=[fx.ref("MedicationRequest/mr1")],
                    recorded="2020-01-01T00:00:00Z",
                    agent=[{"who": fx.ref("Practitioner/doc")}],
                ),
            ],
        )
        return fx

    async def entries(
        self, client: httpx.AsyncClient, fx: Fixture, path: str, *params: tuple[str, str]
    ) -> tuple[set[str], set[str]]:
        bundle = await fx.bundle(client, path, *params)
        return set(fx.matches(bundle)), set(fx.matches(bundle, "include"))

    async def test_spec_example_include_medication_request_patient(
        self, client: httpx.AsyncClient, fx: Fixture
    ) -> None:
        matches, included = await self.entries(
            client, fx, "/MedicationRequest", ("_include", "MedicationRequest:patient")
        )
        assert matches == {"MedicationRequest/mr1", "MedicationRequest/mr2"}
        assert included == {"Patient/p1", "Patient/p2"}

    async def test_include_with_target_type(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        _, included = await self.entries(
            client, fx, "/MedicationRequest", ("_include", "MedicationRequest:requester:Practitioner")
        )
        assert included == {"Practitioner/doc"}
        _, included = await self.entries(
            client, fx, "/MedicationRequest", ("_include", "MedicationRequest:requester:Organization")
        )
        assert included == set()

    async def test_include_iterate(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        _, included = await self.entries(
            client,
            fx,
            "/MedicationRequest",
            ("_include", "MedicationRequest:patient"),
            ("_include:iterate", "Patient:organization"),
        )
        assert included == {"Patient/p1", "Patient/p2", "Organization/org"}
        # Without :iterate, Patient:organization applies to the matches (MedicationRequests) only.
        _, included = await self.entries(
            client,
            fx,
            "/MedicationRequest",
            ("_include", "MedicationRequest:patient"),
            ("_include", "Patient:organization"),
        )
        assert included == {"Patient/p1", "Patient/p2"}

    async def test_include_wildcard(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        _, included = await self.entries(client, fx, "/MedicationRequest", ("_include", "*"))
        assert included == {"Patient/p1", "Patient/p2", "Practitioner/doc"}
        _, included = await self.entries(client, fx, "/Patient", ("_include", "Patient:*"))
        assert included == {"Organization/org", "Practitioner/doc"}

    async def test_spec_example_revinclude_provenance_target(
        self, client: httpx.AsyncClient, fx: Fixture
    ) -> None:
        matches, included = await self.entries(
            client, fx, "/MedicationRequest", ("_revinclude", "Provenance:target")
        )
        assert matches == {"MedicationRequest/mr1", "MedicationRequest/mr2"}
        assert included == {"Provenance/prov"}

    async def test_revinclude_iterate(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        _, included = await self.entries(
            client,
            fx,
            "/Patient",
            ("_revinclude", "MedicationRequest:patient"),
            ("_revinclude:iterate", "Provenance:target"),
        )
        assert included == {"MedicationRequest/mr1", "MedicationRequest/mr2", "Provenance/prov"}
        _, included = await self.entries(
            client,
            fx,
            "/Patient",
            ("_revinclude", "MedicationRequest:patient"),
            ("_revinclude", "Provenance:target"),
        )
        assert included == {"MedicationRequest/mr1", "MedicationRequest/mr2"}

    async def test_revinclude_wildcard(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        _, included = await self.entries(client, fx, "/Practitioner", ("_revinclude", "*"))
        # AuditEvents of the fixture's own writes refer to the practitioners too: a correct match of `*`.
        included = {ref for ref in included if not ref.startswith("AuditEvent/")}
        assert included == {"Patient/p1", "MedicationRequest/mr1", "Provenance/prov"}

    async def test_included_resources_are_not_counted_or_repeated(
        self, client: httpx.AsyncClient, fx: Fixture
    ) -> None:
        # The practitioner is a match; iterating back to it from the patient does not list it again.
        bundle = await fx.bundle(
            client,
            "/Practitioner",
            ("_revinclude", "Patient:general-practitioner"),
            ("_include:iterate", "Patient:general-practitioner"),
            ("_total", "accurate"),
        )
        assert bundle["total"] == 1
        assert fx.matches(bundle) == ["Practitioner/doc"]
        assert fx.matches(bundle, "include") == ["Patient/p1"]

    async def test_bad_include_is_400(self, client: httpx.AsyncClient) -> None:
        for value in (
            "MedicationRequest",
            "Nothing:patient",
            "MedicationRequest:status",
            "MedicationRequest:patient:Practitioner",
        ):
            status, message = await error_of(client, "/MedicationRequest", ("_include", value))
            assert status == 400 and "_include" in message, value


# --- POST _search, compartments, _list, _text/_content (search.html#search-post, #compartment ...) ------


class TestPostSearchCompartmentList:
    @pytest.fixture(scope="class")
    @classmethod
    async def fx(cls, server_url: str) -> Fixture:
        fx = Fixture()
        await fx.store(
            server_url,
            [
                fx.resource("Patient", "p"),
                fx.resource("Patient", "q"),
                obs(fx, "subject", subject=fx.ref("Patient/p"), code=coding("1")),
                obs(
                    fx,
                    "performer",
                    subject=fx.ref("Patient/q"),
                    performer=[fx.ref("Patient/p")],
                    code=coding("2"),
                ),
                obs(fx, "other", subject=fx.ref("Patient/q"), code=coding("1")),
                fx.resource(
                    "Encounter",
                    "enc",
                    status="finished",
                    subject=fx.ref("Patient/p"),
                    **{
                        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}
                    },
                ),
                fx.resource(
                    "List",
                    "list",
                    status="current",
                    mode="working",
                    entry=[
                        {"item": fx.ref("Observation/subject")},
                        {"item": fx.ref("Observation/other")},
                        {"item": fx.ref("Patient/q")},
                    ],
                ),
            ],
        )
        return fx

    async def test_post_search_equals_get(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        form = {"code": f"{LOINC}|1", "_tag": f"{TAG_SYSTEM}|{fx.run}"}
        response = await client.post("/Observation/_search", data=form)
        assert response.status_code == 200, response.text
        assert set(fx.matches(response.json())) == {"Observation/subject", "Observation/other"}
        # Parameters in the URL and in the body are combined (AND).
        response = await client.post(
            "/Observation/_search", params={"subject": f"Patient/{fx.id('q')}"}, data=form
        )
        assert fx.matches(response.json()) == ["Observation/other"]

    async def test_post_search_other_content_type_is_415(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/Observation/_search", content=b"{}", headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 415

    async def test_compartment(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        # search.html#compartment: Patient/123/Observation: subject or performer (compartmentdefinition).
        found = await fx.labels(client, f"/Patient/{fx.id('p')}/Observation")
        assert found == {"subject", "performer"}
        found = await fx.labels(client, f"/Patient/{fx.id('p')}/Observation", ("code", f"{LOINC}|2"))
        assert found == {"performer"}
        assert await fx.labels(client, f"/Patient/{fx.id('p')}/Encounter") == {"enc"}

    async def test_compartment_all_types(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        bundle = await fx.bundle(client, f"/Patient/{fx.id('p')}/*", ("_count", "100"))
        found = set(fx.matches(bundle)) - {"Patient/p"}  # whether the focus itself is listed is not tested
        assert found == {"Observation/subject", "Observation/performer", "Encounter/enc"}

    async def test_list(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        # search.html#list: _list=[id]: the items of that List.
        assert await fx.labels(client, "/Observation", ("_list", fx.id("list"))) == {"subject", "other"}
        assert await fx.labels(client, "/Patient", ("_list", fx.id("list"))) == {"q"}
        assert await fx.labels(client, "/Observation", ("_list", "no-such-list")) == set()


class TestTextAndContent:
    @pytest.fixture(scope="class")
    @classmethod
    async def fx(cls, server_url: str) -> Fixture:
        fx = Fixture()

        def narrative(text: str) -> dict[str, str]:
            return {
                "status": "generated",
                "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{text}</p></div>',
            }

        await fx.store(
            server_url,
            [
                fx.resource(
                    "Condition",
                    "htn",
                    subject={"reference": "Patient/x"},
                    text=narrative("Hypertension, stage 2"),
                    code={"text": "high blood pressure"},
                ),
                fx.resource(
                    "Condition",
                    "dm",
                    subject={"reference": "Patient/x"},
                    text=narrative("Diabetes mellitus"),
                    code={"text": "Diabetes"},
                    note=[{"text": "poorly controlled hypertension"}],
                ),
            ],
        )
        return fx

    async def test_text_searches_the_narrative(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        assert await fx.labels(client, "/Condition", ("_text", "hypertension")) == {"htn"}
        assert await fx.labels(client, "/Condition", ("_text", "diabetes,hypertension")) == {"htn", "dm"}
        assert await fx.labels(client, "/Condition", ("_text", "p")) == set()  # markup is not text

    async def test_content_searches_the_whole_resource(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        assert await fx.labels(client, "/Condition", ("_content", "hypertension")) == {"htn", "dm"}
        assert await fx.labels(client, "/Condition", ("_content", "blood")) == {"htn"}
        assert await fx.labels(client, "/Condition", ("_content", "poorly controlled")) == {"dm"}
        assert await fx.labels(
            client, "/Condition", ("_content", "hypertension"), ("_content", "diabetes")
        ) == {"dm"}


# --- meta parameters (search.html#all) ------------------------------------------------------------------


class TestMetaParameters:
    @pytest.fixture(scope="class")
    @classmethod
    async def fx(cls, server_url: str) -> Fixture:
        fx = Fixture()
        profile = f"http://example.org/{fx.run}/StructureDefinition/vip"
        await fx.store(
            server_url,
            [
                fx.resource(
                    "Patient",
                    "vip",
                    meta={
                        "tag": [{"system": "urn:workflow", "code": "followup"}],
                        "profile": [profile],
                        "security": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                                "code": "R",
                            }
                        ],
                        "source": f"http://example.org/{fx.run}/source#abc",
                    },
                ),
                fx.resource("Patient", "plain"),
                obs(fx, "obs", meta={"tag": [{"system": "urn:workflow", "code": "followup"}]}),
            ],
        )
        return fx

    async def test_tag(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        assert await fx.labels(client, "/Patient", ("_tag", "urn:workflow|followup")) == {"vip"}
        assert await fx.labels(client, "/Patient", ("_tag", "followup")) == {"vip"}
        assert await fx.labels(client, "/Patient", ("_tag:not", "urn:workflow|followup")) == {"plain"}

    async def test_profile(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        profile = f"http://example.org/{fx.run}/StructureDefinition/vip"
        assert await fx.labels(client, "/Patient", ("_profile", profile)) == {"vip"}
        assert await fx.labels(client, "/Patient", ("_profile:below", f"http://example.org/{fx.run}/")) == {
            "vip"
        }

    async def test_security(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        system = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
        assert await fx.labels(client, "/Patient", ("_security", f"{system}|R")) == {"vip"}
        assert await fx.labels(client, "/Patient", ("_security", f"{system}|N")) == set()

    async def test_source(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        source = f"http://example.org/{fx.run}/source#abc"
        assert await fx.labels(client, "/Patient", ("_source", source)) == {"vip"}

    async def test_whole_system_type(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        # search.html#_type: a whole-system search over the listed types, with their common parameters.
        bundle = await fx.bundle(
            client, "", ("_type", "Patient,Observation"), ("_tag", "urn:workflow|followup")
        )
        assert set(fx.matches(bundle)) == {"Patient/vip", "Observation/obs"}
        bundle = await fx.bundle(client, "", ("_type", "Observation"))
        assert fx.matches(bundle) == ["Observation/obs"]

    async def test_whole_system_without_type(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        bundle = await fx.bundle(client, "", ("_tag", "urn:workflow|followup"))
        assert set(fx.matches(bundle)) == {"Patient/vip", "Observation/obs"}
        bundle = await fx.bundle(client, "", ("_sort", "_id"))
        assert fx.matches(bundle) == ["Observation/obs", "Patient/plain", "Patient/vip"]

    async def test_whole_system_type_specific_parameter(self, client: httpx.AsyncClient, fx: Fixture) -> None:
        # `gender` is not common to Patient and Observation: lenient handling ignores it with a warning.
        bundle = await fx.bundle(client, "", ("_type", "Patient,Observation"), ("gender", "male"))
        assert len(fx.matches(bundle)) == 3
        assert [e["search"]["mode"] for e in bundle["entry"]].count("outcome") == 1


# --- handling of unknown and invalid parameters (search.html#errors) --------------------------------------


class TestHandling:
    @pytest.fixture(scope="class")
    @classmethod
    async def fx(cls, server_url: str) -> Fixture:
        fx = Fixture()
        await fx.store(server_url, [fx.resource("Patient", "p", gender="male")])
        return fx

    async def test_lenient_ignores_unknown_with_outcome_entry(
        self, client: httpx.AsyncClient, fx: Fixture
    ) -> None:
        for headers in (None, {"Prefer": "handling=lenient"}):
            bundle = await fx.bundle(
                client, "/Patient", ("nonsense", "1"), ("gender", "male"), headers=headers
            )
            assert fx.matches(bundle) == ["Patient/p"]
            outcome = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
            assert len(outcome) == 1
            assert outcome[0]["resource"]["resourceType"] == "OperationOutcome"
            assert "nonsense" in outcome[0]["resource"]["issue"][0]["diagnostics"]
            # The self link shows the parameters applied, without the ignored one.
            self_link = link(bundle, "self") or ""
            assert "gender=male" in self_link and "nonsense" not in self_link

    async def test_strict_rejects_unknown(self, client: httpx.AsyncClient) -> None:
        status, message = await error_of(
            client, "/Patient", ("nonsense", "1"), headers={"Prefer": "handling=strict"}
        )
        assert status == 400 and "nonsense" in message

    async def test_unknown_modifier_is_400_even_when_lenient(self, client: httpx.AsyncClient) -> None:
        status, message = await error_of(client, "/Patient", ("gender:exact", "male"))
        assert status == 400 and "gender:exact" in message

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("birthdate", "1974-13"),
            ("gender:missing", "maybe"),
            ("_lastUpdated", "yesterday"),
            ("general-practitioner", "Nothing/1"),
            ("identifier", "|"),
            ("_count", "1.5"),
            ("_sort", "-"),
            ("_elements", "na-me"),
        ],
    )
    async def test_invalid_values_are_400_naming_the_parameter(
        self, client: httpx.AsyncClient, name: str, value: str
    ) -> None:
        status, message = await error_of(client, "/Patient", (name, value))
        assert status == 400, (name, value)
        assert name.split(":")[0] in message, message

    async def test_contained_search_is_refused_not_ignored(
        self, client: httpx.AsyncClient, fx: Fixture
    ) -> None:
        # search.html#contained: ignoring _contained=true would return containers instead of contained ones.
        for value in ("true", "both"):
            status, message = await error_of(client, "/Patient", ("_contained", value))
            assert status == 400 and "_contained" in message
        bundle = await fx.bundle(client, "/Patient", ("_contained", "false"))
        assert fx.matches(bundle) == ["Patient/p"]

    async def test_unsupported_token_modifier_is_reported(self, client: httpx.AsyncClient) -> None:
        status, message = await error_of(client, "/Condition", ("code:below", "http://snomed.info/sct|123"))
        assert status == 400 and "below" in message

"""Search over realistic data: official R4 examples and Synthea patient records
(../shared/fhir, ../shared/synthea). Expected results are computed from the source JSON in the test.

The examples are stored under fresh ids (`<run>-<id>`, references rewritten, a run tag added) so that
other tests loading the same examples cannot change the results; Synthea bundles get server-assigned ids
anyway, and every search is scoped to the loaded patient.
"""

from __future__ import annotations

import re
import tarfile
import unicodedata
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support import fhir_client

from pms.fhir import jsonio

TAG_SYSTEM = "urn:pms-test:search-examples"
LOINC = "http://loinc.org"
FHIR_JSON = {"Content-Type": "application/fhir+json"}
REFERENCE_RE = re.compile(r"(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?P<history>/_history/.+)?")


@pytest.fixture(scope="module")
async def client(server_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """One HTTP client per module: the shared per-test `client` costs more to build than most searches."""
    async with fhir_client(server_url) as http:
        yield http


def escape(value: str) -> str:
    """A literal value for a search parameter (search.html#escaping)."""
    for char in "\\,$|":
        value = value.replace(char, "\\" + char)
    return value


def _normalize(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _match_ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    return [
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if e["search"]["mode"] == mode
    ]


async def _search(client: httpx.AsyncClient, path: str, *params: tuple[str, str]) -> dict[str, Any]:
    response = await client.get(path, params=list(params))
    assert response.status_code == 200, response.text[:2000]
    bundle: dict[str, Any] = response.json()
    return bundle


# --- the official examples ------------------------------------------------------------------------------

EXAMPLE_FILES = (
    "Patient-example.json",
    "Patient-f001.json",
    "Patient-pat1.json",
    "Procedure-example.json",
    "Provenance-example.json",
)
EXAMPLE_PREFIXES = ("Observation-", "MedicationRequest-")


def load_examples(shared: Path, run: str) -> dict[str, dict[str, Any]]:
    """The chosen examples by original `Type/id`, ids and internal references rewritten to `<run>-<id>`."""
    originals: dict[str, dict[str, Any]] = {}
    with tarfile.open(shared / "fhir" / "hl7.fhir.r4.examples-4.0.1.tgz") as tar:
        for member in tar.getmembers():
            name = member.name.rsplit("/", 1)[-1]
            if name in EXAMPLE_FILES or (name.startswith(EXAMPLE_PREFIXES) and name.endswith(".json")):
                handle = tar.extractfile(member)
                assert handle is not None
                resource = jsonio.loads(handle.read())
                originals[f"{resource['resourceType']}/{resource['id']}"] = resource

    def rewrite(value: Any) -> Any:
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                match = REFERENCE_RE.fullmatch(item) if key == "reference" and isinstance(item, str) else None
                if match and f"{match['type']}/{match['id']}" in originals:
                    item = f"{match['type']}/{run}-{match['id']}{match['history'] or ''}"
                out[key] = rewrite(item)
            return out
        if isinstance(value, list):
            return [rewrite(item) for item in value]
        return value

    stored = {}
    for key, resource in originals.items():
        copy = rewrite(resource)
        copy["id"] = f"{run}-{resource['id']}"
        copy["meta"] = {"tag": [{"system": TAG_SYSTEM, "code": run}]}
        stored[key] = copy
    return stored


def _day_of(value: str) -> date:
    if len(value) == 10:
        return date.fromisoformat(value)
    return datetime.fromisoformat(value).astimezone(UTC).date()


class TestOfficialExamples:
    @pytest.fixture(scope="class")
    @classmethod
    async def loaded(cls, server_url: str, shared_dir: Path) -> tuple[str, dict[str, dict[str, Any]]]:
        run = uuid.uuid4().hex[:10]
        examples = load_examples(shared_dir, run)
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                for r in examples.values()
            ],
        }
        async with fhir_client(server_url, timeout=120) as http:
            response = await http.post("", content=jsonio.dumps(bundle), headers=FHIR_JSON)
        assert response.status_code == 200, response.text[:2000]
        return run, examples

    @staticmethod
    def of_type(examples: dict[str, dict[str, Any]], resource_type: str) -> list[dict[str, Any]]:
        return [r for r in examples.values() if r["resourceType"] == resource_type]

    @staticmethod
    def tag(run: str) -> tuple[str, str]:
        return ("_tag", f"{TAG_SYSTEM}|{run}")

    async def test_spec_example_chain_subject_patient_name_peter(
        self, client: httpx.AsyncClient, loaded: tuple[str, dict[str, dict[str, Any]]]
    ) -> None:
        run, examples = loaded
        peters = set()
        for patient in self.of_type(examples, "Patient"):
            parts = [
                p
                for n in patient.get("name", [])
                for p in (n.get("family"), n.get("text"), *n.get("given", []))
                if p
            ]
            if any(_normalize(p).startswith("peter") for p in parts):
                peters.add(f"Patient/{patient['id']}")
        assert peters == {f"Patient/{run}-example"}
        expected = {
            f"Observation/{o['id']}"
            for o in self.of_type(examples, "Observation")
            if o.get("subject", {}).get("reference") in peters
        }
        assert len(expected) > 20
        bundle = await _search(
            client, "/Observation", ("subject:Patient.name", "peter"), self.tag(run), ("_count", "200")
        )
        assert set(_match_ids(bundle)) == expected

    async def test_spec_example_birthdate_1974(
        self, client: httpx.AsyncClient, loaded: tuple[str, dict[str, dict[str, Any]]]
    ) -> None:
        run, examples = loaded
        expected = {
            f"Patient/{p['id']}"
            for p in self.of_type(examples, "Patient")
            if p.get("birthDate", "").startswith("1974")
        }
        bundle = await _search(client, "/Patient", ("birthdate", "1974"), self.tag(run))
        assert set(_match_ids(bundle)) == expected == {f"Patient/{run}-example"}

    async def test_token_system_code_and_date(
        self, client: httpx.AsyncClient, loaded: tuple[str, dict[str, dict[str, Any]]]
    ) -> None:
        run, examples = loaded
        observations = self.of_type(examples, "Observation")
        expected = {
            f"Observation/{o['id']}"
            for o in observations
            if any(
                c.get("system") == LOINC and c.get("code") == "85354-9"
                for c in o.get("code", {}).get("coding", [])
            )
        }
        bundle = await _search(client, "/Observation", ("code", f"{LOINC}|85354-9"), self.tag(run))
        assert set(_match_ids(bundle)) == expected and len(expected) == 3
        day = date(1999, 7, 2)
        expected = {
            f"Observation/{o['id']}"
            for o in observations
            if "effectiveDateTime" in o and _day_of(o["effectiveDateTime"]) == day
        }
        bundle = await _search(
            client, "/Observation", ("date", "1999-07-02"), self.tag(run), ("_count", "100")
        )
        assert set(_match_ids(bundle)) == expected and len(expected) > 5

    async def test_composite_code_value_quantity(
        self, client: httpx.AsyncClient, loaded: tuple[str, dict[str, dict[str, Any]]]
    ) -> None:
        run, examples = loaded
        value = f"{LOINC}|29463-7$185|http://unitsofmeasure.org|[lb_av]"
        bundle = await _search(client, "/Observation", ("code-value-quantity", value), self.tag(run))
        assert _match_ids(bundle) == [f"Observation/{examples['Observation/example']['id']}"]

    async def test_spec_example_include_medication_request_patient(
        self, client: httpx.AsyncClient, loaded: tuple[str, dict[str, dict[str, Any]]]
    ) -> None:
        run, examples = loaded
        requests = self.of_type(examples, "MedicationRequest")
        patients = {
            m["subject"]["reference"]
            for m in requests
            if m.get("subject", {}).get("reference", "").startswith(f"Patient/{run}-")
        }
        bundle = await _search(
            client,
            "/MedicationRequest",
            ("_include", "MedicationRequest:patient"),
            self.tag(run),
            ("_count", "100"),
        )
        assert set(_match_ids(bundle)) == {f"MedicationRequest/{m['id']}" for m in requests}
        assert set(_match_ids(bundle, "include")) == patients == {f"Patient/{run}-pat1"}

    async def test_spec_example_revinclude_provenance_target(
        self, client: httpx.AsyncClient, loaded: tuple[str, dict[str, dict[str, Any]]]
    ) -> None:
        # Provenance-example targets the versioned reference Procedure/example/_history/1.
        run, examples = loaded
        bundle = await _search(client, "/Procedure", ("_revinclude", "Provenance:target"), self.tag(run))
        assert _match_ids(bundle) == [f"Procedure/{run}-example"]
        assert _match_ids(bundle, "include") == [f"Provenance/{examples['Provenance/example']['id']}"]


# --- Synthea --------------------------------------------------------------------------------------------

PATIENT_BUNDLES = 3


def synthea_bundles(shared: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the hospital and practitioner bundles, the three smallest patient bundles)."""
    infrastructure, patients = [], []
    with tarfile.open(shared / "synthea" / "synthea-r4-100.tar.gz") as tar:
        members = [m for m in tar.getmembers() if m.name.endswith(".json")]
        for member in sorted(members, key=lambda m: m.size):
            name = member.name.rsplit("/", 1)[-1]
            is_infrastructure = name.startswith(("hospital", "practitioner"))
            if not is_infrastructure and len(patients) == PATIENT_BUNDLES:
                continue
            handle = tar.extractfile(member)
            assert handle is not None
            (infrastructure if is_infrastructure else patients).append(jsonio.loads(handle.read()))
    infrastructure.sort(key=lambda b: b["entry"][0]["resource"]["resourceType"] != "Organization")
    return infrastructure, patients


class LoadedPatient:
    """One Synthea bundle as stored: the server's id of each entry's resource, by fullUrl."""

    def __init__(self, bundle: dict[str, Any], response: dict[str, Any]) -> None:
        self.resources = [e["resource"] for e in bundle["entry"]]
        self.ids: dict[str, str] = {}
        for sent, answer in zip(bundle["entry"], response["entry"], strict=True):
            location = answer["response"]["location"].split("/fhir/", 1)[1].split("/_history")[0]
            self.ids[sent["fullUrl"]] = location
        patient_urls = [e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
        assert len(patient_urls) == 1
        self.patient = self.ids[patient_urls[0]]

    def of_type(self, resource_type: str) -> list[tuple[str, dict[str, Any]]]:
        """(server reference, source JSON) of every resource of a type in the bundle."""
        return [
            (self.ids[url], r)
            for url, r in zip(self.ids, self.resources, strict=True)
            if r["resourceType"] == resource_type
        ]


def _codes(resource: dict[str, Any], system: str) -> set[str]:
    return {c["code"] for c in resource.get("code", {}).get("coding", []) if c.get("system") == system}


class TestSynthea:
    @pytest.fixture(scope="class")
    @classmethod
    async def loaded(cls, server_url: str, shared_dir: Path) -> list[LoadedPatient]:
        infrastructure, patients = synthea_bundles(shared_dir)
        assert len(infrastructure) == 2 and len(patients) == PATIENT_BUNDLES
        out = []
        async with fhir_client(server_url, timeout=300) as http:
            for bundle in [*infrastructure, *patients]:
                response = await http.post("", content=jsonio.dumps(bundle), headers=FHIR_JSON)
                assert response.status_code == 200, response.text[:2000]
                if bundle in patients:
                    out.append(LoadedPatient(bundle, response.json()))
        return out

    async def test_observations_by_patient_and_code_newest_first(
        self, client: httpx.AsyncClient, loaded: list[LoadedPatient]
    ) -> None:
        for record in loaded:
            observations = record.of_type("Observation")
            codes = sorted({code for _, o in observations for code in _codes(o, LOINC)})
            assert codes
            for code in codes[:6]:
                expected = sorted(
                    ((o["effectiveDateTime"], ref) for ref, o in observations if code in _codes(o, LOINC)),
                    key=lambda pair: datetime.fromisoformat(pair[0]),
                    reverse=True,
                )
                bundle = await _search(
                    client,
                    "/Observation",
                    ("patient", record.patient),
                    ("code", f"{LOINC}|{code}"),
                    ("_sort", "-date"),
                    ("_count", "200"),
                )
                found = _match_ids(bundle)
                assert sorted(found) == sorted(ref for _, ref in expected), code
                dates = {ref: datetime.fromisoformat(when) for when, ref in expected}
                assert [dates[ref] for ref in found] == sorted(dates.values(), reverse=True), code

    async def test_counts_per_type_in_the_patient_compartment(
        self, client: httpx.AsyncClient, loaded: list[LoadedPatient]
    ) -> None:
        for record in loaded:
            patient_id = record.patient.split("/")[1]
            for resource_type in (
                "Observation",
                "Encounter",
                "Condition",
                "Immunization",
                "DiagnosticReport",
            ):
                expected = {ref for ref, _ in record.of_type(resource_type)}
                bundle = await _search(
                    client,
                    f"/Patient/{patient_id}/{resource_type}",
                    ("_count", "500"),
                    ("_total", "accurate"),
                )
                assert set(_match_ids(bundle)) == expected, resource_type
                assert bundle["total"] == len(expected)

    async def test_encounters_sorted_and_date_prefixes(
        self, client: httpx.AsyncClient, loaded: list[LoadedPatient]
    ) -> None:
        for record in loaded:
            encounters = record.of_type("Encounter")
            starts = {ref: datetime.fromisoformat(e["period"]["start"]) for ref, e in encounters}
            bundle = await _search(
                client, "/Encounter", ("subject", record.patient), ("_sort", "date"), ("_count", "500")
            )
            found = _match_ids(bundle)
            assert [starts[ref] for ref in found] == sorted(starts.values())
            middle = sorted(starts.values())[len(starts) // 2]
            ends = {ref: datetime.fromisoformat(e["period"]["end"]) for ref, e in encounters}
            # sa: the whole period starts after the search value's second.
            cut = middle.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            bundle = await _search(
                client, "/Encounter", ("subject", record.patient), ("date", f"sa{cut}"), ("_count", "500")
            )
            second_after = middle.astimezone(UTC).replace(microsecond=0).timestamp() + 1
            assert set(_match_ids(bundle)) == {
                ref for ref in starts if starts[ref].timestamp() >= second_after
            }
            bundle = await _search(
                client, "/Encounter", ("subject", record.patient), ("date", f"lt{cut}"), ("_count", "500")
            )
            assert set(_match_ids(bundle)) == {ref for ref in starts if starts[ref] < middle}
            assert all(ends[ref] >= starts[ref] for ref in starts)

    async def test_reports_include_their_results_and_reverse_chain(
        self, client: httpx.AsyncClient, loaded: list[LoadedPatient]
    ) -> None:
        for record in loaded:
            reports = record.of_type("DiagnosticReport")
            results = {record.ids[r["reference"]] for _, d in reports for r in d.get("result", [])}
            bundle = await _search(
                client,
                "/DiagnosticReport",
                ("patient", record.patient),
                ("_include", "DiagnosticReport:result"),
                ("_count", "500"),
            )
            assert set(_match_ids(bundle)) == {ref for ref, _ in reports}
            assert set(_match_ids(bundle, "include")) == results
            patient_id = record.patient.split("/")[1]
            if reports:
                code = sorted(_codes(reports[0][1], LOINC))[0]
                bundle = await _search(
                    client,
                    "/Patient",
                    ("_id", patient_id),
                    ("_has:DiagnosticReport:patient:code", f"{LOINC}|{code}"),
                )
                assert _match_ids(bundle) == [record.patient]
            bundle = await _search(
                client, "/Observation", ("subject:Patient._id", patient_id), ("_summary", "count")
            )
            assert bundle["total"] == len(record.of_type("Observation"))

    async def test_encounter_chain_to_the_service_provider(
        self, client: httpx.AsyncClient, loaded: list[LoadedPatient]
    ) -> None:
        record = loaded[0]
        encounters = record.of_type("Encounter")
        provider = encounters[0][1]["serviceProvider"]["reference"]
        if provider not in record.ids:
            pytest.skip("the service provider is not in the patient bundle")
        name = (await client.get(f"/{record.ids[provider]}")).json()["name"]
        expected = {ref for ref, e in encounters if e["serviceProvider"]["reference"] == provider}
        # Synthea's hospital names have commas ("..., BURLINGTON"): search.html#escaping applies.
        assert "," in name
        bundle = await _search(
            client,
            "/Encounter",
            ("subject", record.patient),
            ("service-provider:Organization.name:exact", escape(name)),
            ("_count", "500"),
        )
        assert set(_match_ids(bundle)) == expected

"""Regenerate src/pms/fhir/data/ from the official R4 package (../shared/fhir/hl7.fhir.r4.examples-4.0.1.tgz).

Usage: python tools/gen_fhir_data.py [path/to/package.tgz]
The outputs are committed: the server needs them at run time and must not depend on ../shared.
"""

from __future__ import annotations

import gzip
import json
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "fhir"
DEFAULT_PACKAGE = SHARED / "hl7.fhir.r4.examples-4.0.1.tgz"
OUT = ROOT / "src" / "pms" / "fhir" / "data"


def structure_definitions(package: Path) -> list[dict[str, object]]:
    found = []
    with tarfile.open(package) as tar:
        for member in tar.getmembers():
            name = member.name.rsplit("/", 1)[-1]
            if name.startswith("StructureDefinition-") and name.endswith(".json"):
                handle = tar.extractfile(member)
                assert handle is not None
                found.append(json.load(handle))
    return found


def resource_types(definitions: list[dict[str, object]]) -> list[str]:
    """Concrete resource types of R4: kind=resource, a specialization, not abstract."""
    return sorted(
        str(sd["type"])
        for sd in definitions
        if sd.get("kind") == "resource"
        and sd.get("derivation") == "specialization"
        and not sd.get("abstract")
    )


def summary_elements(
    definitions: list[dict[str, object]], types: list[str]
) -> dict[str, dict[str, list[str]]]:
    """Per resource type, its top-level elements that are in summaries and those that are mandatory.

    Used by `_summary` and `_elements` (http://hl7.org/fhir/R4/search.html#summary). Choice elements keep
    their `[x]` suffix.
    """
    wanted = set(types)
    out: dict[str, dict[str, list[str]]] = {}
    for sd in definitions:
        name = str(sd.get("type"))
        if name not in wanted or sd.get("derivation") != "specialization":
            continue
        snapshot = sd.get("snapshot")
        assert isinstance(snapshot, dict)
        summary, mandatory = [], []
        for element in snapshot["element"]:
            path = element["path"].split(".")
            if len(path) != 2:
                continue
            if element.get("isSummary"):
                summary.append(path[1])
            if element.get("min", 0) > 0:
                mandatory.append(path[1])
        out[name] = {"summary": summary, "mandatory": mandatory}
    return dict(sorted(out.items()))


def main() -> None:
    package = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_PACKAGE
    definitions = structure_definitions(package)
    OUT.mkdir(parents=True, exist_ok=True)
    types = resource_types(definitions)
    (OUT / "resource-types.json").write_text(json.dumps(types, indent=0) + "\n")
    print(f"{len(types)} resource types")
    (OUT / "summary-elements.json").write_text(
        json.dumps(summary_elements(definitions, types), indent=0) + "\n"
    )
    # Search parameters and compartments, compact and gzipped (the FHIR search engine loads them at start).
    search_parameters = json.loads((SHARED / "r4" / "search-parameters.json").read_text())
    write_gz("search-parameters.json.gz", search_parameters)
    compartments = [
        json.loads(path.read_text()) for path in sorted((SHARED / "r4").glob("CompartmentDefinition-*.json"))
    ]
    write_gz("compartments.json.gz", compartments)
    print(f"{len(search_parameters['entry'])} search parameters, {len(compartments)} compartments")


def write_gz(name: str, value: object) -> None:
    data = json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
    # mtime=0 keeps the output byte-identical between runs, so regenerating shows no diff.
    with gzip.GzipFile(OUT / name, "wb", mtime=0) as out:
        out.write(data)


if __name__ == "__main__":
    main()

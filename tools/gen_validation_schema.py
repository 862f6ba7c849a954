"""Compile the R4 validation schema (src/pms/fhir/data/r4-validation.json.gz) from the official package.

Usage: .venv/bin/python tools/gen_validation_schema.py [path/to/hl7.fhir.r4.examples-4.0.1.tgz]

Reads the base StructureDefinitions (resources, complex and primitive datatypes; no profiles), flattens
each snapshot into one element table per type (BackboneElements become types named by their path, choice
elements `x[x]` are expanded to one JSON key per allowed type) and expands the ValueSets of required
bindings from the package's CodeSystems. The output is committed: the server never reads ../shared.

Output layout (JSON, gzip):
  {"fhirVersion": "4.0.1",
   "primitives": [type, ...],            # R4 primitive types (the runtime owns their lexical rules)
   "resources": [type, ...],             # the 146 concrete resource types
   "types": {name: [[key, typeCode, many, min, binding, choiceBase], ...]},
   "valueSets": [[url, [[system, [code, ...]], ...]], ...]}
`typeCode` is a primitive, a type name (datatype, resource or backbone path) or "Resource"; `binding` is an
index into valueSets or -1; `choiceBase` is "" or the `x` of `x[x]`.
"""

from __future__ import annotations

import gzip
import json
import sys
import tarfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PACKAGE = ROOT.parent / "shared" / "fhir" / "hl7.fhir.r4.examples-4.0.1.tgz"
OUT = ROOT / "src" / "pms" / "fhir" / "data" / "r4-validation.json.gz"

FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
SYSTEM_TYPES = {  # FHIRPath system types used by primitive `.value` and a few `id`/`url` elements
    "http://hl7.org/fhirpath/System.String": "string",
    "http://hl7.org/fhirpath/System.Boolean": "boolean",
    "http://hl7.org/fhirpath/System.Integer": "integer",
    "http://hl7.org/fhirpath/System.Decimal": "decimal",
    "http://hl7.org/fhirpath/System.Date": "date",
    "http://hl7.org/fhirpath/System.DateTime": "dateTime",
    "http://hl7.org/fhirpath/System.Time": "time",
}
# Abstract bases: their elements are inherited into every snapshot, they are never instantiated.
ABSTRACT = {"Element", "BackboneElement", "Resource", "DomainResource"}

Json = dict[str, Any]


def load_package(package: Path) -> tuple[list[Json], dict[str, Json], dict[str, Json]]:
    """Base StructureDefinitions, ValueSets by url, CodeSystems by url."""
    definitions: list[Json] = []
    value_sets: dict[str, Json] = {}
    code_systems: dict[str, Json] = {}
    with tarfile.open(package) as tar:
        for member in tar.getmembers():
            name = member.name.rsplit("/", 1)[-1]
            if not name.endswith(".json") or not name.startswith(
                ("StructureDefinition-", "ValueSet-", "CodeSystem-")
            ):
                continue
            handle = tar.extractfile(member)
            assert handle is not None
            doc = json.load(handle)
            kind = doc.get("resourceType")
            if kind == "StructureDefinition":
                if doc.get("derivation") == "specialization" and doc.get("kind") != "logical":
                    definitions.append(doc)
            elif kind == "ValueSet":
                value_sets[doc["url"]] = doc
            elif kind == "CodeSystem":
                code_systems[doc["url"]] = doc
    return definitions, value_sets, code_systems


# --- ValueSet expansion -------------------------------------------------------------------------------


class Unexpandable(Exception):
    """The value set needs terminology we don't have (filters, external or incomplete code systems)."""


def _concept_codes(concepts: list[Json]) -> list[str]:
    codes: list[str] = []
    for concept in concepts:
        codes.append(concept["code"])
        codes.extend(_concept_codes(concept.get("concept", [])))
    return codes


def _system_codes(system: str, code_systems: dict[str, Json]) -> list[str]:
    cs = code_systems.get(system)
    if cs is None or cs.get("content") != "complete":
        raise Unexpandable(f"code system {system} not complete in package")
    return _concept_codes(cs.get("concept", []))


def expand(
    url: str, value_sets: dict[str, Json], code_systems: dict[str, Json], stack: tuple[str, ...] = ()
) -> dict[str, list[str]]:
    """System -> codes (in definition order) of a ValueSet built from whole systems and enumerations."""
    vs = value_sets.get(url)
    if vs is None or url in stack:
        raise Unexpandable(f"value set {url} not in package")
    compose = vs.get("compose")
    if not compose:
        raise Unexpandable(f"value set {url} has no compose")
    result: dict[str, list[str]] = {}
    for include in compose.get("include", []):
        if include.get("filter"):
            raise Unexpandable(f"value set {url} uses filters")
        if include.get("valueSet"):
            if include.get("system"):
                raise Unexpandable(f"value set {url} intersects a system with value sets")
            for ref in include["valueSet"]:
                for system, codes in expand(
                    ref.split("|")[0], value_sets, code_systems, (*stack, url)
                ).items():
                    result.setdefault(system, []).extend(codes)
            continue
        system = include.get("system")
        if not system:
            raise Unexpandable(f"value set {url} has an include without system")
        if include.get("concept"):
            codes = [c["code"] for c in include["concept"]]
        else:
            codes = _system_codes(system, code_systems)
        result.setdefault(system, []).extend(codes)
    for exclude in compose.get("exclude", []):
        if exclude.get("filter") or exclude.get("valueSet") or not exclude.get("concept"):
            raise Unexpandable(f"value set {url} has a non-enumerated exclude")
        drop = {c["code"] for c in exclude["concept"]}
        system = exclude.get("system", "")
        result[system] = [c for c in result.get(system, []) if c not in drop]
    # De-duplicate, keeping definition order (it is the order shown in error messages).
    return {system: list(dict.fromkeys(codes)) for system, codes in result.items() if codes}


# --- StructureDefinition flattening -----------------------------------------------------------------


def _type_code(type_entry: Json) -> str:
    code = str(type_entry["code"])
    if code.startswith("http://hl7.org/fhirpath/System."):
        for ext in type_entry.get("extension", []):
            if ext.get("url") == FHIR_TYPE_EXT:
                return str(ext.get("valueUrl") or ext.get("valueUri"))
        return SYSTEM_TYPES[code]
    return code


class Compiler:
    def __init__(self, value_sets: dict[str, Json], code_systems: dict[str, Json]) -> None:
        self.value_sets = value_sets
        self.code_systems = code_systems
        self.vs_index: dict[str, int] = {}
        self.vs_rows: list[list[Any]] = []
        self.skipped: dict[str, str] = {}

    def binding(self, element: Json) -> int:
        binding = element.get("binding")
        if not binding or binding.get("strength") != "required" or not binding.get("valueSet"):
            return -1
        url = str(binding["valueSet"]).split("|")[0]  # R4 snapshots pin `|4.0.1`
        if url in self.vs_index:
            return self.vs_index[url]
        if url in self.skipped:
            return -1
        try:
            systems = expand(url, self.value_sets, self.code_systems)
        except Unexpandable as exc:
            self.skipped[url] = str(exc)
            return -1
        rows = []
        for system, codes in systems.items():
            # The runtime compares codes exactly; R4's required bindings only use case-sensitive systems.
            assert self.code_systems.get(system, {}).get("caseSensitive", True), system
            rows.append([system, codes])
        self.vs_index[url] = len(self.vs_rows)
        self.vs_rows.append([url, rows])
        return self.vs_index[url]

    def compile_definition(self, sd: Json, types: dict[str, list[list[Any]]]) -> None:
        is_resource = sd["kind"] == "resource"
        is_primitive = sd["kind"] == "primitive-type"
        elements: list[Json] = sd["snapshot"]["element"]
        parents = {e["path"].rsplit(".", 1)[0] for e in elements if "." in e["path"]}
        root = sd["type"]
        types.setdefault(root, [])
        for element in elements:
            path: str = element["path"]
            if "." not in path:
                continue
            if element["max"] == "0":
                continue  # prohibited (xhtml.extension): leave it out so it reports as unknown
            if is_primitive and path.endswith(".value"):
                continue  # the JSON value itself; `_x` objects only carry id + extension
            parent, name = path.rsplit(".", 1)
            owner = root if parent == root else parent
            many = element["max"] != "1"
            assert element["max"] in ("1", "*"), (path, element["max"])
            minimum = int(element["min"])
            binding = self.binding(element)
            row_list = types.setdefault(owner, [])
            if path in parents:  # BackboneElement / Element with inline children: a type of its own
                row_list.append([name, path, int(many), minimum, binding, ""])
                types.setdefault(path, [])
                continue
            if "contentReference" in element:
                target = element["contentReference"].lstrip("#")
                row_list.append([name, target, int(many), minimum, binding, ""])
                continue
            codes = [_type_code(t) for t in element.get("type", [])]
            if name.endswith("[x]"):
                base = name[:-3]
                for code in codes:
                    key = base + code[0].upper() + code[1:]
                    row_list.append([key, code, int(many), minimum, binding, base])
                continue
            assert len(codes) == 1, (path, codes)
            code = codes[0]
            if is_resource and parent == root and name == "id":
                code = "id"  # R4 snapshots say System.String; the spec (and servers) use the `id` type
            row_list.append([name, code, int(many), minimum, binding, ""])


def compile_schema(package: Path) -> tuple[dict[str, Any], dict[str, str]]:
    definitions, value_sets, code_systems = load_package(package)
    compiler = Compiler(value_sets, code_systems)
    types: dict[str, list[list[Any]]] = {}
    primitives: list[str] = []
    resources: list[str] = []
    for sd in sorted(definitions, key=lambda d: str(d["type"])):
        if sd["type"] in ABSTRACT:
            continue
        if sd["kind"] == "primitive-type":
            primitives.append(sd["type"])
        elif sd["kind"] == "resource":
            resources.append(sd["type"])
        compiler.compile_definition(sd, types)
    known = set(types) | set(primitives) | {"Resource"}
    for name, rows in types.items():
        for row in rows:
            assert row[1] in known, f"{name}.{row[0]}: unknown type {row[1]}"
    schema = {
        "fhirVersion": "4.0.1",
        "primitives": primitives,
        "resources": resources,
        "types": types,
        "valueSets": compiler.vs_rows,
    }
    return schema, compiler.skipped


def main() -> None:
    package = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_PACKAGE
    schema, skipped = compile_schema(package)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    raw = json.dumps(schema, separators=(",", ":"), sort_keys=False).encode()
    # mtime=0 keeps the committed file byte-identical across regenerations.
    OUT.write_bytes(gzip.compress(raw, compresslevel=9, mtime=0))
    print(
        f"{len(schema['resources'])} resource types, {len(schema['types'])} types, "
        f"{sum(len(r) for r in schema['types'].values())} elements, "
        f"{len(schema['valueSets'])} required value sets expanded, {len(skipped)} skipped; "
        f"{len(raw) / 1e6:.2f} MB JSON -> {OUT.stat().st_size / 1e3:.0f} kB at {OUT.relative_to(ROOT)}"
    )
    for url, reason in sorted(skipped.items()):
        print(f"  skipped {url}: {reason}")


if __name__ == "__main__":
    main()

"""The compiled R4 schema: loaded once from pms/fhir/data/r4-validation.json.gz into linked plain objects.

Each type (resource, datatype, primitive's `_x` object, or BackboneElement named by its path such as
`Patient.contact`) becomes a `TypeSchema` whose `elements` map every allowed JSON key to an `Element`.
Elements point straight at their child `TypeSchema`/`PrimitiveType`/`ValueSet`, so the walker never looks
anything up by name.
"""

from __future__ import annotations

import gc
import gzip
import json
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any, NamedTuple

from .bindings import ValueSet
from .primitives import PRIMITIVES, PrimitiveType

SCHEMA_FILE = "r4-validation.json.gz"

# Element kinds
PRIMITIVE = 0
COMPLEX = 1
RESOURCE = 2  # a whole resource of any type (contained, Bundle.entry.resource, Parameters...resource)


class TypeSchema:
    """The allowed keys of one JSON object type and its required elements."""

    __slots__ = ("choices", "elements", "is_extension", "is_resource", "name", "required")

    def __init__(self, name: str) -> None:
        self.name = name
        self.elements: dict[str, Element] = {}
        # (label, min, keys that satisfy it: the key itself, `_key` for primitives, every choice variant)
        self.required: tuple[tuple[str, int, tuple[str, ...]], ...] = ()
        self.choices: dict[str, tuple[str, ...]] = {}  # choice base -> its JSON keys, for messages
        self.is_resource = False
        self.is_extension = name == "Extension"


class Element(NamedTuple):
    """One allowed JSON key. Unused references hold placeholders so every field keeps a precise type."""

    kind: int  # PRIMITIVE | COMPLEX | RESOURCE
    many: bool  # max "*": a JSON array
    valid: Callable[[Any], bool]  # PRIMITIVE: prim.valid, kept here to save a lookup on the hot path
    prim: PrimitiveType  # PRIMITIVE: the lexical rules
    type: TypeSchema  # COMPLEX: the child type; PRIMITIVE: the type of its `_key` object (id, extension)
    binding: ValueSet | None  # required binding that we can check
    group: str  # choice base ("value" for valueQuantity), "" otherwise
    type_code: str  # "HumanName", "date", "Resource", "Patient.contact", ...
    min: int


class Schema(NamedTuple):
    types: dict[str, TypeSchema]
    resources: dict[str, TypeSchema]


_NO_PRIMITIVE = PRIMITIVES["string"]
_NO_TYPE = TypeSchema("(none)")


def _read() -> dict[str, Any]:
    raw = resources.files("pms.fhir").joinpath("data", SCHEMA_FILE).read_bytes()
    data: dict[str, Any] = json.loads(gzip.decompress(raw))
    return data


@cache
def load_schema() -> Schema:
    """Build the linked schema (about 20 ms, once per process; the result is never mutated)."""
    # Building ~10k small objects in a big heap would trigger full GC passes (10x slower load).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _build(_read())
    finally:
        if was_enabled:
            gc.enable()


def _build(data: dict[str, Any]) -> Schema:
    missing = set(data["primitives"]) - set(PRIMITIVES)
    if missing:
        raise RuntimeError(f"no lexical rules for R4 primitive types {sorted(missing)}")
    value_sets = [
        ValueSet(url, [(system, codes) for system, codes in rows]) for url, rows in data["valueSets"]
    ]
    types = {name: TypeSchema(name) for name in data["types"]}
    for name, rows in data["types"].items():
        ts = types[name]
        required: dict[str, tuple[int, list[str]]] = {}
        for key, code, many, minimum, binding, group in rows:
            if code in PRIMITIVES:
                prim = PRIMITIVES[code]
                element = Element(
                    PRIMITIVE, bool(many), prim.valid, prim, types[code], None, group, code, minimum
                )
            else:
                kind = RESOURCE if code == "Resource" else COMPLEX
                child = _NO_TYPE if kind == RESOURCE else types[code]
                element = Element(
                    kind, bool(many), _NO_PRIMITIVE.valid, _NO_PRIMITIVE, child, None, group, code, minimum
                )
            if binding >= 0:
                element = element._replace(binding=value_sets[binding])
            ts.elements[key] = element
            if group:
                ts.choices[group] = (*ts.choices.get(group, ()), key)
            if minimum:
                label = f"{group}[x]" if group else key
                keys = required.setdefault(label, (minimum, []))[1]
                keys.append(key)
                if element.kind == PRIMITIVE:
                    keys.append("_" + key)  # a primitive may be present only through its extensions
        ts.required = tuple((label, m, tuple(keys)) for label, (m, keys) in required.items())
    resource_types = {name: types[name] for name in data["resources"]}
    for ts in resource_types.values():
        ts.is_resource = True
    return Schema(types, resource_types)

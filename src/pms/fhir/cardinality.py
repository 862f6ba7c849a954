"""What a search parameter's expression yields per resource: at most one value or not (from the R4
cardinalities), and whether every value is an `instant`.

The search compiler uses both for `start=ge…&start=lt…`: for a single-valued parameter "some value is ≥ X
and some value is < Y" (AND across repeated parameters, search.html#combining) is "its value is in
[X, Y)", tested on one index row; and an instant's index range is its own second at most, so the lower
bound also bounds where the row's `low` starts, and one bounded index scan answers both. The walk is
deliberately conservative: anything it does not understand counts as many values.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from pms.fhir.fhirpath_compile import Node, Unsupported, compile_expression, parse
from pms.fhir.validation.schema import COMPLEX, TypeSchema, load_schema


@dataclass(frozen=True, slots=True)
class _Shape:
    """What a sub-expression selects: at most one item or not, its type's schema (None: unknown, or a
    choice of several types) and where it comes from (the same origin: the same element, so a union of
    type filters of one element is still one value)."""

    single: bool
    type: TypeSchema | None
    origin: tuple[str, ...]


_MANY = _Shape(False, None, ())


@cache
def at_most_one(expression: str, resource_type: str) -> bool:
    """True when `expression`, evaluated on any `resource_type` resource, yields at most one value."""
    try:
        return _shape(parse(expression), resource_type, top=True).single
    except Unsupported:
        return False


@cache
def instants_only(expression: str, resource_type: str) -> bool:
    """True when every value `expression` can yield is an `instant` (Slot.start, Appointment.start)."""
    try:
        branches = compile_expression(expression, resource_type)
    except Unsupported:
        return False
    return bool(branches) and all(branch.type == "instant" for branch in branches)


def _shape(node: Node, resource_type: str, *, top: bool) -> _Shape:
    kind = node[0]
    if kind == "path":
        root_schema = load_schema().resources.get(resource_type)
        if root_schema is None:
            return _MANY
        root = _Shape(True, root_schema, (resource_type,))
        if top and node[1] in (resource_type, "Resource", "DomainResource"):
            return root
        return _member(root, node[1])
    if kind == "invoke":
        return _member(_shape(node[1], resource_type, top=top), node[2])
    if kind == "as":
        return _filtered(_shape(node[1], resource_type, top=top))
    if kind == "union":
        left, right = _shape(node[1], resource_type, top=top), _shape(node[2], resource_type, top=top)
        one_element = left.single and right.single and left.origin == right.origin
        return _Shape(True, None, left.origin) if one_element else _MANY
    if kind == "index":
        inner = _shape(node[1], resource_type, top=top)
        return _Shape(True, inner.type, (*inner.origin, f"[{node[2]}]"))
    if kind == "call" and node[1] is not None:
        _, base, name, args = node
        inner = _shape(base, resource_type, top=top)
        if name in ("as", "ofType") and len(args) == 1:
            return _filtered(inner)
        if name == "where" and len(args) == 1:
            return inner  # a filter keeps the type
        if name == "first" and not args:
            return _Shape(True, inner.type, (*inner.origin, "first"))
    return _MANY


def _filtered(shape: _Shape) -> _Shape:
    """`x as T`: some of x's items (its type no longer known here), from the same element."""
    return _Shape(shape.single, None, shape.origin)


def _member(owner: _Shape, name: str) -> _Shape:
    """`owner.name`: a plain element, or every variant of a choice element `name[x]`."""
    if owner.type is None:
        return _MANY
    variants = [e for key, e in owner.type.elements.items() if key == name or e.group == name]
    if not variants:
        return _MANY
    single = owner.single and not any(e.many for e in variants)
    child = variants[0].type if len(variants) == 1 and variants[0].kind == COMPLEX else None
    return _Shape(single, child, (*owner.origin, name))

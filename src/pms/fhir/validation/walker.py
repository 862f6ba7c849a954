"""The recursive walk of a resource's JSON against the compiled schema.

Hot path: one dict lookup per JSON key, then a type-specific check; a path string is formatted only for
children we descend into, and messages are built (in issues.py) only when something is wrong.
"""

from __future__ import annotations

from typing import Any

from pms.core.errors import Issue

from . import issues
from .issues import add
from .schema import COMPLEX, PRIMITIVE, Element, Schema, TypeSchema


def walk_resource(schema: Schema, value: Any, path: str, out: list[Issue]) -> None:
    """A whole resource at `path`: its resourceType picks the type to walk."""
    if type(value) is not dict:
        add(out, issues.not_object(path, "a resource", value))
        return
    rt = value.get("resourceType")
    ts = schema.resources.get(rt) if type(rt) is str else None
    if ts is None:
        add(out, issues.bad_resource_type(path, rt))
        return
    walk_object(schema, value, ts, path, out)


def walk_object(schema: Schema, obj: dict[str, Any], ts: TypeSchema, path: str, out: list[Issue]) -> None:
    """One JSON object of type `ts` (non-empty, checked by the caller) at `path`."""
    elements = ts.elements
    chosen: dict[str, str] | None = None  # choice base -> the key that used it
    for key, value in obj.items():
        el = elements.get(key)
        if el is None:
            base = _other_key(schema, obj, ts, key, value, path, out)
            if base is not None and base.group:  # `_valueString` uses up value[x] too
                chosen = _choose(chosen, base, key[1:], path, out)
            continue
        kind, many, valid, prim, child, binding, group, _, _ = el
        if group:  # "" unless a choice element
            chosen = _choose(chosen, el, key, path, out)
        if value is None:
            add(out, issues.null_value(path, key))
        elif many:
            if type(value) is not list:
                add(out, issues.not_array(path, key, el.min, value))
            elif not value:
                add(out, issues.empty_array(f"{path}.{key}"))
            elif kind == PRIMITIVE:
                for i, item in enumerate(value):
                    if not valid(item):
                        if item is None:
                            _null_in_array(obj, key, i, path, out)
                        else:
                            add(out, prim.explain(item, f"{path}.{key}[{i}]"))
                    elif binding is not None and item not in binding.codes:
                        add(out, binding.code_issue(item, f"{path}.{key}[{i}]"))
            elif kind == COMPLEX and binding is None:
                for i, item in enumerate(value):
                    if type(item) is dict and item:
                        walk_object(schema, item, child, f"{path}.{key}[{i}]", out)
                    else:
                        _complex(schema, el, item, f"{path}.{key}[{i}]", out)
            else:
                for i, item in enumerate(value):
                    _complex(schema, el, item, f"{path}.{key}[{i}]", out)
        elif type(value) is list:
            add(out, issues.not_single(path, key, el.min))
        elif kind == PRIMITIVE:
            if not valid(value):
                add(out, prim.explain(value, f"{path}.{key}"))
            elif binding is not None and value not in binding.codes:
                add(out, binding.code_issue(value, f"{path}.{key}"))
        elif kind == COMPLEX and binding is None and type(value) is dict and value:
            walk_object(schema, value, child, f"{path}.{key}", out)  # the common case, inlined
        else:
            _complex(schema, el, value, f"{path}.{key}", out)
    for label, minimum, keys in ts.required:
        for k in keys:
            if k in obj:
                break
        else:
            add(out, issues.missing(path, label, minimum))
    if ts.is_extension:
        _extension_content(obj, chosen is not None, path, out)


def _complex(schema: Schema, el: Element, value: Any, path: str, out: list[Issue]) -> None:
    """One non-primitive value: a datatype/backbone object, or a resource; then its binding if any."""
    if el.kind != COMPLEX:
        walk_resource(schema, value, path, out)
        return
    if type(value) is not dict:
        add(out, issues.not_object(path, el.type_code, value))
        return
    if not value:
        add(out, issues.empty_object(path))
        return
    walk_object(schema, value, el.type, path, out)
    binding = el.binding
    if binding is None:
        return
    if el.type_code == "Coding":
        issue = binding.coding_issue(value, path)
        if issue is not None:
            add(out, issue)
    elif el.type_code == "CodeableConcept":
        for issue in binding.codeable_concept_issues(value, path):
            add(out, issue)


def _other_key(
    schema: Schema, obj: dict[str, Any], ts: TypeSchema, key: str, value: Any, path: str, out: list[Issue]
) -> Element | None:
    """Not an element: a primitive's `_key` (returns that primitive), resourceType, or unknown."""
    if key[:1] == "_":
        el = ts.elements.get(key[1:])
        if el is not None and el.kind == PRIMITIVE:
            _primitive_extension(schema, obj, key[1:], el, value, path, out)
            return el
    elif key == "resourceType" and ts.is_resource:
        return None  # checked by walk_resource
    add(out, issues.unknown(ts, path, key))
    return None


def _primitive_extension(
    schema: Schema, obj: dict[str, Any], key: str, el: Element, value: Any, path: str, out: list[Issue]
) -> None:
    """`_key`: the id/extensions of primitive `key`; for arrays, aligned with it and null where unused."""
    ext_type = el.type  # the primitive's own type: id + extension
    if not el.many:
        if type(value) is dict and value:
            walk_object(schema, value, ext_type, f"{path}.{key}", out)
        elif type(value) is list:
            add(out, issues.not_single(path, "_" + key, el.min))
        else:
            add(out, issues.primitive_extension_shape(path, key, value, False))
        return
    if type(value) is not list or not value:
        add(out, issues.primitive_extension_shape(path, key, value, True))
        return
    values = obj.get(key)
    if type(values) is list and len(values) != len(value):
        add(out, issues.misaligned(path, key, len(value), len(values)))
    for i, item in enumerate(value):
        if item is None:
            if type(values) is not list:  # no value array: every position needs an extension object
                _null_in_array(obj, key, i, path, out)
        elif type(item) is dict and item:
            walk_object(schema, item, ext_type, f"{path}.{key}[{i}]", out)
        else:
            add(out, issues.primitive_extension_shape(path, f"{key}[{i}]", item, False))


def _null_in_array(obj: dict[str, Any], key: str, i: int, path: str, out: list[Issue]) -> None:
    """A null in `key` (or `_key`) is only allowed where the sibling array holds something."""
    values, extensions = obj.get(key), obj.get("_" + key)
    has_value = type(values) is list and i < len(values) and values[i] is not None
    has_extension = type(extensions) is list and i < len(extensions) and extensions[i] is not None
    if not (has_value or has_extension):
        add(out, issues.null_in_array(path, key, i))


def _choose(
    chosen: dict[str, str] | None, el: Element, key: str, path: str, out: list[Issue]
) -> dict[str, str]:
    """Records the variant used for a choice element; a second, different variant is an error."""
    if chosen is None:
        return {el.group: key}
    first = chosen.setdefault(el.group, key)
    if first != key:
        add(out, issues.two_choices(path, el.group, first, key))
    return chosen


def _extension_content(obj: dict[str, Any], has_value: bool, path: str, out: list[Issue]) -> None:
    """ext-1: an extension carries either a value[x] or nested extensions, never both or neither."""
    has_nested = "extension" in obj
    if has_value and has_nested:
        add(out, issues.extension_both(path))
    elif not has_value and not has_nested and not any(k.lstrip("_").startswith("value") for k in obj):
        # (an unknown `valueFoo` was already reported: don't pile a second issue on it)
        add(out, issues.extension_empty(path))

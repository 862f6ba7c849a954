"""Compile the FHIRPath subset used by search parameters into plain Python closures over JSON dicts.

FHIRPath: http://hl7.org/fhirpath/N1/ ; its use in search: http://hl7.org/fhir/R4/search.html#expressions.
Type information (element types, choice elements `value[x]`, backbone paths) comes from the R4 model that
fhirpathpy ships (generated from the R4 StructureDefinitions), so every compiled branch knows its FHIR type
at compile time: `Observation.effective` becomes four branches (effectiveDateTime: dateTime, effectivePeriod:
Period, ...), and `(Observation.value as Quantity)` keeps only the valueQuantity branch, with no run-time type
test. Expressions outside the subset raise `Unsupported`; the caller then falls back to fhirpathpy.

Supported: paths, `|`, `(...)`, `as`/`is` (operator and function), `ofType()`, `where(...)`, `exists([...])`,
`empty()`, `not()`, `first()`, `[n]`, `extension('url')`, `resolve() is T` / `resolve().is(T)` inside where,
`and`/`or`/`=`/`!=` with literals, `%resource`/`%rootResource`, `$this`.
Deliberate R4 reading: `X as T` filters each item of X (as `ofType(T)` does), rather than failing on a
collection of more than one item, and primitive type names match case-insensitively (`value.as(DateTime)`
selects valueDateTime): this is what the official R4 expressions mean.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any

from fhirpathpy.models import models as _fhirpathpy_models

from pms.fhir.definitions import is_resource_type

# A compiled branch function: (focus items, root resource) -> result items.
Fn = Callable[[list[Any], Mapping[str, Any]], list[Any]]


class Unsupported(ValueError):
    """The expression is outside the compiled subset (or ill-typed for the model)."""


@dataclass(frozen=True, slots=True)
class Branch:
    """One statically typed part of a compiled expression: fn yields values of FHIR type `type`.

    `type` is a FHIR type name (`CodeableConcept`, `dateTime`, `Observation`) or, for backbone elements,
    the element's path (`Observation.component`).
    """

    fn: Fn
    type: str


# --- the R4 type model ---


@dataclass(frozen=True, slots=True)
class _Model:
    path2type: Mapping[str, str]
    choices: Mapping[str, Sequence[str]]
    elsewhere: Mapping[str, str]
    parents: Mapping[str, str]
    backbones: frozenset[str]


@cache
def _model() -> _Model:
    raw = _fhirpathpy_models["r4"]
    path2type: dict[str, str] = raw["path2Type"]
    choices: dict[str, list[str]] = raw["choiceTypePaths"]
    backbones: set[str] = set()
    for path in (*path2type, *choices):
        parts = path.split(".")
        for i in range(2, len(parts)):
            prefix = ".".join(parts[:i])
            if prefix not in path2type:
                backbones.add(prefix)
    return _Model(path2type, choices, raw["pathsDefinedElsewhere"], raw["type2Parent"], frozenset(backbones))


def model_path2type() -> Mapping[str, str]:
    return _model().path2type


def type_ancestry(type_name: str) -> tuple[str, ...]:
    """The type and its ancestors (Age -> Quantity -> Element), for `is`/`as` and inherited elements."""
    parents = _model().parents
    chain = [type_name]
    while chain[-1] in parents and len(chain) < 16:
        chain.append(parents[chain[-1]])
    return tuple(chain)


def _type_matches(actual: str, wanted: str) -> bool:
    if "." in actual:  # a backbone element
        return wanted in ("BackboneElement", "Element")
    wanted = wanted.removeprefix("FHIR.").removeprefix("System.")
    if actual == "System.String":
        actual = "string"
    low = wanted[:1].lower() + wanted[1:]
    return any(t in (wanted, low) for t in type_ancestry(actual))


def _members(owner: str, name: str) -> list[tuple[str, str]]:
    """(JSON property, FHIR type) pairs that `owner.name` denotes: several for a choice element."""
    m = _model()
    owner = m.elsewhere.get(owner, owner)
    candidates = [owner] if "." in owner else list(type_ancestry(owner))
    for base in candidates:
        path = f"{base}.{name}"
        choice = m.choices.get(path)
        if choice is not None:
            out = []
            for suffix in choice:
                element_type = m.path2type.get(path + suffix)
                if element_type is not None:
                    out.append((name + suffix, element_type))
            return out
        element_type = m.path2type.get(path)
        if element_type is not None:
            return [(name, "string" if element_type == "System.String" else element_type)]
        if path in m.backbones or path in m.elsewhere:
            return [(name, path)]
    raise Unsupported(f"{owner} has no element '{name}'")


# --- parsing ---

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>\d+(?:\.\d+)?)|(?P<id>[A-Za-z_][A-Za-z0-9_]*|`[^`]+`)"
    r"|(?P<var>%[A-Za-z_][A-Za-z0-9_]*|\$this)|(?P<op>!=|<=|>=|[.()\[\]|=,<>~+\-*/&]))"
)


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise Unsupported(f"cannot tokenize at {text[pos : pos + 20]!r}")
        kind = m.lastgroup
        assert kind is not None
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


# AST nodes are tuples: ("path", name) member or root identifier, ("invoke", base, name),
# ("call", base|None, name, args), ("index", base, n), ("union", a, b), ("and"|"or"|"="|"!=", a, b),
# ("is"|"as", base, type), ("lit", value), ("var", name).
Node = tuple[Any, ...]


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self, value: str | None = None) -> bool:
        if self.pos >= len(self.tokens):
            return False
        kind, text = self.tokens[self.pos]
        return value is None or (text == value and kind in ("op", "id"))

    def take(self, value: str | None = None) -> tuple[str, str]:
        if not self.peek(value):
            raise Unsupported(f"expected {value or 'a token'} at token {self.pos}")
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def parse(self) -> Node:
        node = self.or_expr()
        if self.pos != len(self.tokens):
            raise Unsupported(f"unexpected {self.tokens[self.pos][1]!r}")
        return node

    def or_expr(self) -> Node:
        node = self.and_expr()
        while self.peek("or"):
            self.take()
            node = ("or", node, self.and_expr())
        return node

    def and_expr(self) -> Node:
        node = self.eq_expr()
        while self.peek("and"):
            self.take()
            node = ("and", node, self.eq_expr())
        return node

    def eq_expr(self) -> Node:
        node = self.union_expr()
        while self.peek("=") or self.peek("!="):
            op = self.take()[1]
            node = (op, node, self.union_expr())
        return node

    def union_expr(self) -> Node:
        node = self.type_expr()
        while self.peek("|"):
            self.take()
            node = ("union", node, self.type_expr())
        return node

    def type_expr(self) -> Node:
        node = self.postfix()
        while self.peek("as") or self.peek("is"):
            op = self.take()[1]
            node = (op, node, self.type_name())
        return node

    def type_name(self) -> str:
        name = self.take()[1]
        while self.peek("."):
            self.take()
            name += "." + self.take()[1]
        return name

    def postfix(self) -> Node:
        node = self.term()
        while True:
            if self.peek("."):
                self.take()
                kind, name = self.take()
                if kind != "id":
                    raise Unsupported(f"unexpected {name!r} after '.'")
                node = self.invocation(node, name.strip("`"))
            elif self.peek("["):
                self.take()
                kind, number = self.take()
                if kind != "num" or "." in number:
                    raise Unsupported("only integer indexers are supported")
                self.take("]")
                node = ("index", node, int(number))
            else:
                return node

    def invocation(self, base: Node | None, name: str) -> Node:
        if not self.peek("("):
            return ("invoke", base, name) if base is not None else ("path", name)
        self.take("(")
        args: list[Node] = []
        if name in ("as", "is", "ofType") and not self.peek(")"):
            args.append(("type", self.type_name()))
        else:
            while not self.peek(")"):
                args.append(self.or_expr())
                if not self.peek(")"):
                    self.take(",")
        self.take(")")
        return ("call", base, name, tuple(args))

    def term(self) -> Node:
        kind, text = self.take()
        if kind == "op" and text == "(":
            node = self.or_expr()
            self.take(")")
            return node
        if kind == "str":
            return ("lit", re.sub(r"\\(.)", r"\1", text[1:-1]))
        if kind == "num":
            return ("lit", int(text) if "." not in text else Decimal(text))
        if kind == "var":
            return ("var", text)
        if kind == "id":
            if text in ("true", "false") and not self.peek("("):
                return ("lit", text == "true")
            return self.invocation(None, text.strip("`"))
        raise Unsupported(f"unexpected {text!r}")


@cache
def parse(expression: str) -> Node:
    return _Parser(expression).parse()


# --- compiling ---


def compile_expression(
    expression: str, resource_type: str, focus_type: str | None = None
) -> tuple[Branch, ...]:
    """Compile an expression for resources of `resource_type`.

    With `focus_type` None the expression is evaluated on the resource (call branch.fn([resource], resource));
    otherwise on items of that type (composite components: branch.fn([item], resource)).
    """
    return tuple(_Compiler(resource_type).compile(parse(expression), focus_type or resource_type, top=True))


class _Compiler:
    def __init__(self, resource_type: str) -> None:
        self.resource_type = resource_type

    def compile(self, node: Node, focus: str, *, top: bool) -> list[Branch]:
        kind = node[0]
        if kind == "path":
            return self.root_name(node[1], focus, top=top)
        if kind == "invoke":
            return [b2 for b in self.compile(node[1], focus, top=top) for b2 in _member(b, node[2])]
        if kind == "union":
            return self.compile(node[1], focus, top=top) + self.compile(node[2], focus, top=top)
        if kind in ("as", "is"):
            return self.type_op(kind, self.compile(node[1], focus, top=top), node[2])
        if kind == "index":
            return _first_of(self.compile(node[1], focus, top=top), node[2])
        if kind == "call":
            return self.call(node, focus, top=top)
        if kind == "lit":
            value = node[1]
            literal_type = (
                "boolean"
                if isinstance(value, bool)
                else "integer"
                if isinstance(value, int)
                else "decimal"
                if isinstance(value, Decimal)
                else "string"
            )
            return [Branch(_constant(value), literal_type)]
        if kind == "var":
            if node[1] in ("%resource", "%rootResource"):
                return [Branch(lambda _f, root: [root], self.resource_type)]
            if node[1] == "$this":
                return [Branch(lambda f, _r: f, focus)]
            raise Unsupported(f"variable {node[1]}")
        if kind in ("and", "or", "=", "!="):
            left = self.compile(node[1], focus, top=top)
            right = self.compile(node[2], focus, top=top)
            return [Branch(_binary(kind, left, right), "boolean")]
        raise Unsupported(f"node {kind}")

    def root_name(self, name: str, focus: str, *, top: bool) -> list[Branch]:
        # A leading type name filters the focus by type (`Patient.name` on a Patient); FHIRPath spec §4.1.
        if top and name[:1].isupper() and (is_resource_type(name) or name in ("Resource", "DomainResource")):
            if _type_matches(focus, name):
                return [Branch(_identity, focus)]
            return []
        return _member(Branch(_identity, focus), name)

    def type_op(self, op: str, branches: list[Branch], type_name: str) -> list[Branch]:
        if op == "as":
            return [b for b in branches if _type_matches(b.type, type_name)]
        return [Branch(_is_fn(branches, type_name), "boolean")]

    def call(self, node: Node, focus: str, *, top: bool) -> list[Branch]:
        _, base_node, name, args = node
        if base_node is None:
            if name == "resolve":
                raise Unsupported("resolve() outside where(resolve() is T)")
            base = [Branch(_identity, focus)]
        else:
            base = self.compile(base_node, focus, top=top)
        if name in ("as", "ofType") and len(args) == 1:
            return [b for b in base if _type_matches(b.type, args[0][1])]
        if name == "is" and len(args) == 1:
            return [Branch(_is_fn(base, args[0][1]), "boolean")]
        if name == "where" and len(args) == 1:
            return [Branch(_where(b, self.predicate(args[0], b.type)), b.type) for b in base]
        if name == "exists":
            if args:
                base = [Branch(_where(b, self.predicate(args[0], b.type)), b.type) for b in base]
            return [Branch(_exists(base, True), "boolean")]
        if name == "empty" and not args:
            return [Branch(_exists(base, False), "boolean")]
        if name == "not" and not args:
            return [Branch(_not(base), "boolean")]
        if name == "first" and not args:
            return _first_of(base, 0)
        if name == "extension" and len(args) == 1 and args[0][0] == "lit" and isinstance(args[0][1], str):
            url = args[0][1]
            return [
                Branch(
                    _where(e, lambda item, _root: isinstance(item, dict) and item.get("url") == url), e.type
                )
                for b in base
                for e in _member(b, "extension")
            ]
        raise Unsupported(f"function {name}()")

    def predicate(self, node: Node, item_type: str) -> Callable[[Any, Mapping[str, Any]], bool]:
        resolved = _resolve_is(node)
        if resolved is not None:
            return lambda item, root: _type_matches_name(reference_type(item, root), resolved)
        simple = _simple_equality(node, item_type)
        if simple is not None:
            return simple
        branches = self.compile(node, item_type, top=False)

        def check(item: Any, root: Mapping[str, Any]) -> bool:
            result = [v for b in branches for v in b.fn([item], root)]
            return result == [True]

        return check


def _constant(value: Any) -> Fn:
    return lambda _focus, _root: [value]


def _identity(focus: list[Any], _root: Mapping[str, Any]) -> list[Any]:
    return focus


def _member(branch: Branch, name: str) -> list[Branch]:
    if "." not in branch.type and branch.type[:1].islower():
        raise Unsupported(f"member '{name}' of primitive {branch.type}")
    return [
        Branch(_getter(branch.fn, key), element_type) for key, element_type in _members(branch.type, name)
    ]


def _getter(prev: Fn, key: str) -> Fn:
    if prev is _identity:

        def get_root(focus: list[Any], _root: Mapping[str, Any]) -> list[Any]:
            out: list[Any] = []
            for item in focus:
                value = item.get(key)
                if value is None:
                    continue
                if type(value) is list:
                    out.extend(value)
                else:
                    out.append(value)
            return out

        return get_root

    def get(focus: list[Any], root: Mapping[str, Any]) -> list[Any]:
        out: list[Any] = []
        for item in prev(focus, root):
            value = item.get(key)
            if value is None:
                continue
            if type(value) is list:
                out.extend(value)
            else:
                out.append(value)
        return out

    return get


def _where(branch: Branch, predicate: Callable[[Any, Mapping[str, Any]], bool]) -> Fn:
    prev = branch.fn

    def where(focus: list[Any], root: Mapping[str, Any]) -> list[Any]:
        return [item for item in prev(focus, root) if predicate(item, root)]

    return where


def _collect(branches: Sequence[Branch], focus: list[Any], root: Mapping[str, Any]) -> list[Any]:
    if len(branches) == 1:
        return branches[0].fn(focus, root)
    return [v for b in branches for v in b.fn(focus, root)]


def _exists(branches: Sequence[Branch], want: bool) -> Fn:
    def exists(focus: list[Any], root: Mapping[str, Any]) -> list[Any]:
        found = any(v is not None for b in branches for v in b.fn(focus, root))
        return [found is want]

    return exists


def _not(branches: Sequence[Branch]) -> Fn:
    def not_(focus: list[Any], root: Mapping[str, Any]) -> list[Any]:
        value = _singleton_bool(_collect(branches, focus, root))
        return [] if value is None else [not value]

    return not_


def _first_of(branches: list[Branch], index: int) -> list[Branch]:
    if len(branches) == 1:
        prev = branches[0].fn

        def nth(focus: list[Any], root: Mapping[str, Any]) -> list[Any]:
            values = prev(focus, root)
            return values[index : index + 1]

        return [Branch(nth, branches[0].type)]
    if index != 0:
        raise Unsupported("indexer over a choice or union")
    out: list[Branch] = []
    for i, b in enumerate(branches):
        earlier = branches[:i]

        def first(
            focus: list[Any], root: Mapping[str, Any], b: Branch = b, earlier: list[Branch] = earlier
        ) -> list[Any]:
            if any(e.fn(focus, root) for e in earlier):
                return []
            return b.fn(focus, root)[:1]

        out.append(Branch(first, b.type))
    return out


def _is_fn(branches: Sequence[Branch], type_name: str) -> Fn:
    matches = [_type_matches(b.type, type_name) for b in branches]

    def is_(focus: list[Any], root: Mapping[str, Any]) -> list[Any]:
        hits = [m for b, m in zip(branches, matches, strict=True) for _ in b.fn(focus, root)]
        if not hits:
            return []
        if len(hits) > 1:
            raise ValueError("'is' needs a single item")
        return [hits[0]]

    return is_


def _singleton_bool(values: list[Any]) -> bool | None:
    # FHIRPath singleton evaluation (§4.5): empty -> empty, one boolean -> it, one other item -> true.
    if not values:
        return None
    if len(values) > 1:
        raise ValueError("a boolean operator needs a single item")
    return values[0] if isinstance(values[0], bool) else True


def _binary(op: str, left: list[Branch], right: list[Branch]) -> Fn:
    def evaluate(focus: list[Any], root: Mapping[str, Any]) -> list[Any]:
        a = _collect(left, focus, root)
        b = _collect(right, focus, root)
        if op in ("=", "!="):
            if not a or not b:
                return []
            equal = len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
            return [equal if op == "=" else not equal]
        x, y = _singleton_bool(a), _singleton_bool(b)
        if op == "and":  # three-valued logic, FHIRPath §6.5
            if x is False or y is False:
                return [False]
            return [] if x is None or y is None else [True]
        if x is True or y is True:
            return [True]
        return [] if x is None or y is None else [False]

    return evaluate


def _equal(x: Any, y: Any) -> bool:
    if isinstance(x, bool) or isinstance(y, bool):
        return type(x) is type(y) and x == y
    return bool(x == y)


def _resolve_is(node: Node) -> str | None:
    """The T of `resolve() is T` / `resolve().is(T)`, else None."""
    if node[0] == "is" and node[1] == ("call", None, "resolve", ()):
        return str(node[2])
    if (
        node[0] == "call"
        and node[2] == "is"
        and node[1] == ("call", None, "resolve", ())
        and len(node[3]) == 1
    ):
        return str(node[3][0][1])
    return None


def _simple_equality(node: Node, item_type: str) -> Callable[[Any, Mapping[str, Any]], bool] | None:
    """`where(system='email')`: one plain, non-choice, single-valued member compared with a string literal."""
    if node[0] != "=" or node[1][0] != "path" or node[2][0] != "lit" or not isinstance(node[2][1], str):
        return None
    try:
        members = _members(item_type, node[1][1])
    except Unsupported:
        return None
    if len(members) != 1 or members[0][0] != node[1][1] or members[0][1] not in _SINGLE_STRINGS:
        return None
    key, literal = node[1][1], node[2][1]
    return lambda item, _root: isinstance(item, dict) and item.get(key) == literal


_SINGLE_STRINGS = frozenset(("code", "string", "uri", "url", "canonical", "id"))


def _type_matches_name(actual: str | None, wanted: str) -> bool:
    return actual is not None and (actual == wanted or wanted in ("Resource", "DomainResource"))


# --- references ---


def reference_type(value: Any, root: Mapping[str, Any]) -> str | None:
    """The resource type a Reference (or reference string) points to, without fetching it.

    Read from the literal reference (`Patient/1`, `http://x/fhir/Patient/1/_history/2`), from the contained
    resource a `#id` names, else from `Reference.type` (http://hl7.org/fhir/R4/references.html).
    """
    ref: Any = value
    declared: Any = None
    if isinstance(value, dict):
        ref, declared = value.get("reference"), value.get("type")
    if isinstance(ref, str) and ref:
        if ref.startswith("#"):
            for contained in root.get("contained") or ():
                if isinstance(contained, dict) and contained.get("id") == ref[1:]:
                    found = contained.get("resourceType")
                    return found if isinstance(found, str) else None
            return None
        parsed = parse_reference_path(ref)
        if parsed is not None:
            return parsed[0]
    return declared if isinstance(declared, str) and is_resource_type(declared) else None


def parse_reference_path(ref: str) -> tuple[str, str, str | None] | None:
    """(type, id, version) from `[base/]Type/id[/_history/vid]`, or None when it is not that shape."""
    parts = ref.split("?", 1)[0].rstrip("/").split("/")
    version = None
    if len(parts) >= 4 and parts[-2] == "_history":
        version = parts[-1]
        parts = parts[:-2]
    if len(parts) >= 2 and is_resource_type(parts[-2]) and parts[-1]:
        return parts[-2], parts[-1], version
    return None

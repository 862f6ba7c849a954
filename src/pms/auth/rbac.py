"""Roles as data: resource types x interactions, loaded from data/roles.json or the `auth_role` table.

A role's grants are the union of its `allow` rules minus the union of its `deny` rules (deny wins). A rule
names types (names, `@groups`, `*` for every R4 type, minus `except_types`) and interactions (names,
`@groups`, `*`); `"compartment": "Patient"` limits it to the Patient compartment of the user's own
`fhirUser` (portal patients). data/roles.json documents the shipped roles and groups; the `grants` object
of a role there has the same shape as the `auth_role.grants` column. Pure: no I/O besides reading the
packaged JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal, cast

from pms.auth.scopes import INTERACTIONS, Interaction
from pms.fhir.definitions import resource_types

RoleAccess = Literal["all", "compartment"]  # what a role grants for one (type, interaction)
_COMPARTMENTS = frozenset({"Patient"})
_RULE_KEYS = frozenset({"types", "except_types", "interactions", "compartment"})


class RoleError(ValueError):
    """A role definition is invalid (unknown type, group or interaction, bad shape)."""


@dataclass(frozen=True, slots=True)
class Rule:
    """Types x interactions, expanded to concrete names. `compartment`: only in the user's own compartment."""

    types: frozenset[str]
    interactions: frozenset[Interaction]
    compartment: bool = False

    def matches(self, interaction: Interaction, resource_type: str) -> bool:
        return interaction in self.interactions and resource_type in self.types


@dataclass(frozen=True, slots=True)
class Role:
    name: str
    description: str
    allow: tuple[Rule, ...]
    deny: tuple[Rule, ...] = ()

    def access(self, interaction: Interaction, resource_type: str) -> RoleAccess | None:
        """What the role grants: `all`, `compartment` (the user's own Patient compartment only) or None."""
        if any(rule.matches(interaction, resource_type) for rule in self.deny):
            return None
        found: RoleAccess | None = None
        for rule in self.allow:
            if rule.matches(interaction, resource_type):
                if not rule.compartment:
                    return "all"
                found = "compartment"
        return found


@dataclass(frozen=True, slots=True)
class Groups:
    """Named type and interaction groups (`@name`) that rules may reference."""

    types: Mapping[str, frozenset[str]]
    interactions: Mapping[str, frozenset[Interaction]]


# --- loading -------------------------------------------------------------------------------------------


def role_from_grants(
    name: str, description: str, grants: Mapping[str, Any] | str, groups: Groups | None = None
) -> Role:
    """A role from its `grants` object (`{"allow": [rule...], "deny": [rule...]}`), or its JSON text."""
    data = json.loads(grants) if isinstance(grants, str) else grants
    if not isinstance(data, Mapping) or not set(data) <= {"allow", "deny"}:
        raise RoleError(f"Role '{name}': grants must be an object with 'allow' and 'deny' rule lists")
    known = groups if groups is not None else default_groups()
    allow, deny = data.get("allow", []), data.get("deny", [])
    if not isinstance(allow, list) or not isinstance(deny, list):
        raise RoleError(f"Role '{name}': 'allow' and 'deny' must be lists of rules")
    return Role(
        name,
        description,
        tuple(_rule(name, r, known) for r in allow),
        tuple(_rule(name, r, known) for r in deny),
    )


def roles_from_rows(rows: Iterable[Mapping[str, Any]], groups: Groups | None = None) -> dict[str, Role]:
    """Roles from `auth_role` rows (mappings with name, description, grants); the shipped groups apply."""
    return {
        str(row["name"]): role_from_grants(
            str(row["name"]), str(row.get("description") or ""), row["grants"], groups
        )
        for row in rows
    }


def load_roles(document: Mapping[str, Any]) -> dict[str, Role]:
    """Roles (and their groups) from a document shaped like data/roles.json."""
    groups = _groups(document)
    roles = document.get("roles")
    if not isinstance(roles, Mapping):
        raise RoleError("The roles document has no 'roles' object")
    return {
        name: role_from_grants(name, str(body.get("description", "")), body.get("grants", {}), groups)
        for name, body in roles.items()
    }


@cache
def shipped_document() -> Mapping[str, Any]:
    """data/roles.json, parsed (roles, groups and their descriptions)."""
    raw = resources.files("pms.auth").joinpath("data", "roles.json").read_text(encoding="utf-8")
    return cast(Mapping[str, Any], json.loads(raw))


@cache
def default_groups() -> Groups:
    return _groups(shipped_document())


@cache
def default_roles() -> Mapping[str, Role]:
    """The roles shipped in data/roles.json: admin, physician, nurse, receptionist, billing, patient."""
    return load_roles(shipped_document())


def role_rows() -> list[dict[str, Any]]:
    """The shipped roles as `auth_role` rows (name, description, grants), to seed the table."""
    return [
        {"name": name, "description": body.get("description", ""), "grants": body["grants"]}
        for name, body in shipped_document()["roles"].items()
    ]


# --- parsing -------------------------------------------------------------------------------------------


def _groups(document: Mapping[str, Any]) -> Groups:
    all_types = frozenset(resource_types())
    types: dict[str, frozenset[str]] = {}
    for key in ("type_groups", "derived_groups"):
        for name, body in (document.get(key) or {}).items():
            listed = body.get("types") if isinstance(body, Mapping) else body
            if not isinstance(listed, list) or not name.startswith("@"):
                raise RoleError(f"Type group '{name}' must be named '@...' and list types")
            unknown = set(listed) - all_types
            if unknown:
                raise RoleError(f"Type group '{name}' names unknown resource types: {sorted(unknown)}")
            types[name] = frozenset(listed)
    interactions: dict[str, frozenset[Interaction]] = {}
    for name, listed in (document.get("interaction_groups") or {}).items():
        if not isinstance(listed, list) or not name.startswith("@") or not set(listed) <= set(INTERACTIONS):
            raise RoleError(f"Interaction group '{name}' must be named '@...' and list interactions")
        interactions[name] = frozenset(cast(list[Interaction], listed))
    return Groups(types, interactions)


def _rule(role: str, rule: Any, groups: Groups) -> Rule:
    if not isinstance(rule, Mapping) or not set(rule) <= _RULE_KEYS:
        raise RoleError(f"Role '{role}': a rule has only types, except_types, interactions, compartment")
    compartment = rule.get("compartment")
    if compartment is not None and compartment not in _COMPARTMENTS:
        raise RoleError(f"Role '{role}': unsupported compartment {compartment!r} (only 'Patient')")
    types = _types(role, rule.get("types"), groups) - _types(role, rule.get("except_types", []), groups)
    return Rule(types, _interactions(role, rule.get("interactions"), groups), compartment is not None)


def _types(role: str, listed: Any, groups: Groups) -> frozenset[str]:
    if not isinstance(listed, list):
        raise RoleError(f"Role '{role}': 'types' must be a list")
    all_types = frozenset(resource_types())
    out: set[str] = set()
    for item in listed:
        if item == "*":
            out |= all_types
        elif item in groups.types:
            out |= groups.types[item]
        elif item in all_types:
            out.add(item)
        else:
            raise RoleError(f"Role '{role}': unknown resource type or group {item!r}")
    return frozenset(out)


def _interactions(role: str, listed: Any, groups: Groups) -> frozenset[Interaction]:
    if not isinstance(listed, list) or not listed:
        raise RoleError(f"Role '{role}': 'interactions' must be a non-empty list")
    out: set[Interaction] = set()
    for item in listed:
        if item == "*":
            out |= set(INTERACTIONS)
        elif item in groups.interactions:
            out |= groups.interactions[item]
        elif item in INTERACTIONS:
            out.add(item)
        else:
            raise RoleError(f"Role '{role}': unknown interaction or group {item!r}")
    return frozenset(out)

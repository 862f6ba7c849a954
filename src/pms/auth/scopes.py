"""SMART on FHIR scopes, parsed into typed grants.

Spec: https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html (SMART App Launch 2.x), cited
below as `#section`. Pure: no I/O. Invalid scopes are collected in `ScopeSet.rejected`, never raised, so
the authorization server can drop them (RFC 6749 §3.3 lets it grant fewer scopes than asked).

- v1 (`#scope-equivalence`): `patient/*.read`, `user/Observation.write`, `system/*.*`;
  `read` = v2 `rs`, `write` = v2 `cud`, `*` = v2 `cruds`.
- v2 (`#clinical-scope-syntax`): `(patient|user|system)/(Type|*).[c][r][u][d][s]`, letters in that order,
  each at most once, optionally followed by `?param=value&...` (`#finer-grained-resource-constraints-using-
  search-parameters`), parsed with the search parser so the restriction is a tuple of `Criterion`.
- non-resource scopes (`#scopes-for-requesting-context-data`, `#scopes-for-requesting-identity-data`,
  `#scopes-for-requesting-a-refresh-token`): see `NON_RESOURCE_SCOPES`.

Interactions (http://hl7.org/fhir/R4/http.html): `r` grants read, vread and history (the spec's "read"
covers all three) and also `operation`: an operation is only the entry point, every resource it reads or
writes is checked again by the repository. `u` grants update and patch.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, get_args
from urllib.parse import parse_qsl

from pms.core.errors import AppError
from pms.fhir.search import Criterion, ParamLookup, SearchRequest, parse_search
from pms.fhir.searchparams import default_registry

Interaction = Literal[
    "read", "vread", "history", "search", "create", "update", "patch", "delete", "operation"
]
INTERACTIONS: tuple[Interaction, ...] = get_args(Interaction)
ScopeContext = Literal["patient", "user", "system"]

READS: frozenset[Interaction] = frozenset({"read", "vread", "history", "search", "operation"})
WRITES: frozenset[Interaction] = frozenset({"create", "update", "patch", "delete"})

# #clinical-scope-syntax: the v2 permission letters, in their required order.
V2_LETTERS: dict[str, frozenset[Interaction]] = {
    "c": frozenset({"create"}),
    "r": frozenset({"read", "vread", "history", "operation"}),
    "u": frozenset({"update", "patch"}),
    "d": frozenset({"delete"}),
    "s": frozenset({"search"}),
}
# #scope-equivalence: v1 permissions as v2 letters.
V1_PERMISSIONS: dict[str, str] = {"read": "rs", "write": "cud", "*": "cruds"}

NON_RESOURCE_SCOPES: frozenset[str] = frozenset(
    {
        "openid",  # #scopes-for-requesting-identity-data
        "fhirUser",
        "profile",  # SMART v1 / OIDC; superseded by fhirUser but still requested by older apps
        "launch",  # #scopes-for-requesting-context-data (EHR launch)
        "launch/patient",  # standalone launch: ask for a patient in context
        "launch/encounter",
        "offline_access",  # #scopes-for-requesting-a-refresh-token
        "online_access",
    }
)

_SCOPE_RE = re.compile(
    r"(?P<context>patient|user|system)/(?P<type>[A-Z][A-Za-z]{0,63}|\*)\."
    r"(?P<permission>read|write|\*|c?r?u?d?s?)(?:\?(?P<query>.*))?",
    re.DOTALL,
)
MAX_SCOPES = 100
MAX_SCOPE_LENGTH = 1000


@dataclass(frozen=True, slots=True)
class Scope:
    """One resource scope. `resource_type` may be `*` (every type). `restriction` (v2 query, `#finer-
    grained-resource-constraints-using-search-parameters`) is AND-ed into every access it grants."""

    context: ScopeContext
    resource_type: str
    interactions: frozenset[Interaction]
    restriction: tuple[Criterion, ...] = ()
    text: str = dataclasses.field(default="", compare=False)  # as requested

    def covers(self, resource_type: str) -> bool:
        return self.resource_type in ("*", resource_type)

    def grants(self, interaction: Interaction, resource_type: str) -> bool:
        return interaction in self.interactions and self.covers(resource_type)


@dataclass(frozen=True, slots=True)
class ScopeSet:
    """A parsed `scope` string: resource scopes, the other accepted scopes, and what was rejected."""

    resources: tuple[Scope, ...] = ()
    other: frozenset[str] = frozenset()
    rejected: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """The accepted scopes as a `scope` string (rejected ones left out), resource scopes first."""
        return " ".join([s.text for s in self.resources] + sorted(self.other))

    def by_context(self, context: ScopeContext) -> tuple[Scope, ...]:
        return tuple(s for s in self.resources if s.context == context)


def parse_scopes(scopes: str | Iterable[str], lookup: ParamLookup | None = None) -> ScopeSet:
    """Parse a space-separated `scope` string (or its items). Duplicates are collapsed."""
    items = scopes.split() if isinstance(scopes, str) else [s for s in scopes if s]
    resources: list[Scope] = []
    other: set[str] = set()
    rejected: list[str] = []
    for text in dict.fromkeys(items):
        if len(resources) + len(other) >= MAX_SCOPES:
            rejected.append(text)
        elif text in NON_RESOURCE_SCOPES:
            other.add(text)
        elif (scope := parse_scope(text, lookup)) is not None:
            resources.append(scope)
        else:
            rejected.append(text)
    return ScopeSet(tuple(resources), frozenset(other), tuple(rejected))


def parse_scope(text: str, lookup: ParamLookup | None = None) -> Scope | None:
    """One resource scope, or None when it is not a valid SMART v1/v2 resource scope."""
    match = _SCOPE_RE.fullmatch(text) if len(text) <= MAX_SCOPE_LENGTH else None
    if match is None:
        return None
    registry = lookup if lookup is not None else default_registry()
    resource_type, permission, query = match["type"], match["permission"], match["query"]
    if resource_type != "*" and not registry.is_resource_type(resource_type):
        return None
    v1 = permission in V1_PERMISSIONS
    letters = V1_PERMISSIONS.get(permission, permission)
    if not letters or (v1 and query is not None):  # v1 has no query form
        return None
    restriction: tuple[Criterion, ...] = ()
    if query is not None:
        parsed = _restriction(None if resource_type == "*" else resource_type, query, registry)
        if parsed is None:
            return None
        restriction = parsed
    interactions = frozenset(i for letter in letters for i in V2_LETTERS[letter])
    context: ScopeContext = match["context"]  # type: ignore[assignment]  # the regex allows only these
    return Scope(context, resource_type, interactions, restriction, text)


def _restriction(resource_type: str | None, query: str, lookup: ParamLookup) -> tuple[Criterion, ...] | None:
    """The criteria of a scope's query; None when it is not a plain conjunction of search criteria.

    Result parameters (`_count`, `_include`, ...), `_has`, `_list`, `_text` and chains are refused: a
    restriction must also be decidable on one resource's JSON (reads by id, writes), see policy.py."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
        request = parse_search(resource_type, pairs, lookup, handling="strict")
    except (ValueError, AppError):
        return None
    plain = SearchRequest(resource_type, criteria=request.criteria, used=request.used)
    if not request.criteria or request != plain or any(c.chain is not None for c in request.criteria):
        return None
    return request.criteria


def scope_within(scope: Scope, allowed: Iterable[Scope]) -> bool:
    """True when one `allowed` scope of the same context grants at least what `scope` grants: same or
    wider type and interactions, and a restriction that is a subset of `scope`'s (fewer criteria is wider).
    For the token endpoint: requested scopes beyond a client's registration or a refresh token's grant."""
    return any(
        a.context == scope.context
        and a.covers(scope.resource_type)
        and scope.interactions <= a.interactions
        and set(a.restriction) <= set(scope.restriction)
        for a in allowed
    )

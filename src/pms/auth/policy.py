"""Access policy, in one place: may this context do this interaction on this type / this resource, and
which criteria must every search (and read check) of that type satisfy. Pure: no I/O.

Effective permission for (interaction, type) (SMART App Launch, scopes-and-launch-context.html):
- `user/` and `patient/` scopes (users and portal patients) are intersected with the union of the user's
  roles (rbac.py): a token never grants more than the role. `patient/` scopes are limited to the Patient
  compartment of the launch patient (`#patient-specific-scopes`; R4 CompartmentDefinition Patient, whose
  focus Patient resource is in it); a role rule marked `compartment` is limited to the user's own one.
- `system/` scopes (`#system-level-scopes`, SMART Backend Services) are intersected with the client's
  registration (`AccessContext.client_scopes`); with no registration they grant nothing. A registration,
  when given for a user's app, narrows its `user/`/`patient/` scopes the same way.
- A v2 scope query (`#finer-grained-resource-constraints-using-search-parameters`) is AND-ed in.
- Break-the-glass: a user with an active override for patient P may read, vread, search and see the
  history of P's compartment beyond their role (the token's scopes still cap it); such decisions carry
  `emergency=True` for the audit trail.
- AuditEvents are append-only for everyone: update, patch and delete are always refused.

Restrictions are criteria AND-ed into the search; `AnyOf` is the OR the compartment needs (Observation is
in P's compartment when `subject` OR `performer` refers to P). `check_resource` evaluates the same
restrictions on one resource's JSON, for reads by id and writes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeAlias

from pms.auth.context import AccessContext
from pms.auth.scopes import Interaction, ScopeContext
from pms.core.errors import AppError, Issue
from pms.fhir import extract
from pms.fhir.search import (
    Criterion,
    MissingValue,
    ReferenceValue,
    ReverseChain,
    SearchRequest,
    StringValue,
    TokenValue,
    UriValue,
)
from pms.fhir.searchparams import Registry

# --- restrictions --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AnyOf:
    """A disjunction: a resource matches when it matches every restriction of at least one alternative.
    Storage compiles it as OR(AND(alternative...)...)."""

    alternatives: tuple[tuple[Restriction, ...], ...]


Restriction: TypeAlias = Criterion | AnyOf
# OR of AND-groups; None is "not granted", `UNRESTRICTED` (one empty group) is "no restriction".
Alternatives: TypeAlias = tuple[tuple[Restriction, ...], ...]
UNRESTRICTED: Alternatives = ((),)


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer for one interaction. `restrictions` (for allowed type-level decisions) are AND-ed into
    every search and read of the type; `emergency` marks access that rests on a break-the-glass override."""

    allowed: bool
    reason: str
    emergency: bool = False
    restrictions: tuple[Restriction, ...] = ()


@dataclass(frozen=True, slots=True)
class _Grant:
    normal: Alternatives | None  # scopes x roles (or registration)
    emergency: Alternatives | None  # break-the-glass
    reason: str  # why `normal` is None


APPEND_ONLY: Mapping[str, frozenset[Interaction]] = {"AuditEvent": frozenset({"update", "patch", "delete"})}
BREAK_GLASS: frozenset[Interaction] = frozenset({"read", "vread", "history", "search"})
_ID_RE = re.compile(r"[A-Za-z0-9\-.]{1,64}")  # http://hl7.org/fhir/R4/datatypes.html#id


def _or(parts: Iterable[Alternatives | None]) -> Alternatives | None:
    found: list[tuple[Restriction, ...]] = []
    for part in parts:
        for group in part or ():
            if not group:
                return UNRESTRICTED
            found.append(group)
    return tuple(dict.fromkeys(found)) or None


def _and(a: Alternatives | None, b: Alternatives | None) -> Alternatives | None:
    if a is None or b is None:
        return None
    if a in (UNRESTRICTED, b):
        return b
    if b == UNRESTRICTED:
        return a
    return (tuple(dict.fromkeys(flatten(a) + flatten(b))),)


def _only(restrictions: tuple[Restriction, ...]) -> Alternatives:
    return (restrictions,)


def flatten(alternatives: Alternatives) -> tuple[Restriction, ...]:
    """Alternatives as a list of AND-ed restrictions (an `AnyOf` when there are several)."""
    return alternatives[0] if len(alternatives) == 1 else (AnyOf(alternatives),)


@lru_cache(maxsize=4096)
def compartment(registry: Registry, resource_type: str, patient_id: str) -> Alternatives | None:
    """Membership of `resource_type` in Patient/`patient_id`'s compartment, one alternative per linking
    parameter (compartmentdefinition-patient.html); the Patient itself by `_id`. None: not a member type."""
    if not _ID_RE.fullmatch(patient_id):
        return None
    by_id = (Criterion("_id", "token", values=(TokenValue(None, patient_id),)),)
    found: list[tuple[Restriction, ...]] = [by_id] if resource_type == "Patient" else []
    reference = ReferenceValue(f"Patient/{patient_id}", "Patient", patient_id)
    for code in registry.compartment_params("Patient", resource_type):
        param = registry.param(resource_type, code)
        if code == "{def}":
            found.append(by_id)
        elif param is not None and param.type == "reference":
            found.append((Criterion(code, "reference", values=(reference,)),))
    return tuple(dict.fromkeys(found)) or None


# --- the grant of one (interaction, type) --------------------------------------------------------------


def _grant(ctx: AccessContext, interaction: Interaction, resource_type: str) -> _Grant:
    key = (interaction, resource_type)
    cached = ctx.cache.get(key)
    if isinstance(cached, _Grant):
        return cached
    if interaction in APPEND_ONLY.get(resource_type, ()):
        grant = _Grant(
            None, None, f"{resource_type} resources are append-only: nobody may {interaction} them"
        )
    elif not ctx.registry.is_resource_type(resource_type):
        grant = _Grant(None, None, f"'{resource_type}' is not a resource type")
    else:
        token, reason = _token(ctx, interaction, resource_type)
        normal = token
        if ctx.principal.kind != "client" and token is not None:
            role, reason = _role(ctx, interaction, resource_type)
            normal = _and(token, role)
        grant = _Grant(normal, _emergency(ctx, interaction, resource_type), reason)
    ctx.cache[key] = grant
    return grant


def _token(
    ctx: AccessContext, interaction: Interaction, resource_type: str
) -> tuple[Alternatives | None, str]:
    """What the token's scopes grant, capped by the client registration; with the reason if nothing."""
    contexts: tuple[ScopeContext, ...] = (
        ("system",) if ctx.principal.kind == "client" else ("user", "patient")
    )
    found: list[Alternatives | None] = []
    reasons: list[str] = []
    for context in contexts:
        granted, reason = _scoped(ctx, interaction, resource_type, context)
        found.append(granted)
        if reason:
            reasons.append(reason)
    combined = _or(found)
    if combined is None:
        named = " or ".join(f"{c}/" for c in contexts)
        return None, reasons[0] if reasons else f"no {named} scope grants '{interaction}' on {resource_type}"
    return combined, ""


def _scoped(
    ctx: AccessContext, interaction: Interaction, resource_type: str, context: ScopeContext
) -> tuple[Alternatives | None, str]:
    """What the token's scopes of one context grant; a reason when some scope matched but was cut."""
    principal = ctx.principal
    granted = _or(
        _only(s.restriction)
        for s in principal.scopes.resources
        if s.context == context and s.grants(interaction, resource_type)
    )
    if granted is None:
        return None, ""
    if context == "patient":  # #patient-specific-scopes: the patient in context
        patient = principal.patient or (principal.own_patient if principal.kind == "patient" else None)
        if patient is None:
            return None, "patient/ scopes need a patient in context (launch/patient)"
        granted = _and(granted, compartment(ctx.registry, resource_type, patient))
        if granted is None:
            return None, f"{resource_type} is not in the Patient compartment that patient/ scopes cover"
    if ctx.client_scopes is not None or context == "system":
        registered = _or(
            _only(s.restriction)
            for s in ctx.client_scopes or ()
            if s.context == context and s.grants(interaction, resource_type)
        )
        if registered is None:
            return None, (
                f"the client's registration does not allow {context}/ scopes "
                f"'{interaction}' on {resource_type}"
            )
        granted = _and(granted, registered)
    return granted, ""


def _role(
    ctx: AccessContext, interaction: Interaction, resource_type: str
) -> tuple[Alternatives | None, str]:
    """What the user's roles grant (their union)."""
    if not ctx.roles:
        return None, "the user has no role"
    found: list[Alternatives | None] = []
    own = ctx.principal.own_patient
    for role in ctx.roles:
        access = role.access(interaction, resource_type)
        if access == "all":
            return UNRESTRICTED, ""
        if access == "compartment" and own is not None:
            found.append(compartment(ctx.registry, resource_type, own))
    combined = _or(found)
    names = ", ".join(f"'{r.name}'" for r in ctx.roles)
    if combined is None:
        return None, f"role {names} does not allow '{interaction}' on {resource_type}"
    return combined, ""


def _emergency(ctx: AccessContext, interaction: Interaction, resource_type: str) -> Alternatives | None:
    """Break-the-glass: the override patients' compartments, for reads, within the token's `user/` scopes
    (`patient/` scopes stay pinned to the launch patient)."""
    principal = ctx.principal
    if principal.kind != "user" or not principal.break_glass or interaction not in BREAK_GLASS:
        return None
    patients = _or(compartment(ctx.registry, resource_type, p) for p in sorted(principal.break_glass))
    return _and(_scoped(ctx, interaction, resource_type, "user")[0], patients)


# --- decisions -----------------------------------------------------------------------------------------


def decide(ctx: AccessContext, interaction: Interaction, resource_type: str) -> Decision:
    """May `ctx` perform `interaction` on `resource_type` at all (some resources of it, at least)?"""
    grant = _grant(ctx, interaction, resource_type)
    what = f"'{interaction}' on {resource_type}"
    if grant.normal is None and grant.emergency is None:
        return Decision(False, f"Forbidden: {grant.reason}")
    if grant.normal is None:
        assert grant.emergency is not None
        return Decision(True, f"{what} by emergency access (break the glass)", True, flatten(grant.emergency))
    if grant.emergency is None or grant.normal == UNRESTRICTED:
        return Decision(True, f"{what} granted", False, flatten(grant.normal))
    both = _or((grant.normal, grant.emergency))
    assert both is not None
    return Decision(
        True, f"{what} granted, partly by emergency access (break the glass)", True, flatten(both)
    )


def require(decision: Decision) -> Decision:
    """The decision if allowed; else a 403 `AppError` (OperationOutcome issue code `forbidden`)."""
    if not decision.allowed:
        raise AppError(403, [Issue("forbidden", decision.reason)])
    return decision


def search_restrictions(
    ctx: AccessContext, resource_type: str, *, interaction: Interaction = "search"
) -> list[Restriction]:
    """Restrictions to AND into every search (and SQL read check) of `resource_type`: compartment
    membership and scope queries. Empty means unrestricted; a denied type raises 403 (never "no filter")."""
    return list(require(decide(ctx, interaction, resource_type)).restrictions)


def include_restrictions(ctx: AccessContext, resource_type: str) -> list[Restriction] | None:
    """For `_include`/`_revinclude`d resources of a type: the `read` restrictions, or None when the type
    may not be read at all (leave those resources out silently)."""
    decision = decide(ctx, "read", resource_type)
    return list(decision.restrictions) if decision.allowed else None


def allowed_types(ctx: AccessContext, interaction: Interaction, types: Iterable[str]) -> tuple[str, ...]:
    """The types `ctx` may `interaction` on (whole-system search without `_type`, `Patient/x/*`, history)."""
    return tuple(t for t in types if decide(ctx, interaction, t).allowed)


def check_search(ctx: AccessContext, request: SearchRequest) -> Decision:
    """Every type a search touches through chains and `_has` must be searchable: a criterion on a type the
    caller may not see would leak it (`Patient?_has:Observation:subject:code=...`). The searched types
    themselves are checked too. Includes are filtered, not refused (see `include_restrictions`)."""
    types = (request.resource_type,) if request.resource_type else request.types
    nodes: list[Criterion | ReverseChain] = [*request.criteria, *request.has]
    for resource_type in (*types, *(t for node in nodes for t in _traversed(node))):
        if resource_type is None:
            return Decision(False, "Forbidden: a chained parameter follows a reference of unknown type")
        decision = decide(ctx, "search", resource_type)
        if not decision.allowed:
            return decision
    return Decision(True, "search granted")


def _traversed(node: Criterion | ReverseChain) -> Iterator[str | None]:
    if isinstance(node, ReverseChain):
        yield node.source_type
        yield from _traversed(node.criterion)
    elif node.chain is not None:
        yield node.target_type
        yield from _traversed(node.chain)


# --- one resource --------------------------------------------------------------------------------------


def check_resource(ctx: AccessContext, interaction: Interaction, resource: Mapping[str, Any]) -> Decision:
    """May `ctx` perform `interaction` on this resource (its JSON)? For reads by id, vreads, history
    entries, and writes (create: the new content; update/patch: the stored and the new content; delete:
    the stored content). Restrictions are evaluated on the resource's own search index values."""
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        return Decision(False, "Forbidden: the resource has no resourceType")
    grant = _grant(ctx, interaction, resource_type)
    if grant.normal is None and grant.emergency is None:
        return Decision(False, f"Forbidden: {grant.reason}")
    values = _IndexValues(ctx.registry, resource_type, resource)
    label = f"{resource_type}/{resource.get('id', '')}".rstrip("/")
    if grant.normal is not None and _matches_any(grant.normal, values):
        return Decision(True, f"'{interaction}' on {label} granted")
    if grant.emergency is not None and _matches_any(grant.emergency, values):
        return Decision(True, f"'{interaction}' on {label} by emergency access (break the glass)", True)
    return Decision(
        False, f"Forbidden: {label} is outside what this access covers (patient compartment or scope query)"
    )


def may_access_resource(
    ctx: AccessContext, resource: Mapping[str, Any], *, interaction: Interaction = "read"
) -> bool:
    return check_resource(ctx, interaction, resource).allowed


def may_write(
    ctx: AccessContext, resource: Mapping[str, Any], *, interaction: Interaction = "create"
) -> bool:
    return check_resource(ctx, interaction, resource).allowed


class _IndexValues:
    """The resource's search index values of the parameters a restriction names, extracted on demand with
    the same compiled expressions as the indexer (`fhir.extract`), so a check agrees with the SQL."""

    def __init__(self, registry: Registry, resource_type: str, resource: Mapping[str, Any]) -> None:
        self._registry, self._type, self._resource = registry, resource_type, resource
        self._values: dict[str, Sequence[extract.IndexValue]] = {}

    def get(self, code: str) -> Sequence[extract.IndexValue]:
        found = self._values.get(code)
        if found is None:
            found = self._values[code] = _extract(self._registry, self._type, code, self._resource)
        return found


def _extract(
    registry: Registry, resource_type: str, code: str, resource: Mapping[str, Any]
) -> Sequence[extract.IndexValue]:
    compiled = _compiled(registry, resource_type, code)
    if compiled is None:
        return ()
    try:
        return compiled.run([resource], resource)
    except (AttributeError, TypeError, ValueError, KeyError, IndexError):
        return ()  # malformed data: no values, as when indexing (Extractor.extract)


@lru_cache(maxsize=4096)
def _compiled(registry: Registry, resource_type: str, code: str) -> extract.CompiledParam | None:
    param = registry.param(resource_type, code)
    return extract.compile_param(param, resource_type) if param is not None else None


def _matches_any(alternatives: Alternatives, values: _IndexValues) -> bool:
    return any(all(_matches(r, values) for r in group) for group in alternatives)


def _matches(restriction: Restriction, values: _IndexValues) -> bool:
    """Search semantics (search.html) for the criteria a restriction can hold; anything else (chains, dates,
    numbers, quantities, composites, terminology modifiers) does not match: fail closed."""
    if isinstance(restriction, AnyOf):
        return _matches_any(restriction.alternatives, values)
    if restriction.chain is not None:
        return False
    found = values.get(restriction.code)
    if restriction.modifier == "missing":
        return all(isinstance(v, MissingValue) and v.missing == (not found) for v in restriction.values)
    if restriction.modifier == "not" and restriction.type == "token":
        return not any(_value_matches(restriction, v, i) for v in restriction.values for i in found)
    if restriction.modifier not in (None, "exact", "contains"):
        return False
    return any(_value_matches(restriction, v, i) for v in restriction.values for i in found)


def _value_matches(criterion: Criterion, value: object, indexed: extract.IndexValue) -> bool:
    if isinstance(value, TokenValue) and isinstance(indexed, extract.TokenValue):
        system_ok = value.system is None or value.system == (indexed.system or "")
        return system_ok and (value.code is None or value.code == indexed.code)
    if isinstance(value, ReferenceValue) and isinstance(indexed, extract.ReferenceValue):
        if value.id is None:
            return value.url is not None and indexed.url == value.url
        target_type = value.type or criterion.target_type
        return (
            indexed.kind == "relative"
            and indexed.target_id == value.id
            and target_type in (None, indexed.target_type)
            and value.version in (None, indexed.version)
        )
    if isinstance(value, StringValue) and isinstance(indexed, extract.StringValue):
        if criterion.modifier == "exact":
            return indexed.exact == value.value
        wanted = extract.normalize_string(value.value)
        if criterion.modifier == "contains":
            return wanted in indexed.normalized
        return indexed.normalized.startswith(wanted)
    if isinstance(value, UriValue) and isinstance(indexed, extract.UriValue):
        return criterion.modifier is None and indexed.uri == value.value
    return False

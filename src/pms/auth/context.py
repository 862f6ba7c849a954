"""Who is asking (`Principal`) and what they may do (`AccessContext`). Plain data; the rules are in policy.py.

A `Principal` is built from a verified access token (or an internal job); an `AccessContext` adds the
resolved roles and, for clients, the scopes their registration allows. Build one per request and pass it
to the repository: policy.py memoizes its decisions on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pms.auth.rbac import Role, default_roles
from pms.auth.scopes import Interaction, Scope, ScopeSet, parse_scopes
from pms.fhir.searchparams import Registry, default_registry

PrincipalKind = Literal["user", "patient", "client"]  # staff user, portal patient, backend service


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated party of one request.

    `fhir_user` is the SMART `fhirUser` claim (`Practitioner/123`, `Patient/456`); `patient` and
    `encounter` are the SMART launch context ids (scopes-and-launch-context.html#launch-context-arrives-
    with-your-access_token); `break_glass` holds the ids of patients this user has an active emergency
    override for (auth_break_glass rows not yet expired).
    """

    subject: str
    kind: PrincipalKind
    username: str | None = None
    fhir_user: str | None = None
    roles: frozenset[str] = frozenset()
    client_id: str | None = None
    scopes: ScopeSet = field(default_factory=ScopeSet)
    patient: str | None = None
    encounter: str | None = None
    break_glass: frozenset[str] = frozenset()

    @property
    def own_patient(self) -> str | None:
        """The id of the user's own Patient resource (a portal patient's `fhirUser`), else None."""
        kind, _, ident = (self.fhir_user or "").partition("/")
        return ident if kind == "Patient" and ident and "/" not in ident else None


# Memoized (interaction, resource type) -> policy grant; the value type belongs to policy.py.
GrantCache = dict[tuple[Interaction, str], Any]


@dataclass(frozen=True, eq=False)
class AccessContext:
    """A principal and what backs its grants: its resolved roles and, for a client, its registration.

    `client_scopes`: the scopes the client's registration allows (auth_client.allowed_scopes). Required
    for `system/` scopes (None: a client grants nothing); when given for a user's app, it narrows the
    user's and patient's scopes too.
    """

    principal: Principal
    roles: tuple[Role, ...] = ()
    client_scopes: tuple[Scope, ...] | None = None
    registry: Registry = field(default_factory=default_registry)
    cache: GrantCache = field(default_factory=dict, repr=False)

    @classmethod
    def create(
        cls,
        principal: Principal,
        *,
        roles: Mapping[str, Role] | None = None,
        client_scopes: ScopeSet | str | Iterable[str] | None = None,
        registry: Registry | None = None,
    ) -> AccessContext:
        """Resolve the principal's role names against `roles` (default: the shipped roles; unknown names
        grant nothing) and parse the registration's allowed scopes."""
        known = default_roles() if roles is None else roles
        registry = registry or default_registry()
        allowed: tuple[Scope, ...] | None = None
        if isinstance(client_scopes, ScopeSet):
            allowed = client_scopes.resources
        elif client_scopes is not None:
            allowed = parse_scopes(client_scopes, registry).resources
        resolved = tuple(known[name] for name in sorted(principal.roles) if name in known)
        return cls(principal, resolved, allowed, registry)

    @classmethod
    def internal(cls, actor: str, registry: Registry | None = None) -> AccessContext:
        """Full `system/*.*` access for the server's own work (jobs, imports, the audit writer). Never
        build one from request input; AuditEvents stay append-only even here."""
        scopes = parse_scopes("system/*.*", registry or default_registry())
        principal = Principal(subject=actor, kind="client", client_id=actor, scopes=scopes)
        return cls(principal, (), scopes.resources, registry or default_registry())

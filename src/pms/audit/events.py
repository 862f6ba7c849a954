"""FHIR R4 AuditEvent resources (http://hl7.org/fhir/R4/auditevent.html), built from plain data.

Pure: no I/O and no clock; the caller stores the result in the same transaction as the work it records.
Codes come from the R4 value sets, shaped after IHE's Basic Audit Log Patterns (BALP):

- REST interactions: type `audit-event-type|rest`, subtype the `restful-interaction` code.
- Sign-in and sign-out: type DICOM 110114 "User Authentication", subtype 110122 Login / 110123 Logout.
- Token grants: type 110114, subtype IHE `ITI-71` "Get Access Token" (BALP's IUA pattern).
- Break the glass: type 110113 "Security Alert", subtype 110127 "Emergency Override Started",
  purposeOfEvent `v3-ActReason|BTG` (also set on every REST event made under emergency access).

Agents: the user (requestor, `who` = fhirUser reference and/or username) and the client app; the source IP
goes on the requestor. Entities: each resource touched (`Type/id/_history/v`), each Patient whose data was
involved (role 1 "Patient"), and a search's query (role 24 "Query", base64).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal, get_args

AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL_INTERACTION = "http://hl7.org/fhir/restful-interaction"
DICOM = "http://dicom.nema.org/resources/ontology/DCM"
IHE_EVENT_TYPE = "urn:ihe:event-type-code"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
SECURITY_ROLE = "http://terminology.hl7.org/CodeSystem/extra-security-role-type"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
RESOURCE_TYPES = "http://hl7.org/fhir/resource-types"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"

Interaction = Literal[
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history",
    "history-instance",
    "history-type",
    "history-system",
    "create",
    "search",
    "search-type",
    "search-system",
    "capabilities",
    "batch",
    "transaction",
    "operation",
]
INTERACTIONS: frozenset[str] = frozenset(get_args(Interaction))

Action = Literal["C", "R", "U", "D", "E"]

# R4 AuditEventAction: searches, batches and operations "execute" (E), the rest map onto CRUD.
_ACTIONS: dict[str, Action] = {
    "create": "C",
    "read": "R",
    "vread": "R",
    "history": "R",
    "history-instance": "R",
    "history-type": "R",
    "history-system": "R",
    "capabilities": "R",
    "update": "U",
    "patch": "U",
    "delete": "D",
    "search": "E",
    "search-type": "E",
    "search-system": "E",
    "batch": "E",
    "transaction": "E",
    "operation": "E",
}


class Outcome(StrEnum):
    """R4 audit-event-outcome."""

    SUCCESS = "0"
    MINOR_FAILURE = "4"  # the request failed, e.g. any 4xx: refused, not found, invalid credentials
    SERIOUS_FAILURE = "8"  # an unexpected error, e.g. a 5xx
    MAJOR_FAILURE = "12"  # the system is no longer available


def outcome_for_status(status: int) -> Outcome:
    """The outcome of an HTTP interaction from its status code."""
    if status < 400:
        return Outcome.SUCCESS
    return Outcome.MINOR_FAILURE if status < 500 else Outcome.SERIOUS_FAILURE


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acted: the signed-in user (absent for backend services) and the client application."""

    username: str | None = None
    fhir_user: str | None = None  # e.g. "Practitioner/123"
    client_id: str | None = None
    address: str | None = None  # the request's source IP
    roles: Sequence[str] = ()
    token_id: str | None = None  # the access token's `jti` (BALP puts it in agent.policy)


@dataclass(frozen=True, slots=True)
class Source:
    """The observer: this server."""

    name: str = "PMS FHIR server"
    site: str | None = None  # e.g. the public base URL


DEFAULT_SOURCE = Source()


@dataclass(frozen=True, slots=True)
class Touched:
    """A resource an interaction read or wrote."""

    resource_type: str
    id: str | None = None
    version: str | None = None

    @classmethod
    def parse(cls, reference: str) -> Touched:
        """From `Type`, `Type/id` or `Type/id/_history/version`."""
        parts = reference.split("/")
        if len(parts) == 4 and parts[2] == "_history":
            return cls(parts[0], parts[1], parts[3])
        if len(parts) in (1, 2) and all(parts):
            return cls(*parts)
        raise ValueError(f"not a relative FHIR reference: {reference!r}")

    @property
    def reference(self) -> str | None:
        if self.id is None:
            return None
        versioned = f"/_history/{self.version}" if self.version is not None else ""
        return f"{self.resource_type}/{self.id}{versioned}"


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    coding = {"system": system, "code": code}
    if display is not None:
        coding["display"] = display
    return coding


def _instant(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("AuditEvent.recorded needs a timezone-aware datetime")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _network(address: str | None) -> dict[str, Any]:
    # agent.network.type 2 = "IP Address" (R4 network-type, a required binding).
    return {"network": {"address": address, "type": "2"}} if address else {}


def _agents(actor: Actor, *, emergency: bool = False) -> list[dict[str, Any]]:
    agents: list[dict[str, Any]] = []
    if actor.username is not None or actor.fhir_user is not None:
        who: dict[str, str] = {}
        if actor.fhir_user:
            who["reference"] = actor.fhir_user
        if actor.username:
            who["display"] = actor.username
        user: dict[str, Any] = {
            "type": {"coding": [_coding(SECURITY_ROLE, "humanuser", "human user")]},
            "who": who,
            "requestor": True,
        }
        if actor.roles:
            user["role"] = [{"text": role} for role in actor.roles]
        if actor.username:
            user["altId"] = actor.username
        if actor.token_id:
            user["policy"] = [actor.token_id]
        if emergency:
            user["purposeOfUse"] = [_btg()]
        agents.append(user | _network(actor.address))
    if actor.client_id is not None or not agents:
        client: dict[str, Any] = {
            "type": {"coding": [_coding(DICOM, "110150", "Application")]},
            "who": {"display": actor.client_id or "unknown client"},
            "requestor": not agents,  # a backend service acting on its own behalf is the requestor
        }
        if not agents:
            if actor.token_id:
                client["policy"] = [actor.token_id]
            client |= _network(actor.address)
        agents.append(client)
    return agents


def _source(source: Source) -> dict[str, Any]:
    built: dict[str, Any] = {
        "observer": {"display": source.name},
        "type": [_coding(SOURCE_TYPE, "4", "Application Server")],
    }
    if source.site:
        built["site"] = source.site
    return built


def _btg() -> dict[str, Any]:
    return {"coding": [_coding(ACT_REASON, "BTG", "break the glass")]}


def _patient_reference(patient: str) -> str:
    return patient if "/" in patient else f"Patient/{patient}"


def _entities(
    resources: Iterable[Touched | str],
    patients: Iterable[str],
    query: str | None,
    operation: str | None,
) -> list[dict[str, Any]]:
    entities: list[dict[str, Any]] = []
    seen: set[str] = set()
    for item in resources:
        touched = Touched.parse(item) if isinstance(item, str) else item
        is_patient = touched.resource_type == "Patient"
        entity: dict[str, Any] = {
            "type": _coding(RESOURCE_TYPES, touched.resource_type),
            "role": _coding(OBJECT_ROLE, "1", "Patient")
            if is_patient
            else _coding(OBJECT_ROLE, "4", "Domain Resource"),
        }
        if touched.reference is not None:
            entity["what"] = {"reference": touched.reference}
            if is_patient:
                seen.add(f"Patient/{touched.id}")
        entities.append(entity)
    for patient in dict.fromkeys(map(_patient_reference, patients)):
        if patient not in seen:
            seen.add(patient)
            entities.append(
                {
                    "what": {"reference": patient},
                    "type": _coding(RESOURCE_TYPES, "Patient"),
                    "role": _coding(OBJECT_ROLE, "1", "Patient"),
                }
            )
    if query is not None:
        # No `name` next to `query`: invariant sev-1 allows only one of them.
        entities.append(
            {
                "type": _coding(ENTITY_TYPE, "2", "System Object"),
                "role": _coding(OBJECT_ROLE, "24", "Query"),
                "query": base64.b64encode(query.encode()).decode("ascii"),
            }
        )
    if operation is not None:
        # Searchable as AuditEvent?entity-name=$everything.
        name = operation if operation.startswith("$") else f"${operation}"
        entities.append({"type": _coding(ENTITY_TYPE, "2", "System Object"), "name": name})
    return entities


def _event(
    *,
    type_: dict[str, str],
    subtype: dict[str, str],
    action: Action,
    actor: Actor,
    recorded: datetime,
    outcome: Outcome,
    outcome_desc: str | None,
    source: Source,
    entities: list[dict[str, Any]],
    emergency: bool = False,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": type_,
        "subtype": [subtype],
        "action": action,
        "recorded": _instant(recorded),
        "outcome": outcome.value,
    }
    if outcome_desc:
        event["outcomeDesc"] = outcome_desc
    if emergency:
        event["purposeOfEvent"] = [_btg()]
    event["agent"] = _agents(actor, emergency=emergency)
    event["source"] = _source(source)
    if entities:
        event["entity"] = entities
    return event


_REST_TYPE = _coding(AUDIT_EVENT_TYPE, "rest", "RESTful Operation")
_USER_AUTHENTICATION = _coding(DICOM, "110114", "User Authentication")


def rest_event(
    *,
    interaction: Interaction,
    actor: Actor,
    recorded: datetime,
    resources: Iterable[Touched | str] = (),
    patients: Iterable[str] = (),
    query: str | None = None,
    operation: str | None = None,
    outcome: Outcome = Outcome.SUCCESS,
    outcome_desc: str | None = None,
    emergency: bool = False,
    source: Source = DEFAULT_SOURCE,
) -> dict[str, Any]:
    """One FHIR REST interaction.

    `resources`: what was read or written (`Touched` or "Type/id[/_history/v]"); `patients`: every
    Patient (id or "Patient/id") whose data it involved - for a search, each patient in the results;
    `query`: a search's request path and query, e.g. "Observation?patient=123&code=1234-5";
    `operation`: the name of an `$operation`; `emergency`: done under break-the-glass access.
    """
    if interaction not in INTERACTIONS:
        raise ValueError(f"not a FHIR restful interaction: {interaction!r}")
    return _event(
        type_=_REST_TYPE,
        subtype=_coding(RESTFUL_INTERACTION, interaction, interaction),
        action=_ACTIONS[interaction],
        actor=actor,
        recorded=recorded,
        outcome=outcome,
        outcome_desc=outcome_desc,
        source=source,
        entities=_entities(resources, patients, query, operation),
        emergency=emergency,
    )


def access_denied_event(
    *,
    interaction: Interaction,
    actor: Actor,
    recorded: datetime,
    reason: str,
    resources: Iterable[Touched | str] = (),
    patients: Iterable[str] = (),
    query: str | None = None,
    operation: str | None = None,
    outcome: Outcome = Outcome.MINOR_FAILURE,
    source: Source = DEFAULT_SOURCE,
) -> dict[str, Any]:
    """A refused interaction (401/403, or a write outside the patient's compartment): what was asked
    for, by whom, and why it was refused (`reason`, for admins; never shown to the caller)."""
    if outcome is Outcome.SUCCESS:
        raise ValueError("a denial cannot have a successful outcome")
    return rest_event(
        interaction=interaction,
        actor=actor,
        recorded=recorded,
        resources=resources,
        patients=patients,
        query=query,
        operation=operation,
        outcome=outcome,
        outcome_desc=reason,
        source=source,
    )


def login_event(
    *,
    actor: Actor,
    recorded: datetime,
    outcome: Outcome = Outcome.SUCCESS,
    outcome_desc: str | None = None,
    source: Source = DEFAULT_SOURCE,
) -> dict[str, Any]:
    """A sign-in attempt: a failed password or second factor is outcome 4 with the reason in
    `outcome_desc` (the attempted username goes in `actor.username` even when no such user exists)."""
    return _event(
        type_=_USER_AUTHENTICATION,
        subtype=_coding(DICOM, "110122", "Login"),
        action="E",
        actor=actor,
        recorded=recorded,
        outcome=outcome,
        outcome_desc=outcome_desc,
        source=source,
        entities=[],
    )


def logout_event(
    *,
    actor: Actor,
    recorded: datetime,
    outcome_desc: str | None = None,
    source: Source = DEFAULT_SOURCE,
) -> dict[str, Any]:
    """A sign-out, explicit or by idle/absolute session timeout (say which in `outcome_desc`)."""
    return _event(
        type_=_USER_AUTHENTICATION,
        subtype=_coding(DICOM, "110123", "Logout"),
        action="E",
        actor=actor,
        recorded=recorded,
        outcome=Outcome.SUCCESS,
        outcome_desc=outcome_desc,
        source=source,
        entities=[],
    )


def token_event(
    *,
    actor: Actor,
    recorded: datetime,
    grant_type: str,
    scope: str | None = None,
    patient: str | None = None,
    outcome: Outcome = Outcome.SUCCESS,
    outcome_desc: str | None = None,
    source: Source = DEFAULT_SOURCE,
) -> dict[str, Any]:
    """A request at the token endpoint: granted (with the scope granted and the launch patient, if
    any) or refused (outcome 4, the OAuth error in `outcome_desc`)."""
    detail = [{"type": "grant_type", "valueString": grant_type}]
    if scope:
        detail.append({"type": "scope", "valueString": scope})
    entities: list[dict[str, Any]] = [
        {
            "type": _coding(ENTITY_TYPE, "2", "System Object"),
            "role": _coding(OBJECT_ROLE, "13", "Security Resource"),
            "name": "access token request",
            "detail": detail,
        }
    ]
    entities += _entities((), [patient] if patient else (), None, None)
    return _event(
        type_=_USER_AUTHENTICATION,
        subtype=_coding(IHE_EVENT_TYPE, "ITI-71", "Get Access Token"),
        action="E",
        actor=actor,
        recorded=recorded,
        outcome=outcome,
        outcome_desc=outcome_desc,
        source=source,
        entities=entities,
    )


def break_glass_event(
    *,
    actor: Actor,
    recorded: datetime,
    patient: str,
    reason: str,
    expires: datetime,
    source: Source = DEFAULT_SOURCE,
) -> dict[str, Any]:
    """Emergency access granted to one patient: the stated reason and when it ends are kept with it."""
    entity = _entities((), [patient], None, None)[0]
    entity["detail"] = [
        {"type": "reason", "valueString": reason},
        {"type": "expires", "valueString": _instant(expires)},
    ]
    return _event(
        type_=_coding(DICOM, "110113", "Security Alert"),
        subtype=_coding(DICOM, "110127", "Emergency Override Started"),
        action="E",
        actor=actor,
        recorded=recorded,
        outcome=Outcome.SUCCESS,
        outcome_desc=None,
        source=source,
        entities=[entity],
        emergency=True,
    )


_SECURITY_ALERT = _coding(DICOM, "110113", "Security Alert")
_ADMIN_SUBTYPES = {
    "roles": _coding(DICOM, "110136", "Security Roles Changed"),
    "configuration": _coding(DICOM, "110130", "Security Configuration"),
}


def security_admin_event(
    *,
    actor: Actor,
    recorded: datetime,
    change: Literal["roles", "configuration"],
    action: Action,
    what: str,
    source: Source = DEFAULT_SOURCE,
) -> dict[str, Any]:
    """An administrator changed who may do what: a role's grants (`roles`), or an OAuth client's
    registration (`configuration`); `what` names it (`role nurse`, `client lab-x`)."""
    return _event(
        type_=_SECURITY_ALERT,
        subtype=_ADMIN_SUBTYPES[change],
        action=action,
        actor=actor,
        recorded=recorded,
        outcome=Outcome.SUCCESS,
        outcome_desc=what,
        source=source,
        entities=[{"type": _coding(ENTITY_TYPE, "2", "System Object"), "name": what}],
    )

"""The repository's access checks: one call per stored resource touched, backed by auth/policy.py.

Type-level decisions come first (cheap, cached per request); a resource's own JSON is only parsed when
the decision carries restrictions (a patient compartment, a scope query).
"""

from __future__ import annotations

from typing import Any

from pms.auth import policy
from pms.auth.context import AccessContext
from pms.auth.scopes import Interaction
from pms.core.errors import AppError, Issue
from pms.fhir import jsonio
from pms.storage.records import StoredVersion


class Guard:
    def __init__(self, access: AccessContext | None) -> None:
        # None: the server's internal view (reindex, background work) — never built from a request.
        self.access = access
        self.emergency = False  # some access in this unit rested on break-the-glass (for the audit)

    def require_type(self, interaction: Interaction, resource_type: str) -> policy.Decision | None:
        if self.access is None:
            return None
        decision = policy.require(policy.decide(self.access, interaction, resource_type))
        self.emergency |= decision.emergency
        return decision

    def require_resource(self, interaction: Interaction, resource: dict[str, Any]) -> None:
        decision = self.require_type(interaction, resource["resourceType"])
        if decision is None or not decision.restrictions:
            return
        assert self.access is not None
        checked = policy.require(policy.check_resource(self.access, interaction, resource))
        self.emergency |= checked.emergency

    def require_stored(self, interaction: Interaction, stored: StoredVersion) -> None:
        decision = self.require_type(interaction, stored.resource_type)
        if decision is None or not decision.restrictions or stored.content is None:
            return
        assert self.access is not None
        checked = policy.require(
            policy.check_resource(self.access, interaction, jsonio.loads(stored.content))
        )
        self.emergency |= checked.emergency

    def require_unrestricted(self, interaction: Interaction, resource_types: tuple[str, ...]) -> None:
        """Type- and system-level history read the version log directly: only for callers whose access to
        every type involved has no per-resource restriction."""
        if self.access is None:
            return
        for resource_type in resource_types:
            decision = self.require_type(interaction, resource_type)
            if decision is not None and decision.restrictions:
                reason = (
                    f"History of all {resource_type} resources needs access that is not limited to a "
                    "compartment; ask for the history of one resource instead"
                )
                raise AppError(403, [Issue("forbidden", reason)])

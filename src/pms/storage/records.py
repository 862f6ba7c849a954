"""What the repository hands back: one stored version of a resource, its JSON kept as text; new ids."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class StoredVersion:
    resource_type: str
    id: str
    version_id: int
    last_updated: datetime
    deleted: bool
    # The resource's JSON exactly as stored (None for a delete): served without re-parsing.
    content: str | bytes | None
    method: str = "GET"
    rid: int = 0  # the storage key, for keyset paging of history
    # The Patients whose compartment it is in, when the search index told (included resources): the
    # audit then need not parse the JSON to find them (storage/audit.py patients_in).
    patients: tuple[str, ...] | None = None

    @property
    def etag(self) -> str:
        return f'W/"{self.version_id}"'

    @property
    def reference(self) -> str:
        return f"{self.resource_type}/{self.id}"

    @property
    def versioned_reference(self) -> str:
        return f"{self.resource_type}/{self.id}/_history/{self.version_id}"


def new_id() -> str:
    """A server-assigned resource id (http.html#create)."""
    return str(uuid.uuid4())

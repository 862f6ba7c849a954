"""Write hooks: rules a domain attaches to the writes of some resource types.

The repository calls them inside the unit of work, before the new version is stamped, so a hook can
refuse the write (raise an AppError), complete the body (derived elements) and keep tables of its own in
step, all in the same transaction as the write. Every write path (REST, Bundles, operations, jobs) goes
through the repository, so no path can skip a domain's rules. Storage never imports a domain: the app
wires the hooks in (main.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pms.storage.repository import FhirRepository


@dataclass(frozen=True, slots=True)
class ResourceChange:
    """One write about to happen. `before` is the current content (None: nothing, or deleted);
    `after` the new content, which a hook may complete in place (None: a delete)."""

    resource_type: str
    id: str
    before: Mapping[str, Any] | None
    after: dict[str, Any] | None


class WriteHook(Protocol):
    resource_types: frozenset[str]

    async def on_write(self, repo: FhirRepository, change: ResourceChange) -> None: ...


class WriteHooks:
    """The hooks in force, looked up by resource type (built once at start-up)."""

    def __init__(self, hooks: Iterable[WriteHook] = ()) -> None:
        self._by_type: dict[str, list[WriteHook]] = {}
        for hook in hooks:
            for resource_type in hook.resource_types:
                self._by_type.setdefault(resource_type, []).append(hook)

    def watches(self, resource_type: str) -> bool:
        return resource_type in self._by_type

    async def run(self, repo: FhirRepository, change: ResourceChange) -> None:
        for hook in self._by_type.get(change.resource_type, ()):
            await hook.on_write(repo, change)

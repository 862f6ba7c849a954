"""The API with neither authentication nor audit on reads by id: the baseline of the audit issue's target
("read by id with auth + audit >= 70% of the unauthenticated figure").

For benchmarks only, never for data: every read acts as the server itself (`system/*.*`, no token
needed) and leaves no AuditEvent. Everything else (routing, the read pool, negotiation, the response) is
the real app. bench/fhir_core_bench.py runs it as `uvicorn unaudited_app:create_app --factory`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request

from pms.api.fhir import routes
from pms.auth.context import AccessContext
from pms.main import create_app as create_real_app

# The read path's access check, audit event and audit writer (api/fhir/routes.py, _fast_read).
REPLACED = ("access_for", "interaction_event", "_audit_writer")


class _NoAudit:
    async def write(self, event: Any) -> None:
        return None


def create_app() -> FastAPI:
    missing = [name for name in REPLACED if not hasattr(routes, name)]
    if missing:
        raise RuntimeError(f"api/fhir/routes.py no longer has {missing}: update the baseline")
    everything = AccessContext.internal("unaudited-bench")
    no_audit = _NoAudit()

    async def access_for(request: Request) -> AccessContext:
        return everything

    routes.access_for = access_for  # type: ignore[assignment]
    routes.interaction_event = lambda **_: {}  # type: ignore[assignment]
    routes._audit_writer = lambda request: no_audit  # type: ignore[assignment]
    return create_real_app()

"""Every domain's write hooks, for whoever opens a unit of work (the API, the worker, the CLI)."""

from __future__ import annotations

from pms.domains.scheduling.config import SchedulingConfig
from pms.domains.scheduling.wiring import scheduling_hooks
from pms.storage.hooks import WriteHooks


def write_hooks(scheduling: SchedulingConfig) -> WriteHooks:
    return WriteHooks(scheduling_hooks(scheduling))

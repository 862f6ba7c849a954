"""Reading the `Parameters` body of any operation (http://hl7.org/fhir/R4/parameters.html)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pms.core.errors import bad_request


class OperationInput:
    """The named parameters of an operation call; repeated names keep every value."""

    def __init__(self, body: Any, *, operation: str) -> None:
        if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
            raise bad_request(f"{operation} takes a Parameters resource", code="structure")
        self.operation = operation
        self._values: dict[str, list[Mapping[str, Any]]] = {}
        for parameter in body.get("parameter") or ():
            if isinstance(parameter, dict) and isinstance(parameter.get("name"), str):
                self._values.setdefault(parameter["name"], []).append(parameter)

    def _value(self, parameter: Mapping[str, Any]) -> Any:
        if "resource" in parameter:
            return parameter["resource"]
        for key, value in parameter.items():
            if key.startswith("value"):
                return value
        return None

    def all(self, name: str) -> list[Any]:
        return [self._value(p) for p in self._values.get(name, ())]

    def one(self, name: str) -> Any:
        values = self.all(name)
        if len(values) > 1:
            raise bad_request(f"{self.operation}: '{name}' may be given once", code="invalid")
        return values[0] if values else None

    def text(self, name: str) -> str | None:
        value = self.one(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise bad_request(f"{self.operation}: '{name}' must be a string, code or date", code="invalid")
        return value

    def reference(self, value: Any) -> str | None:
        if isinstance(value, dict):
            value = value.get("reference")
        return value if isinstance(value, str) else None

    def references(self, name: str) -> list[str]:
        refs = [self.reference(v) for v in self.all(name)]
        if any(r is None for r in refs):
            raise bad_request(f"{self.operation}: '{name}' must be a Reference", code="invalid")
        return [r for r in refs if r]

    def integer(self, name: str, *, default: int, low: int, high: int) -> int:
        value = self.one(name)
        if value is None:
            return default
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise bad_request(f"{self.operation}: '{name}' must be a whole number from {low} to {high}")
        return value

    def boolean(self, name: str) -> bool:
        value = self.one(name)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise bad_request(f"{self.operation}: '{name}' must be true or false")
        return value

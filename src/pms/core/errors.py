"""One error hierarchy for the whole service; the API renders each as a FHIR OperationOutcome.

Codes are from the R4 IssueType value set (http://hl7.org/fhir/R4/valueset-issue-type.html).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["fatal", "error", "warning", "information"]


@dataclass(frozen=True, slots=True)
class Issue:
    """One OperationOutcome.issue: what went wrong, and where (FHIRPath `expression`)."""

    code: str
    diagnostics: str
    severity: Severity = "error"
    expression: tuple[str, ...] = ()


@dataclass
class AppError(Exception):
    """An error with an HTTP status and one or more FHIR issues."""

    status: int
    issues: list[Issue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return "; ".join(issue.diagnostics for issue in self.issues) or f"HTTP {self.status}"


def _error(status: int, code: str, diagnostics: str, expression: tuple[str, ...] = ()) -> AppError:
    return AppError(status, [Issue(code, diagnostics, "error", expression)])


def bad_request(diagnostics: str, *, code: str = "invalid", expression: tuple[str, ...] = ()) -> AppError:
    return _error(400, code, diagnostics, expression)


def not_found(diagnostics: str) -> AppError:
    return _error(404, "not-found", diagnostics)


def gone(diagnostics: str) -> AppError:
    return _error(410, "deleted", diagnostics)


def conflict(diagnostics: str, *, code: str = "conflict") -> AppError:
    return _error(409, code, diagnostics)


def precondition_failed(diagnostics: str) -> AppError:
    return _error(412, "conflict", diagnostics)


def unprocessable(issues: list[Issue]) -> AppError:
    return AppError(422, issues)


def not_supported(diagnostics: str, *, status: int = 400) -> AppError:
    return _error(status, "not-supported", diagnostics)

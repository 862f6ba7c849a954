"""Required terminology bindings: membership of codes in the ValueSets expanded by the generator.

Only value sets the generator could expand from the package are known here; the others (filters, SNOMED,
UCUM, BCP-13 MIME types, ...) have no entry, so their elements are simply not checked.
"""

from __future__ import annotations

from typing import Any

from pms.core.errors import Issue

from .primitives import show

_SHOWN_CODES = 12  # beyond this a message names the value set instead of listing it


class ValueSet:
    """An expanded value set: all codes (for `code` elements) and codes per system (for Codings)."""

    __slots__ = ("by_system", "codes", "ordered", "url")

    def __init__(self, url: str, systems: list[tuple[str, list[str]]]) -> None:
        self.url = url
        self.ordered: tuple[str, ...] = tuple(dict.fromkeys(c for _, codes in systems for c in codes))
        self.codes: frozenset[str] = frozenset(self.ordered)
        self.by_system: dict[str, frozenset[str]] = {system: frozenset(codes) for system, codes in systems}

    def choices(self) -> str:
        if len(self.ordered) <= _SHOWN_CODES:
            return "one of " + " | ".join(self.ordered)
        return f"one of the {len(self.ordered)} codes of the value set"

    def code_issue(self, value: Any, path: str) -> Issue:
        return Issue(
            "code-invalid",
            f"{show(value)} is not a valid code for {path}: it must be {self.choices()} "
            f"(required binding to {self.url})",
            expression=(path,),
        )

    def coding_issue(self, coding: Any, path: str) -> Issue | None:
        """The issue for one Coding (at `path`), when its system is one of ours and its code is not in it."""
        if type(coding) is not dict:
            return None  # shape errors are reported by the walker
        system = coding.get("system")
        if type(system) is not str:
            return None
        codes = self.by_system.get(system)
        code = coding.get("code")
        if codes is None or type(code) is not str or code in codes:
            return None
        in_system = [c for c in self.ordered if c in codes]
        listed = " | ".join(in_system) if len(in_system) <= _SHOWN_CODES else f"{len(in_system)} codes"
        return Issue(
            "code-invalid",
            f"{show(code)} is not a valid code of {system} for {path}: it must be one of {listed} "
            f"(required binding to {self.url})",
            expression=(f"{path}.code",),
        )

    def codeable_concept_issues(self, concept: Any, path: str) -> list[Issue]:
        """Issues for each coding of a CodeableConcept whose system the value set draws from."""
        codings = concept.get("coding") if type(concept) is dict else None
        if type(codings) is not list:
            return []
        found = (self.coding_issue(coding, f"{path}.coding[{i}]") for i, coding in enumerate(codings))
        return [issue for issue in found if issue is not None]

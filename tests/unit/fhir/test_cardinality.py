"""Which search parameters yield at most one value per resource (from the R4 element cardinalities)."""

from __future__ import annotations

import pytest

from pms.fhir.cardinality import at_most_one
from pms.fhir.searchparams import default_registry


def expression(resource_type: str, code: str) -> str:
    param = default_registry().param(resource_type, code)
    assert param is not None and param.expression is not None
    return param.expression


@pytest.mark.parametrize(
    ("resource_type", "code"),
    [
        ("Slot", "start"),  # Slot.start 1..1
        ("Appointment", "date"),  # Appointment.start 0..1
        ("Patient", "birthdate"),
        ("Encounter", "date"),  # a Period
        ("Observation", "date"),  # effective[x]: every variant of one choice element
        ("Observation", "value-date"),  # (value as dateTime) | (value as Period): one element
        ("Patient", "death-date"),
    ],
)
def test_single_valued(resource_type: str, code: str) -> None:
    assert at_most_one(expression(resource_type, code), resource_type)


@pytest.mark.parametrize(
    ("resource_type", "code"),
    [
        ("Patient", "name"),  # 0..*
        ("Appointment", "actor"),  # participant 1..*
        ("Observation", "component-value-quantity"),  # component 0..*
        ("RiskAssessment", "probability"),  # prediction 0..*
    ],
)
def test_many_valued(resource_type: str, code: str) -> None:
    assert not at_most_one(expression(resource_type, code), resource_type)


def test_unknown_or_unsupported_counts_as_many() -> None:
    assert not at_most_one("Patient.name | Patient.birthDate", "Patient")  # two elements
    assert not at_most_one("Patient.nonsense", "Patient")
    assert not at_most_one("Patient.birthDate", "NotAType")
    assert not at_most_one("Patient.name.given.substring(1)", "Patient")

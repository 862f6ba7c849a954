"""PMS: a FHIR-native patient management system for clinics."""

__version__ = "0.1.0"

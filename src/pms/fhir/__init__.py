"""The pure FHIR engine: definitions, validation, bundles, outcomes. No I/O, no web framework."""

"""Non-FHIR HTTP endpoints under /api (what FHIR does not model)."""

"""FHIR search over the typed index tables: SQL compilation, paging, includes."""

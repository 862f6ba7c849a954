"""Domains: rules and multi-step flows over FHIR resources (they reach resources only via storage)."""

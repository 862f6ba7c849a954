"""Domain workflows (scheduling, ...): rules and multi-step flows on FHIR resources."""

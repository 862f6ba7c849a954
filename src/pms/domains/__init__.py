"""Domain workflows (scheduling, reminders, ...): rules and multi-step flows on FHIR resources."""

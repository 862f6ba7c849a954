"""The audit trail: FHIR AuditEvent resources for every access, sign-in and denial (append-only)."""

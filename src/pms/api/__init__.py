"""Thin HTTP adapters: routing, content negotiation, preconditions, errors -> OperationOutcome."""

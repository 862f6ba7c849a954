"""The single chokepoint to resources: validate, version, index and persist, in one transaction."""

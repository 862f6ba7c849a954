"""The FHIR R4 RESTful API at /fhir."""

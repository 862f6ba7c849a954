"""Identity and access: SMART scopes, roles, principals and the access policy; tokens and users."""

"""Path convertors that match only well-formed FHIR path segments.

Routes using them can be tried before every other route without shadowing a literal path: a resource type
starts upper-case, so `.well-known` and `metadata` never match it, and an id has neither `_` nor `$`, so
`_history`, `_search` and `$operation` segments never match it (R4 datatypes: `id` is
`[A-Za-z0-9\\-\\.]{1,64}`). Anything they refuse falls through to the general routes, which answer it.
"""

from __future__ import annotations

from starlette.convertors import StringConvertor, register_url_convertor


class ResourceTypeConvertor(StringConvertor):
    regex = "[A-Z][A-Za-z]{1,63}"


class IdConvertor(StringConvertor):
    regex = r"[A-Za-z0-9\-\.]{1,64}"


register_url_convertor("fhir_type", ResourceTypeConvertor())
register_url_convertor("fhir_id", IdConvertor())

INSTANCE = "/{resource_type:fhir_type}/{id:fhir_id}"
VERSION = INSTANCE + "/_history/{version_id:fhir_id}"

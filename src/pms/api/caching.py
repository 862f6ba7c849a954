"""What a browser or proxy may keep of an API answer: nothing.

FHIR answers carry protected health information and change under the client. Without a `Cache-Control`
header a browser may reuse a response that has a `Last-Modified` date for a tenth of its age (RFC 9111
§4.2.2, heuristic freshness): the staff app then read a Patient it had just updated at its old version,
and its next `If-Match` failed with 412. Conditional reads (`If-None-Match`, 304) still work when a
client asks for them; the server just tells caches not to keep anything on their own.
"""

from __future__ import annotations

CACHE_CONTROL = "Cache-Control"
NOT_STORED = "no-store"

"""Keyset paging (search.html#paging): pages are bounded by the sort keys of the rows seen, so writes by
other clients between page requests cause neither duplicates nor gaps among unchanged resources.

Sort keys sort NULLS LAST in both directions; the row id breaks ties. A page token records the direction
and the anchor row's key values.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, false, or_

from pms.core.errors import bad_request


@dataclass(frozen=True, slots=True)
class PageToken:
    forward: bool
    values: tuple[Any, ...]  # one per sort key, then the row id


def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"t": value.isoformat()}
    if isinstance(value, Decimal):
        return {"n": str(value)}
    return value


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict) and "t" in value:
        return datetime.fromisoformat(value["t"])
    if isinstance(value, dict) and "n" in value:
        return Decimal(value["n"])
    return value


def encode_token(token: PageToken) -> str:
    payload = json.dumps([token.forward, [_encode_value(v) for v in token.values]], separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_token(text: str, key_count: int) -> PageToken:
    try:
        forward, values = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        decoded = tuple(_decode_value(v) for v in values)
    except (ValueError, TypeError) as exc:
        raise bad_request("Invalid paging token (_page)", code="value") from exc
    if not isinstance(forward, bool) or len(decoded) != key_count + 1 or not isinstance(decoded[-1], int):
        raise bad_request("The paging token does not belong to this search", code="value")
    return PageToken(forward, decoded)


def beyond(keys: list[tuple[Any, bool]], anchor: tuple[Any, ...], *, forward: bool) -> ColumnElement[bool]:
    """Rows strictly after (forward) or before the anchor in the order of `keys` ((expression, descending)
    pairs, the row id last and ascending), with NULLS LAST."""
    alternatives = []
    for position, (expression, descending) in enumerate(keys):
        value = anchor[position]
        step: ColumnElement[bool]
        if forward:
            if value is None:
                step = false()
            else:
                step = or_(expression < value if descending else expression > value, expression.is_(None))
        elif value is None:
            step = expression.is_not(None)
        else:
            step = expression > value if descending else expression < value
        equal_before = [
            keys[i][0].is_(None) if anchor[i] is None else keys[i][0] == anchor[i] for i in range(position)
        ]
        alternatives.append(and_(*equal_before, step))
    return or_(*alternatives)

"""Keyset paging (search.html#paging): pages are bounded by the sort keys of the rows seen, so writes by
other clients between page requests cause neither duplicates nor gaps among unchanged resources.

Sort keys sort NULLS LAST in both directions; the row id breaks ties. A page token records the direction
and the anchor row's key values. Tokens come back from clients, so decoding checks every value against the
kind of its key: a forged or foreign token is a 400, never a database error.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, false, or_

from pms.core.errors import bad_request

KeyKind = Literal["text", "datetime", "decimal", "int"]
MAX_TOKEN_LENGTH = 4096


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


def _decode_value(value: Any, kind: KeyKind) -> Any:
    if value is None:
        return None
    if kind == "datetime" and isinstance(value, dict) and isinstance(value.get("t"), str):
        moment = datetime.fromisoformat(value["t"])
        if moment.tzinfo is None:
            raise ValueError("naive datetime")
        return moment
    if kind == "decimal" and isinstance(value, dict) and isinstance(value.get("n"), str):
        number = Decimal(value["n"])
        if not number.is_finite() and not number.is_infinite():
            raise ValueError("NaN")
        return number
    if kind == "text" and isinstance(value, str):
        return value
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63:
        return value
    raise ValueError(f"not a {kind}")


def encode_token(token: PageToken) -> str:
    payload = json.dumps([token.forward, [_encode_value(v) for v in token.values]], separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_token(text: str, kinds: Sequence[KeyKind]) -> PageToken:
    """The token of a search whose sort keys (the row id last) are of these kinds."""
    try:
        if len(text) > MAX_TOKEN_LENGTH:
            raise ValueError("too long")
        forward, values = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, TypeError, binascii.Error, RecursionError) as exc:
        raise bad_request("Invalid paging token (_page)", code="value") from exc
    if not isinstance(forward, bool) or not isinstance(values, list) or len(values) != len(kinds):
        raise bad_request("The paging token does not belong to this search", code="value")
    try:
        decoded = tuple(_decode_value(v, k) for v, k in zip(values, kinds, strict=True))
    except (ValueError, TypeError, InvalidOperation) as exc:
        raise bad_request("The paging token does not belong to this search", code="value") from exc
    if decoded[-1] is None:
        raise bad_request("The paging token does not belong to this search", code="value")
    return PageToken(forward, decoded)


def beyond(keys: list[tuple[Any, bool]], anchor: tuple[Any, ...], *, forward: bool) -> ColumnElement[bool]:
    """Rows strictly after (forward) or before the anchor in the order of `keys` ((expression, descending)
    pairs, the row id last and ascending), with NULLS LAST."""
    alternatives = []
    for position, (expression, descending) in enumerate(keys):
        value = anchor[position]
        nullable = position < len(keys) - 1  # the row id, last, never is: a plain range on the primary key
        step: ColumnElement[bool]
        if forward:
            if value is None:
                step = false()
            else:
                after = expression < value if descending else expression > value
                step = or_(after, expression.is_(None)) if nullable else after
        elif value is None:
            step = expression.is_not(None)
        else:
            step = expression > value if descending else expression < value
        equal_before = [
            keys[i][0].is_(None) if anchor[i] is None else keys[i][0] == anchor[i] for i in range(position)
        ]
        alternatives.append(and_(*equal_before, step))
    return or_(*alternatives)

"""FHIR JSON reading and writing that keeps decimals exact.

FHIR decimals carry their precision ("1.50" is not "1.5": http://hl7.org/fhir/R4/datatypes.html#decimal),
so bodies are parsed with JSON numbers that have a fraction or exponent as `Decimal`, and written back
verbatim through orjson fragments.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import orjson


class JsonSyntaxError(ValueError):
    """The body is not well-formed JSON."""


_decoder = json.JSONDecoder(parse_float=Decimal)


def loads(body: bytes | str) -> Any:
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    try:
        value, end = _decoder.raw_decode(text.lstrip())
    except json.JSONDecodeError as exc:
        raise JsonSyntaxError(f"Malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    if text[len(text) - len(text.lstrip()) + end :].strip():
        raise JsonSyntaxError("Malformed JSON: extra data after the JSON value")
    return value


def peek(body: bytes | str) -> Any:
    """Parse stored JSON only to look into it (e.g. at references), 5-10x faster than `loads`: decimals
    become floats, so nothing parsed here may be written back or answered."""
    return orjson.loads(body)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value))
    raise TypeError(f"Cannot serialise {type(value).__name__} as JSON")


def dumps(value: Any, *, pretty: bool = False) -> bytes:
    option = orjson.OPT_INDENT_2 if pretty else 0
    return orjson.dumps(value, default=_default, option=option)

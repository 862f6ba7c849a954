"""The typed search index tables (created by migrations/…_0002_search_indexes.py).

One row per indexed value; `param` is `param_hash(resource type, code)`; `grp` ties the components of
one composite value together.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

from sqlalchemy import BigInteger, Column, DateTime, MetaData, Numeric, SmallInteger, Table, Text

metadata = MetaData()


def _table(name: str, *columns: Column[object]) -> Table:
    return Table(
        name,
        metadata,
        Column("rid", BigInteger, nullable=False),
        Column("param", BigInteger, nullable=False),
        Column("grp", SmallInteger),
        *columns,
    )


search_string = _table("search_string", Column("norm", Text), Column("exact", Text))
search_token = _table(
    "search_token",
    Column("system", Text),
    Column("code", Text),
    Column("text_norm", Text),
    Column("type_system", Text),
    Column("type_code", Text),
)
search_date = _table(
    "search_date", Column("low", DateTime(timezone=True)), Column("high", DateTime(timezone=True))
)
search_number = _table(
    "search_number", Column("value", Numeric), Column("low", Numeric), Column("high", Numeric)
)
search_quantity = _table(
    "search_quantity",
    Column("value", Numeric),
    Column("low", Numeric),
    Column("high", Numeric),
    Column("system", Text),
    Column("code", Text),
    Column("unit", Text),
)
search_reference = _table(
    "search_reference",
    Column("target_type", Text),
    Column("target_id", Text),
    Column("version", Text),
    Column("url", Text),
)
search_uri = _table("search_uri", Column("uri", Text))

INDEX_TABLES: dict[str, Table] = {
    "string": search_string,
    "token": search_token,
    "date": search_date,
    "number": search_number,
    "quantity": search_quantity,
    "reference": search_reference,
    "uri": search_uri,
}


@lru_cache(maxsize=16384)
def param_hash(resource_type: str, code: str) -> int:
    """A stable signed 64-bit id for (resource type, parameter code), as stored in `param`."""
    digest = hashlib.blake2b(f"{resource_type}|{code}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def component_code(code: str, index: int) -> str:
    """The code under which component `index` of composite `code` is indexed."""
    return f"{code}${index}"

"""Table definitions used to build queries. The schema itself is created by alembic (migrations/)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql import ColumnElement, cast, type_coerce
from sqlalchemy.types import UserDefinedType


class JsonbText(UserDefinedType[str]):
    """A JSONB column exchanged with Python as JSON text.

    Resources are serialised once with orjson on write and streamed back verbatim on read, so the hot
    read path never parses JSON in Python.
    """

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "JSONB"

    def bind_expression(self, bindvalue: Any) -> ColumnElement[Any]:
        # Bound as text and cast by PostgreSQL, bypassing the driver's JSON codec.
        return cast(type_coerce(bindvalue, Text()), JSONB)

    def column_expression(self, colexpr: Any) -> ColumnElement[Any]:
        return cast(colexpr, Text())


metadata = MetaData()

# The current version of every resource. `rid` is a compact surrogate key for the search index tables;
# (resource_type, id) is the FHIR identity.
resource = Table(
    "resource",
    metadata,
    Column("rid", BigInteger, primary_key=True),
    Column("resource_type", Text, nullable=False),
    Column("id", Text, nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("last_updated", DateTime(timezone=True), nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("content", JsonbText(), nullable=True),
)

# Every version ever written, the current one included; deletes are versions with no content.
resource_version = Table(
    "resource_version",
    metadata,
    Column("rid", BigInteger, primary_key=True),
    Column("version_id", Integer, primary_key=True),
    Column("resource_type", Text, nullable=False),
    Column("id", Text, nullable=False),
    Column("last_updated", DateTime(timezone=True), nullable=False),
    Column("method", Text, nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("content", JsonbText(), nullable=True),
)

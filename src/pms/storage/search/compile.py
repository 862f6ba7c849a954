"""Compile parsed search criteria (pms.fhir.search) into SQL conditions on a `resource` row.

Each criterion becomes `rid IN (SELECT rid FROM <typed index> WHERE param = … AND <value test>)`; the
values of one criterion are OR-ed inside the subquery, criteria are AND-ed (search.html#combining).
Everything is bound parameters: no request text reaches SQL as text.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, false, func, literal, not_, or_, select, true
from sqlalchemy.sql.expression import FromClause

from pms.core.errors import bad_request, not_supported
from pms.fhir.extract import normalize_string
from pms.fhir.search.model import (
    CompositeValue,
    Criterion,
    DateValue,
    MissingValue,
    NumberValue,
    OfTypeValue,
    QuantityValue,
    ReferenceValue,
    ReverseChain,
    SearchValue,
    StringValue,
    TokenValue,
    UriValue,
)
from pms.fhir.searchparams import Registry
from pms.storage.index_tables import INDEX_TABLES, component_code, param_hash
from pms.storage.tables import resource

class SearchContext:
    """What compilation needs besides the criteria: the registry and this server's base URL."""

    def __init__(self, registry: Registry, base: str) -> None:
        self.registry = registry
        self.base = base.rstrip("/") + "/"

    def local_reference(self, url: str) -> tuple[str, str] | None:
        """(type, id) when an absolute URL points into this server."""
        if not url.startswith(self.base):
            return None
        parts = url[len(self.base) :].split("/")
        return (parts[0], parts[1]) if len(parts) >= 2 else None


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# -- value tests per type (on one index table row) -------------------------------------------------------


def _string_test(table: FromClause, value: StringValue, modifier: str | None) -> ColumnElement[bool]:
    if modifier == "exact":
        return table.c.exact == value.value
    norm = _like_escape(normalize_string(value.value))
    if modifier in ("contains", "text"):
        return table.c.norm.like(f"%{norm}%", escape="\\")
    return table.c.norm.like(f"{norm}%", escape="\\")


def _token_test(table: FromClause, value: SearchValue, modifier: str | None) -> ColumnElement[bool]:
    if isinstance(value, OfTypeValue):
        return and_(table.c.type_system == value.system, table.c.type_code == value.code, table.c.code == value.value)
    if modifier == "text":
        assert isinstance(value, StringValue | TokenValue)
        text = value.value if isinstance(value, StringValue) else (value.code or "")
        return table.c.text_norm.like(f"{_like_escape(normalize_string(text))}%", escape="\\")
    assert isinstance(value, TokenValue)
    tests: list[ColumnElement[bool]] = []
    if value.code is not None:
        tests.append(table.c.code == value.code)
    if value.system == "":
        tests.append(table.c.system.is_(None))
    elif value.system is not None:
        tests.append(table.c.system == value.system)
    return and_(*tests) if tests else true()


def _approximate(low: Any, high: Any, value: Any) -> tuple[Any, Any]:
    """search.html#prefix `ap`: within 10% of the value (dates: of the distance from now)."""
    if isinstance(value, datetime):
        margin = max(abs(datetime.now(UTC) - value) / 10, timedelta(days=1))
        return low - margin, high + margin
    margin = abs(value) / 10 if value else Decimal("0.1")
    return value - margin, value + margin


def _date_test(column_low: Any, column_high: Any, value: DateValue) -> ColumnElement[bool]:
    """Stored ranges are [low, high] inclusive; the search value's range is [low, high)."""
    low, high = value.low, value.high
    match value.prefix:
        case "eq":
            return and_(column_low >= low, column_high < high)
        case "ne":
            return or_(column_low < low, column_high >= high)
        case "gt":
            return column_high >= high
        case "ge":
            return column_high >= low
        case "lt":
            return column_low < low
        case "le":
            return column_low < high
        case "sa":
            return column_low >= high
        case "eb":
            return column_high < low
        case _:
            approx_low, approx_high = _approximate(low, high, low)
            return and_(column_low < approx_high, column_high >= approx_low)


def _number_test(column: Any, value: NumberValue | QuantityValue) -> ColumnElement[bool]:
    match value.prefix:
        case "eq":
            return and_(column >= value.low, column < value.high)
        case "ne":
            return or_(column < value.low, column >= value.high)
        case "gt" | "sa":
            return column > value.value
        case "ge":
            return column >= value.value
        case "lt" | "eb":
            return column < value.value
        case "le":
            return column <= value.value
        case _:
            approx_low, approx_high = _approximate(value.low, value.high, value.value)
            return and_(column >= approx_low, column <= approx_high)


def _quantity_test(table: FromClause, value: QuantityValue) -> ColumnElement[bool]:
    # A Range (value NULL) matches on its bounds: the same tests applied to low and high.
    amount = func.coalesce(table.c.value, table.c.low)
    tests = [_number_test(amount, value)]
    if value.code is not None:
        if value.system is not None:
            tests.append(and_(table.c.system == value.system, table.c.code == value.code))
        else:
            tests.append(or_(table.c.code == value.code, table.c.unit == value.code))
    elif value.system is not None:
        tests.append(table.c.system == value.system)
    return and_(*tests)


def _uri_test(table: FromClause, value: UriValue, modifier: str | None) -> ColumnElement[bool]:
    if modifier == "below":
        return table.c.uri.like(f"{_like_escape(value.value)}%", escape="\\")
    if modifier == "above":
        return literal(value.value).like(func.replace(func.replace(table.c.uri, "%", "\\%"), "_", "\\_") + "%",
                                         escape="\\")
    return table.c.uri == value.value


class Compiler:
    def __init__(self, context: SearchContext) -> None:
        self.context = context
        self.registry = context.registry

    # -- entry points -----------------------------------------------------------------------------------

    def condition(self, resource_type: str, criterion: Criterion, res: FromClause) -> ColumnElement[bool]:
        """A condition on the `res` row (an alias of `resource`) for one criterion."""
        if criterion.code == "_id":
            return self._id_condition(criterion, res)
        if criterion.code == "_lastUpdated":
            return self._last_updated_condition(criterion, res)
        if criterion.chain is not None:
            return res.c.rid.in_(self._chain_rids(resource_type, criterion))
        if criterion.modifier == "missing":
            return self._missing(resource_type, criterion, res)
        if criterion.type == "composite":
            return res.c.rid.in_(self._composite_rids(resource_type, criterion))
        if criterion.modifier == "not":
            return not_(res.c.rid.in_(self._value_rids(resource_type, criterion, negate=True)))
        if criterion.modifier in ("above", "below", "in", "not-in") and criterion.type == "token":
            raise not_supported(f"The :{criterion.modifier} modifier on token parameters is not supported yet")
        return res.c.rid.in_(self._value_rids(resource_type, criterion))

    def reverse_chain(self, resource_type: str, chain: ReverseChain, res: FromClause) -> ColumnElement[bool]:
        """`_has:Source:ref:criterion`: some Source refers to `res` through `ref` and matches."""
        refs = INDEX_TABLES["reference"].alias()
        source_rids = self._rids_matching(chain.source_type, chain.criterion)
        query = select(refs.c.target_id).where(
            refs.c.param == param_hash(chain.source_type, chain.reference),
            refs.c.target_type == resource_type,
            refs.c.rid.in_(source_rids),
        )
        return res.c.id.in_(query)

    # -- helpers ----------------------------------------------------------------------------------------

    def _rids_matching(self, resource_type: str, criterion: Criterion | ReverseChain) -> Select[Any]:
        """rids of `resource_type` resources matching a (chained) criterion."""
        inner = resource.alias()
        if isinstance(criterion, ReverseChain):
            condition = self.reverse_chain(resource_type, criterion, inner)
        else:
            condition = self.condition(resource_type, criterion, inner)
        return select(inner.c.rid).where(inner.c.resource_type == resource_type, ~inner.c.deleted, condition)

    def _chain_rids(self, resource_type: str, criterion: Criterion) -> Select[Any]:
        """`subject:Patient.name=x`: references through `subject` to Patients whose name matches."""
        assert criterion.chain is not None
        target_type = criterion.target_type
        if target_type is None:
            raise bad_request(f"The chained parameter '{criterion.code}' needs a target type", code="invalid")
        targets = resource.alias()
        refs = INDEX_TABLES["reference"].alias()
        target_ids = select(targets.c.id).where(
            targets.c.rid.in_(self._rids_matching(target_type, criterion.chain)),
        )
        return select(refs.c.rid).where(
            refs.c.param == param_hash(resource_type, criterion.code),
            refs.c.target_type == target_type,
            refs.c.target_id.in_(target_ids),
        )

    def _missing(self, resource_type: str, criterion: Criterion, res: FromClause) -> ColumnElement[bool]:
        value = criterion.values[0]
        assert isinstance(value, MissingValue)
        table = INDEX_TABLES[criterion.type].alias()
        has_value = exists(
            select(literal(1)).where(table.c.rid == res.c.rid, table.c.param == param_hash(resource_type, criterion.code))
        )
        return not_(has_value) if value.missing else has_value

    def _value_rids(self, resource_type: str, criterion: Criterion, *, negate: bool = False) -> Select[Any]:
        if criterion.type not in INDEX_TABLES:
            raise not_supported(f"Searching by the {criterion.type} parameter '{criterion.code}' is not supported")
        table = INDEX_TABLES[criterion.type].alias()
        tests = [self._value_test(table, criterion, value) for value in criterion.values]
        return select(table.c.rid).where(
            table.c.param == param_hash(resource_type, criterion.code), or_(*tests) if tests else false()
        )

    def _value_test(self, table: FromClause, criterion: Criterion, value: SearchValue) -> ColumnElement[bool]:
        modifier = criterion.modifier
        match criterion.type:
            case "string":
                assert isinstance(value, StringValue)
                return _string_test(table, value, modifier)
            case "token":
                return _token_test(table, value, modifier)
            case "date":
                assert isinstance(value, DateValue)
                return _date_test(table.c.low, table.c.high, value)
            case "number":
                assert isinstance(value, NumberValue)
                return _number_test(table.c.value, value)
            case "quantity":
                assert isinstance(value, QuantityValue)
                return _quantity_test(table, value)
            case "uri":
                assert isinstance(value, UriValue)
                return _uri_test(table, value, modifier)
            case "reference":
                assert isinstance(value, ReferenceValue | TokenValue)
                return self._reference_test(table, criterion, value)
        raise not_supported(f"Searching by the {criterion.type} parameter '{criterion.code}' is not supported")

    def _reference_test(
        self, table: FromClause, criterion: Criterion, value: ReferenceValue | TokenValue
    ) -> ColumnElement[bool]:
        if isinstance(value, TokenValue):
            raise not_supported("Reference search by :identifier is not supported yet")
        target_type = criterion.target_type or value.type
        target_id = value.id
        if value.url is not None:
            local = self.context.local_reference(value.url)
            if local is None:
                tests = [table.c.url == value.url]
                if value.canonical_version is not None:
                    tests.append(table.c.version == value.canonical_version)
                return and_(*tests)
            target_type, target_id = local
        if target_id is None:
            target_id = value.value
        tests = [table.c.target_id == target_id]
        if target_type is not None:
            tests.append(table.c.target_type == target_type)
        if value.version is not None:
            tests.append(table.c.version == value.version)
        return and_(*tests)

    def _composite_rids(self, resource_type: str, criterion: Criterion) -> Select[Any]:
        """Every component matches within the same composite value (rows sharing rid and grp)."""
        param = self.registry.param(resource_type, criterion.code)
        assert param is not None
        alternatives = []
        for value in criterion.values:
            assert isinstance(value, CompositeValue)
            first = None
            query: Select[Any] | None = None
            for index, (component, component_value) in enumerate(zip(param.components, value.components,
                                                                     strict=True)):
                if component.type not in INDEX_TABLES:
                    raise not_supported(f"Composite component '{component.code}' cannot be searched")
                table = INDEX_TABLES[component.type].alias()
                part = Criterion(component.code, component.type, None, (component_value,))
                test = and_(
                    table.c.param == param_hash(resource_type, component_code(criterion.code, index)),
                    self._value_test(table, part, component_value),
                )
                if first is None:
                    first = table
                    query = select(table.c.rid).where(test)
                else:
                    assert query is not None
                    query = query.join(table, and_(table.c.rid == first.c.rid, table.c.grp == first.c.grp)).where(test)
            assert query is not None
            alternatives.append(query)
        if len(alternatives) == 1:
            return alternatives[0]
        union = alternatives[0].union(*alternatives[1:]).subquery()
        return select(union.c.rid)

    def _id_condition(self, criterion: Criterion, res: FromClause) -> ColumnElement[bool]:
        if criterion.modifier == "missing":
            value = criterion.values[0]
            return false() if isinstance(value, MissingValue) and value.missing else true()
        ids = [v.code for v in criterion.values if isinstance(v, TokenValue) and v.code is not None]
        condition = res.c.id.in_(ids)
        return not_(condition) if criterion.modifier == "not" else condition

    def _last_updated_condition(self, criterion: Criterion, res: FromClause) -> ColumnElement[bool]:
        tests = []
        for value in criterion.values:
            if isinstance(value, MissingValue):
                tests.append(false() if value.missing else true())
                continue
            assert isinstance(value, DateValue)
            tests.append(_date_test(res.c.last_updated, res.c.last_updated, value))
        return or_(*tests)

"""What a differentially private query may rely on without reading the data.

Transformations, in OpenDP's and Tumult Analytics' sense, that make the
sensitivity of the final aggregation a constant fixed before any row is read:

- ``value_bounds``: the range of an aggregated expression, by interval
  arithmetic over the columns' declared bounds (schema.yaml ``bounds``, or a
  small type's own range: model/datasets.Column.clamp_bounds). The engine then
  clamps the value to that range (``clamped``), so the bound holds whatever the
  data holds.
- ``declared_domain``: the values a group key can take, from the schema's
  declared ``values``, so every key of the cross product is released (with
  noise) and none is selected by the data; a key without one needs a DP
  partition selection (localroom/privacy.selection).
- ``truncated``: at most ``limit`` rows per user in the aggregation's input
  (the user contribution limit a DP table's rule declares), chosen by a hash
  of each row's own values, so which rows are kept never depends on another
  user's rows (a stable transformation).
"""

from __future__ import annotations

import itertools
import math
from typing import Iterable

from sqlglot import exp
from sqlglot.optimizer.scope import Scope

from model.datasets import domain_values
from model.validator.analysis import Analysis, projections_named

Interval = tuple[float, float]
MAX_KEYS = 100_000  # a declared cross product larger than this is selected from the data instead


def value_bounds(analysis: Analysis, node: exp.Expression, scope: Scope) -> Interval | None:
    """[low, high] that ``node`` (evaluated in ``scope``) always lies in, or None when it cannot be bounded."""
    node = node.unnest() if isinstance(node, exp.Paren) else node
    if isinstance(node, exp.Column):
        return _column_bounds(analysis, node, scope)
    if isinstance(node, exp.Literal):
        if node.is_string:
            return None
        value = float(node.this)
        return value, value
    if isinstance(node, exp.Boolean):
        return (1.0, 1.0) if node.this else (0.0, 0.0)
    if isinstance(node, exp.Null):
        return None
    if isinstance(node, (exp.Cast, exp.TryCast)):
        return value_bounds(analysis, node.this, scope)
    if isinstance(node, exp.Neg):
        inner = value_bounds(analysis, node.this, scope)
        return None if inner is None else (-inner[1], -inner[0])
    if isinstance(node, exp.Abs):
        inner = value_bounds(analysis, node.this, scope)
        if inner is None:
            return None
        low, high = inner
        return (0.0 if low <= 0 <= high else min(abs(low), abs(high))), max(abs(low), abs(high))
    if isinstance(node, (exp.Add, exp.Sub, exp.Mul, exp.Div)):
        left, right = value_bounds(analysis, node.this, scope), value_bounds(analysis, node.expression, scope)
        if left is None or right is None:
            return None
        return _arithmetic(type(node), left, right)
    if isinstance(node, (exp.Greatest, exp.Least)):
        parts = [value_bounds(analysis, e, scope) for e in [node.this, *node.expressions]]
        if any(p is None for p in parts):
            return None
        pick = max if isinstance(node, exp.Greatest) else min
        return pick(p[0] for p in parts), pick(p[1] for p in parts)
    if isinstance(node, (exp.Floor, exp.Ceil, exp.Round)):
        inner = value_bounds(analysis, node.this, scope)
        return None if inner is None else (math.floor(inner[0]), math.ceil(inner[1]))
    if isinstance(node, (exp.Case, exp.If, exp.Coalesce)):
        # A NULL branch adds nothing an aggregate counts or sums.
        return _union(value_bounds(analysis, e, scope) for e in _branches(node) if not isinstance(e, exp.Null))
    if isinstance(node, exp.Window):  # its value is its function's, whichever rows it runs over
        return value_bounds(analysis, node.this, scope)
    if isinstance(node, _ONE_OF_ITS_VALUES):
        # Each is one of its argument's values, or between two of them (AVG, MEDIAN, interpolated percentiles),
        # in a CTE per user as much as in a window: within the argument's bounds. (SUM and COUNT are not: they
        # grow with the rows, which nothing declared bounds.)
        argument = node.this.this if isinstance(node.this, exp.Distinct) else node.this
        return value_bounds(analysis, argument, scope) if isinstance(argument, exp.Expression) else None
    if isinstance(node, (exp.Lag, exp.Lead)):  # another row's value, or the default where there is none
        default = node.args.get("default")
        parts = [value_bounds(analysis, node.this, scope)]
        if default is not None and not isinstance(default, exp.Null):
            parts.append(value_bounds(analysis, default, scope))
        return None if any(p is None for p in parts) else _union(parts)
    return None


_ONE_OF_ITS_VALUES = (exp.Min, exp.Max, exp.Avg, exp.Median, exp.Quantile, exp.ApproxQuantile, exp.PercentileCont,
                      exp.PercentileDisc, exp.FirstValue, exp.LastValue, exp.NthValue, exp.AnyValue)


def _column_bounds(analysis: Analysis, column: exp.Column, scope: Scope) -> Interval | None:
    source = scope.sources.get(column.table)
    if isinstance(source, exp.Table):
        table = analysis.tables.get(source.name)
        declared = table.dataset.column(column.name) if table else None
        return declared.clamp_bounds if declared else None
    if isinstance(source, Scope):
        found = _projections(source, column.name)
        if not found or any(p is None for p in found):
            return None
        return _union(value_bounds(analysis, projection, inner) for projection, inner in found)
    return None


def declared_domain(analysis: Analysis, node: exp.Expression, scope: Scope) -> tuple | None:
    """The declared values of a group key that is a column passed through unchanged, or None."""
    node = node.unnest() if isinstance(node, exp.Paren) else node
    if not isinstance(node, exp.Column):
        return None
    source = scope.sources.get(node.table)
    if isinstance(source, exp.Table):
        table = analysis.tables.get(source.name)
        declared = table.dataset.column(node.name) if table else None
        return domain_values(declared) if declared else None
    if isinstance(source, Scope):
        pairs = _projections(source, node.name)
        found = [None if p is None else declared_domain(analysis, p[0], p[1]) for p in pairs]
        if not found or any(f is None for f in found):
            return None
        return tuple(dict.fromkeys(v for f in found for v in f))  # a set operation: every branch's values
    return None


def keyset(domains: list[tuple]) -> list[tuple] | None:
    """Every combination of the group keys' declared values, or None if there are more than MAX_KEYS."""
    if math.prod(len(d) for d in domains) > MAX_KEYS:
        return None
    return list(itertools.product(*domains))


def clamped(value: exp.Expression, bounds: Interval) -> exp.Expression:
    """``value`` as DOUBLE, clamped to ``bounds`` (NULL stays NULL; NaN becomes the upper bound, as both
    engines order NaN above every number)."""
    x = exp.cast(value.copy(), "DOUBLE")
    low, high = (exp.Literal.number(repr(float(b))) for b in bounds)
    return exp.Case(ifs=[exp.If(this=exp.LT(this=x.copy(), expression=low), true=low.copy()),
                         exp.If(this=exp.GT(this=x.copy(), expression=high), true=high.copy())],
                    default=x.copy())


def truncated(source: exp.Select, user: str, columns: list[str], limit: int) -> exp.Select:
    """At most ``limit`` rows of ``source`` per value of its column ``user``, chosen by an MD5 of each row.

    Rows with the same hash are the same row (the hash covers every column the
    aggregation reads), so which ones are kept does not matter.
    """
    text = [exp.cast(exp.column(c), "STRING") for c in columns]
    order = exp.MD5(this=exp.ConcatWs(expressions=[exp.Literal.string("\x1f"), *text]))
    window = exp.Window(this=exp.RowNumber(), partition_by=[exp.column(user)],
                        order=exp.Order(expressions=[exp.Ordered(this=order)]))
    numbered = exp.select(*[exp.column(c) for c in columns], exp.alias_(window, "__rn")).from_(
        exp.Subquery(this=source, alias=exp.TableAlias(this=exp.to_identifier("__dp_rows"))))
    return exp.select(*[exp.column(c) for c in columns]).from_(
        exp.Subquery(this=numbered, alias=exp.TableAlias(this=exp.to_identifier("__dp_numbered")))).where(
        exp.LTE(this=exp.column("__rn"), expression=exp.Literal.number(int(limit))))


# --------------------------------------------------------------------------


def _projections(scope: Scope, name: str) -> list[tuple[exp.Expression, Scope] | None]:
    """The projection feeding output column ``name`` of ``scope`` in each of its SELECTs (positional across a
    set operation's branches). An aggregate or window is bounded by value_bounds only where its value is one of
    its argument's (MIN, MAX, AVG, LAG, ...), never where it grows with the rows it covers (SUM, COUNT)."""
    return list(projections_named(scope, name))


def _branches(node: exp.Expression) -> list[exp.Expression]:
    if isinstance(node, exp.Case):
        values = [i.args.get("true") for i in node.args.get("ifs") or []]
        default = node.args.get("default")
        return [v for v in values if v is not None] + ([default] if default is not None else [])
    if isinstance(node, exp.If):
        return [v for v in (node.args.get("true"), node.args.get("false")) if v is not None]
    return [node.this, *node.expressions]


def _union(intervals: Iterable[Interval | None]) -> Interval | None:
    found = list(intervals)
    if not found or any(i is None for i in found):
        return None
    return min(i[0] for i in found), max(i[1] for i in found)


def _arithmetic(kind, left: Interval, right: Interval) -> Interval | None:
    if kind is exp.Add:
        return left[0] + right[0], left[1] + right[1]
    if kind is exp.Sub:
        return left[0] - right[1], left[1] - right[0]
    if kind is exp.Div:
        if right[0] <= 0 <= right[1]:
            return None  # a divisor that can be 0 (or near it) has no bound
        right = (1 / right[1], 1 / right[0])
    corners = [a * b for a in left for b in right]
    return min(corners), max(corners)

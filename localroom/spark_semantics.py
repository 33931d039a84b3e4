"""Spark SQL's semantics on DuckDB: a rewrite of the parsed template before sqlglot writes it for DuckDB.

Templates are Spark SQL (what AWS Clean Rooms' Spark engine runs); the local room
parses them with sqlglot (read="spark") and writes them for DuckDB. Where sqlglot
writes a DuckDB function that computes something else than Spark's,
``for_duckdb`` rewrites the tree so that DuckDB computes Spark's value and type
(as the CSV shows it). tests/test_spark_semantics.py holds each rewrite to Spark's
documented or observed value; tests/test_parity.py runs every parity template on
both engines. docs/local-clean-room.md ("The Spark engine") lists what stays
different.

Spark is 3.5 (Clean Rooms' PYSPARK_1_0 runtime) without ANSI mode
(``spark.sql.ansi.enabled`` is false by default in 3.5) and with session time zone
UTC (localroom/spark.py), so a Spark TIMESTAMP is DuckDB's naive TIMESTAMP, read as
UTC. Sources, the Spark SQL function reference
(https://spark.apache.org/docs/3.5.1/api/sql/) unless a comment names another.

The rewrite keeps what the validator and the privacy analysis look for: column
references stay where they were, every aggregate stays an aggregate of the same
class, wrapped or beside others (SKEWNESS becomes an expression of COUNT, VAR_POP
and DuckDB's SKEWNESS), and what bounds an aggregate's argument (a cast, FLOOR,
CEIL, CASE) still bounds it.
"""

from __future__ import annotations

import re

from sqlglot import exp
from sqlglot.optimizer.annotate_types import annotate_types

__all__ = ["for_duckdb", "written"]

_INTEGRAL = {exp.DataType.Type.TINYINT, exp.DataType.Type.SMALLINT, exp.DataType.Type.INT,
             exp.DataType.Type.BIGINT}
_FRACTIONAL = {exp.DataType.Type.DECIMAL, exp.DataType.Type.DOUBLE, exp.DataType.Type.FLOAT}
_TEXT = {exp.DataType.Type.VARCHAR, exp.DataType.Type.CHAR, exp.DataType.Type.TEXT}
# Spark's TIMESTAMP (= TIMESTAMP_LTZ) is an instant shown in the session time zone, UTC: DuckDB's naive TIMESTAMP.
_ZONED = {exp.DataType.Type.TIMESTAMPTZ, exp.DataType.Type.TIMESTAMPLTZ}


def for_duckdb(tree: exp.Expression, schema: dict[str, dict[str, str]] | None = None, *,
               exact_averages: bool = False) -> exp.Expression:
    """``tree`` (Spark SQL, parsed by sqlglot) rewritten in place so that DuckDB gives Spark's results.

    ``schema`` (table -> column -> Spark type, as Collaboration.schema()) types the
    columns of a qualified tree; the rewrites that depend on a type (casts to an
    integer type, FORMAT_STRING's NULL strings) leave an expression of unknown type
    as sqlglot writes it. ``exact_averages``: AVG of a decimal is Spark's decimal, computed exactly (for a query
    that reads no differentially private table: a DP AVG is a noisy DOUBLE on both engines, and its aggregate
    must stay an AVG for the privacy analysis).
    """
    types = _types(tree, schema)
    rules = {**_RULES, exp.Avg: _average} if exact_averages else _RULES
    # What the template says where a rule may rewrite, so that a message quotes the template, not the rewrite.
    said = {id(n): n.sql(dialect="spark") for n in tree.walk() if type(n) in rules}
    # Deepest first: a node's arguments are rewritten before it, and each replacement takes its node's Spark type.
    for node in reversed(list(tree.walk())):
        parent, key, index = node.parent, node.arg_key, node.index  # before a rule wraps the node in another
        rule = rules.get(type(node))
        new = rule(node, types) if rule is not None else None
        if new is not None:
            new.meta[_SAID] = said[id(node)]
        if new is not None and new is not node:
            types[id(new)] = types.get(id(node))
            if parent is None:
                tree = new
            else:
                parent.set(key, new, index)
    return tree


def written(node: exp.Expression) -> str:
    """``node`` as the template wrote it in Spark SQL, also where ``for_duckdb`` rewrote a part of it."""
    if _SAID in node.meta:
        return node.meta[_SAID]
    shown = node.copy()
    for part in list(shown.walk()):  # outermost first: a rewritten part's own parts go with it
        if _SAID in part.meta and part.parent is not None:
            part.replace(exp.Var(this=part.meta[_SAID]))
    return shown.sql(dialect="spark")


_SAID = "spark_sql"  # meta key: the Spark SQL a rewritten node stands for


def _types(tree: exp.Expression, schema) -> dict[int, exp.DataType | None]:
    """id(node) -> its Spark type, from sqlglot's annotate_types on a copy (the tree itself stays untyped)."""
    try:
        typed = annotate_types(tree.copy(), schema=schema, dialect="spark")
    except Exception:  # noqa: BLE001 (an expression annotate_types cannot type: no type-dependent rewrite)
        return {}
    originals, copies = list(tree.walk()), list(typed.walk())
    if [type(n) for n in originals] != [type(n) for n in copies]:
        return {}
    return {id(o): c.type for o, c in zip(originals, copies)}


def _kind(node: exp.Expression, types) -> exp.DataType.Type | None:
    found = node.to if isinstance(node, (exp.Cast, exp.TryCast)) else types.get(id(node))
    if found is None or found.this == exp.DataType.Type.UNKNOWN:
        return None
    return found.this


def _paren(node: exp.Expression) -> exp.Expression:
    return exp.Paren(this=node) if isinstance(node, (exp.Binary, exp.Unary, exp.Case)) else node


def _number(node: exp.Expression) -> float | None:
    """The value of a numeric literal (``-3`` too), else None."""
    if isinstance(node, exp.Neg):
        inner = _number(node.this)
        return None if inner is None else -inner
    if isinstance(node, exp.Literal) and not node.is_string:
        try:
            return float(node.this)
        except ValueError:
            return None
    return None


def _try_cast(node: exp.Expression, to: str) -> exp.Expression:
    return exp.TryCast(this=node, to=exp.DataType.build(to))


def _toward_zero(x: exp.Expression) -> exp.Expression:
    """The integral part of ``x`` (Java's truncation), written with CEIL and FLOOR, which the bounds follow."""
    return exp.Case(ifs=[exp.If(this=exp.LT(this=_paren(x), expression=exp.Literal.number(0)),
                                true=exp.Ceil(this=x.copy()))], default=exp.Floor(this=x.copy()))


# -- math ---------------------------------------------------------------------------------------------------------
def _floor_ceil(node: exp.Expression, types) -> exp.Expression | None:
    # floor(expr), ceil(expr): "Returns the largest (smallest) integer not greater (smaller) than expr": BIGINT for
    # every numeric argument but a decimal(p, s), which gives decimal(p - s + 1, 0), the same text as a BIGINT
    # (DuckDB may compute Spark's decimal as a DOUBLE: decimal / integer). DuckDB's FLOOR of a DOUBLE or an integer
    # is a DOUBLE (2.0). With a scale (FLOOR(x, d)) Spark's is a decimal, which sqlglot writes as
    # ROUND(FLOOR(x * 10^d) / 10^d, d): left as it is.
    if node.args.get("decimals") is not None:
        return None
    return _try_cast(node, "BIGINT")


def _sign(node: exp.Sign, types) -> exp.Expression:
    # sign(expr), signum(expr): "Returns -1.0, 0.0 or 1.0" (DOUBLE); DuckDB's SIGN is a TINYINT.
    return _try_cast(node, "DOUBLE")


def _int_div(node: exp.IntDiv, types) -> exp.Expression:
    # expr1 div expr2: "Divide expr1 by expr2. It returns NULL if an operand is NULL or expr2 is 0. The result is
    # casted to long." Spark 3.5's IntegralDivide truncates toward zero (Java's long division; a decimal quotient's
    # integral part). DuckDB's // truncates integers, divides a decimal exactly (a DOUBLE) and fails on 0.
    divisor = node.expression
    if _number(divisor) in (None, 0.0):
        divisor = exp.Nullif(this=divisor, expression=exp.Literal.number(0))
    quotient = exp.IntDiv(this=_paren(node.this), expression=_paren(divisor))
    return _try_cast(exp.Trunc(this=quotient), "BIGINT")


def _skewness(node: exp.Skewness, types) -> exp.Expression | None:
    # Spark's Skewness (sql/catalyst/.../aggregate/CentralMomentAgg.scala) is the population skewness
    # sqrt(n) * m3 / m2^1.5: NULL for no rows, and NULL when m2 == 0 (one row, or all equal; NaN only with
    # spark.sql.legacy.statisticalAggregate). DuckDB's SKEWNESS is the sample skewness, the population one times
    # sqrt(n (n - 1)) / (n - 2), NULL for n <= 2 (where Spark's is 0.0: two values' third central moment is 0).
    wrapper = node
    while isinstance(wrapper.parent, (exp.Window, exp.Filter)) and wrapper.parent.this is wrapper:
        wrapper = wrapper.parent
    argument = node.this

    def call(cls) -> exp.Expression:
        aggregate = cls(this=argument.copy())
        if wrapper is node:
            return aggregate
        outer = wrapper.copy()  # the same FILTER and OVER around each aggregate
        inner = outer
        while inner.this.__class__ is not exp.Skewness:
            inner = inner.this
        inner.set("this", aggregate)
        return outer

    n = call(exp.Count)
    factor = exp.Div(this=_paren(exp.Sub(this=n.copy(), expression=exp.Literal.number(2))),
                     expression=exp.Sqrt(this=exp.Mul(this=_try_cast(n.copy(), "DOUBLE"), expression=_paren(
                         exp.Sub(this=n.copy(), expression=exp.Literal.number(1))))))
    formula = exp.Case(ifs=[
        exp.If(this=exp.EQ(this=call(exp.VariancePop), expression=exp.Literal.number(0)), true=exp.Null()),
        exp.If(this=exp.EQ(this=n.copy(), expression=exp.Literal.number(2)),
               true=exp.Literal.number("0.0"))],
        default=exp.Mul(this=call(exp.Skewness), expression=_paren(factor)))
    if wrapper is not node:
        wrapper.replace(formula)  # the wrapper is an ancestor: replaced here, the node itself detached
        return None
    return formula


def _percentile(node: exp.Quantile, types) -> exp.Expression | None:
    # percentile(col, percentage [, frequency]): "Returns the exact percentile value of numeric column col at the
    # given percentage" (or an array of them), interpolating between the two nearest values, as a DOUBLE.
    # sqlglot writes DuckDB's QUANTILE, which is discrete; QUANTILE_CONT interpolates, and of a DOUBLE is a DOUBLE
    # (of a decimal it is a decimal of the argument's scale). APPROX_PERCENTILE (ApproxQuantile, a subclass) is
    # left as is: the rules are looked up by a node's exact type.
    return exp.PercentileCont(this=_try_cast(node.this, "DOUBLE"), expression=node.args["quantile"])


# -- strings ------------------------------------------------------------------------------------------------------
def _substring(node: exp.Substring, types) -> exp.Expression:
    # substr(str, pos[, len]): "The position is 1 based. If pos is 0, it refers to the first character" (Spark's
    # UTF8String.substringSQL: start = pos > 0 ? pos - 1 : pos < 0 ? length + pos : 0, end = start + len, nothing
    # when end <= start). DuckDB's position 0 is before the first character (n - 1 characters), and its negative
    # length counts backwards; negative positions agree.
    start, length = node.args.get("start"), node.args.get("length")
    position = _number(start) if start is not None else None
    if start is not None and position is None:
        start = exp.Case(ifs=[exp.If(this=exp.EQ(this=_paren(start.copy()), expression=exp.Literal.number(0)),
                                     true=exp.Literal.number(1))], default=start)
    elif position == 0:
        start = exp.Literal.number(1)
    count = _number(length) if length is not None else None
    if length is not None and (count is None or count < 0):
        length = exp.Greatest(this=length, expressions=[exp.Literal.number(0)])
    node.set("start", start)
    node.set("length", length)
    return node


def _java_replacement(text: str) -> str | None:
    """A java.util.regex replacement (Matcher.appendReplacement: $n a group, \\c the character c) in RE2's
    syntax (\\n a group, \\\\ a backslash); None for what RE2 has no syntax for (${name}, group 10 and above)."""
    out, k = [], 0
    while k < len(text):
        c = text[k]
        if c == "\\" and k + 1 < len(text):
            out.append("\\\\" if text[k + 1] == "\\" else text[k + 1])
            k += 2
        elif c == "$":
            digits = re.match(r"\d+", text[k + 1:])
            if digits is None or len(digits.group()) > 1:
                return None
            out.append("\\" + digits.group())
            k += 1 + len(digits.group())
        elif c == "\\":
            return None  # a trailing backslash: Java refuses it
        else:
            out.append(c)
            k += 1
    return "".join(out)


def _regexp_replace(node: exp.RegexpReplace, types) -> exp.Expression:
    # regexp_replace(str, regexp, rep[, position]): "Replaces all substrings of str that match regexp with rep";
    # rep is Java's (java.util.regex.Matcher#appendReplacement: "$g" a group, "\" quotes the next character).
    # DuckDB's is RE2's ("\1"); sqlglot already passes 'g' (all matches). A replacement that is not a literal
    # is left as it is.
    replacement = node.args.get("replacement")
    if isinstance(replacement, exp.Literal) and replacement.is_string:
        converted = _java_replacement(replacement.this)
        if converted is not None:
            node.set("replacement", exp.Literal.string(converted))
    return node


def _format_string(node: exp.Format, types) -> exp.Expression:
    # format_string(strfmt, obj, ...), printf: "Returns a formatted string from printf-style format strings"
    # (java.util.Formatter). sqlglot writes DuckDB's FORMAT, which is fmt's {} syntax; DuckDB's PRINTF is printf's.
    # Java prints a NULL argument as "null" (java.util.Formatter: "If the argument arg is null, then the result is
    # 'null'"), where DuckDB's PRINTF is NULL: a string argument (or a NULL literal) becomes COALESCE(arg, 'null').
    # A NULL number stays a difference (its 'null' would not fit a %d).
    arguments = [exp.Coalesce(this=a, expressions=[exp.Literal.string("null")])
                 if isinstance(a, exp.Null) or (_kind(a, types) in _TEXT and not a.is_string) else a
                 for a in node.expressions]
    return exp.Anonymous(this="PRINTF", expressions=[node.this, *arguments])


def _anonymous(node: exp.Anonymous, types) -> exp.Expression | None:
    name = node.name.upper()
    args = node.expressions
    if name == "BTRIM" and len(args) in (1, 2):
        # btrim(str[, trimStr]): "Removes the leading and trailing space characters (trimStr characters) from str".
        # DuckDB has no BTRIM; its TRIM(str[, characters]) is the same.
        return exp.Trim(this=args[0], expression=args[1] if len(args) == 2 else None)
    if name == "WEEKDAY" and len(args) == 1:
        # weekday(date): "Returns the day of the week for date/timestamp (0 = Monday, 1 = Tuesday, ..., 6 = Sunday)".
        # DuckDB's WEEKDAY is its DAYOFWEEK (0 = Sunday); its ISODOW is 1 = Monday ... 7 = Sunday.
        return _paren(exp.Sub(this=exp.DayOfWeekIso(this=exp.cast(args[0], "DATE")), expression=exp.Literal.number(1)))
    if name in ("DATE_PART", "DATEPART") and len(args) == 2 and isinstance(args[0], exp.Literal):
        part = _day_of_week(args[0].name, args[1])
        if part is not None:
            return part
    return None


def _regexp_substr(node: exp.RegexpSubstr, types) -> exp.Expression | None:
    # regexp_substr(str, regexp): "Returns the substring that matches the regular expression regexp within the
    # string str. If the regular expression is not found, the result is null" (Spark 3.5's RegExpSubStr is
    # NULLIF(regexp_extract(str, regexp, 0), '')). DuckDB has no REGEXP_SUBSTR; its REGEXP_EXTRACT(s, p) is group 0,
    # '' when nothing matches.
    if any(node.args.get(k) is not None for k in ("position", "occurrence", "parameters", "group")):
        return None
    return exp.Nullif(this=exp.RegexpExtract(this=node.this, expression=node.expression),
                      expression=exp.Literal.string(""))


# -- dates and times ----------------------------------------------------------------------------------------------
def _day_of_week(unit: str, value: exp.Expression) -> exp.Expression | None:
    # extract(field FROM source), date_part: "DAYOFWEEK", "DOW" - the day of the week for datetime as Sunday(1) to
    # Saturday(7); "DAYOFWEEK_ISO", "DOW_ISO" - ISO 8601 based day of the week for datetime as Monday(1) to
    # Sunday(7). DuckDB's dow is Sunday(0) to Saturday(6), its isodow Spark's DOW_ISO.
    unit = unit.upper()
    if unit in ("DAYOFWEEK", "DOW"):
        return _paren(exp.Add(this=exp.Extract(this=exp.var("DOW"), expression=value),
                              expression=exp.Literal.number(1)))
    if unit in ("DAYOFWEEK_ISO", "DOW_ISO"):
        return exp.Extract(this=exp.var("ISODOW"), expression=value)
    return None


def _extract(node: exp.Extract, types) -> exp.Expression | None:
    unit = node.this
    return _day_of_week(unit.name, node.expression) if isinstance(unit, (exp.Var, exp.Literal)) else None


def _dayofweek(node: exp.DayOfWeek, types) -> exp.Expression:
    # dayofweek(date): "Returns the day of the week for date/timestamp (1 = Sunday, 2 = Monday, ..., 7 = Saturday)".
    return _paren(exp.Add(this=node, expression=exp.Literal.number(1)))


def _data_type(node: exp.DataType, types) -> exp.Expression | None:
    # A Spark TIMESTAMP (sqlglot: TIMESTAMPTZ) is UTC here (session time zone UTC): DuckDB's naive TIMESTAMP, which
    # the CSV shows without an offset as Spark's (TIMESTAMPTZ is shown in DuckDB's time zone, with its offset).
    if node.this in _ZONED:
        return exp.DataType.build("TIMESTAMP")
    return None


def _from_utc(node: exp.AtTimeZone, types) -> exp.Expression:
    # from_utc_timestamp(timestamp, timezone): "Given a timestamp like '2017-07-14 02:40:00.0', interprets it as a
    # time in UTC, and renders that time as a timestamp in the given time zone". sqlglot parses it as AT TIME ZONE,
    # which DuckDB reads the other way (the timestamp as the zone's time, an instant); Spark SQL has no AT TIME
    # ZONE, so every one in the tree is a FROM_UTC_TIMESTAMP: CONVERT_TIMEZONE('UTC', zone, t), which DuckDB
    # gets right (t AT TIME ZONE 'UTC' AT TIME ZONE zone: the zone's wall time).
    return exp.ConvertTimezone(source_tz=exp.Literal.string("UTC"), target_tz=node.args["zone"], timestamp=node.this)


# -- casts --------------------------------------------------------------------------------------------------------
def _cast(node: exp.Cast, types) -> exp.Expression | None:
    # Spark 3.5 without ANSI mode (Data_type_formatting; sql-ref-ansi-compliance: "the cast ... truncates the
    # fractional part"): a DOUBLE or decimal cast to an integer type keeps its integral part (2.7 -> 2, -2.7 -> -2);
    # a string is read as a number whose fractional digits are dropped (UTF8String.toInt: '2.5' -> 2, '-2.7' -> -2,
    # spaces around it allowed). DuckDB rounds both (2.5 -> 3; a DOUBLE half to even).
    if node.to.this not in _INTEGRAL:
        return None
    source = _kind(node.this, types)
    if source in _FRACTIONAL:
        node.set("this", _toward_zero(node.this))
    elif source in _TEXT:
        digits = exp.RegexpExtract(this=exp.Trim(this=node.this),
                                   expression=exp.Literal.string(r"^([+-]?[0-9]+)(\.[0-9]*)?$"),
                                   group=exp.Literal.number(1))
        node.set("this", digits)
    return node


def _average(node: exp.Avg, types) -> exp.Expression | None:
    # avg(expr) of a decimal(p, s) is a decimal(p + 4, s + 4) (each bounded at 38: Spark 3.5's Average,
    # DecimalType.bounded), the exact quotient of its sum and count rounded half up (Decimal's ROUND_HALF_UP);
    # DuckDB's AVG of a decimal is a DOUBLE. Here: the sum in units of 10^-s as a HUGEINT (exact), times 10^4,
    # divided by the count rounded half up in integers, written as the decimal it is. Not inside OVER or FILTER
    # (left as sqlglot writes them), nor of any other type.
    if isinstance(node.parent, (exp.Window, exp.Filter)):
        return None
    distinct = isinstance(node.this, exp.Distinct)
    value = node.this.expressions[0] if distinct else node.this
    kind = types.get(id(value))
    if kind is None or kind.this != exp.DataType.Type.DECIMAL or len(kind.expressions) != 2:
        return None
    precision, scale = (int(p.this.name) for p in kind.expressions)
    precision, scale = min(precision + 4, 38), min(scale + 4, 38)
    units = exp.Cast(this=exp.Mul(this=_paren(value.copy()), expression=exp.Literal.number(10 ** (scale - 4))),
                     to=exp.DataType.build("HUGEINT"))

    def aggregate(cls, of: exp.Expression) -> exp.Expression:
        return cls(this=exp.Distinct(expressions=[of]) if distinct else of)

    # Cast again after each aggregate: the plan may compute them in parts (a SUM of per-part sums reads back as a
    # DECIMAL(38,0), which // would divide exactly).
    total = exp.Mul(this=exp.Cast(this=aggregate(exp.Sum, units), to=exp.DataType.build("HUGEINT")),
                    expression=exp.Literal.number(10_000))
    count = exp.Nullif(this=exp.Cast(this=aggregate(exp.Count, value.copy()), to=exp.DataType.build("BIGINT")),
                       expression=exp.Literal.number(0))
    twice = exp.Add(this=exp.Mul(this=exp.Abs(this=total.copy()), expression=exp.Literal.number(2)),
                    expression=count.copy())
    rounded = exp.IntDiv(this=exp.Paren(this=twice),
                         expression=exp.Paren(this=exp.Mul(this=exp.Literal.number(2), expression=count.copy())))
    digits = exp.Cast(this=rounded, to=exp.DataType.build("VARCHAR"))
    sign = exp.Case(ifs=[exp.If(this=exp.LT(this=total.copy(), expression=exp.Literal.number(0)),
                                true=exp.Literal.string("-"))], default=exp.Literal.string(""))
    # || is NULL for no rows (the count's NULLIF), as AVG is; LPAD keeps an integral digit before the point (to a
    # width no shorter than the digits: DuckDB's LPAD cuts a longer string).
    longest = exp.Greatest(this=exp.Length(this=digits.copy()), expressions=[exp.Literal.number(scale + 1)])
    width = exp.Cast(this=longest, to=exp.DataType.build("INT"))
    text = exp.DPipe(this=sign, expression=exp.Anonymous(this="LPAD", expressions=[
        digits, width, exp.Literal.string("0")]), safe=False)
    with_point = exp.Anonymous(this="REGEXP_REPLACE", expressions=[
        text, exp.Literal.string(f"([0-9]{{{scale}}})$"), exp.Literal.string(r".\1")])
    return exp.Cast(this=with_point, to=exp.DataType.build(f"DECIMAL({precision}, {scale})"))


# trunc(date, fmt): "Returns date with the time portion of the day truncated to the unit specified by the format
# model fmt. fmt - 'YEAR', 'YYYY', 'YY', 'QUARTER', 'MONTH', 'MM', 'MON', 'WEEK'" (the Monday), a DATE; another
# format gives NULL (Spark 3.5.9, observed). sqlglot parses it as DateTrunc and writes DuckDB's DATE_TRUNC with
# the format as it is ('MM' there is an error) and a TIMESTAMP result.
_TRUNC_UNITS = {"YEAR": "year", "YYYY": "year", "YY": "year", "QUARTER": "quarter", "MONTH": "month",
                "MM": "month", "MON": "month", "WEEK": "week"}


def _trunc(node: exp.DateTrunc, types) -> exp.Expression | None:
    unit = node.args.get("unit")
    if not (isinstance(unit, exp.Literal) and unit.is_string):
        return None
    date = exp.DataType.build("DATE")
    part = _TRUNC_UNITS.get(unit.this.upper())
    if part is None:
        return exp.Cast(this=exp.Null(), to=date)
    day = exp.TryCast(this=node.this, to=date.copy())
    return exp.Cast(this=exp.Anonymous(this="DATE_TRUNC", expressions=[exp.Literal.string(part), day]), to=date)


_RULES = {
    exp.Floor: _floor_ceil, exp.Ceil: _floor_ceil, exp.Sign: _sign, exp.IntDiv: _int_div,
    exp.Skewness: _skewness, exp.Quantile: _percentile,
    exp.Substring: _substring, exp.RegexpReplace: _regexp_replace, exp.Format: _format_string,
    exp.Anonymous: _anonymous, exp.RegexpSubstr: _regexp_substr,
    exp.Extract: _extract, exp.DayOfWeek: _dayofweek, exp.DataType: _data_type, exp.AtTimeZone: _from_utc,
    exp.Cast: _cast, exp.TryCast: _cast, exp.DateTrunc: _trunc,
}

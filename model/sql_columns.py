"""Read the output columns of an analysis template's SQL.

The dashboard's dataset must declare exactly the columns the template returns,
in the order the template returns them (Clean Rooms writes CSV results with the
columns in select-list order, and an S3 dataset's input columns are positional).
This module derives that list from the SQL text itself, so a change to the
template that renames, adds, drops or reorders a column fails at preview time
instead of producing a dashboard bound to columns that no longer exist.

Template files (data/queries/*.sql) start with a header of ``-- key: value``
comment lines and use ``:name`` placeholders for analysis parameters (see
notes/CONTRACTS.md). sqlglot parses ``:name`` as ``exp.Placeholder`` natively;
if some construct still refuses to parse with a placeholder in it, the
placeholders are replaced by ``NULL`` and the parse is retried (the select
list's names do not depend on parameter values).
"""

from __future__ import annotations

import re
from typing import Optional

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

__all__ = ["SqlColumnsError", "parse_template", "select_columns", "strip_comment_lines"]


class SqlColumnsError(ValueError):
    """The SQL text has no usable, uniquely named select list."""


# A whole line that is only a `--` comment (the template header, and any
# explanatory comment lines in the body). Inline trailing comments are left to
# sqlglot, which ignores them.
_COMMENT_LINE = re.compile(r"^\s*--.*$", re.MULTILINE)

# `:name` parameter placeholders, but not the `::` cast operator
# (`a::int`) and not the second colon of one.
_PLACEHOLDER = re.compile(r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)\b(?!:)")


def strip_comment_lines(sql_text: str) -> str:
    """Remove full-line ``--`` comments (the template header among them)."""
    return _COMMENT_LINE.sub("", sql_text).strip()


def _parse(sql: str, dialect: Optional[str]) -> list[Optional[exp.Expression]]:
    try:
        return sqlglot.parse(sql, read=dialect)
    except ParseError:
        # Retry with parameters replaced by a neutral literal.
        return sqlglot.parse(_PLACEHOLDER.sub("NULL", sql), read=dialect)


# Hints AWS Clean Rooms Spark SQL documents (sql-commands-hints-spark: join hints and partitioning hints).
HINTS = ("BROADCAST", "BROADCASTJOIN", "MAPJOIN", "MERGE", "SHUFFLE_MERGE", "MERGEJOIN", "SHUFFLE_HASH",
         "SHUFFLE_REPLICATE_NL", "COALESCE", "REPARTITION", "REPARTITION_BY_RANGE", "REBALANCE")


def parse_template(sql: str, dialect: str = "spark") -> exp.Expression:
    """A template's SQL as one query, as every reader of it (validator, local room, budget) sees it.

    Two constructs of Clean Rooms Spark SQL are not part of the query's result and are taken out here:
    - ``CACHE TABLE name AS query;`` statements before the query (sql-commands-cache-table: "the cached
      data persists for the entire query") become CTEs of the query, in their order; each such CTE has
      ``meta["cache_table"]`` set, since the disallowed output columns constraint applies to it
      (the same page);
    - hints (``SELECT /*+ BROADCAST(t) */``, sql-commands-hints-spark: "optimization suggestions, not
      commands") change no row; they are removed, their names and lines kept in ``meta["hints"]``.
    Raises ParseError (with a line) for a statement that is neither, or for more than one query.
    """
    statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    if not statements:
        raise ParseError("no query", errors=[{"description": "the template holds no query", "line": None}])
    *cached, query = statements
    for statement in cached:
        if not isinstance(statement, exp.Cache) or statement.args.get("expression") is None:
            kind = "a second query" if isinstance(statement, exp.Query) else type(statement).__name__.upper()
            raise ParseError(kind, errors=[{"description": f"{kind} before the query: only 'CACHE TABLE name AS "
                                                           "query;' statements may precede it "
                                                           "(sql-commands-topic-spark)",
                                            "line": _line(statement)}])
    if not isinstance(query, exp.Query):
        raise ParseError("no query", errors=[{"description": f"the last statement is {type(query).__name__.upper()},"
                                                             " not a query", "line": _line(query)}])
    if cached:
        ctes = []
        for statement in cached:
            cte = exp.CTE(this=statement.args["expression"], alias=exp.TableAlias(this=statement.this.this.copy()))
            cte.meta["cache_table"] = True
            ctes.append(cte)
        existing = query.args.get("with_")
        query.set("with_", exp.With(expressions=[*ctes, *(existing.expressions if existing else [])],
                                    recursive=existing.args.get("recursive") if existing else None))
        for cte in ctes:  # set() copies nothing: mark again in case the node was rebuilt
            cte.meta["cache_table"] = True
    hints = []
    for hint in list(query.find_all(exp.Hint)):
        select = hint.parent
        hint.pop()  # before reading a line: sqlglot numbers a hint's own tokens from the comment's start
        for item in hint.expressions:
            name = item.name if isinstance(item, (exp.JoinHint, exp.Anonymous)) else item.sql(dialect=dialect)
            hints.append((str(name).upper(), _line(select)))
    query.meta["hints"] = hints
    return query


def _line(node: exp.Expression) -> Optional[int]:
    for candidate in (node, *node.find_all(exp.Identifier)):
        if candidate.meta and candidate.meta.get("line") is not None:
            return int(candidate.meta["line"])
    return None


def select_columns(sql_text: str, dialect: Optional[str] = None) -> list[str]:
    """Return the output column names of the outermost SELECT of ``sql_text``.

    - ``r.age_group`` yields ``age_group``; ``COUNT(...) AS n`` yields ``n``;
      any other expression must have an alias.
    - For ``WITH ... SELECT`` the main SELECT is used, not the CTEs.
    - For ``UNION``/``INTERSECT``/``EXCEPT`` the left-most SELECT names the
      columns (standard SQL semantics).

    Raises SqlColumnsError when the text is empty, holds more than one
    statement, is not a query, selects ``*`` (the names would depend on the
    tables), has an expression without an alias, or repeats a name.
    """
    sql = strip_comment_lines(sql_text)
    if not sql:
        raise SqlColumnsError("the SQL text is empty (only comments?)")
    try:
        statements = [s for s in _parse(sql, dialect) if s is not None]
    except ParseError as err:
        detail = err.errors[0] if err.errors else {}  # not str(err): it carries ANSI underline codes
        line = f" (line {detail['line']})" if detail.get("line") else ""
        raise SqlColumnsError(f"cannot parse the SQL{line}: {detail.get('description') or 'syntax error'}") from None
    if len(statements) != 1:
        raise SqlColumnsError(
            f"expected exactly one SQL statement, found {len(statements)}"
        )
    query = statements[0]
    if not isinstance(query, exp.Query):
        raise SqlColumnsError(
            f"expected a SELECT query, found {type(query).__name__.upper()}"
        )

    # Set operations: the left-most branch names the result columns.
    while isinstance(query, exp.SetOperation):
        query = query.this
    if isinstance(query, exp.Subquery):  # ( SELECT ... ) at the top level
        query = query.unnest()
    if not isinstance(query, exp.Select):
        raise SqlColumnsError(
            f"cannot read a select list from {type(query).__name__}"
        )

    names: list[str] = []
    for position, projection in enumerate(query.expressions, start=1):
        if isinstance(projection, exp.Star) or (
            isinstance(projection, exp.Column) and projection.is_star
        ):
            raise SqlColumnsError(
                f"select list item {position} is '*': list the output columns "
                "explicitly so their names are known without the tables"
            )
        # Only a plain column reference or an explicit alias has a name every
        # engine agrees on; `COUNT(*)`, `a + 1`, `CAST(x AS INT)`, `1` are named
        # differently by Spark and Clean Rooms SQL, so demand an alias for them.
        if isinstance(projection, exp.Alias):
            name = projection.alias
        elif isinstance(projection, exp.Column):
            name = projection.name
        else:
            name = ""
        if not name:
            raise SqlColumnsError(
                f"select list item {position} ({projection.sql()}) has no name: "
                "give it an alias with AS"
            )
        names.append(name)

    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SqlColumnsError(f"duplicate output column names: {duplicates}")
    return names

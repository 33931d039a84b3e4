"""One parse of a template, shared by every rule family.

The SQL is parsed as Spark SQL (the engine of new collaborations), its columns
qualified against the collaboration's table schemas (which also finds unknown
and ambiguous columns), and split into sqlglot scopes: the final SELECT, CTEs,
derived tables (subqueries in FROM/JOIN) and other subqueries. ``lineage``
follows an output expression back through CTEs and derived tables to the base
table columns it is computed from, which is how Clean Rooms judges "any
reference to a disallowed column through transformation, aliasing, or other
means" (User Guide, disallowed-output-columns).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from sqlglot import exp
from sqlglot.errors import OptimizeError, ParseError
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, build_scope

from model.collaboration import Collaboration, Table
from model.sql_columns import parse_template
from model.templates import QueryTemplate

DIALECT = "spark"


@dataclass(frozen=True)
class BaseColumn:
    """A column of a configured table, by the table's alias in the collaboration."""

    table: str
    column: str


@dataclass
class Analysis:
    template: QueryTemplate
    collab: Collaboration
    tree: exp.Expression
    root: Scope
    # Base tables the SQL reads, by association name.
    tables: dict[str, Table] = field(default_factory=dict)

    # -- scopes -------------------------------------------------------------
    def scopes(self) -> Iterator[Scope]:
        return self.root.traverse()

    def final_selects(self) -> list[exp.Select]:
        """The SELECTs whose projections are the query's output (several under a set operation)."""
        return [select for select, _ in _selects_of(self.root)]

    # -- where data comes from ----------------------------------------------
    def base_tables(self, scope: Scope) -> set[str]:
        """Association names of every table ``scope`` reads, directly or through CTEs and subqueries."""
        found: set[str] = set()
        for _, source in scope.selected_sources.values():
            if isinstance(source, exp.Table):
                if source.name in self.tables:
                    found.add(source.name)
            elif isinstance(source, Scope):
                found |= self.base_tables(source)
        for child in (*scope.subquery_scopes, *scope.set_operation_scopes):
            found |= self.base_tables(child)
        return found

    def lineage(self, node: exp.Expression, scope: Scope, window_keys: bool = True) -> set[BaseColumn]:
        """Base columns ``node`` (evaluated in ``scope``) is computed from.

        A window's PARTITION BY and ORDER BY choose which rows its value is computed over; the value is
        computed from its arguments. Columns that only partition or order a window count where the window
        is written in ``node`` itself (``window_keys``: whoever reads ``node`` sees them written), not in
        the CTEs and subqueries it reads: ``LAG(sessions) OVER (PARTITION BY customer_key ...)`` in a CTE
        is computed from sessions. dp-sql-capabilities requires exactly that partitioning in a CTE over a
        differentially private table, whose value the final SELECT then aggregates.
        """
        found: set[BaseColumn] = set()
        for column in _columns_in(node, window_keys):
            source = scope.sources.get(column.table)
            if isinstance(source, exp.Table):
                found.add(BaseColumn(source.name, column.name))
            elif isinstance(source, Scope):
                for projection, inner in projections_named(source, column.name):
                    found |= self.lineage(projection, inner, window_keys=False)
        return found

    def table_of(self, column: BaseColumn) -> Table:
        return self.tables[column.table]


def parse(template: QueryTemplate) -> exp.Expression:
    """Parse the whole file (header comments included, so line numbers are the file's)."""
    return parse_template(template.sql, DIALECT)  # CACHE TABLE statements become CTEs; hints are set aside


def qualified(tree: exp.Expression, schema: dict[str, dict[str, str]]) -> exp.Expression:
    """Columns qualified with their table; raises OptimizeError for unknown or ambiguous columns."""
    return qualify(tree, schema=schema, dialect=DIALECT, validate_qualify_columns=True,
                   quote_identifiers=False, identify=False)


def line_of(node: exp.Expression | None) -> int | None:
    """The file line of a node: its own position, its first identifier's, or its first literal's (LIMIT 5)."""
    if node is None:
        return None
    for candidate in (node, *node.find_all(exp.Identifier), *node.find_all(exp.Literal)):
        line = candidate.meta.get("line") if candidate.meta else None
        if line is None and isinstance(candidate, exp.Column):
            line = candidate.this.meta.get("line") if isinstance(candidate.this, exp.Expression) else None
        if line is not None:
            return int(line)
    parent = node.parent
    while parent is not None:
        for ident in parent.find_all(exp.Identifier):
            if ident.meta.get("line") is not None:
                return int(ident.meta["line"])
        parent = parent.parent
    return None


def parse_error_line(error: ParseError) -> int | None:
    details = error.errors[0] if error.errors else {}
    return details.get("line")


def optimize_error_column(error: OptimizeError) -> str | None:
    """The column name an OptimizeError complains about, when it names one."""
    text = str(error)
    for marker in ("Column '", "Unknown column: "):
        if marker in text:
            rest = text.split(marker, 1)[1]
            return rest.split("'", 1)[0] if marker.endswith("'") else rest.split()[0].strip(".,")
    return None


def build(template: QueryTemplate, collab: Collaboration, tree: exp.Expression) -> Analysis:
    root = build_scope(tree)
    analysis = Analysis(template=template, collab=collab, tree=tree, root=root)
    names = {t.name for t in tree.find_all(exp.Table)}
    analysis.tables = {name: collab.tables[name] for name in names if name in collab.tables}
    return analysis


# --------------------------------------------------------------------------
# sqlglot helpers


def _selects_of(scope: Scope) -> list[tuple[exp.Select, Scope]]:
    """Each SELECT of ``scope`` with its own scope: the scope's, or every branch of a set operation."""
    if scope.set_operation_scopes:
        return [pair for child in scope.set_operation_scopes for pair in _selects_of(child)]
    return [(scope.expression, scope)] if isinstance(scope.expression, exp.Select) else []


def projections_named(scope: Scope, name: str) -> list[tuple[exp.Expression, Scope]]:
    """The expression behind output column ``name`` of ``scope``, in each of its SELECTs, with that SELECT's scope.

    A set operation's columns are positional: the first branch names them, and
    every branch's projection at that position feeds the column.
    """
    selects = _selects_of(scope)
    if not selects:
        return []
    names = [p.alias_or_name for p in selects[0][0].expressions]
    if name not in names:
        return []
    position = names.index(name)
    return [(_unaliased(select.expressions[position]), inner) for select, inner in selects
            if position < len(select.expressions)]


def _unaliased(node: exp.Expression) -> exp.Expression:
    return node.this if isinstance(node, exp.Alias) else node


def _columns_in(node: exp.Expression, window_keys: bool = True) -> Iterator[exp.Column]:
    """Columns of ``node`` itself, not of subqueries inside it (they are scopes of their own); without
    ``window_keys``, not those that only partition or order a window either."""
    keys = set()
    if not window_keys:
        for window in outside_subqueries(node):
            if isinstance(window, exp.Window):
                for clause in (*(window.args.get("partition_by") or []), window.args.get("order"),
                               window.args.get("spec")):
                    if isinstance(clause, exp.Expression):
                        keys |= {id(c) for c in clause.find_all(exp.Column)}
    return (n for n in outside_subqueries(node) if isinstance(n, exp.Column) and id(n) not in keys)


def function_name(node: exp.Expression) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).upper()
    if isinstance(node, exp.Func):
        return node.sql_name().upper()
    return type(node).__name__.upper()


def outside_subqueries(node: exp.Expression) -> Iterator[exp.Expression]:
    """Every node of ``node`` without descending into nested queries."""
    yield node
    for child in node.iter_expressions():
        if isinstance(child, (exp.Subquery, exp.Select, exp.SetOperation)):
            continue
        yield from outside_subqueries(child)


def aggregates_in(node: exp.Expression) -> list[exp.AggFunc]:
    """Aggregate calls of one scope's expression (window functions' inner calls excluded)."""
    return [n for n in outside_subqueries(node)
            if isinstance(n, exp.AggFunc) and not isinstance(n.parent, exp.Window)]


def windows_in(node: exp.Expression) -> list[exp.Window]:
    return [n for n in outside_subqueries(node) if isinstance(n, exp.Window)]

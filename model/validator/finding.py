"""What a rule family reports: a refusal, or a warning where AWS documents nothing either way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from sqlglot import exp

from model.collaboration import Table
from model.validator.analysis import line_of


@dataclass(frozen=True)
class Finding:
    rule: str
    message: str
    line: int | None = None
    table: str | None = None
    owner: str | None = None
    warning: bool = False


def finding(rule: str, message: str, node: exp.Expression | None = None,
            table: Table | Sequence[Table] | None = None, warning: bool = False) -> Finding:
    """``table``: the table whose rule refuses, or every table whose rule does (each one's owner named)."""
    tables = list(table) if isinstance(table, Sequence) else [table] if table is not None else []
    if len(tables) > 1:
        named = ", ".join(f"{t.alias} of {t.owner.name}" for t in tables)
        return Finding(rule=rule, message=message, line=line_of(node), table=named, warning=warning)
    one = tables[0] if tables else None
    return Finding(rule=rule, message=message, line=line_of(node), table=one.alias if one else None,
                   owner=one.owner.name if one else None, warning=warning)

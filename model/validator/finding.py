"""What a rule family reports: a refusal, or a warning where AWS documents nothing either way."""

from __future__ import annotations

from dataclasses import dataclass

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


def finding(rule: str, message: str, node: exp.Expression | None = None, table: Table | None = None,
            warning: bool = False) -> Finding:
    return Finding(rule=rule, message=message, line=line_of(node), table=table.alias if table else None,
                   owner=table.owner.name if table else None, warning=warning)

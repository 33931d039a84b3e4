"""Plain-text tables, the same for the cloud path and the local clean room."""
from __future__ import annotations

from decimal import Decimal, InvalidOperation


def _numeric(value: str) -> bool:
    try:
        Decimal(value)
        return True
    except (InvalidOperation, ValueError):
        return False


def format_table(header: list[str], rows: list[list[str]], max_rows: int = 50) -> str:
    """Plain-text table; numeric columns right-aligned, long results truncated."""
    shown = rows[:max_rows]
    width = len(header)
    cells = [[str(c) for c in header]] + [[str(c) for c in r] + [""] * (width - len(r)) for r in shown]
    widths = [max(len(row[i]) for row in cells) for i in range(width)]
    numeric = [all(_numeric(r[i]) for r in cells[1:] if r[i] != "") and len(cells) > 1 for i in range(width)]

    def line(row):
        return " | ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(row, widths, numeric)).rstrip()

    out = [line(cells[0]), "-+-".join("-" * w for w in widths)]
    out += [line(r) for r in cells[1:]]
    if len(rows) > max_rows:
        out.append(f"... {len(rows) - max_rows} more rows (see the saved file)")
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(out)

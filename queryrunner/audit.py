"""The compliance report: every protected query and job of a membership in a window of time.

For each one: when, who started it, which template with which parameters, its
status, where its results went (and in which region), the differential-privacy
aggregations it was charged and the access budgets it used; then totals per
template and per member, as CSV and (``--html``) as one self-contained page with
a chart of budget use over time.

Sources, in AWS: ListProtectedQueries / GetProtectedQuery and ListProtectedJobs /
GetProtectedJob of the membership (the service's own record of what ran), and
CloudTrail's event history for who: "CloudTrail captures all API calls for AWS
Clean Rooms as events" (User Guide, logging-using-cloudtrail), so each
StartProtectedQuery event names the principal and, in its response, the query
id. Without cloudtrail:LookupEvents the member is the membership's account.
Locally (``--local``): the run records and the privacy-budget ledger.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json
import os
import re
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from queryrunner import UsageError

_SINCE = re.compile(r"^([1-9][0-9]{0,4})([hdw])$")
_UNIT = {"h": dt.timedelta(hours=1), "d": dt.timedelta(days=1), "w": dt.timedelta(weeks=1)}
FILES = ("audit.csv", "audit-totals.csv", "audit.html")
CSV_COLUMNS = ("time", "kind", "id", "who", "membership", "template", "parameters", "status", "destinations",
               "regions", "dp_aggregations", "budget_spent", "access_budget_tables")


def parse_since(text: str) -> dt.timedelta:
    """``--since``: a whole number of hours, days or weeks (12h, 30d, 2w)."""
    found = _SINCE.match(text or "")
    if not found:
        raise UsageError(f"--since must be a duration: a whole number 1-99999 followed by h, d or w (12h, 30d, 2w); "
                         f"got {text!r}")
    return int(found.group(1)) * _UNIT[found.group(2)]


@dataclass(frozen=True)
class Entry:
    """One protected query or job, as the report shows it."""

    at: dt.datetime
    kind: str                      # query | job
    id: str
    who: str                       # the principal that started it, or the member
    membership: str
    template: str
    status: str
    parameters: dict[str, str] = field(default_factory=dict)
    destinations: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    dp_aggregations: dict[str, int] = field(default_factory=dict)
    budget_spent: float | None = None
    """Share of the privacy budget charged (the local ledger's); None where the service does not say."""
    access_tables: tuple[str, ...] = ()
    """Tables with an access budget this one used (a successful run uses each once)."""

    def row(self) -> list[str]:
        return [self.at.isoformat(timespec="seconds"), self.kind, self.id, self.who, self.membership, self.template,
                json.dumps(self.parameters, sort_keys=True), self.status, ";".join(self.destinations),
                ";".join(self.regions), json.dumps(self.dp_aggregations, sort_keys=True),
                "" if self.budget_spent is None else f"{self.budget_spent:.6f}", ";".join(self.access_tables)]


TOTAL_COLUMNS = ("by", "name", "runs", "succeeded", "failed", "dp_aggregations", "budget_spent", "access_budget_uses")


def totals(entries: Iterable[Entry]) -> list[list[str]]:
    """Per template and per member: runs, outcomes, DP aggregations, budget share and access-budget uses."""
    rows = []
    entries = list(entries)
    for by, key in (("template", lambda e: e.template), ("member", lambda e: e.who)):
        for name in sorted({key(e) for e in entries}):
            mine = [e for e in entries if key(e) == name]
            spent = [e.budget_spent for e in mine if e.budget_spent is not None]
            rows.append([by, name, str(len(mine)), str(sum(e.status == "SUCCESS" for e in mine)),
                         str(sum(e.status not in ("SUCCESS", "STARTED", "SUBMITTED") for e in mine)),
                         str(sum(sum(e.dp_aggregations.values()) for e in mine)),
                         f"{sum(spent):.6f}" if spent else "",
                         str(sum(len(e.access_tables) for e in mine if e.status == "SUCCESS"))])
    return rows


# --------------------------------------------------------------------------
# Writing: CSV and HTML, each file whole or not at all


def write(entries: list[Entry], out: Path, *, title: str, since: dt.datetime, now: dt.datetime,
          with_html: bool, budget_label: str) -> list[Path]:
    """OUT/audit/audit.csv, audit-totals.csv and (with_html) audit.html; returns the paths written."""
    folder = out / "audit"
    folder.mkdir(parents=True, exist_ok=True)
    entries = sorted(entries, key=lambda e: (e.at, e.id))
    written = [_atomic(folder / FILES[0], _csv(CSV_COLUMNS, [e.row() for e in entries])),
               _atomic(folder / FILES[1], _csv(TOTAL_COLUMNS, totals(entries)))]
    if with_html:
        written.append(_atomic(folder / FILES[2], render_html(entries, title=title, since=since, now=now,
                                                              budget_label=budget_label)))
    return written


def _csv(header: Iterable[str], rows: Iterable[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _atomic(path: Path, text: str) -> Path:
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def budget_points(entries: list[Entry]) -> list[tuple[dt.datetime, float]]:
    """Cumulative budget use over time: the budget share where known (local), else DP aggregations charged."""
    known = any(e.budget_spent is not None for e in entries)
    total, points = 0.0, []
    for e in sorted(entries, key=lambda e: e.at):
        step = (e.budget_spent or 0.0) * 100 if known else float(sum(e.dp_aggregations.values()))
        if step:
            total += step
            points.append((e.at, total))
    return points


def _chart(points: list[tuple[dt.datetime, float]], label: str) -> str:
    if not points:
        return "<p class=note>No differential-privacy budget was spent in this period.</p>"
    width, height, left, bottom, top, right = 760, 260, 60, 40, 20, 20
    t0, t1 = points[0][0].timestamp(), points[-1][0].timestamp()
    span, peak = max(t1 - t0, 1.0), max(v for _, v in points)
    x = lambda t: left + (t.timestamp() - t0) / span * (width - left - right)  # noqa: E731
    y = lambda v: height - bottom - v / peak * (height - bottom - top)  # noqa: E731
    path = " ".join(f"{'M' if i == 0 else 'L'}{x(t):.1f},{y(v):.1f}" for i, (t, v) in enumerate(points))
    if len(points) == 1:
        path += f" L{width - right:.1f},{y(points[0][1]):.1f}"
    parts = [f'<line class="axis" x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}"/>',
             f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}"/>',
             f'<path class="budget-line" d="{path}"/>']
    parts += [f'<circle class="point" cx="{x(t):.1f}" cy="{y(v):.1f}" r="3.5"><title>{html.escape(t.isoformat())}: '
              f'{v:.3g}</title></circle>' for t, v in points]
    parts += [f'<text x="{left - 6}" y="{y(peak) + 4:.1f}" text-anchor="end">{peak:.3g}</text>',
              f'<text x="{left - 6}" y="{height - bottom + 4}" text-anchor="end">0</text>',
              f'<text x="{left}" y="{height - 12}">{html.escape(points[0][0].strftime("%Y-%m-%d %H:%M"))}</text>',
              f'<text x="{width - right}" y="{height - 12}" text-anchor="end">'
              f'{html.escape(points[-1][0].strftime("%Y-%m-%d %H:%M"))}</text>']
    return (f'<figure><svg class="chart" role="img" aria-label="{html.escape(label)}" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}">{"".join(parts)}</svg>'
            f"<figcaption>{html.escape(label)}, cumulative</figcaption></figure>")


def _table(header: Iterable[str], rows: Iterable[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(entries: list[Entry], *, title: str, since: dt.datetime, now: dt.datetime, budget_label: str) -> str:
    shown = [[e.at.isoformat(timespec="seconds"), e.kind, e.template, e.who, e.status,
              ", ".join(f"{k}={v}" for k, v in sorted(e.parameters.items())) or "-",
              "; ".join(e.destinations) or "-", ", ".join(e.regions) or "-",
              ", ".join(f"{k} x{v}" for k, v in sorted(e.dp_aggregations.items())) or "-",
              "-" if e.budget_spent is None else f"{e.budget_spent * 100:.2f}%", ", ".join(e.access_tables) or "-",
              e.id] for e in entries]
    body = (f"<h1>{html.escape(title)}</h1><p class=meta>From {html.escape(since.isoformat(timespec='seconds'))} to "
            f"{html.escape(now.isoformat(timespec='seconds'))}: {len(entries)} protected queries and jobs.</p>"
            f"<h2>Budget use over time</h2>{_chart(budget_points(entries), budget_label)}"
            f"<h2>Totals</h2>{_table(TOTAL_COLUMNS, totals(entries))}"
            f"<h2>Every query and job</h2>"
            + _table(("time", "kind", "template", "who", "status", "parameters", "results to", "regions",
                      "DP aggregations", "budget", "access budgets", "id"), shown))
    return _PAGE.format(title=html.escape(title), body=body)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 1200px; }}
table {{ border-collapse: collapse; margin: .5rem 0; font-size: .9rem; }}
th, td {{ border: 1px solid #ccc; padding: .2rem .5rem; text-align: left; }}
th {{ background: #f4f4f4; }}
.note, .meta, figcaption {{ color: #555; font-size: .9rem; }}
.chart text {{ font-size: 11px; fill: #333; }}
.chart .axis {{ stroke: #888; }}
.chart .budget-line {{ stroke: #1f77b4; stroke-width: 2; fill: none; }}
.chart .point {{ fill: #1f77b4; }}
</style></head>
<body>
{body}
<script>
// Count what the browser laid out (a test reads this back).
window.addEventListener("load", function () {{
  var points = 0;
  document.querySelectorAll("svg.chart circle.point").forEach(function (c) {{
    var box = c.getBBox(); if (box.width > 0 && box.height > 0) {{ points += 1; }}
  }});
  document.body.setAttribute("data-points-rendered", String(points));
  var line = document.querySelector("svg.chart path.budget-line");
  document.body.setAttribute("data-line-length", line ? String(Math.round(line.getTotalLength())) : "0");
}});
</script>
</body></html>
"""


# --------------------------------------------------------------------------
# AWS: the membership's protected queries and jobs, and who started them


def _window(items: Iterable[dict], since: dt.datetime) -> list[dict]:
    return [i for i in items if i["createTime"] >= since]


def _listed(client, operation: str, key: str, membership_id: str) -> list[dict]:
    found: list[dict] = []
    for page in client.get_paginator(operation).paginate(membershipIdentifier=membership_id):
        found += page[key]
    return found


def starters(cloudtrail, since: dt.datetime, err: Callable[[str], None]) -> dict[str, str]:
    """Protected query or job id -> the ARN of the principal that started it, from CloudTrail's event history."""
    from botocore.exceptions import BotoCoreError, ClientError

    who: dict[str, str] = {}
    try:
        for event_name, element in (("StartProtectedQuery", "protectedQuery"), ("StartProtectedJob", "protectedJob")):
            pages = cloudtrail.get_paginator("lookup_events").paginate(
                LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": event_name}], StartTime=since)
            for page in pages:
                for event in page.get("Events", []):
                    record = json.loads(event.get("CloudTrailEvent") or "{}")
                    started = ((record.get("responseElements") or {}).get(element) or {}).get("id")
                    principal = (record.get("userIdentity") or {}).get("arn")
                    if started and principal:
                        who[started] = principal
    except (ClientError, BotoCoreError) as exc:
        err(f"WARNING: CloudTrail event history unavailable ({exc}); 'who' is the membership's account")
        return {}
    return who


def _destinations(output: dict, results_bucket: str | None, results_region: str | None,
                  region: str) -> tuple[list[str], list[str]]:
    places, regions = [], []
    locations = [output] if "distribute" not in output else output["distribute"].get("locations") or []
    for location in locations:
        if "s3" in location:
            s3 = location["s3"]
            places.append(f"s3://{s3['bucket']}/{s3.get('keyPrefix', '')}".rstrip("/"))
            regions.append(results_region or region if s3["bucket"] == results_bucket else "unknown")
        if "member" in location:
            # A member's default result configuration: its results bucket, in the collaboration's region.
            places.append(f"member {location['member']['accountId']}")
            regions.append(region)
    return places, sorted(set(regions))


def cloud_entries(cleanrooms, cloudtrail, *, membership_id: str, since: dt.datetime, region: str,
                  template_names: dict[str, str], template_tables: dict[str, tuple[str, ...]],
                  access_tables: set[str], results_bucket: str | None, results_region: str | None,
                  err: Callable[[str], None]) -> list[Entry]:
    who = starters(cloudtrail, since, err) if cloudtrail is not None else {}
    entries = []
    for kind, list_op, key, get_op, get_key, ident, params_key in (
            ("query", "list_protected_queries", "protectedQueries", "get_protected_query", "protectedQuery",
             "protectedQueryIdentifier", "sqlParameters"),
            ("job", "list_protected_jobs", "protectedJobs", "get_protected_job", "protectedJob",
             "protectedJobIdentifier", "jobParameters")):
        for summary in _window(_listed(cleanrooms, list_op, key, membership_id), since):
            record = getattr(cleanrooms, get_op)(membershipIdentifier=membership_id,
                                                 **{ident: summary["id"]})[get_key]
            parameters = record.get(params_key) or {}
            arn = parameters.get("analysisTemplateArn") or ""
            name = template_names.get(arn) or (arn.rsplit("/", 1)[-1] if arn else "(ad hoc SQL)")
            output = (record.get("resultConfiguration") or {}).get("outputConfiguration") or {}
            places, regions = _destinations(output, results_bucket, results_region, region)
            aggregations = Counter(p["aggregationType"] for p in
                                   ((record.get("differentialPrivacy") or {}).get("sensitivityParameters") or []))
            account = record["membershipArn"].split(":")[4]
            entries.append(Entry(
                at=record["createTime"], kind=kind, id=record["id"], who=who.get(record["id"], f"account {account}"),
                membership=record["membershipId"], template=name, status=record["status"],
                parameters=dict(parameters.get("parameters") or {}), destinations=tuple(places),
                regions=tuple(regions), dp_aggregations=dict(aggregations),
                access_tables=tuple(t for t in template_tables.get(name, ()) if t in access_tables)))
    return entries


# --------------------------------------------------------------------------
# The local clean room: its run records and ledger


def local_entries(out: Path, charges: list, *, who: str, since: dt.datetime,
                  template_tables: dict[str, tuple[str, ...]], access_tables: set[str]) -> list[Entry]:
    """Every local run since ``since``: the run records under OUT, each with its ledger charge; and the charged
    runs that left no record (failed after their reservation)."""
    from localroom.ledger import FAILED

    by_run = {c.run_id: c for c in charges}
    entries, seen = [], set()
    for record in sorted(out.glob("*/*.json")):
        try:
            data = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or not ("template" in data or "job" in data) or "run_id" not in data:
            continue
        at = dt.datetime.fromisoformat(data["finished"])
        if at < since:
            continue
        name = data.get("template") or data.get("job")
        charge = by_run.get(data["run_id"])
        seen.add(data["run_id"])
        entries.append(Entry(
            at=at, kind="query" if "template" in data else "job", id=data["run_id"], who=who,
            membership=f"{data.get('stack', '')} (local)", template=name, status="SUCCESS",
            parameters=dict(data.get("parameters") or {}),
            destinations=(str(record.with_suffix(".csv" if "template" in data else "")),), regions=("local",),
            dp_aggregations=dict(data.get("usage") or {}), budget_spent=charge.fraction if charge else None,
            access_tables=tuple(t for t in template_tables.get(name, ()) if t in access_tables)))
    for charge in charges:
        if charge.run_id not in seen and charge.state == FAILED and charge.at >= since:
            entries.append(Entry(at=charge.at, kind="query", id=charge.run_id, who=who, membership="(local)",
                                 template=charge.template, status="FAILED", dp_aggregations=dict(charge.usage),
                                 budget_spent=charge.fraction))
    return entries


def summary_rows(entries: list[Entry]) -> list[list[str]]:
    """The terminal's view: the totals per template, the budget share in percent."""
    return [[*row[1:6], f"{float(row[6]) * 100:.2f}%" if row[6] else "-", row[7]]
            for row in totals(entries) if row[0] == "template"]


def since_from(text: str, now: dt.datetime) -> dt.datetime:
    return now - parse_since(text)


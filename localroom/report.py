"""results/report.html: one self-contained page over the latest local run of each template and job.

Opens from disk with no server and no network: inline CSS, an inline SVG chart
and a few lines of inline JavaScript that only count what the browser drew
(``data-bars-rendered`` on <body>, which the browser test reads).

Per template: the chart the QuickSight dashboard shows (components/dashboard.py:
vertical clustered bars of customer_count by age_group, coloured by region; for
other templates the first numeric column by the first text column, coloured by
the second), the result table, the differential-privacy noise added to each
output and the rows suppressed by aggregation thresholds. Per PySpark job
(`job NAME --local`), its latest run: each result the script returned, with the
same chart and table.
"""

from __future__ import annotations

import html
import json
import os
import tempfile
from pathlib import Path

import pyarrow.csv as pacsv

MAX_TABLE_ROWS = 200
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
PREFERRED = ("age_group", "region", "customer_count")  # the dashboard's fields


def latest_runs(out: Path) -> list[dict]:
    """The latest run of each template: OUT/<template>/<run id>.json beside its .csv."""
    runs = []
    for record, data in _records(out, "template"):
        if record.with_suffix(".csv").is_file():
            runs.append(dict(data, csv=record.with_suffix(".csv")))
    return _latest(runs, "template")


def latest_jobs(out: Path) -> list[dict]:
    """The latest run of each job: OUT/<job>/<run id>.json beside its folder of results."""
    runs = []
    for record, data in _records(out, "job"):
        if record.with_suffix("").is_dir():
            runs.append(dict(data, results=[dict(r, path=record.parent / r["csv"]) for r in data.get("results") or []
                                            if (record.parent / r["csv"]).is_file()]))
    return _latest(runs, "job")


def latest_audiences(out: Path) -> list[dict]:
    """The latest local lookalike rehearsal of each segment name: OUT/<name>/<run id>.json (queryrunner/local.py)."""
    return _latest([data for _, data in _records(out, "audience")], "audience")


def _records(out: Path, key: str):
    """(path, content) of every readable OUT/*/*.json run record that names a ``key``."""
    for record in sorted(out.glob("*/*.json")):
        try:
            data = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and key in data:
            yield record, data


def _latest(runs: list[dict], key: str) -> list[dict]:
    """The most recently finished run of each ``key`` (template or job), by name."""
    latest: dict[str, dict] = {}
    for run in runs:
        if run[key] not in latest or run["finished"] > latest[run[key]]["finished"]:
            latest[run[key]] = run
    return [latest[name] for name in sorted(latest)]


def write_report(out: Path) -> Path:
    out = Path(out)
    sections = ([_section(run) for run in latest_runs(out)] + [_job_section(run) for run in latest_jobs(out)]
                + [_audience_section(run) for run in latest_audiences(out)])
    page = _PAGE.format(body="\n".join(sections) or "<p>No local runs yet.</p>")
    target = out / "report.html"
    fd, tmp = tempfile.mkstemp(dir=out, prefix=".report", suffix=".html.tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(page)
    os.replace(tmp, target)
    return target


def _result_table(table, name: str) -> str:
    """The result as an HTML table (at most MAX_TABLE_ROWS rows); ``name`` is its file."""
    import pyarrow.types as pt

    columns = table.column_names
    rows = table.slice(0, MAX_TABLE_ROWS).to_pylist()
    esc = html.escape
    more = (f"<p class=note>First {MAX_TABLE_ROWS} of {table.num_rows} rows; the full result is "
            f"{esc(name)}.</p>" if table.num_rows > MAX_TABLE_ROWS else "")
    text = {c for c in columns if pt.is_string(table.schema.field(c).type)}
    cls = {c: "" if c in text else " class=num" for c in columns}
    head = "".join(f"<th{cls[c]}>{esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td{cls[c]}>{esc(cell(r[c], grouping=True))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>\n{more}"


def _parameters(run: dict) -> str:
    return ", ".join(f"{html.escape(k)}={html.escape(str(v))}" for k, v in run["parameters"].items()) or "none"


def _job_section(run: dict) -> str:
    esc = html.escape
    parts = []
    for result in run["results"]:
        table = pacsv.read_csv(result["path"])
        parts.append(f"<h3>Result {esc(result['name'])}</h3>\n{_chart(table, table.column_names)}\n"
                     f"{_result_table(table, result['path'].name)}")
    return f"""<section id="job-{esc(run['job'])}" data-job="{esc(run['job'])}">
<h2>{esc(run['job'])} <small>(PySpark job)</small></h2>
<p class=note>{esc(run.get('description') or '')}</p>
<p class=meta>run {esc(run['run_id'])} &middot; {esc(run['finished'])} &middot; stack {esc(run['stack'])} &middot;
script {esc(run.get('script') or '')} &middot; tables {esc(', '.join(run.get('tables') or []))} &middot;
parameters {_parameters(run)}</p>
<p class=note>A job's results are what its script returns: no aggregation threshold, noise or disallowed output
column applies to them (the tables' rules only decide whether a job may read them).</p>
{"".join(parts) or "<p class=note>No results.</p>"}
</section>"""


def _audience_section(run: dict) -> str:
    import pyarrow as pa

    esc = html.escape
    sizes = run["sizes"]
    table = pa.table({"segment_size": [s["size"] for s in sizes], "relevance": [float(s["relevance"]) for s in sizes]})
    rows = "".join(f"<tr><td>{esc(s['size'])}</td><td class=num>{s['users']:,}</td>"
                   f"<td class=num>{float(s['relevance']):.3f}</td></tr>" for s in sizes)
    return f"""<section id="audience-{esc(run['audience'])}" data-audience="{esc(run['audience'])}">
<h2>{esc(run['audience'])} <small>(lookalike segment, rehearsed)</small></h2>
<p class=meta>run {esc(run['run_id'])} &middot; {esc(run['finished'])} &middot; {esc(run['provider'])}'s training data
{esc(run['training_data'])} ({run['training_users']:,} users) &middot; seed {run['seed_users']:,} users, of whom
{run['seed_users_in_training_data']:,} are in the training data</p>
<p class=note>Recall {float(run['recall']):.2f} (a random model scores about {float(run['random_recall']):.2f}).
Relevance per segment size, from -1 to 1: how like the seed the segment is, measured from the mean user. This is the
local baseline (scikit-learn), not AWS's model; no seed user is in any segment.</p>
{_chart(table, table.column_names)}
<table><tr><th>segment size</th><th class=num>users</th><th class=num>relevance</th></tr>{rows}</table>
</section>"""


def _section(run: dict) -> str:
    table = pacsv.read_csv(run["csv"])
    columns = table.column_names
    chart = _chart(table, columns)
    esc = html.escape
    noise_rows = "".join(
        f"<tr><td>{esc(n['column'])}</td><td>{esc(n['aggregate'])}</td><td class=num>{n['sensitivity']:.4g}</td>"
        f"<td class=num>{n['sigma']:.4g}</td><td class=num>"
        + (f"shown above {n['threshold']:g}" if n.get("threshold") is not None else f"&plusmn;{1.96 * n['sigma']:.4g}")
        + "</td></tr>" for n in run["noise"])
    guarantee = run.get("guarantee")
    bound = (f" This release on its own is ({guarantee['epsilon']:.3g}, {guarantee['delta']:.1e})-differentially "
             "private (docs/local-clean-room.md, \"What is guaranteed\").") if guarantee else ""
    privacy = (f"<table class=small><tr><th>output</th><th>aggregate</th><th class=num>sensitivity</th>"
               f"<th class=num>noise &sigma;</th><th class=num>95% within</th></tr>{noise_rows}</table>"
               f"<p class=note>Each user adds at most {run['user_contribution_limit']} row(s) to an aggregation "
               f"(the table's declared userContributionLimit); values are clamped to their declared bounds.{bound}"
               + (" Seeded noise (--seed): reproducible, not a private release." if run["seeded"] else "")
               + "</p>") if run["noise"] else "<p class=note>No differential privacy on the tables this template reads.</p>"
    if run["thresholds"]:
        limits = ", ".join(f"{esc(t)} &ge; {m}" for t, m in run["thresholds"].items())
        noisy = " (noisy counts: beside a differentially private table)" if run["noise"] else ""
        suppressed = (f"<p><strong class=suppressed>{run['suppressed_rows']}</strong> row(s) suppressed by "
                      f"aggregation thresholds ({limits} distinct identities per row{noisy}).</p>")
    elif run.get("threshold_exempt"):
        suppressed = "<p class=note>Thresholds are not enforced on counts over one table without grouping.</p>"
    else:
        suppressed = "<p class=note>No aggregation threshold on the tables this template reads.</p>"
    return f"""<section id="{esc(run['template'])}" data-template="{esc(run['template'])}">
<h2>{esc(run['template'])}</h2>
<p class=note>{esc(run.get('description') or '')}</p>
<p class=meta>run {esc(run['run_id'])} &middot; {esc(run['finished'])} &middot; stack {esc(run['stack'])} &middot;
parameters {_parameters(run)} &middot; {table.num_rows} row(s)</p>
{chart}
<h3>Privacy</h3>
{suppressed}
{privacy}
<h3>Result</h3>
{_result_table(table, run['csv'].name)}
</section>"""


def _chart(table, columns: list[str]) -> str:
    import pyarrow.types as pt

    text = [c for c in columns if pt.is_string(table.schema.field(c).type)]
    errors = {f"{c}{suffix}" for c in columns for suffix in ("_noise_sd", "_ci95_low", "_ci95_high")}
    numbers = [c for c in columns if c not in errors and (pt.is_integer(table.schema.field(c).type)
               or pt.is_floating(table.schema.field(c).type) or pt.is_decimal(table.schema.field(c).type))]
    if all(c in columns for c in PREFERRED):
        x, colour, y = PREFERRED
    elif text and numbers:
        x, colour, y = text[0], (text[1] if len(text) > 1 else None), numbers[0]
    else:
        return "<p class=note>No chart: the result needs a text column and a numeric column.</p>"
    ranged = f"{y}_ci95_low" in columns and f"{y}_ci95_high" in columns  # a noisy value: draw its interval
    data = table.select([c for c in (x, colour, y) if c] + ([f"{y}_ci95_low", f"{y}_ci95_high"] if ranged
                                                             else [])).to_pylist()
    categories = sorted({str(r[x]) for r in data})
    series = sorted({str(r[colour]) for r in data}) if colour else [y]
    key = (lambda r: (str(r[x]), str(r[colour]) if colour else y))
    values = {key(r): float(r[y] or 0) for r in data}
    spans = {key(r): (float(r[f"{y}_ci95_low"] or 0), float(r[f"{y}_ci95_high"] or 0)) for r in data} if ranged else {}
    if not categories:
        return "<p class=note>No chart: the result is empty.</p>"
    width, height, left, bottom, top = 760, 320, 56, 40, 16
    plot_w, plot_h = width - left - 150, height - bottom - top
    peak = max([0.0, *values.values(), *(hi for _, hi in spans.values())]) or 1.0
    group_w = plot_w / len(categories)
    bar_w = max(1.0, group_w * 0.8 / len(series))
    parts = []
    for i, category in enumerate(categories):
        for j, name in enumerate(series):
            value = values.get((category, name))
            if value is None or value <= 0:
                continue
            h = plot_h * value / peak
            bx = left + i * group_w + group_w * 0.1 + j * bar_w
            parts.append(f'<rect class="bar" x="{bx:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w:.1f}" '
                         f'height="{h:.1f}" fill="{PALETTE[j % len(PALETTE)]}" data-series="{html.escape(name)}">'
                         f'<title>{html.escape(category)} / {html.escape(name)}: {value:g}</title></rect>')
            if (category, name) in spans:  # the 95% interval of the noisy value, as an error bar
                low, high = (max(0.0, v) for v in spans[(category, name)])
                cx, y_low, y_high = bx + bar_w / 2, top + plot_h - plot_h * low / peak, top + plot_h - plot_h * high / peak
                cap = min(bar_w / 3, 6)
                parts.append(f'<path class="errorbar" d="M{cx:.1f} {y_low:.1f}V{y_high:.1f}M{cx - cap:.1f} '
                             f'{y_high:.1f}h{2 * cap:.1f}M{cx - cap:.1f} {y_low:.1f}h{2 * cap:.1f}">'
                             f'<title>95% interval: {low:g} to {high:g}</title></path>')
        parts.append(f'<text x="{left + (i + 0.5) * group_w:.1f}" y="{height - bottom + 16}" '
                     f'text-anchor="middle">{html.escape(category)}</text>')
    for k in range(5):
        v = peak * k / 4
        ty = top + plot_h - plot_h * k / 4
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{ty:.1f}" y2="{ty:.1f}" class="grid"/>'
                     f'<text x="{left - 6}" y="{ty + 4:.1f}" text-anchor="end">{v:.3g}</text>')
    for j, name in enumerate(series):
        ly = top + 14 + j * 18
        parts.append(f'<rect x="{left + plot_w + 16}" y="{ly - 10}" width="12" height="12" '
                     f'fill="{PALETTE[j % len(PALETTE)]}"/><text x="{left + plot_w + 34}" y="{ly}">'
                     f'{html.escape(name)}</text>')
    title = f"{y} by {x}" + (f", coloured by {colour}" if colour else "") + (
        " (bars: noisy values; lines: their 95% intervals)" if ranged else "")
    return (f'<figure><svg class="chart" role="img" aria-label="{html.escape(title)}" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}">{"".join(parts)}</svg>'
            f"<figcaption>{html.escape(title)}</figcaption></figure>")


def cell(value, grouping: bool = False) -> str:
    """A result value as text: floats to two decimals (with thousands separators in the report)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.2f}" if grouping else f"{value:.2f}"
    return str(value)


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Local clean room report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 1000px; }}
section {{ border-top: 1px solid #ddd; padding-top: 1rem; margin-top: 2rem; }}
table {{ border-collapse: collapse; margin: .5rem 0; }}
th, td {{ border: 1px solid #ccc; padding: .2rem .5rem; text-align: left; }}
th {{ background: #f4f4f4; }}
.num {{ text-align: right; }}
.note, .meta, figcaption {{ color: #555; font-size: .9rem; }}
.chart text {{ font-size: 11px; fill: #333; }}
.chart .grid {{ stroke: #e4e4e4; }}
.chart .errorbar {{ stroke: #222; stroke-width: 1.5; fill: none; }}
.suppressed {{ color: #b00; }}
</style></head>
<body>
<h1>Local clean room report</h1>
<p class=note>Made by <code>python -m queryrunner run --local</code> (and <code>job --local</code>): the same
templates, rules and data as the collaboration, run on this machine with DuckDB (or Spark). Differential-privacy
noise is this project's own calibration (docs/local-clean-room.md, "What is guaranteed"), not AWS's; each noisy value
is shown with its 95% interval.</p>
{body}
<script>
// Count the bars the browser actually laid out (a test reads this back).
window.addEventListener("load", function () {{
  var drawn = 0;
  document.querySelectorAll("svg.chart rect.bar").forEach(function (r) {{
    var box = r.getBBox(); if (box.width > 0 && box.height > 0) {{ drawn += 1; }}
  }});
  document.body.setAttribute("data-bars-rendered", String(drawn));
  var errors = 0;  // and the error bars: each a vertical line with a height
  document.querySelectorAll("svg.chart path.errorbar").forEach(function (p) {{
    if (p.getBBox().height > 0 && p.getTotalLength() > 0) {{ errors += 1; }}
  }});
  document.body.setAttribute("data-errorbars-rendered", String(errors));
}});
</script>
</body></html>
"""

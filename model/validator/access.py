"""Who may run the template: each table's allowed analyses.

Sources (AWS Clean Rooms User Guide):
- custom-allowed-analyses: "You can allow analysis templates or accounts to
  create queries, not both. If you leave the allowedAnalyses control empty, the
  member who can query cannot run queries on the configured table." With
  ANY_QUERY, the accounts in allowedAnalysisProviders may run any query.
- analysis-rules: "AWS Clean Rooms enforces the more restrictive controls across
  all configured tables referenced in a query", so every table must allow it.

A member approving templates approves the analyst's templates by ARN once they
exist (model/plan.allowed_analyses); here a template is approved when it is one
of the analyst's configured templates.
"""

from __future__ import annotations

from model.validator.analysis import Analysis
from model.validator.finding import finding


def check(analysis: Analysis):
    analyst = analysis.collab.analyst
    name = analysis.template.name
    for alias, table in sorted(analysis.tables.items()):
        rule = table.rule
        if rule is None or rule.type != "CUSTOM":
            continue
        if rule.allowed_analyses == "ANY_QUERY":
            if analyst.account_id not in rule.allowed_analysis_providers:
                yield finding("allowed analyses", f"ANY_QUERY is allowed only for accounts "
                              f"{list(rule.allowed_analysis_providers)}; the analyst '{analyst.name}' "
                              f"({analyst.account_id}) is not one of them", None, table)
        elif name not in analysis.collab.analyst_templates:
            yield finding("allowed analyses", f"the table allows only the analyst's approved templates, "
                          f"and '{name}' is not one of {sorted(analysis.collab.analyst_templates)}", None, table)

"""Analyst: the analysis templates this organization runs.

Templates come from data/queries/*.sql. A template is declared only once
every table its SQL reads is associated with the collaboration: Clean Rooms
checks a template against the collaboration's tables when it is created (and
against their differential privacy rules).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import pulumi
import pulumi_aws_native.cleanrooms as cleanrooms

from model.jobs import JobTemplate
from model.templates import QueryTemplate


def template_parameters(parameters) -> list[cleanrooms.AnalysisTemplateAnalysisParameterArgs] | None:
    """A template's parameters as the resource takes them (None: the template has none)."""
    return [cleanrooms.AnalysisTemplateAnalysisParameterArgs(
        name=p.name, type=cleanrooms.AnalysisTemplateAnalysisParameterType(p.type), default_value=p.default)
        for p in parameters] or None


def missing_tables(kind: str, template: QueryTemplate | JobTemplate, associated_tables: set[str]) -> list[str]:
    """The tables a template (SQL or PySpark) reads that are not associated yet: it waits for them, and says so."""
    missing = sorted(set(template.tables) - associated_tables)
    if missing:
        pulumi.log.info(f"{kind} '{template.name}' waits for tables {missing} to be associated; "
                        "run `pulumi up` again after the partner deploys")
    return missing


def template_export(resource: cleanrooms.AnalysisTemplate, template: QueryTemplate | JobTemplate,
                    **extra) -> dict:
    """What the stack exports of one analysis template for the query runner (SQL or PySpark)."""
    return {
        "arn": resource.arn,
        "id": resource.analysis_template_identifier,
        "parameters": [{"name": p.name, "type": p.type, "default": p.default} for p in template.parameters],
        "tables": list(template.tables),
        **extra,
        **({"compute": template.compute.export()} if template.compute else {}),
    }


@dataclass
class AnalystArgs:
    membership_id: pulumi.Input[str]
    queries: Sequence[QueryTemplate]
    associated_tables: set[str]
    """Table aliases known to be associated with the collaboration now."""
    dp_tables: set[str] = field(default_factory=set)
    """Aliases of tables under differential privacy."""
    additional_analyses: dict[str, dict] = field(default_factory=dict)
    """Each table's additional-analyses rule (model.plan.additional_analyses), exported per template."""
    retention: dict[str, str] = field(default_factory=dict)
    """How long each table's rows are kept, where its schema says (model.plan.table_retention)."""
    depends_on: Sequence[pulumi.Resource] = ()
    """This organization's own associations, created in the same run."""


class Analyst(pulumi.ComponentResource):
    templates: dict[str, cleanrooms.AnalysisTemplate]

    def __init__(self, name: str, args: AnalystArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cleanrooms:roles:Analyst", name, None, opts)
        self.templates = {}
        self.pending: dict[str, list[str]] = {}
        self.template_info: dict[str, dict] = {}
        for query in args.queries:
            missing = missing_tables("analysis template", query, args.associated_tables)
            if missing:
                self.pending[query.name] = missing
                continue
            template = cleanrooms.AnalysisTemplate(
                f"{name}-{query.name.replace('_', '-')}",
                name=query.name,
                description=query.description or None,
                membership_identifier=args.membership_id,
                format=cleanrooms.AnalysisTemplateFormat.SQL,
                source=cleanrooms.AnalysisTemplateAnalysisSource0PropertiesArgs(text=query.sql),
                analysis_parameters=template_parameters(query.parameters),
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)),
            )
            self.templates[query.name] = template
            self.template_info[query.name] = template_export(
                template, query, differential_privacy=bool(set(query.tables) & args.dp_tables),
                # Whether Clean Rooms ML may use its output, table by table (queryrunner ml channel checks it).
                additional_analyses={t: args.additional_analyses[t] for t in query.tables
                                     if t in args.additional_analyses},
                # How far back `run --window` may reach in each table (queryrunner checks it before starting).
                **({"retention": kept} if (kept := {t: args.retention[t] for t in query.tables
                                                     if t in args.retention}) else {}))
        self.register_outputs({"analysis_templates": self.template_info})

"""DataProducer: an organization's dataset, offered to the collaboration.

S3 (hardened bucket) -> Glue table with a declared schema -> Clean Rooms
configured table with one analysis rule -> association into this
organization's membership, through a role Clean Rooms assumes only on behalf
of the collaboration's memberships.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pulumi
import pulumi_aws as aws
import pulumi_aws_native.cleanrooms as cleanrooms

from components import iam
from components.event_stream import EventStream, EventStreamArgs
from components.iam_wait import service_role
from model.config import AccessBudgetSpec, AnalysisRuleSpec, StreamSpec
from model.datasets import Dataset
from components.secure_bucket import SecureBucket, SecureBucketArgs


@dataclass(frozen=True)
class GlueStorage:
    content_type: str
    table_parameters: dict[str, str]
    input_format: str
    output_format: str
    serde: str
    serde_parameters: dict[str, str]


# The formats the Clean Rooms User Guide lists for the Spark engine ("Data formats
# for AWS Clean Rooms": "Apache Iceberg tables, Parquet, OpenCSV, JSON"): CSV goes
# through the OpenCSV SerDe (not LazySimpleSerDe, which the Spark list does not
# name). The page says nothing about headers; skip.header.line.count is how the
# OpenCSV SerDe skips one (Athena's OpenCSVSerDe page, which documents the same
# SerDe). Parquet carries its own types; it is what large tables should use.
STORAGE = {
    "csv": GlueStorage(
        content_type="text/csv",
        table_parameters={"classification": "csv", "skip.header.line.count": "1"},
        input_format="org.apache.hadoop.mapred.TextInputFormat",
        output_format="org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
        serde="org.apache.hadoop.hive.serde2.OpenCSVSerde",
        serde_parameters={"separatorChar": ",", "quoteChar": "\"", "escapeChar": "\\"}),
    "parquet": GlueStorage(
        content_type="application/vnd.apache.parquet",
        table_parameters={"classification": "parquet"},
        input_format="org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
        output_format="org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
        serde="org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
        serde_parameters={"serialization.format": "1"}),
}


@dataclass
class DataProducerArgs:
    organization: str
    """Short organization name; prefixes Glue and IAM names."""
    account_id: str
    region: str
    """The collaboration's region (its memberships, in the read role's trust)."""
    dataset: Dataset
    """Declared schema and CSV (already validated)."""
    rule: AnalysisRuleSpec
    """The table's analysis rule (validated against the schema and the engine)."""
    bucket_name: str
    allowed_analyses: Sequence[pulumi.Input[str]]
    """Analysis template ARNs the CUSTOM rule allows, or ["ANY_QUERY"]. Empty allows nothing yet."""
    allowed_analysis_providers: Sequence[str] = ()
    membership_id: pulumi.Input[str] | None = None
    """This organization's membership; None until the collaboration exists (no association then)."""
    trusted_membership_arns: Sequence[pulumi.Input[str]] = ()
    """Memberships Clean Rooms may act for when reading this table (every known member's)."""
    query_runner_membership_id: pulumi.Input[str] | None = None
    """The analyst's membership (the trust's sts:ExternalId statement); None until it is known."""
    iam_propagation_seconds: int = 30
    """How long to wait after creating the read role before the association uses it (0: no wait)."""
    member_account_ids: Sequence[str] = ()
    result_receivers: Sequence[str] = ()
    """Account ids allowed to receive results of queries over this table."""
    protect: bool = True
    access_budget: AccessBudgetSpec | None = None
    """How many times the table may be used; None: unlimited (the service's default)."""
    data_region: str | None = None
    """Region of the bucket, key and Glue table when not ``region`` (the opts' aws provider is in it)."""
    stream: StreamSpec | None = None
    """The table is fed by a stream (components/event_stream.py) instead of the dataset's file."""


def analysis_rule(rule: AnalysisRuleSpec, allowed_analyses: Sequence[pulumi.Input[str]],
                  providers: Sequence[str]) -> cleanrooms.ConfiguredTableAnalysisRuleArgs:
    """The configured table's one analysis rule, from the validated config."""
    if rule.type == "CUSTOM":
        policy = cleanrooms.ConfiguredTableAnalysisRulePolicyV12PropertiesArgs(
            custom=cleanrooms.ConfiguredTableAnalysisRuleCustomArgs(
                allowed_analyses=list(allowed_analyses),
                allowed_analysis_providers=list(providers) or None,
                disallowed_output_columns=list(rule.disallowed_output_columns),
                differential_privacy=cleanrooms.ConfiguredTableDifferentialPrivacyArgs(
                    columns=[cleanrooms.ConfiguredTableDifferentialPrivacyColumnArgs(
                        name=rule.differential_privacy_column)])
                if rule.differential_privacy else None,
                aggregation_thresholds=[cleanrooms.ConfiguredTableAggregationThresholdArgs(
                    type=cleanrooms.ConfiguredTableAggregationThresholdType.COUNT_DISTINCT,
                    identity_columns=[rule.threshold_column],
                    minimum_identity_count=rule.threshold_minimum,
                    # Only plain columns are aggregated: expressions over a
                    # metric cannot be used to single people out.
                    allowed_aggregate_expression_type=cleanrooms.ConfiguredTableAllowedAggregateExpressionType.COLUMNS_ONLY,
                )] if rule.threshold_column else None,
                # Clean Rooms ML on the query's output: sent explicitly, NOT_ALLOWED unless configured.
                additional_analyses=cleanrooms.ConfiguredTableAdditionalAnalyses(rule.additional_analyses),
            ))
    elif rule.type == "AGGREGATION":
        policy = cleanrooms.ConfiguredTableAnalysisRulePolicyV11PropertiesArgs(
            aggregation=cleanrooms.ConfiguredTableAnalysisRuleAggregationArgs(
                aggregate_columns=[cleanrooms.ConfiguredTableAggregateColumnArgs(
                    column_names=list(cols), function=cleanrooms.ConfiguredTableAggregateFunctionName(fn))
                    for fn, cols in rule.aggregate_columns],
                dimension_columns=list(rule.dimension_columns),
                join_columns=list(rule.join_columns),
                scalar_functions=[cleanrooms.ConfiguredTableScalarFunctions(f) for f in rule.scalar_functions],
                output_constraints=[cleanrooms.ConfiguredTableAggregationConstraintArgs(
                    column_name=col, minimum=minimum, type=cleanrooms.ConfiguredTableAggregationType.COUNT_DISTINCT)
                    for col, minimum in rule.output_constraints],
                join_required=cleanrooms.ConfiguredTableJoinRequiredOption.QUERY_RUNNER if rule.join_required else None,
            ))
    else:
        policy = cleanrooms.ConfiguredTableAnalysisRulePolicyV10PropertiesArgs(
            list=cleanrooms.ConfiguredTableAnalysisRuleListArgs(
                join_columns=list(rule.join_columns), list_columns=list(rule.list_columns)))
    return cleanrooms.ConfiguredTableAnalysisRuleArgs(
        type=cleanrooms.ConfiguredTableAnalysisRuleType(rule.type),
        policy=cleanrooms.ConfiguredTableAnalysisRulePolicyArgs(v1=policy))


def association_rule(rule_type: str, receivers: Sequence[str], additional: Sequence[str] = ()
                     ) -> cleanrooms.ConfiguredTableAssociationAnalysisRuleArgs:
    """Who may receive results of queries over this table (same type as the table's rule), and which Clean Rooms
    ML resources may analyse their output (``additional``, allowedAdditionalAnalyses)."""
    key = {"CUSTOM": "custom", "AGGREGATION": "aggregation", "LIST": "list"}[rule_type]
    body_cls = {"custom": cleanrooms.ConfiguredTableAssociationAnalysisRuleCustomArgs,
                "aggregation": cleanrooms.ConfiguredTableAssociationAnalysisRuleAggregationArgs,
                "list": cleanrooms.ConfiguredTableAssociationAnalysisRuleListArgs}[key]
    v1_cls = {"list": cleanrooms.ConfiguredTableAssociationAnalysisRulePolicyV10PropertiesArgs,
              "aggregation": cleanrooms.ConfiguredTableAssociationAnalysisRulePolicyV11PropertiesArgs,
              "custom": cleanrooms.ConfiguredTableAssociationAnalysisRulePolicyV12PropertiesArgs}[key]
    return cleanrooms.ConfiguredTableAssociationAnalysisRuleArgs(
        type=cleanrooms.ConfiguredTableAssociationAnalysisRuleType(rule_type),
        policy=cleanrooms.ConfiguredTableAssociationAnalysisRulePolicyArgs(
            v1=v1_cls(**{key: body_cls(allowed_result_receivers=sorted(set(receivers)),
                                      allowed_additional_analyses=list(additional) or None)})))


def access_budget(name: str, membership_id: pulumi.Input[str], association: cleanrooms.ConfiguredTableAssociation,
                  spec: AccessBudgetSpec | None, parent: pulumi.Resource) -> cleanrooms.PrivacyBudgetTemplate | None:
    """The table's data access budget: an ACCESS_BUDGET privacy budget on its association.

    User Guide, configure-data-access-budget: "Each time a table is queried, a
    PySpark job is run on the table, or an ML job is run [...], the budget for
    that table is reduced by one. When the budget reaches zero, you can't run
    queries, PySpark jobs, or ML jobs on that table." Parameters from
    AWS::CleanRooms::PrivacyBudgetTemplate (BudgetParameters: 1-2 of {Type,
    Budget, AutoRefresh}; ResourceArn: the association). The schema requires the
    top-level AutoRefresh, which belongs to differential privacy; NONE here.
    ResourceArn is create-only in CloudFormation but not marked so in
    aws-native 1.84: a new association replaces the budget explicitly.
    """
    if spec is None:
        return None
    parameters = []
    if spec.period is not None:
        parameters.append(cleanrooms.PrivacyBudgetTemplateBudgetParameterArgs(
            type=cleanrooms.PrivacyBudgetTemplateBudgetParameterType(spec.period), budget=spec.period_budget,
            auto_refresh=cleanrooms.PrivacyBudgetTemplateBudgetParameterAutoRefresh.ENABLED if spec.auto_refresh
            else cleanrooms.PrivacyBudgetTemplateBudgetParameterAutoRefresh.DISABLED))
    if spec.lifetime is not None:
        parameters.append(cleanrooms.PrivacyBudgetTemplateBudgetParameterArgs(
            type=cleanrooms.PrivacyBudgetTemplateBudgetParameterType.LIFETIME, budget=spec.lifetime))
    return cleanrooms.PrivacyBudgetTemplate(
        name,
        membership_identifier=membership_id,
        privacy_budget_type=cleanrooms.PrivacyBudgetTemplatePrivacyBudgetType.ACCESS_BUDGET,
        auto_refresh=cleanrooms.PrivacyBudgetTemplateAutoRefresh.NONE,
        parameters=cleanrooms.ParametersPropertiesArgs(resource_arn=association.arn, budget_parameters=parameters),
        opts=pulumi.ResourceOptions(parent=parent, replace_on_changes=["parameters.resourceArn"]),
    )


def streamed(name: str, *, organization: str, dataset: Dataset, storage: SecureBucket, prefix: str,
             parent: pulumi.Resource) -> tuple[aws.glue.CatalogDatabase, aws.glue.CatalogTable]:
    """A streamed dataset's Glue database and Apache Iceberg table under ``prefix``/ (no file: Firehose writes it).

    Iceberg because "AWS Clean Rooms detects new partitions in Apache Iceberg tables automatically and no manual
    operation is needed to update partitions in the table definition", in Parquet, the only Iceberg data format
    it reads (User Guide, iceberg-tables); Glue creates the table's metadata (OpenTableFormatInput CREATE, v2).
    """
    child = pulumi.ResourceOptions(parent=parent)
    glue_name = f"{organization}_{dataset.name}".replace("-", "_")
    database = aws.glue.CatalogDatabase(f"{name}-database", name=glue_name,
                                        description=f"{organization}'s clean rooms data", opts=child)
    table = aws.glue.CatalogTable(
        f"{name}-table", name=dataset.name, database_name=database.name, description=dataset.description,
        table_type="EXTERNAL_TABLE",
        open_table_format_input=aws.glue.CatalogTableOpenTableFormatInputArgs(
            iceberg_input=aws.glue.CatalogTableOpenTableFormatInputIcebergInputArgs(metadata_operation="CREATE",
                                                                                     version="2")),
        storage_descriptor=aws.glue.CatalogTableStorageDescriptorArgs(
            location=pulumi.Output.concat("s3://", storage.bucket.bucket, f"/{prefix}/"),
            columns=[aws.glue.CatalogTableStorageDescriptorColumnArgs(
                name=c.name, type=c.glue_type, comment=c.role) for c in dataset.columns]),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[storage.encryption]))
    return database, table


def catalogued(name: str, *, organization: str, dataset: Dataset, storage: SecureBucket, prefix: str,
               parent: pulumi.Resource) -> tuple[aws.s3.BucketObjectv2, aws.glue.CatalogDatabase, aws.glue.CatalogTable]:
    """A dataset's file in ``storage`` under ``prefix``/, and the Glue database and table that describe it
    (children of ``parent``): what a configured table and a Clean Rooms ML training dataset read."""
    child = pulumi.ResourceOptions(parent=parent)
    # FileAsset streams the file; its hash is the diff, so a changed data
    # file shows as an update in the preview.
    glue = STORAGE[dataset.format]
    data_object = aws.s3.BucketObjectv2(
        f"{name}-data-file",
        bucket=storage.bucket.id,
        key=f"{prefix}/{dataset.file}",
        source=pulumi.FileAsset(str(dataset.data_path)),
        content_type=glue.content_type,
        server_side_encryption="aws:kms",
        kms_key_id=storage.key.arn,
        bucket_key_enabled=True,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[storage.encryption]),
    )
    # Declared schema: no crawler to wait for or to guess types.
    glue_name = f"{organization}_{dataset.name}".replace("-", "_")
    database = aws.glue.CatalogDatabase(f"{name}-database", name=glue_name,
                                        description=f"{organization}'s clean rooms data", opts=child)
    table = aws.glue.CatalogTable(
        f"{name}-table",
        name=dataset.name,
        database_name=database.name,
        description=dataset.description,
        table_type="EXTERNAL_TABLE",
        parameters=glue.table_parameters,
        storage_descriptor=aws.glue.CatalogTableStorageDescriptorArgs(
            location=pulumi.Output.concat("s3://", storage.bucket.bucket, f"/{prefix}/"),
            input_format=glue.input_format,
            output_format=glue.output_format,
            ser_de_info=aws.glue.CatalogTableStorageDescriptorSerDeInfoArgs(
                serialization_library=glue.serde, parameters=glue.serde_parameters),
            columns=[aws.glue.CatalogTableStorageDescriptorColumnArgs(
                name=c.name, type=c.glue_type, comment=c.role) for c in dataset.columns],
        ),
        opts=child,
    )
    return data_object, database, table


class DataProducer(pulumi.ComponentResource):
    configured_table: cleanrooms.ConfiguredTable
    association: cleanrooms.ConfiguredTableAssociation | None

    def __init__(self, name: str, args: DataProducerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cleanrooms:roles:DataProducer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        dataset = args.dataset
        prefix = f"datasets/{dataset.name}"

        self.storage = SecureBucket(f"{name}-data", SecureBucketArgs(
            bucket_name=args.bucket_name, description=f"{args.organization}'s {dataset.name} dataset",
            protect=args.protect), opts=child)
        bucket, key = self.storage.bucket, self.storage.key

        self.stream = None
        if args.stream is None:
            self.data_object, self.database, self.table = catalogued(
                name, organization=args.organization, dataset=dataset, storage=self.storage, prefix=prefix,
                parent=self)
        else:
            self.data_object = None
            self.database, self.table = streamed(name, organization=args.organization, dataset=dataset,
                                                 storage=self.storage, prefix=prefix, parent=self)
            self.stream = EventStream(f"{name}-stream", EventStreamArgs(
                organization=args.organization, account_id=args.account_id, region=args.region, dataset=dataset,
                spec=args.stream, storage=self.storage, prefix=prefix, database=self.database, table=self.table,
                iam_propagation_seconds=args.iam_propagation_seconds), opts=child)

        self.configured_table = cleanrooms.ConfiguredTable(
            f"{name}-configured-table",
            name=f"{args.organization}-{dataset.name}",
            description=dataset.description[:255] or None,
            table_reference=cleanrooms.ConfiguredTableTableReference0PropertiesArgs(
                glue=cleanrooms.ConfiguredTableGlueTableReferenceArgs(
                    database_name=self.database.name, table_name=self.table.name,
                    # "required to uniquely identify and access tables across different Regions"
                    # (GlueTableReference region, service model); left out for the same region.
                    region=cleanrooms.ConfiguredTableCommercialRegion(args.data_region)
                    if args.data_region and args.data_region != args.region else None)),
            allowed_columns=dataset.column_names,
            # DIRECT_JOB "allows PySpark jobs to be run directly on this table", MULTIPLE both;
            # with MULTIPLE "you must specify at least two analysis methods".
            analysis_method=cleanrooms.ConfiguredTableAnalysisMethod.MULTIPLE if args.rule.allow_jobs
            else cleanrooms.ConfiguredTableAnalysisMethod.DIRECT_QUERY,
            selected_analysis_methods=[cleanrooms.ConfiguredTableSelectedAnalysisMethod.DIRECT_QUERY,
                                       cleanrooms.ConfiguredTableSelectedAnalysisMethod.DIRECT_JOB]
            if args.rule.allow_jobs else None,
            analysis_rules=[analysis_rule(args.rule, args.allowed_analyses, args.allowed_analysis_providers)],
            opts=child,
        )

        self.role = None
        self.association = None
        self.access_budget = None
        if args.membership_id is not None:
            self.role, _, ready = service_role(
                f"{name}-cleanrooms-read", organization=args.organization, purpose=f"read-{dataset.name}",
                description=f"Clean Rooms reads {dataset.name} for the collaboration's memberships",
                trust=iam.table_read_trust(
                    region=args.region, account_ids=args.member_account_ids,
                    membership_arns=args.trusted_membership_arns,
                    query_runner_membership_id=args.query_runner_membership_id),
                policy=iam.data_read_policy(account_id=args.account_id, region=args.data_region or args.region,
                                            bucket_arn=bucket.arn,
                                            prefix=prefix, kms_key_arn=key.arn, database=self.database.name,
                                            table=self.table.name),
                iam_propagation_seconds=args.iam_propagation_seconds, parent=self)
            # The association's name is the table's alias in every member's SQL.
            self.association = cleanrooms.ConfiguredTableAssociation(
                f"{name}-association",
                name=dataset.name,
                description=f"{args.organization}'s {dataset.name}",
                configured_table_identifier=self.configured_table.configured_table_identifier,
                membership_identifier=args.membership_id,
                role_arn=self.role.arn,
                configured_table_association_analysis_rules=[association_rule(
                    args.rule.type, args.result_receivers, args.rule.allowed_additional_analyses)],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[*ready, *([self.data_object] if self.data_object
                                                                               else [])]),
            )
            self.access_budget = access_budget(f"{name}-access-budget", args.membership_id, self.association,
                                               args.access_budget, self)

        self.register_outputs({
            "data_bucket": bucket.bucket,
            "event_stream": self.stream.kinesis.name if self.stream else None,
            "configured_table_id": self.configured_table.configured_table_identifier,
            "configured_table_association_name": self.association.name if self.association else None,
        })

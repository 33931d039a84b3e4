"""One organization's part of an AWS Clean Rooms collaboration of two or more organizations.

The stack's config says which roles this organization plays; this file only
reads it, builds the account's providers, composes the role components and
exports what partners and the query runner need. See README.md.
"""

import pulumi

from components.analyst import Analyst, AnalystArgs
from components.collaboration_owner import CollaborationOwner, CollaborationOwnerArgs
from components.dashboard import Dashboard, DashboardArgs
from components.data_producer import DataProducer, DataProducerArgs
from components.access_policies import MLAccess
from components.governance import declare_governance
from components.scheduled_query import ScheduledQuery, ScheduledQueryArgs
from components.member_change import Credentials
from components.membership import Member, MemberArgs, ml_pays
from components.peers import read_peers
from components.privacy_budget import PrivacyBudget, PrivacyBudgetArgs
from components.pyspark_jobs import PySparkJobs, PySparkJobsArgs
from components.providers import make_providers
from components.results_store import ResultsStore, ResultsStoreArgs
from components.stack_config import project_values, refusals_as_run_errors
from components.training_data import TrainingData, TrainingDataArgs
from components.lookalike import Lookalike, LookalikeArgs
from components.seed_store import PREFIX as SEED_PREFIX, SeedStore, SeedStoreArgs
from components.custom_model import CustomModel, CustomModelArgs
from components.ml_trainer import MLTrainer, MLTrainerArgs
from components.ml_output import MLOutput, MLOutputArgs
from model import collaboration, plan, validator
from model.config import ANALYST, OWNER, PRODUCER, load_settings
from model.jobs import check_jobs
from model.templates import published_prefix
from model.training import size_warning

# Everything that can refuse the config is decided before the first resource;
# a refusal is one readable error in the preview, not a traceback.
with refusals_as_run_errors():
    settings = load_settings(project_values(pulumi.get_project()), pulumi.get_project(), pulumi.get_stack())
    peers = read_peers(settings)
    plan.check_partners(settings, peers)
    plan.check_invitation(settings, peers, pulumi.log.info)
    plan.check_budget(settings, peers, pulumi.log.warn)
    plan.check_schedules(settings, peers, pulumi.log.warn)
    joined_collaboration_id = None if OWNER in settings.roles else \
        plan.collaboration_id(settings, peers, pulumi.log.info)
    analyses, analysis_providers = plan.allowed_analyses(settings, peers, pulumi.log.info)
    if ANALYST in settings.roles:
        # The analyst's templates, checked as Clean Rooms would check them (model/validator).
        collab = collaboration.from_settings(settings, peers, settings.analyst.queries)
        for warning in validator.check_templates(settings.analyst.queries, collab):
            pulumi.log.warn(warning)
    if settings.training is not None and (warning := size_warning(settings.training)):
        pulumi.log.warn(warning)
    if settings.jobs:
        # This member's PySpark templates: their tables exist and let its jobs run.
        for warning in check_jobs(settings.jobs, collaboration.from_settings(settings, peers), settings.org):
            pulumi.log.warn(warning)
org = settings.org
providers = make_providers(settings)
opts = providers.opts

# The results destination of the analyst, a result receiver or a job runner, named by the membership.
results = None
if settings.results is not None:
    results = ResultsStore(f"{org.name}-{'analyst' if ANALYST in settings.roles else 'receiver'}", ResultsStoreArgs(
        organization=org.name, account_id=org.account_id, region=settings.region,
        bucket_name=f"{org.name}-cleanrooms-results-{org.account_id}", prefix=settings.results.results_prefix,
        result_format=settings.results.result_format, protect=settings.protect,
        iam_propagation_seconds=settings.iam_propagation_seconds), opts=opts())

# The collaboration and this organization's membership in it.
membership = collaboration_id = owner = None
if OWNER in settings.roles:
    owner = CollaborationOwner(f"{org.name}-owner", CollaborationOwnerArgs(
        spec=settings.collaboration, creator=org, invited=settings.partners,
        analytics_engine=settings.analytics_engine, results=results.destination if results else None,
        payer=settings.payer, ml_payers=settings.ml_payers, query_logging=settings.query_logging,
        protect=settings.protect,
        credentials=Credentials(settings.region, settings.profile, settings.assume_role_arn)), opts=opts())
    membership, collaboration_id = owner.membership, owner.collaboration.collaboration_identifier
elif joined_collaboration_id is not None:
    collaboration_id = joined_collaboration_id
    membership = Member(f"{org.name}-member", MemberArgs(
        collaboration_id=collaboration_id, pays_for_queries=settings.payer == org.name,
        query_logging=settings.query_logging, results=results.destination if results else None,
        runs_jobs=org.runs_jobs, ml_pays=ml_pays(settings.ml_payers, org.name), protect=settings.protect),
        opts=opts()).membership

# Data producer: this organization's table, associated once it is a member.
producer = None
if PRODUCER in settings.roles:
    producer = DataProducer(f"{org.name}-producer", DataProducerArgs(
        organization=org.name, account_id=org.account_id, region=settings.region, dataset=settings.dataset,
        rule=settings.analysis_rule, bucket_name=f"{org.name}-cleanrooms-{settings.dataset.name.replace('_', '-')}-{org.account_id}",
        allowed_analyses=analyses, allowed_analysis_providers=analysis_providers,
        membership_id=membership.membership_identifier if membership else None,
        trusted_membership_arns=[membership.arn, *plan.partner_membership_arns(peers)] if membership else [],
        query_runner_membership_id=(membership.membership_identifier if ANALYST in settings.roles
                                    else plan.analyst_membership_id(settings, peers)) if membership else None,
        iam_propagation_seconds=settings.iam_propagation_seconds, access_budget=settings.access_budget,
        member_account_ids=[m.account_id for m in settings.members],
        result_receivers=plan.result_receivers(settings), protect=settings.protect,
        data_region=settings.data_region, stream=settings.stream), opts=providers.data_opts())

# The collaboration's privacy budget, from the one stack that declares it.
budget = None
if settings.budget is not None and membership is not None:
    budget = PrivacyBudget(f"{org.name}-privacy-budget", PrivacyBudgetArgs(
        membership_id=membership.membership_identifier, spec=settings.budget), opts=opts())

# Templates (SQL and PySpark) are created once the tables they read are associated.
associated = plan.associated_tables(settings, peers, own_associated=producer is not None)
own_association = [producer.association] if producer and producer.association else []

# Analyst, part 2: the analysis templates.
analyst = None
if ANALYST in settings.roles and membership is not None:
    analyst = Analyst(f"{org.name}-analyst-templates", AnalystArgs(
        membership_id=membership.membership_identifier, queries=settings.analyst.queries,
        associated_tables=associated, dp_tables=plan.dp_tables(settings, peers),
        additional_analyses=plan.additional_analyses(settings, peers), retention=plan.table_retention(settings),
        depends_on=own_association),
        opts=opts())
    # Templates run on a schedule over the window each run covers (components/scheduled_query.py).
    for schedule in settings.analyst.schedules:
        if schedule.template in analyst.templates:  # else it waits for its tables, and so does its schedule
            ScheduledQuery(f"{org.name}-every-{schedule.template}", ScheduledQueryArgs(
                organization=org.name, account_id=org.account_id, region=settings.region,
                membership_id=membership.membership_identifier, template=schedule.template,
                template_arn=analyst.templates[schedule.template].arn, every_minutes=schedule.every_minutes,
                window=schedule.window, log_retention_days=settings.audit.log_retention_days,
                iam_propagation_seconds=settings.iam_propagation_seconds), opts=opts())

# PySpark analysis templates and the artifacts they run (any member that runs jobs).
jobs = None
if settings.jobs and membership is not None:
    jobs = PySparkJobs(f"{org.name}-jobs", PySparkJobsArgs(
        organization=org.name, account_id=org.account_id, region=settings.region,
        membership_id=membership.membership_identifier, jobs=settings.jobs, associated_tables=associated,
        bucket_name=f"{org.name}-cleanrooms-artifacts-{org.account_id}", protect=settings.protect,
        iam_propagation_seconds=settings.iam_propagation_seconds, depends_on=own_association), opts=opts())

# Analyst, part 3: a QuickSight dashboard over one template's results.
dashboard = None
if results and settings.quicksight.enabled:
    qs = settings.quicksight
    template = next(q for q in settings.analyst.queries if q.name == qs.template)
    dashboard = Dashboard(f"{org.name}-dashboard", DashboardArgs(
        aws_account_id=org.account_id, region=settings.region, results_bucket=results.storage.bucket.bucket,
        results_bucket_arn=results.storage.bucket.arn, results_prefix=published_prefix(qs.template),
        kms_key_arn=results.storage.key.arn, template_sql_path=template.path,
        owner_principals=list(qs.owners), viewer_principals=list(qs.viewers),
        result_format=settings.analyst.result_format, name_prefix=org.name), opts=opts())

# Clean Rooms ML: this member's training data for lookalike models (an account resource, no membership needed).
training = None
if settings.training is not None:
    training = TrainingData(f"{org.name}-training", TrainingDataArgs(
        organization=org.name, account_id=org.account_id, region=settings.region, spec=settings.training,
        bucket_name=f"{org.name}-cleanrooms-training-{org.account_id}", protect=settings.protect,
        iam_propagation_seconds=settings.iam_propagation_seconds), opts=opts())
lookalike = None
if training is not None and settings.training.lookalike is not None:
    # Trained on it and shared in the collaboration once this member is in it (components/lookalike.py).
    lookalike = Lookalike(f"{org.name}-lookalike", LookalikeArgs(
        organization=org.name, account_id=org.account_id, region=settings.region, spec=settings.training.lookalike,
        training_dataset_arn=training.training_dataset.training_dataset_arn,
        membership_id=membership.membership_identifier if membership else None,
        credentials=Credentials(settings.region, settings.profile, settings.assume_role_arn), protect=settings.protect,
        iam_propagation_seconds=settings.iam_propagation_seconds), opts=opts())

# Clean Rooms ML: this member's seeds for partners' lookalike models (python -m queryrunner audience).
seeds = SeedStore(f"{org.name}-seeds", SeedStoreArgs(
    organization=org.name, account_id=org.account_id, region=settings.region,
    membership_id=membership.membership_identifier if membership else None,
    collaboration_arn=membership.collaboration_arn if membership else None, protect=settings.protect,
    iam_propagation_seconds=settings.iam_propagation_seconds), opts=opts()) if settings.lookalike_seeds else None

# Clean Rooms ML: a custom model this member provides (its images first, then the algorithm and association).
custom_model = CustomModel(f"{org.name}-model", CustomModelArgs(
    organization=org.name, account_id=org.account_id, region=settings.region, spec=settings.custom_model,
    membership_id=membership.membership_identifier if membership else None, protect=settings.protect,
    iam_propagation_seconds=settings.iam_propagation_seconds), opts=opts()) if settings.custom_model else None
# Clean Rooms ML: this member (who can query) trains custom models on ML input channels (python -m queryrunner ml).
trainer = MLTrainer(f"{org.name}-trainer", MLTrainerArgs(
    organization=org.name, account_id=org.account_id, region=settings.region,
    membership_id=membership.membership_identifier if membership else None,
    collaboration_arn=membership.collaboration_arn if membership else None, protect=settings.protect,
    iam_propagation_seconds=settings.iam_propagation_seconds), opts=opts()) if settings.ml_training else None
# Clean Rooms ML: where this member's ML output, metrics and logs go (its membership's ML configuration).
ml_output = MLOutput(f"{org.name}-ml-output", MLOutputArgs(
    organization=org.name, account_id=org.account_id, region=settings.region,
    membership_id=membership.membership_identifier, member_accounts=[m.account_id for m in settings.members],
    credentials=Credentials(settings.region, settings.profile, settings.assume_role_arn), protect=settings.protect,
    iam_propagation_seconds=settings.iam_propagation_seconds), opts=opts()) \
    if membership is not None and (org.ml_abilities or settings.custom_model or settings.ml_training) else None

# Governance (docs/governance.md): audit trail, log retention, budget alarm, federated access.
governance = declare_governance(settings, providers, membership=membership, collaboration_id=collaboration_id,
                                results=results, producer=producer, ml=MLAccess(
                                    channel_role_arn=trainer.role.arn if trainer and trainer.role else None,
                                    seed_role_arn=seeds.role.arn if seeds else None,
                                    seed_bucket=seeds.storage.bucket.bucket if seeds else None))

pulumi.export("organization", org.name)
pulumi.export("account_id", org.account_id)
pulumi.export("region", settings.region)
pulumi.export("join_key", settings.join_key)
pulumi.export("query_compute_payer", settings.payer)
pulumi.export("ml_payers", {"model_training": settings.ml_payers.training,
                            "model_inference": settings.ml_payers.inference} if settings.ml_payers else None)
pulumi.export("roles", sorted(settings.roles))
pulumi.export("runs_jobs", org.runs_jobs)
pulumi.export("ml_abilities", list(org.ml_abilities))
pulumi.export("analytics_engine", settings.analytics_engine)
pulumi.export("collaboration_id", collaboration_id)
pulumi.export("membership_id", membership.membership_identifier if membership else None)
pulumi.export("membership_arn", membership.arn if membership else None)
pulumi.export("privacy_budget", collaboration.budget_export(settings.budget))
# Residency: where the collaboration lets results be written (the runner refuses other regions).
pulumi.export("allowed_result_regions", plan.allowed_result_regions(settings, peers))
pulumi.export("privacy_budget_template_id", budget.template.privacy_budget_template_identifier if budget else None)
if OWNER in settings.roles:
    # Whom the collaboration has: each joining stack checks itself and its partners against it.
    pulumi.export("members", plan.members_export(settings))
pulumi.export("training_dataset_arn", training.training_dataset.training_dataset_arn if training else None)
pulumi.export("lookalike", {"name": settings.training.lookalike.name,
                             "configured_audience_model_arn": lookalike.configured_model.arn,
                             "min_matching_seed_size": settings.training.lookalike.min_matching_seed_size,
                             "size_type": settings.training.lookalike.size_type,
                             "size_bins": list(settings.training.lookalike.size_bins)} if lookalike else None)
pulumi.export("custom_model_repository", custom_model.repository.repository_url if custom_model else None)
own_model = {"name": settings.custom_model.name,
             "association_arn": custom_model.association.configured_model_algorithm_association_arn,
             } if custom_model and custom_model.association else None
pulumi.export("custom_model", own_model)
pulumi.export("ml_output_uri", ml_output.uri if ml_output else None)
if trainer:
    # What `queryrunner ml` needs: the channel role and key, and every member's custom model by member name.
    pulumi.export("ml_channel_role_arn", trainer.role.arn if trainer.role else None)
    pulumi.export("ml_kms_key_arn", trainer.key.arn)
    pulumi.export("custom_models", {**({org.name: own_model} if own_model else {}),
                                    **{p.partner.name: p.get("custom_model") for p in peers.values()
                                       if p.get("custom_model")}})
if seeds:
    # What `queryrunner audience` needs: where seeds go, the role that reads them, the partners' models.
    pulumi.export("seed_bucket", seeds.storage.bucket.bucket)
    pulumi.export("seed_prefix", SEED_PREFIX)
    pulumi.export("seed_kms_key_arn", seeds.storage.key.arn)
    pulumi.export("seed_role_arn", seeds.role.arn)
    pulumi.export("audience_models", {p.partner.name: p.get("lookalike") for p in peers.values() if p.get("lookalike")})
for key, value in governance.exports().items():
    pulumi.export(key, value)
pulumi.export("partners_joined", sorted(p.partner.name for p in peers.values() if p.membership_arn))
if producer:
    pulumi.export("dataset", settings.dataset.name)
    pulumi.export("data_region", settings.data_region)
    pulumi.export("data_bucket", producer.storage.bucket.bucket)
    # Where scripts/produce_events.py sends events, when the table is streamed (docs/streaming.md).
    pulumi.export("event_stream", producer.stream.kinesis.name if producer.stream else None)
    pulumi.export("configured_table_id", producer.configured_table.configured_table_identifier)
    pulumi.export("configured_table_association_name", producer.association.name if producer.association else None)
    pulumi.export("differential_privacy", settings.analysis_rule.differential_privacy)
    pulumi.export("analysis_rule", collaboration.rule_export(settings.analysis_rule))
    pulumi.export("configured_table_association_arn", producer.association.arn if producer.association else None)
    pulumi.export("access_budget", settings.access_budget.export() if settings.access_budget else None)
if results:
    pulumi.export("results_bucket", results.storage.bucket.bucket)
    pulumi.export("results_region", settings.region)
    pulumi.export("results_prefix", settings.results.results_prefix)
    pulumi.export("results_kms_key_arn", results.storage.key.arn)
    pulumi.export("result_format", settings.results.result_format)
if ANALYST in settings.roles:
    pulumi.export("compute", settings.analyst.compute.export() if settings.analyst.compute else None)
    pulumi.export("result_receivers", settings.result_receivers)
    pulumi.export("analysis_templates", analyst.template_info if analyst else {})
    pulumi.export("pending_templates", analyst.pending if analyst else {})
    pulumi.export("quicksight", {"dataset_id": dashboard.dataset_id, "aws_account_id": org.account_id,
                                 "dashboard_id": dashboard.dashboard_id, "template": settings.quicksight.template,
                                 "published_prefix": published_prefix(settings.quicksight.template)}
                  if dashboard else None)
if ANALYST in settings.roles or settings.jobs:
    # Tables with a data access budget, so the runner can check what is left before a run.
    pulumi.export("access_budgets", plan.access_budgets(settings, peers, producer.association if producer else None))
    # What `python -m queryrunner job` runs, from whichever stack creates the jobs.
    pulumi.export("job_templates", jobs.template_info if jobs else {})
    pulumi.export("pending_jobs", jobs.pending if jobs else {})
    pulumi.export("artifact_bucket", jobs.storage.bucket.bucket if jobs else None)

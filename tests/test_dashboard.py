"""Tests of components/dashboard.py and model/sql_columns.py under Pulumi mocks.

Every resource registration is recorded (type, name, inputs, provider, parent),
so the assertions read exactly what would be sent to the engine.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pulumi  # noqa: E402
import pulumi_aws as aws  # noqa: E402
import pulumi_aws_native as aws_native  # noqa: E402

from components.dashboard import (  # noqa: E402
    COLUMN_TYPES,
    DASHBOARD_OWNER_ACTIONS,
    DASHBOARD_VIEWER_ACTIONS,
    DATA_SET_IDENTIFIER,
    DATA_SET_OWNER_ACTIONS,
    DATA_SOURCE_OWNER_ACTIONS,
    Dashboard,
    DashboardArgs,
    template_columns,
)
from model.sql_columns import SqlColumnsError, select_columns  # noqa: E402
from tests.harness import Run, run_under_mocks  # noqa: E402

SQL_PATH = ROOT / "data" / "queries" / "customer_segments.sql"
ACCOUNT = "222233334444"
REGION = "us-east-1"
BUCKET = "org-b-cleanrooms-results"
BUCKET_ARN = f"arn:aws:s3:::{BUCKET}"
PREFIX = "results/customer_segments"
KMS_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
OWNERS = [f"arn:aws:quicksight:{REGION}:{ACCOUNT}:group/default/cleanrooms-admins"]
VIEWERS = [
    f"arn:aws:quicksight:{REGION}:{ACCOUNT}:user/default/analyst-alice",
    f"arn:aws:quicksight:{REGION}:{ACCOUNT}:user/default/ReadOnlyRole/bob@example.com",
]
COMPONENT_TYPE = "cleanrooms:analytics:Dashboard"


def make_args(**overrides) -> DashboardArgs:
    values = dict(
        aws_account_id=ACCOUNT,
        region=REGION,
        results_bucket=BUCKET,
        results_bucket_arn=BUCKET_ARN,
        results_prefix=PREFIX,
        kms_key_arn=KMS_ARN,
        template_sql_path=SQL_PATH,
        owner_principals=list(OWNERS),
        viewer_principals=list(VIEWERS),
        name_prefix="org-b",
    )
    values.update(overrides)
    return DashboardArgs(**values)


def build(**overrides) -> Run:
    def program():
        aws_provider = aws.Provider("test-aws", region=REGION)
        native_provider = aws_native.Provider("test-aws-native", region=REGION)
        Dashboard("analytics", make_args(**overrides),
                  opts=pulumi.ResourceOptions(providers={"aws": aws_provider, "aws-native": native_provider}))

    return run_under_mocks(program, stack="test", config={}, account_id=ACCOUNT, region=REGION)


def registered_outputs(built: Run) -> dict:
    outputs = built.component_outputs[built.one(COMPONENT_TYPE).urn]
    return {key: outputs[key] for key in ("dashboard_id", "dataset_id", "data_source_id")}


@pytest.fixture(scope="module")
def built() -> Run:
    return build()


def walk(node, path=""):
    """Yield (path, key, value) for every dict entry in a nested structure."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, key, value
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{path}[{i}]")


def dataset_output_columns(built: Run) -> list[str]:
    data_set = built.one("aws:quicksight/dataSet:DataSet").inputs
    (logical,) = data_set["logicalTableMaps"]
    projections = [t["projectOperation"] for t in logical["dataTransforms"] if "projectOperation" in t]
    assert len(projections) == 1
    return projections[0]["projectedColumns"]


# --------------------------------------------------------------------------
# sql_columns
# --------------------------------------------------------------------------
def test_select_columns_of_the_real_template():
    assert select_columns(SQL_PATH.read_text()) == [
        "age_group", "region", "customer_count", "avg_purchase", "avg_engagement",
    ]


def test_select_columns_header_placeholders_cte_union():
    sql = """-- description: x
-- param: n INTEGER default 1
WITH t AS (SELECT a, b FROM x WHERE c > :n)
SELECT t.a, SUM(t.b) AS total FROM t WHERE t.a = :name GROUP BY t.a LIMIT :n
UNION ALL SELECT 'z', 0"""
    assert select_columns(sql) == ["a", "total"]
    assert select_columns("SELECT a::int AS b FROM t WHERE c = :p") == ["b"]


@pytest.mark.parametrize("sql, message", [
    ("SELECT * FROM t", "'*'"),
    ("SELECT t.* FROM t", "'*'"),
    ("SELECT COUNT(*) FROM t", "alias"),
    ("SELECT a + 1 FROM t", "alias"),
    ("SELECT a, b AS a FROM t", "duplicate"),
    ("-- only a header\n", "empty"),
    ("SELECT 1 AS a; SELECT 2 AS b", "exactly one"),
    ("INSERT INTO t SELECT 1 AS a", "SELECT"),
])
def test_select_columns_rejects(sql, message):
    with pytest.raises(SqlColumnsError, match=message):
        select_columns(sql)


def test_template_columns_mismatch_is_a_clear_error(tmp_path):
    sql = tmp_path / "customer_segments.sql"
    sql.write_text("SELECT r.age_group, COUNT(*) AS n FROM retail_purchases r GROUP BY r.age_group")
    with pytest.raises(ValueError, match="does not match the dashboard's columns"):
        template_columns(sql)
    reordered = tmp_path / "reordered.sql"
    reordered.write_text(
        "SELECT region, age_group, 1 AS customer_count, 2 AS avg_purchase, 3 AS avg_engagement FROM t"
    )
    with pytest.raises(ValueError, match="different order"):
        template_columns(reordered)


# --------------------------------------------------------------------------
# Args validation
# --------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [
    f"arn:aws:iam::{ACCOUNT}:root",
    ACCOUNT,
    f"arn:aws:iam::{ACCOUNT}:user/alice",
    f"arn:aws:iam::{ACCOUNT}:role/Admin",
    f"arn:aws:quicksight:{REGION}:{ACCOUNT}:namespace/default",
    f"arn:aws:quicksight:{REGION}:{ACCOUNT}:dashboard/x",
    f"arn:aws:quicksight:{REGION}:999988887777:user/default/mallory",
    "*",
])
@pytest.mark.parametrize("role, key", [("owner_principals", "quicksight.owners"),
                                       ("viewer_principals", "quicksight.viewers")])
def test_non_quicksight_principals_and_root_are_rejected(bad, role, key):
    overrides = {role: [bad]}
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        make_args(**overrides)


def test_owners_required_and_kept_apart_from_viewers():
    with pytest.raises(ValueError, match=r"quicksight\.owners"):
        make_args(owner_principals=[])
    with pytest.raises(ValueError, match=r"quicksight\.viewers"):
        make_args(viewer_principals=[OWNERS[0]])


def test_parquet_results_are_refused():
    with pytest.raises(ValueError, match="CSV"):
        make_args(result_format="PARQUET")


def test_manifest_must_not_sit_in_the_results_prefix():
    with pytest.raises(ValueError, match="must not be under results_prefix"):
        make_args(manifest_key=f"{PREFIX}/manifest.json")


# --------------------------------------------------------------------------
# The component under mocks
# --------------------------------------------------------------------------
def test_children_types_and_outputs(built):
    children = sorted(c.typ for c in built.resources if c.typ != COMPONENT_TYPE and "pulumi:providers" not in c.typ)
    assert children == sorted([
        "aws:iam/role:Role",
        "aws:iam/rolePolicy:RolePolicy",
        "aws:s3/bucketObjectv2:BucketObjectv2",
        "aws:quicksight/dataSource:DataSource",
        "aws:quicksight/dataSet:DataSet",
        "aws-native:quicksight:Dashboard",
    ])
    assert registered_outputs(built) == {
        "dashboard_id": "org-b-customer-segments-dashboard",
        "dataset_id": "org-b-customer-segments-dataset",
        "data_source_id": "org-b-customer-segments-results",
    }
    for call in built.resources:
        if call.typ != COMPONENT_TYPE and "pulumi:providers" not in call.typ:
            assert call.name.startswith("analytics-"), call.name


def test_every_child_has_the_component_as_parent_and_inherits_providers(built):
    component = built.one(COMPONENT_TYPE)
    children = [c for c in built.resources if c.typ != COMPONENT_TYPE and "pulumi:providers" not in c.typ]
    assert children
    for child in children:
        assert child.parent == component.urn, f"{child.typ} {child.name} parent {child.parent!r}"
        package = "aws-native" if child.typ.startswith("aws-native:") else "aws"
        assert child.provider and f"pulumi:providers:{package}::test-{package}::" in child.provider, (
            child.typ, child.provider)


def test_dataset_columns_match_the_template(built):
    template = select_columns(SQL_PATH.read_text())
    data_set = built.one("aws:quicksight/dataSet:DataSet").inputs
    assert data_set["importMode"] == "SPICE"
    (physical,) = data_set["physicalTableMaps"]
    s3_source = physical["s3Source"]
    assert [c["name"] for c in s3_source["inputColumns"]] == template
    assert {c["type"] for c in s3_source["inputColumns"]} == {"STRING"}
    assert s3_source["uploadSettings"] == {
        "format": "CSV", "delimiter": ",", "containsHeader": True,
        "startFromRow": 1, "textQualifier": "DOUBLE_QUOTE",
    }
    (logical,) = data_set["logicalTableMaps"]
    assert logical["source"] == {"physicalTableId": physical["physicalTableMapId"]}
    casts = {t["castColumnTypeOperation"]["columnName"]: t["castColumnTypeOperation"]["newColumnType"]
             for t in logical["dataTransforms"] if "castColumnTypeOperation" in t}
    assert casts == {"customer_count": "INTEGER", "avg_purchase": "DECIMAL", "avg_engagement": "DECIMAL"}
    assert dataset_output_columns(built) == template == list(COLUMN_TYPES)
    data_source = built.one("aws:quicksight/dataSource:DataSource")
    assert s3_source["dataSourceArn"].endswith(f":datasource/{data_source.inputs['dataSourceId']}")


def test_dashboard_definition_references_only_dataset_columns(built):
    columns = set(dataset_output_columns(built))
    dashboard = built.one("aws-native:quicksight:Dashboard").inputs
    definition = dashboard["definition"]
    declared = {d["identifier"]: d["dataSetArn"] for d in definition["dataSetIdentifierDeclarations"]}
    data_set = built.one("aws:quicksight/dataSet:DataSet").inputs
    assert declared == {
        DATA_SET_IDENTIFIER: f"arn:aws:quicksight:{REGION}:{ACCOUNT}:dataset/{data_set['dataSetId']}"
    }

    referenced, identifiers = set(), set()
    for path, key, value in walk(definition):
        if key in ("columnName", "column_name", "ColumnName"):
            referenced.add(value)
        if key in ("dataSetIdentifier", "data_set_identifier", "DataSetIdentifier"):
            identifiers.add(value)
    assert referenced and referenced <= columns, referenced - columns
    assert referenced == columns  # the table shows every metric
    assert identifiers == set(declared)


def test_dashboard_sheet_has_bar_table_and_bound_dropdowns(built):
    dashboard = built.one("aws-native:quicksight:Dashboard").inputs
    assert dashboard["versionDescription"]
    assert dashboard["dashboardPublishOptions"]["sheetControlsOption"] == {"visibilityState": "EXPANDED"}
    definition = dashboard["definition"]
    (sheet,) = definition["sheets"]
    visuals = {}
    for visual in sheet["visuals"]:
        (kind, body), = visual.items()
        visuals[body["visualId"]] = (kind, body)
    kinds = sorted(kind for kind, _ in visuals.values())
    assert kinds == ["barChartVisual", "tableVisual"]

    bar = next(body for kind, body in visuals.values() if kind == "barChartVisual")
    wells = bar["chartConfiguration"]["fieldWells"]["barChartAggregatedFieldWells"]
    name = lambda field: next(iter(field.values()))["column"]["columnName"]  # noqa: E731
    assert [name(f) for f in wells["category"]] == ["age_group"]
    assert [name(f) for f in wells["colors"]] == ["region"]
    assert [name(f) for f in wells["values"]] == ["customer_count"]

    table = next(body for kind, body in visuals.values() if kind == "tableVisual")
    table_columns = [v["column"]["columnName"] for v in
                     table["chartConfiguration"]["fieldWells"]["tableUnaggregatedFieldWells"]["values"]]
    assert table_columns == list(COLUMN_TYPES)

    filters = {}
    for group in definition["filterGroups"]:
        scopes = group["scopeConfiguration"]["selectedSheets"]["sheetVisualScopingConfigurations"]
        for scope in scopes:
            assert scope["sheetId"] == sheet["sheetId"]
            assert scope["scope"] == "SELECTED_VISUALS"
            assert set(scope["visualIds"]) == set(visuals)
        for f in group["filters"]:
            category = f["categoryFilter"]
            filters[category["filterId"]] = category["column"]["columnName"]
    assert sorted(filters.values()) == ["age_group", "region"]

    controls = [c["dropdown"] for c in sheet["filterControls"]]
    assert sorted(filters[c["sourceFilterId"]] for c in controls) == ["age_group", "region"]
    laid_out = {e["elementId"] for layout in sheet["sheetControlLayouts"]
                for e in layout["configuration"]["gridLayout"]["elements"]}
    assert laid_out == {c["filterControlId"] for c in controls}
    visual_layout = {e["elementId"] for layout in sheet["layouts"]
                     for e in layout["configuration"]["gridLayout"]["elements"]}
    assert visual_layout == set(visuals)


def test_manifest_and_data_source_point_at_results_prefix(built):
    manifest = built.one("aws:s3/bucketObjectv2:BucketObjectv2").inputs
    assert manifest["bucket"] == BUCKET
    assert manifest["key"].endswith(".json") and not manifest["key"].startswith(PREFIX + "/")
    assert manifest["kmsKeyId"] == KMS_ARN and manifest["serverSideEncryption"] == "aws:kms"
    body = json.loads(manifest["content"])
    assert body == {
        "fileLocations": [{"URIPrefixes": [f"s3://{BUCKET}/{PREFIX}/"]}],
        "globalUploadSettings": {"format": "CSV", "delimiter": ",", "textqualifier": '"',
                                 "containsHeader": "true"},
    }
    data_source = built.one("aws:quicksight/dataSource:DataSource").inputs
    assert data_source["type"] == "S3"
    s3 = data_source["parameters"]["s3"]
    assert s3["manifestFileLocation"] == {"bucket": BUCKET, "key": manifest["key"]}
    role = built.one("aws:iam/role:Role")
    assert s3["roleArn"] == f"arn:aws:iam::{ACCOUNT}:role/service-role/{role.inputs['name']}"
    assert "cleanrooms" in role.inputs["name"]


def test_permissions_only_configured_principals_and_tiers_apart(built):
    assert set(DASHBOARD_VIEWER_ACTIONS) < set(DASHBOARD_OWNER_ACTIONS)
    assert not any(a.startswith(("quicksight:Update", "quicksight:Delete")) for a in DASHBOARD_VIEWER_ACTIONS)

    dashboard = built.one("aws-native:quicksight:Dashboard").inputs
    by_principal = {p["principal"]: p["actions"] for p in dashboard["permissions"]}
    assert len(by_principal) == len(dashboard["permissions"])
    assert set(by_principal) == set(OWNERS) | set(VIEWERS)
    for owner in OWNERS:
        assert by_principal[owner] == list(DASHBOARD_OWNER_ACTIONS)
    for viewer in VIEWERS:
        assert by_principal[viewer] == list(DASHBOARD_VIEWER_ACTIONS)

    for typ, actions in [("aws:quicksight/dataSet:DataSet", DATA_SET_OWNER_ACTIONS),
                         ("aws:quicksight/dataSource:DataSource", DATA_SOURCE_OWNER_ACTIONS)]:
        permissions = built.one(typ).inputs["permissions"]
        assert {p["principal"] for p in permissions} == set(OWNERS), typ  # viewers get nothing here
        assert all(p["actions"] == list(actions) for p in permissions), typ

    for path, key, value in walk([c.inputs for c in built.resources]):
        if key == "principal":
            assert value in OWNERS + VIEWERS
            assert ":root" not in value and value != "*"


def test_iam_role_is_scoped_to_bucket_prefix_manifest_and_key(built):
    role = built.one("aws:iam/role:Role").inputs
    trust = json.loads(role["assumeRolePolicy"])
    (statement,) = trust["Statement"]
    assert statement["Principal"] == {"Service": "quicksight.amazonaws.com"}
    assert statement["Action"] == "sts:AssumeRole"
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}

    (policy_call,) = built.of_type("aws:iam/rolePolicy:RolePolicy")
    assert policy_call.inputs["role"] == built.one("aws:iam/role:Role").id  # a role's id is its name
    policy = json.loads(policy_call.inputs["policy"])
    manifest_key = built.one("aws:s3/bucketObjectv2:BucketObjectv2").inputs["key"]
    by_action: dict[str, dict] = {}
    for s in policy["Statement"]:
        assert s["Effect"] == "Allow"
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        resources = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
        for action in actions:
            assert "*" not in action
            by_action[action] = {**s, "Resource": resources}
        for resource in resources:
            assert resource not in ("*", "arn:aws:s3:::*") and not resource.startswith(f"{BUCKET_ARN}/*")
            assert resource.startswith(BUCKET_ARN) or resource == KMS_ARN, resource
    assert set(by_action) == {"s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation", "kms:Decrypt"}
    assert sorted(by_action["s3:GetObject"]["Resource"]) == sorted(
        [f"{BUCKET_ARN}/{PREFIX}/*", f"{BUCKET_ARN}/{manifest_key}"])
    assert by_action["s3:ListBucket"]["Resource"] == [BUCKET_ARN]
    assert by_action["s3:ListBucket"]["Condition"] == {
        "StringLike": {"s3:prefix": [f"{PREFIX}/", f"{PREFIX}/*"]}}
    assert by_action["s3:GetBucketLocation"]["Resource"] == [BUCKET_ARN]
    assert by_action["kms:Decrypt"]["Resource"] == [KMS_ARN]
    assert by_action["kms:Decrypt"]["Condition"] == {
        "StringEquals": {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}}


def test_optional_daily_refresh_schedule():
    built = build(refresh_time_of_day="05:30")
    schedule = built.one("aws:quicksight/refreshSchedule:RefreshSchedule")
    assert schedule.parent == built.one(COMPONENT_TYPE).urn
    assert schedule.inputs["dataSetId"] == "org-b-customer-segments-dataset"
    assert schedule.inputs["schedule"]["scheduleFrequency"] == {
        "interval": "DAILY", "timeOfTheDay": "05:30", "timezone": "UTC"}


def _cfn_schema(type_name: str) -> dict:
    """The CloudFormation resource schema cfn-lint bundles (what Cloud Control validates)."""
    import cfnlint

    base = Path(cfnlint.__file__).parent / "data" / "schemas"
    index = json.loads((base / "providers" / f"{REGION}.json").read_text())
    return json.loads((base / "resources" / f"{index[type_name]}.json").read_text())


def test_dashboard_inputs_satisfy_the_cloudformation_schema(built):
    """aws-native sends these inputs to Cloud Control as AWS::QuickSight::Dashboard."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = _cfn_schema("AWS::QuickSight::Dashboard")

    # aws-native camelCases CFN names lossily (ExportToCSVOption -> exportToCsvOption):
    # map back through the schema's own property names.
    names: dict[str, str] = {}
    for _, key, value in walk(schema):
        if key == "properties" and isinstance(value, dict):
            for prop in value:
                names.setdefault(prop.lower(), prop)

    def to_cfn(node):
        if isinstance(node, dict):
            return {names.get(k.lower(), k[:1].upper() + k[1:]): to_cfn(v) for k, v in node.items()}
        if isinstance(node, list):
            return [to_cfn(v) for v in node]
        return node

    properties = to_cfn(built.one("aws-native:quicksight:Dashboard").inputs)
    errors = [f"{list(e.path)}: {e.message[:200]}"
              for e in jsonschema.Draft7Validator(schema).iter_errors(properties)]
    assert not errors, errors

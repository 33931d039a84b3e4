"""What the QuickSight dashboard needs from the stack config, checked before any resource.

The dashboard component (components/dashboard.py) declares the resources; the
rules about its config (who may own or view it, that results are CSV, that the
template's select list is what the dataset declares) live here so that the
config loader can apply them without importing Pulumi.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from model.errors import ConfigError
from model.sql_columns import select_columns

# --------------------------------------------------------------------------
# Columns: what the dashboard expects from the template's select list.
# --------------------------------------------------------------------------
# Output column -> QuickSight column type. Explicit on purpose: the SQL does not
# carry result types, and notes/CONTRACTS.md fixes them for customer_segments:
#   age_group (string), region (string), customer_count (integer),
#   avg_purchase (decimal/double), avg_engagement (double).
# QuickSight dataset types are STRING | INTEGER | DECIMAL | DATETIME (no DOUBLE),
# so both averages become DECIMAL. The order is the select-list order, which is
# also the CSV column order Clean Rooms writes.
COLUMN_TYPES: dict[str, str] = {
    "age_group": "STRING",
    "region": "STRING",
    "customer_count": "INTEGER",
    "avg_purchase": "DECIMAL",
    "avg_engagement": "DECIMAL",
}
DIMENSIONS = ("age_group", "region")

# QuickSight user/group ARN: arn:<partition>:quicksight:<identity region>:<account>:
#   user/<namespace>/<user name>    (IAM-federated users: <role name>/<session name>)
#   group/<namespace>/<group name>
_QS_PRINCIPAL = re.compile(
    r"^arn:(?P<partition>aws|aws-cn|aws-us-gov):quicksight:"
    r"(?P<region>[a-z]{2}(?:-[a-z]+)+-\d):(?P<account>\d{12}):"
    r"(?P<kind>user|group)/(?P<namespace>[A-Za-z0-9._-]+)/"
    r"(?P<name>[^/\s]+(?:/[^/\s]+)?)$"
)
_ROOT = re.compile(r"^arn:[a-z-]+:iam::\d{12}:root$|^\d{12}$")

# Principal errors are ConfigError (a ValueError) naming the stack config key,
# like the rest of the program (model/errors.py).
OWNERS_KEY = "quicksight.owners"
VIEWERS_KEY = "quicksight.viewers"


def _check_principals(arns: Sequence[str], config_key: str, account_id: str) -> None:
    if isinstance(arns, str):
        raise ConfigError(config_key, "must be a list of ARNs, not a string")
    for arn in arns:
        if not isinstance(arn, str):
            raise ConfigError(config_key, f"{arn!r} is not a string ARN")
        if _ROOT.match(arn.strip()):
            raise ConfigError(
                config_key,
                f"{arn!r} is an account root; grant QuickSight "
                "users or groups (arn:aws:quicksight:<region>:<account>:user/... or "
                "group/...), never the whole account"
            )
        match = _QS_PRINCIPAL.match(arn)
        if not match:
            raise ConfigError(
                config_key,
                f"{arn!r} is not a QuickSight user or group ARN "
                "(expected arn:aws:quicksight:<region>:<account>:user/<namespace>/<name> "
                "or .../group/<namespace>/<name>; IAM users/roles are not QuickSight "
                "principals; see `aws quicksight list-users`)"
            )
        if match["account"] != account_id:
            raise ConfigError(
                config_key,
                f"{arn!r} belongs to account {match['account']}, "
                f"not {account_id} where the dashboard is created"
            )
    if len(set(arns)) != len(arns):
        raise ConfigError(config_key, "lists a principal twice")


def check_config(*, owners: Sequence[str], viewers: Sequence[str], account_id: str, result_format: str,
                 template_sql_path: Path) -> None:
    """Everything about the dashboard that comes from stack config.

    model/config.py runs this before any resource is declared;
    DashboardArgs runs it again so the component is safe on its own.
    """
    if result_format != "CSV":
        raise ConfigError(
            "analyst.resultFormat",
            f"{result_format!r} is not supported by the QuickSight "
            "dashboard: it reads results through an S3 manifest data source, which "
            "imports delimited text only. Set the analyst's result format to CSV, or "
            "disable QuickSight (a Glue table + Athena data source would be needed "
            "for PARQUET)."
        )
    if not owners:
        raise ConfigError(
            OWNERS_KEY,
            "is empty: at least one QuickSight user or group "
            "must own the dashboard, dataset and data source"
        )
    _check_principals(owners, OWNERS_KEY, account_id)
    _check_principals(viewers, VIEWERS_KEY, account_id)
    both = sorted(set(owners) & set(viewers))
    if both:
        raise ConfigError(
            VIEWERS_KEY,
            f"repeats owners {both}; list each principal in "
            f"`{OWNERS_KEY}` or `{VIEWERS_KEY}`, not both"
        )
    template_columns(template_sql_path)


def template_columns(sql_path: Path) -> list[str]:
    """Columns of the template, checked against what the dashboard expects."""
    columns = select_columns(Path(sql_path).read_text(encoding="utf-8"))
    expected = list(COLUMN_TYPES)
    if columns != expected:
        missing = [c for c in expected if c not in columns]
        extra = [c for c in columns if c not in expected]
        raise ConfigError(
            "quicksight.template",
            f"{sql_path}: the template's select list {columns} does not match the "
            f"dashboard's columns {expected} (missing {missing}, unexpected {extra}, "
            "or a different order). Update COLUMN_TYPES and the dashboard definition "
            "in components/dashboard.py together with the SQL."
        )
    return columns

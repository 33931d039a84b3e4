"""Which analysis rules and privacy features each analytics engine supports.

One table, so a change in AWS's support is a one-line change here. Sources
(checked 2026-11; see also ../shared/CLEAN_ROOMS_FACTS.md):
- botocore cleanrooms 2022-02-17, CreateCollaborationInput.analyticsEngine:
  "After July 16, 2025, the CLEAN_ROOMS_SQL parameter will no longer be available."
- Clean Rooms User Guide, "Analytics engines" comparison table: the Spark
  engine supports only CUSTOM analysis rules; AGGREGATION and LIST rules need
  the (legacy) Clean Rooms SQL engine. Not re-verified against a newer page;
  CUSTOM is safe on both engines.
- User Guide, "SQL capabilities of AWS Clean Rooms Differential Privacy"
  (dp-sql-capabilities): lists the constructs supported in the Spark engine,
  so differential privacy is available on SPARK.
- User Guide, "Minimum aggregation thresholds" (custom-min-agg-thresholds) and
  custom-sql-capabilities: documented for the Spark engine only.
- botocore AnalysisRuleCustom.aggregationThresholds: "You can't use aggregation
  thresholds with differential privacy".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from model.errors import ConfigError

if TYPE_CHECKING:
    from model.config import AnalysisRuleSpec

SPARK = "SPARK"
CLEAN_ROOMS_SQL = "CLEAN_ROOMS_SQL"
ENGINES = (SPARK, CLEAN_ROOMS_SQL)


@dataclass(frozen=True)
class EngineSupport:
    rule_types: frozenset[str]
    differential_privacy: bool
    aggregation_thresholds: bool
    new_collaborations: bool  # can a collaboration be created with it today?


SUPPORT: dict[str, EngineSupport] = {
    SPARK: EngineSupport(frozenset({"CUSTOM"}), differential_privacy=True,
                         aggregation_thresholds=True, new_collaborations=True),
    CLEAN_ROOMS_SQL: EngineSupport(frozenset({"AGGREGATION", "LIST", "CUSTOM"}), differential_privacy=True,
                                   aggregation_thresholds=False, new_collaborations=False),
}


def check_rule(engine: str, rule: "AnalysisRuleSpec") -> None:
    """Refuse a rule the engine cannot enforce, at preview time."""
    support = SUPPORT[engine]
    if rule.type not in support.rule_types:
        raise ConfigError("analysisRule.type", f"{rule.type} rules are not supported by the {engine} "
                          f"analytics engine (analyticsEngine); it supports {sorted(support.rule_types)}")
    if rule.differential_privacy and not support.differential_privacy:
        raise ConfigError("analysisRule.differentialPrivacy",
                          f"differential privacy is not supported by the {engine} analytics engine")
    if rule.threshold_column and not support.aggregation_thresholds:
        raise ConfigError("analysisRule.aggregationThreshold",
                          f"aggregation thresholds on CUSTOM rules need the SPARK analytics engine, not {engine}")
    if rule.threshold_column and rule.differential_privacy:
        raise ConfigError("analysisRule.aggregationThreshold",
                          "Clean Rooms does not combine aggregation thresholds with differential privacy "
                          "in one rule; keep one of analysisRule.aggregationThreshold or "
                          "analysisRule.differentialPrivacy")


def check_new_collaboration(engine: str) -> None:
    if not SUPPORT[engine].new_collaborations:
        raise ConfigError("analyticsEngine", f"{engine} can no longer be used for new collaborations "
                          f"(AWS stopped it after 2025-07-16); use {SPARK}")

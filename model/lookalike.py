"""A lookalike model the training-data provider shares (components/lookalike.py), as its config says.

Ranges from botocore's cleanroomsml model: CreateConfiguredAudienceModel
minMatchingSeedSize 25-500,000 ("The minimum number of seed users must match the
minimum matching seed size value that was specified when you created the
configured audience model", seed data requirements), audienceSizeConfig with 1-25
bins of type ABSOLUTE or PERCENTAGE, sharedAudienceMetrics ALL or NONE.
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_SEED, MAX_SEED = 25, 500_000  # seed data requirements: "between 25 and 500,000 unique user IDs"
MAX_ABSOLUTE = 20_000_000         # AudienceSize value


@dataclass(frozen=True)
class LookalikeSpec:
    name: str
    min_matching_seed_size: int
    size_type: str
    size_bins: tuple[int, ...]
    share_metrics: bool
    wait_minutes: int

"""Refreshing the QuickSight dataset that reads the results prefix.

The dataset is SPICE-backed, so new results show up in dashboards only after an
ingestion. Ingestion ids must be unique per dataset; a timestamp plus random
suffix keeps them unique and readable in the QuickSight console.
"""
from __future__ import annotations

import datetime as dt
import uuid


def ingestion_id(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.timezone.utc)
    # IngestionId pattern in the quicksight model: ^[a-zA-Z0-9-_]+$, <= 128 chars.
    return f"queryrunner-{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def start_ingestion(quicksight, aws_account_id: str, dataset_id: str) -> dict[str, str]:
    response = quicksight.create_ingestion(
        AwsAccountId=aws_account_id,
        DataSetId=dataset_id,
        IngestionId=ingestion_id(),
        IngestionType="FULL_REFRESH",
    )
    return {"id": response.get("IngestionId", ""), "status": response.get("IngestionStatus", "")}

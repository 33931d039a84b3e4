"""Where things may be: the regions Clean Rooms runs in, and where its results and tables may live.

Static lists, because the Pulumi program and the local clean room must decide
before any request and the local clean room has no botocore;
tests/test_residency.py keeps each one equal to its source, so a new
release of either shows up as a failing test rather than as a refusal of a
region AWS already supports.
"""

from __future__ import annotations

# Regions with an AWS Clean Rooms endpoint: botocore's endpoint data (boto3
# Session.get_available_regions("cleanrooms")), which the general reference's
# "AWS Clean Rooms endpoints and quotas" page lists too
# (https://docs.aws.amazon.com/general/latest/gr/clean-rooms.html).
CLEAN_ROOMS_ENDPOINTS = "https://docs.aws.amazon.com/general/latest/gr/clean-rooms.html"
CLEAN_ROOMS_REGIONS = (
    "ap-northeast-1", "ap-northeast-2", "ap-southeast-1", "ap-southeast-2", "eu-central-1", "eu-north-1",
    "eu-west-1", "eu-west-2", "us-east-1", "us-east-2", "us-west-2",
)

# Where query results may be written: CreateCollaboration allowedResultRegions ("When specified,
# results can only be written to these Regions", service model), the SupportedS3Region enum.
RESULT_REGIONS = (
    "us-west-1", "us-west-2", "us-east-1", "us-east-2", "af-south-1", "ap-east-1", "ap-east-2", "ap-south-2",
    "ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-5", "ap-southeast-4", "ap-southeast-7",
    "ap-south-1", "ap-northeast-3", "ap-northeast-1", "ap-northeast-2", "ca-central-1", "ca-west-1", "eu-south-1",
    "eu-west-3", "eu-south-2", "eu-central-2", "eu-central-1", "eu-north-1", "eu-west-1", "eu-west-2",
    "me-south-1", "me-central-1", "il-central-1", "sa-east-1", "mx-central-1",
)

# Where a configured table's Glue table may be: GlueTableReference region ("The Amazon Web
# Services Region where the Glue table is located", service model), in both the service model's
# enum and CloudFormation's CommercialRegion (which lacks ap-southeast-3): the stack deploys through the latter.
TABLE_REGIONS = (
    "us-west-1", "us-west-2", "us-east-1", "us-east-2", "af-south-1", "ap-east-1", "ap-south-2", "ap-southeast-1",
    "ap-southeast-2", "ap-southeast-5", "ap-southeast-4", "ap-southeast-7", "ap-south-1",
    "ap-northeast-3", "ap-northeast-1", "ap-northeast-2", "ca-central-1", "ca-west-1", "eu-south-1", "eu-west-3",
    "eu-south-2", "eu-central-2", "eu-central-1", "eu-north-1", "eu-west-1", "eu-west-2", "me-south-1",
    "me-central-1", "il-central-1", "sa-east-1", "mx-central-1", "ap-east-2",
)

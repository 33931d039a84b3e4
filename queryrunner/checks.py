"""Local checks of the runner's inputs: flags, stack output values, ids, paths, profiles.

Every check here runs before any AWS client exists, so a bad input costs no
request and ends in exit 2 with one line that names the flag or stack output
and says what would pass. Checks return ``None`` when the value is fine and
otherwise the rest of a sentence ("must be ...; got ...") that the caller
prefixes with the name (``--region``, ``stack output 'region'``).

Id and ARN patterns are read from the installed botocore cleanrooms model
(2022-02-17) at run time, so they cannot drift from what the service validates;
botocore is imported lazily, only on the cloud path (the --local path and
``import queryrunner.cli`` never load it).
"""
from __future__ import annotations

import functools
import ipaddress
import math
import os
import re
from typing import Any, get_args

from model import stack_models
from queryrunner import UsageError

CLEANROOMS_API_VERSION = "2022-02-17"

# Lowercase partition-prefix, optional qualifier (gov, iso, isob, ...), direction, number:
# us-east-1, eu-central-1, us-gov-west-1, cn-north-1, ap-southeast-2, us-isob-east-1.
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)?-[a-z]+-\d{1,2}")
# S3 naming rules for general purpose buckets:
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]*[a-z0-9]")
_BUCKET_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_BUCKET_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", "--x-s3", ".mrap", "--table-s3")
# A template name ends up in an S3 key prefix (<results_prefix>/<name>) and a local folder (--out DIR/<name>/).
_TEMPLATE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_ACCOUNT_ID = re.compile(r"\d{12}")

# Spark compute per protected query (StartProtectedQuery computeConfiguration.worker). WORKER_TYPES is the
# model's WorkerComputeType enum (a test compares it with the installed botocore model; botocore does not check
# enums on the client). The model lets `number` be 2-1024, but its documentation says "SQL queries support a
# minimum value of 2 and a maximum value of 400", and every template here is SQL: 2-400 is what we send.
WORKER_TYPES = get_args(stack_models.WORKER_TYPE)
SQL_WORKERS = stack_models.SQL_WORKERS
# Clean Rooms Processing Units per worker, from the User Guide's worker table (CR.1X: 4 vCPU / 30 GB, 4 workers =
# 8 CRPU; CR.4X: 16 vCPU / 120 GB, 4 workers = 32 CRPU). CR.8X is not in that table, so no figure is claimed.
CRPU_PER_WORKER = {"CR.1X": 2, "CR.4X": 8}
# PySpark jobs (StartProtectedJob computeConfiguration.worker, ProtectedJobWorkerComputeConfiguration): the model's
# ProtectedJobWorkerComputeType enum has no CR.8X, and both type and number are required. The model lets `number` be
# 4-1024; the API reference's worker documentation says "PySpark jobs support a minimum value of 4 and a maximum
# value of 128", so 4-128 is what the runner sends.
JOB_WORKER_TYPES = get_args(stack_models.JOB_WORKER_TYPE)
JOB_WORKERS = stack_models.JOB_WORKERS
# A script's SHA-256 as the stack exports it (hashlib's hexdigest, what `sha256sum` prints).
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


class CheckError(UsageError):
    """A bad input, found locally; nothing was sent (exit 2)."""


# -- display -----------------------------------------------------------------
def show(value: Any, limit: int = 80) -> str:
    """A value for an error message: quoted, escaped (no newline or escape code survives), shortened."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + "...'"


def one_line(text: str) -> str:
    """Escape anything that would break a one-line message (newlines, ANSI escapes, lone surrogates)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                   for c in text)


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for 'must be a string, got a number'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return f"a string ({show(value)})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# -- the botocore cleanrooms model -------------------------------------------
@functools.lru_cache(maxsize=1)
def _cleanrooms_shapes() -> dict[str, Any]:
    from botocore.loaders import create_loader  # lazily: the local path must not load botocore

    return create_loader().load_service_model("cleanrooms", "service-2", CLEANROOMS_API_VERSION)["shapes"]


def model_string(shape: str) -> tuple[re.Pattern, int, int]:
    """(compiled pattern, min, max) of a string shape of the installed cleanrooms model.

    Patterns are Java regexes; the ones used here are plain classes and counts, which
    mean the same in Python with re.ASCII (\\w and \\d are ASCII in Java). The whole
    value must match.
    """
    spec = _cleanrooms_shapes()[shape]
    return re.compile(spec.get("pattern", ".*"), re.ASCII), int(spec.get("min", 0)), int(spec.get("max", 1 << 30))


def check_model_string(value: Any, shape: str, example: str) -> str | None:
    if not isinstance(value, str):
        return f"must be a string ({shape}, e.g. {example}), got {json_type(value)}"
    pattern, lo, hi = model_string(shape)
    if lo <= len(value) <= hi and pattern.fullmatch(value):
        return None
    size = f"{lo} characters" if lo == hi else f"{lo}-{hi} characters"
    return (f"must match {shape} of the cleanrooms API ({size}, pattern {pattern.pattern}), e.g. {example}; "
            f"got {show(value)}")


UUID_EXAMPLE = "5f0e2c1a-8b7d-4c3e-9a10-2b3c4d5e6f70"


def check_membership_id(value: Any) -> str | None:
    return check_model_string(value, "MembershipIdentifier", UUID_EXAMPLE)


def check_collaboration_id(value: Any) -> str | None:
    return check_model_string(value, "CollaborationIdentifier", UUID_EXAMPLE)


def check_query_id(value: Any) -> str | None:
    return check_model_string(value, "ProtectedQueryIdentifier", UUID_EXAMPLE)


def check_job_id(value: Any) -> str | None:
    return check_model_string(value, "ProtectedJobIdentifier", UUID_EXAMPLE)


def check_template_id(value: Any) -> str | None:
    return check_model_string(value, "AnalysisTemplateIdentifier", UUID_EXAMPLE)


def check_template_arn(value: Any) -> str | None:
    return check_model_string(value, "AnalysisTemplateArn",
                              f"arn:aws:cleanrooms:us-east-1:111122223333:membership/{UUID_EXAMPLE}/"
                              f"analysistemplate/{UUID_EXAMPLE}")


def check_parameter_name(value: Any) -> str | None:
    return check_model_string(value, "ParameterName", "min_orders")


# -- plain values --------------------------------------------------------------
def check_region(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"must be a string naming an AWS region (e.g. us-east-1), got {json_type(value)}"
    if _REGION.fullmatch(value):
        return None
    return ("must be an AWS region code in lowercase, such as us-east-1, eu-central-1, us-gov-west-1 or "
            f"cn-north-1; got {show(value)}")


def check_bucket(value: Any) -> str | None:
    rule = ("must be an S3 bucket name: 3-63 characters, lowercase letters, digits, '.' and '-', starting and "
            "ending with a letter or digit")
    if not isinstance(value, str):
        return f"{rule}; got {json_type(value)}"
    problem = None
    if not 3 <= len(value) <= 63 or not _BUCKET.fullmatch(value):
        problem = ""
    elif ".." in value or ".-" in value or "-." in value:
        problem = " (no '..', '.-' or '-.')"
    elif _is_ip(value):
        problem = " (not an IP address)"
    elif value.startswith(_BUCKET_RESERVED_PREFIXES) or value.endswith(_BUCKET_RESERVED_SUFFIXES):
        problem = " (reserved prefix or suffix)"
    else:
        # The service model's own rule for the results bucket, on top of the naming rules.
        pattern, lo, hi = model_string("ProtectedQueryS3OutputConfigurationBucketString")
        if not lo <= len(value) <= hi or not pattern.fullmatch(value):
            problem = " (ProtectedQueryS3OutputConfigurationBucketString of the cleanrooms API)"
    return None if problem is None else f"{rule}{problem}; got {show(value)}"


def _is_ip(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


KEY_PREFIX_RULE = "letters, digits and _ ! . = * - separated by single '/'"


def check_prefix(value: Any, room: int = 0) -> str | None:
    """An S3 key prefix the runner can extend with /<template> (KeyPrefix of the cleanrooms API).

    ``room``: characters the runner appends after it (``/<template name>``).
    """
    rule = f"must be an S3 key prefix ({KEY_PREFIX_RULE}, e.g. results or team/results)"
    if not isinstance(value, str):
        return f"{rule}; got {json_type(value)}"
    prefix = value.strip("/")  # the runner drops leading and trailing slashes
    pattern, _, limit = model_string("KeyPrefix")
    if not prefix or any(s in ("", ".", "..") for s in prefix.split("/")) or not pattern.fullmatch(prefix):
        return f"{rule}; got {show(value)}"
    if len(prefix) + room > limit:
        return f"is too long: with /<template> the key prefix may have at most {limit} characters; got {len(prefix)}"
    return None


def check_template_name(value: str) -> str | None:
    if _TEMPLATE_NAME.fullmatch(value) and value.strip(".") != "":
        return None
    return ("is not usable: a template name must be 1-128 letters, digits, '_', '.' or '-' (it becomes part of "
            "an S3 key and a folder name)")


def check_account_id(value: Any) -> str | None:
    if isinstance(value, str) and _ACCOUNT_ID.fullmatch(value):
        return None
    return f"must be a 12-digit AWS account id as a string; got {json_type(value)}"


def _got(value: Any) -> str:
    """A value after '; got' in an error: a string quoted, anything else by its JSON type."""
    return show(value) if isinstance(value, str) else json_type(value)


def _workers(value: Any, bounds: tuple[int, int], per: str, documented: str) -> str | None:
    lo, hi = bounds
    integer = isinstance(value, int) and not isinstance(value, bool)
    if integer and lo <= value <= hi:
        return None
    return (f"must be an integer from {lo} to {hi} (Spark workers per {per}; the Clean Rooms API reference: "
            f"\"{documented} support a minimum value of {lo} and a maximum value of {hi}\"); "
            f"got {value if integer else json_type(value)}")


def check_worker_type(value: Any) -> str | None:
    if isinstance(value, str) and value in WORKER_TYPES:
        return None
    return (f"must be one of {', '.join(WORKER_TYPES)} (the Spark worker size, WorkerComputeType of the cleanrooms "
            f"API); got {_got(value)}")


def check_workers(value: Any) -> str | None:
    return _workers(value, SQL_WORKERS, "query", "SQL queries")


def check_job_worker_type(value: Any) -> str | None:
    if isinstance(value, str) and value in JOB_WORKER_TYPES:
        return None
    return (f"must be {' or '.join(JOB_WORKER_TYPES)} (the Spark worker size of a PySpark job, "
            f"ProtectedJobWorkerComputeType of the cleanrooms API; jobs have no CR.8X); got {_got(value)}")


def check_job_workers(value: Any) -> str | None:
    return _workers(value, JOB_WORKERS, "PySpark job", "PySpark jobs")


def check_sha256(value: Any) -> str | None:
    if isinstance(value, str) and _SHA256_HEX.fullmatch(value):
        return None
    return f"must be the script's SHA-256 as 64 hexadecimal digits (as sha256sum prints it); got {_got(value)}"


# -- flags ----------------------------------------------------------------------
def _int_at_least(value: int, least: int, flag: str, what: str) -> None:
    if value < least:
        raise CheckError(f"{flag} must be an integer >= {least} ({what}); got {value}")


def _seconds_above(value: float, least: float, flag: str, what: str, inclusive: bool = False) -> None:
    ok = math.isfinite(value) and (value >= least if inclusive else value > least)
    if not ok:
        bound = f">= {least:g}" if inclusive else f"> {least:g}"
        raise CheckError(f"{flag} must be a finite number of seconds {bound} ({what}); got {value:g}")


def check_flag_ranges(args) -> None:
    """Numeric flags, each named in its own error; the first problem raises CheckError."""
    command = args.command
    if command == "run":
        _int_at_least(args.max_concurrency, 1, "--max-concurrency", "queries in flight at once")
        _seconds_above(args.timeout, 0, "--timeout", "the overall deadline")
        _int_at_least(args.retries, 0, "--retries", "re-runs of a transiently failed query")
        _int_at_least(args.max_rows, 0, "--max-rows", "rows printed per result")
        if getattr(args, "worker_type", None) is not None:
            fail("--worker-type", check_worker_type(args.worker_type))
        if getattr(args, "workers", None) is not None:
            fail("--workers", check_workers(args.workers))
    elif command in ("audience", "ml") and getattr(args, "timeout", None) is not None:
        _seconds_above(args.timeout, 0, "--timeout", "how long the job is followed")
    elif command == "job":
        _seconds_above(args.timeout, 0, "--timeout", "the overall deadline")
        _int_at_least(args.retries, 0, "--retries", "re-runs of a job that failed with error.retry.retryable")
        _int_at_least(args.max_rows, 0, "--max-rows", "rows printed per result")
        if getattr(args, "worker_type", None) is not None:
            fail("--worker-type", check_job_worker_type(args.worker_type))
        if getattr(args, "workers", None) is not None:
            fail("--workers", check_job_workers(args.workers))
    elif command == "history":
        _int_at_least(args.limit, 1, "--limit", "how many queries to list")
        if getattr(args, "jobs", False) and args.status_filter == "TIMED_OUT":
            raise CheckError("--status TIMED_OUT does not apply with --jobs: a protected job is SUBMITTED, STARTED, "
                             "CANCELLING, CANCELLED, FAILED or SUCCESS")
    elif command == "benchmark":
        _int_at_least(args.queries, 1, "--queries", "simulated queries")
        _int_at_least(args.max_concurrency, 1, "--max-concurrency", "queries in flight at once")
        _seconds_above(args.min_duration, 0, "--min-duration", "the shortest simulated query")
        _seconds_above(args.max_duration, args.min_duration, "--max-duration", "--min-duration or more",
                       inclusive=True)
        scale = getattr(args, "time_scale", 1.0)
        if not (math.isfinite(scale) and 0 < scale <= 1):
            raise CheckError(f"--time-scale must be a number > 0 and <= 1 (real seconds per simulated second); "
                             f"got {scale:g}")


def check_out_dir(path: str) -> str | None:
    """--out DIR: an existing folder we can write to, or a path whose folders can be created."""
    if not path:
        return "must name a folder (e.g. results); got ''"
    if "\0" in path:
        return f"must be a folder path; got {show(path)}"
    try:
        if os.path.exists(path):
            if not os.path.isdir(path):
                return f"{show(path)} is a file; give a folder (it is created if missing)"
            if not os.access(path, os.W_OK | os.X_OK):
                return f"{show(path)} is a folder this user cannot write to; give another folder"
            return None
        parent = os.path.dirname(os.path.abspath(path))
        while not os.path.exists(parent):
            if os.path.islink(parent):  # dangling symlink
                return f"{show(path)} cannot be created: {show(parent)} is a broken symbolic link"
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent):
            return f"{show(path)} cannot be created: {show(parent)} is a file, not a folder"
        if not os.access(parent, os.W_OK | os.X_OK):
            return f"{show(path)} cannot be created: no permission to create folders in {show(parent)}"
    except (OSError, ValueError) as exc:
        return f"{show(path)} is not a usable folder path ({exc})"
    return None


def check_profile(profile: str | None, name: str = "--profile") -> str | None:
    """A named AWS profile must be configured (botocore reads ~/.aws/config and credentials; no network)."""
    if profile is None:
        return None
    import botocore.session  # lazily: cloud path only
    from botocore.exceptions import BotoCoreError

    try:
        available = botocore.session.Session().available_profiles
    except BotoCoreError as exc:
        return f"{show(profile)}: cannot read the AWS config files ({one_line(str(exc))})"
    if profile in available:
        return None
    known = ", ".join(sorted(available)) or "none (run `aws configure --profile NAME`)"
    return (f"{show(profile)} is not a configured AWS profile; configured profiles: {known} "
            "(from ~/.aws/config and ~/.aws/credentials, or AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE)")


def fail(name: str, problem: str | None, error: type[Exception] = CheckError) -> None:
    """Raise ``error`` with '<name> <problem>' when a check found a problem."""
    if problem is not None:
        raise error(f"{name} {problem}")

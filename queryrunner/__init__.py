"""Analyst's command-line runner for AWS Clean Rooms protected queries.

Everything it needs (membership id, analysis template ARNs and their declared
parameters, where results land) comes from the analyst stack's outputs, so the
analyst never types an id by hand. See ``python -m queryrunner --help``.
"""

# Exit codes, documented in --help and docs/query-runner.md.
EXIT_OK = 0
EXIT_QUERY_FAILED = 1   # FAILED, TIMED_OUT, CANCELLED, deadline exceeded, budget refusal
EXIT_USAGE = 2          # bad flags, missing stack outputs, bad parameters
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), after cancelling in-flight queries


class UsageError(Exception):
    """Bad flags or input, found before anything was sent or run (exit 2)."""

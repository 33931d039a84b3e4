"""Analyst's command-line runner for AWS Clean Rooms protected queries.

Everything it needs (membership id, analysis template ARNs and their declared
parameters, where results land) comes from the analyst stack's outputs, so the
analyst never types an id by hand. See ``python -m queryrunner --help``.
"""

# Exit codes, documented in --help and docs/query-runner.md.
EXIT_OK = 0
EXIT_QUERY_FAILED = 1   # FAILED, TIMED_OUT, CANCELLED, deadline exceeded, budget refusal
EXIT_USAGE = 2          # bad flags, missing stack outputs, bad parameters, unusable journal (nothing started)
# A start whose outcome the runner could not decide (its answer was lost and the listing shows no single query that
# it created), or a query whose end it could not see: `run ... --resume` settles it (docs/query-runner.md,
# "Failure behaviour").
EXIT_OUTCOME_UNKNOWN = 3
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), after cancelling in-flight queries
EXIT_TERMINATED = 143   # SIGTERM (128 + 15), after cancelling in-flight queries, as for Ctrl-C


class UsageError(Exception):
    """Bad flags or input, found before anything was sent or run (exit 2)."""

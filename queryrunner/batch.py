"""`run --all`: every template concurrently, never more in flight than the quota.

A thread pool of `max_concurrency` workers is the limiter: each worker runs one
template from start to final state (including retries) before taking the next,
so at most `max_concurrency` protected queries exist at any moment and the total
time approaches the slowest query instead of the sum. Polling is I/O bound, so
threads are enough. Results are handed back to the main thread as they finish,
so printing and downloads never interleave.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from queryrunner.outputs import Template
from queryrunner.poll import Outcome, QueryRunner, Resume


def run_all(runner: QueryRunner, jobs: Sequence[tuple[Template, dict[str, str]]], max_concurrency: int,
            on_done: Callable[[Outcome], None] = lambda outcome: None,
            resumes: Mapping[str, Resume] | None = None) -> list[Outcome]:
    """Run every template; ``resumes`` says, per template name, what an earlier run's journal left to do."""
    if max_concurrency < 1:
        raise ValueError("max_concurrency must be >= 1")
    pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="query")
    futures: dict[Future, Template] = {}
    outcomes: list[Outcome] = []
    try:
        for template, params in jobs:
            futures[pool.submit(runner.execute, template, params, (resumes or {}).get(template.name))] = template
        pending = set(futures)
        while pending:
            # A bounded wait keeps the main thread responsive to Ctrl-C on every platform.
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in done:
                try:
                    outcome = future.result()
                except Exception as exc:  # a bug or an unexpected API error in one worker
                    outcome = Outcome(futures[future].name, "START_FAILED", error_code=type(exc).__name__,
                                      error_message=str(exc))
                outcomes.append(outcome)
                on_done(outcome)
    except BaseException:
        # Ctrl-C: let workers see the stop flag, drop queued templates; the caller
        # cancels the queries still in flight.
        runner.stop()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    order = {template.name: i for i, (template, _) in enumerate(jobs)}
    return sorted(outcomes, key=lambda o: order.get(o.template, 0))

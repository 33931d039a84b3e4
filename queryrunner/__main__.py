import atexit
import os
import sys
import threading

# pydantic looks for plugins in every installed distribution's entry points at its first model (20-40 ms
# here, on every command); this command uses none. An explicit setting of the user's is kept.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from queryrunner.cli import main  # noqa: E402


def _exit(code: int) -> None:
    """Exit as the interpreter would, without tearing down every module one by one.

    With DuckDB, pyarrow, numpy, sqlglot and OpenDP loaded, that teardown takes about 0.1 s
    after the work is done (a warm local run is 0.5 s). What shutdown does that matters is done
    here: threads that are not daemons are joined, atexit handlers run (PySpark's, pyarrow's),
    the standard streams flushed. Every file the runner writes is closed, and renamed into
    place, before main returns.
    """
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    run_handlers = getattr(atexit, "_run_exitfuncs", None)
    if run_handlers is None or sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)  # not CPython, or under a profiler or debugger that reports after the module returns
    run_handlers()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = 1
    sys.stderr.flush()
    os._exit(code)


try:
    code = main()
    sys.stdout.flush()
except BrokenPipeError:
    # The reader went away (`... | head`): not an error of the runner, and no traceback. Python's documented
    # recipe (signal module docs, "Note on SIGPIPE"): point stdout at devnull so the exit flush cannot fail again.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    code = 1
_exit(code)

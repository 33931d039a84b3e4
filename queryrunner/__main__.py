import os
import sys

from queryrunner.cli import main

try:
    code = main()
    sys.stdout.flush()
except BrokenPipeError:
    # The reader went away (`... | head`): not an error of the runner, and no traceback. Python's documented
    # recipe (signal module docs, "Note on SIGPIPE"): point stdout at devnull so the exit flush cannot fail again.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    code = 1
sys.exit(code)

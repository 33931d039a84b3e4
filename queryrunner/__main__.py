import sys

from queryrunner.cli import main

sys.exit(main())

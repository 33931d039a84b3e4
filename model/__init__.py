"""What the collaboration *is*, shared by everything that acts on it.

Typed stack config (config.py), datasets and their schemas (datasets.py),
analysis rules and engine capabilities (engines.py), analysis templates and
their parameters (templates.py), partner outputs and the decisions built on
them (peers.py, plan.py), the dashboard's config rules (quicksight.py).

Imports neither pulumi nor boto3: the Pulumi program (components/), the
local clean room (localroom/) and the query runner (queryrunner/) all read it,
and it reads only the stack files and data/.
"""

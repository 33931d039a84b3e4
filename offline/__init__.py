"""Running the Pulumi program offline: no Pulumi CLI, no credentials, no network.

- ``offline.harness``: the program (or one component) under Pulumi's mocks,
  with a recording monitor; the test suite uses it through tests/harness.py.
- ``offline.plan``: ``python -m offline.plan``, the reviewers' plan of both
  stacks over the deploy rounds, as text or JSON, with a diff against a saved plan.
"""

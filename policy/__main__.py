"""Entry point the Pulumi CLI runs for `--policy-pack policy`.

Constructing PolicyPack starts the analyzer's gRPC server and blocks, so this
file only builds the pack; the policies live in cleanrooms_guard/ and tests
import that package, never this file.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pulumi_policy import PolicyPack  # noqa: E402

from cleanrooms_guard import DEFAULT_ENFORCEMENT, PACK_NAME, POLICIES  # noqa: E402

PolicyPack(
    name=PACK_NAME,
    enforcement_level=DEFAULT_ENFORCEMENT,
    policies=POLICIES,
    description="Privacy and security guards for the two-organization AWS Clean Rooms collaboration.",
)

"""Stack files for a collaboration of N members, with small data: the offline plan's scale test.

    venv/bin/python scripts/generate_stacks.py --members 10 --out /tmp/ten
    venv/bin/python -m offline.plan --rounds --stacks-dir /tmp/ten

Member m01 owns the collaboration, contributes table t01 and is the analyst; members
m02..mNN each contribute one table under an aggregation threshold (m02's under
differential privacy, with the collaboration's privacy budget). Every stack lists
every other member as a partner, by stack reference; the analyst has one template per
partner table, joined with its own. Account ids are placeholders (1000000000NN). The
output is deterministic: the same arguments write the same files.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
from pathlib import Path

import yaml

PROJECT = "cleanrooms-collab"
# This generator's own cap, to keep the scale test quick: Clean Rooms has no fixed maximum, but
# its "Members invited per collaboration" quota is 5 unless raised (User Guide, quotas page).
MAX_MEMBERS = 10
DEFAULT_INVITED_QUOTA = 5
ROWS = 60
REGIONS = ["northeast", "midwest", "south", "west"]


def member(i: int) -> str:
    return f"m{i:02d}"


def account(i: int) -> str:
    return f"1000000000{i:02d}"


def table(i: int) -> str:
    return f"t{i:02d}"


def _roles(i: int) -> list[str]:
    return ["collaboration_owner", "data_producer", "analyst"] if i == 1 else ["data_producer"]


def _rule(i: int) -> dict:
    rule = {"type": "CUSTOM", "allowedAnalyses": "ANY_QUERY", "allowedAnalysisProviders": [account(1)]}
    if i == 2:
        rule["differentialPrivacy"] = {"userIdentifierColumn": "customer_key"}
    else:
        rule["aggregationThreshold"] = {"column": "customer_key", "minimum": 3}
    return rule


def stack_file(i: int, n: int, data_dir: str) -> dict:
    c = f"{PROJECT}:"
    config = {
        "pulumi:disable-default-providers": ["aws", "aws-native", "time"],
        c + "organization": member(i), c + "displayName": f"Member {i}", c + "accountId": account(i),
        c + "region": "us-east-1", c + "profile": member(i), c + "dataDir": data_dir,
        c + "roles": _roles(i), c + "dataset": table(i),
        c + "partners": [{"name": member(j), "accountId": account(j), "roles": _roles(j), "dataset": table(j),
                          "stack": f"organization/{PROJECT}/{member(j)}"} for j in range(1, n + 1) if j != i],
        c + "analysisRule": _rule(i),
    }
    if i == 1:
        config[c + "collaboration"] = {"name": f"scale-{n}", "description": f"A generated collaboration of {n} members."}
        if n - 1 > DEFAULT_INVITED_QUOTA:
            # Needs the owner account's quota raised first (docs/configuration.md, `collaboration`).
            config[c + "collaboration"]["invitedMembersQuota"] = n - 1
        config[c + "analyst"] = {"resultFormat": "CSV", "resultsPrefix": "results"}
    if i == 2:
        config[c + "differentialPrivacy"] = {"epsilon": 10, "usersNoisePerQuery": 20, "autoRefresh": "CALENDAR_MONTH"}
    return {"config": config}


def schema(i: int) -> dict:
    return {"name": table(i), "description": f"Member {i}'s customers (generated).", "file": f"{table(i)}.csv",
            "columns": [{"name": "customer_key", "type": "varchar(64)", "role": "join_key"},
                        {"name": "region", "type": "varchar(16)", "role": "dimension", "values": REGIONS},
                        {"name": "spend", "type": "integer", "role": "metric", "bounds": [0, 1000]}]}


def rows(i: int) -> str:
    rng = random.Random(i)
    lines = ["customer_key,region,spend"]
    for k in range(ROWS):
        key = hashlib.sha256(f"customer-{k}".encode()).hexdigest()
        lines.append(f"{key},{rng.choice(REGIONS)},{rng.randint(0, 1000)}")
    return "\n".join(lines) + "\n"


def query(j: int) -> str:
    return (f"-- description: Customers and spend per region of m01 joined with {member(j)}.\n"
            f"SELECT a.region, COUNT(*) AS customers, SUM(b.spend) AS spend\n"
            f"FROM {table(1)} a\nINNER JOIN {table(j)} b ON a.customer_key = b.customer_key\nGROUP BY a.region\n")


def write(n: int, out: Path) -> list[Path]:
    data = out / "data"
    written = []
    for i in range(1, n + 1):
        folder = data / table(i)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "schema.yaml").write_text(yaml.safe_dump(schema(i), sort_keys=False))
        (folder / f"{table(i)}.csv").write_text(rows(i))
        path = out / f"Pulumi.{member(i)}.yaml"
        path.write_text(yaml.safe_dump(stack_file(i, n, str(data.resolve())), sort_keys=False))
        written.append(path)
    (data / "queries").mkdir(parents=True, exist_ok=True)
    for j in range(2, n + 1):
        (data / "queries" / f"spend_with_{member(j)}.sql").write_text(query(j))
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/generate_stacks.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--members", type=int, default=MAX_MEMBERS, help=f"2 to {MAX_MEMBERS} (default %(default)s)")
    p.add_argument("--out", type=Path, required=True, help="a new or empty folder")
    args = p.parse_args(argv)
    if not 2 <= args.members <= MAX_MEMBERS:
        print(f"error: --members {args.members}: this generator makes 2 to {MAX_MEMBERS} members "
              "(AWS Clean Rooms quotas)", file=sys.stderr)
        return 2
    if args.out.exists() and any(args.out.iterdir()):
        print(f"error: --out {args.out}: not empty; give a new or empty folder", file=sys.stderr)
        return 2
    files = write(args.members, args.out)
    print(f"{len(files)} stack files in {args.out}: venv/bin/python -m offline.plan --rounds --stacks-dir {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

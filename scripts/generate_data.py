"""Deterministic generator for the two organizations' sample datasets.

Both organizations derive the join key the same way: a salted SHA-256 of the
customer's normalized e-mail address. Neither dataset contains the e-mail
itself, and the key only matches across the two organizations for customers
both of them know, which is what a clean room join is for.

Customer ``i`` is the same person in both datasets, so the overlap is known:
org A holds customers ``[0, a_rows)``, org B holds
``[a_rows - overlap, a_rows - overlap + b_rows)``. Attributes (age group,
region) come from a per-customer RNG so they agree across the two datasets.

    python scripts/generate_data.py                      # default size
    python scripts/generate_data.py --a-rows 1000000 --b-rows 800000 --overlap 500000
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import random
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "data"

# A demo salt. Real partners agree on a secret salt out of band and never put
# it in a repository; anyone with the salt can test whether an e-mail is present.
DEMO_SALT = "demo-shared-salt-2026"

AGE_GROUPS = ["18-24", "25-34", "35-44", "45-54", "55-64", "65+"]
REGIONS = ["northeast", "midwest", "south", "west"]
PRODUCT_CATEGORIES = ["electronics", "apparel", "home", "grocery", "sports"]
CHANNELS = ["web", "mobile_app", "email", "social"]


def customer_key(index: int, salt: str = DEMO_SALT) -> str:
    email = f"customer{index:08d}@example.com".strip().lower()
    return hashlib.sha256((salt + email).encode("utf-8")).hexdigest()


def _person(index: int, seed: int) -> tuple[str, str]:
    rng = random.Random(f"{seed}-person-{index}")
    return rng.choice(AGE_GROUPS), rng.choice(REGIONS)


def retail_rows(a_rows: int, seed: int):
    for i in range(a_rows):
        age_group, region = _person(i, seed)
        rng = random.Random(f"{seed}-retail-{i}")
        orders = rng.randint(1, 40)
        yield {
            "customer_key": customer_key(i),
            "age_group": age_group,
            "region": region,
            "product_category": rng.choice(PRODUCT_CATEGORIES),
            "order_count": orders,
            "purchase_amount": f"{orders * rng.uniform(8.0, 120.0):.2f}",
        }


def engagement_rows(a_rows: int, b_rows: int, overlap: int, seed: int):
    first = a_rows - overlap
    for i in range(first, first + b_rows):
        age_group, region = _person(i, seed)
        rng = random.Random(f"{seed}-media-{i}")
        yield {
            "customer_key": customer_key(i),
            "age_group": age_group,
            "region": region,
            "channel": rng.choice(CHANNELS),
            "sessions": rng.randint(1, 200),
            "engagement_score": f"{rng.uniform(0.0, 100.0):.2f}",
        }


def write_csv(path: Path, rows, fieldnames: list[str]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fieldnames, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
            count += 1
    return count


def generate(a_rows: int, b_rows: int, overlap: int, seed: int, out: Path = DATA_DIR) -> dict:
    if not 0 <= overlap <= min(a_rows, b_rows):
        raise SystemExit(f"--overlap must be between 0 and min(--a-rows, --b-rows), got {overlap}")
    a_count = write_csv(
        out / "retail_purchases" / "retail_purchases.csv",
        retail_rows(a_rows, seed),
        ["customer_key", "age_group", "region", "product_category", "order_count", "purchase_amount"],
    )
    b_count = write_csv(
        out / "media_engagement" / "media_engagement.csv",
        engagement_rows(a_rows, b_rows, overlap, seed),
        ["customer_key", "age_group", "region", "channel", "sessions", "engagement_score"],
    )
    summary = {"seed": seed, "retail_purchases_rows": a_count,
               "media_engagement_rows": b_count, "overlapping_customers": overlap}
    (out / "generated.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a-rows", type=int, default=3000, help="rows in org A's retail_purchases")
    parser.add_argument("--b-rows", type=int, default=2500, help="rows in org B's media_engagement")
    parser.add_argument("--overlap", type=int, default=1800, help="customers present in both")
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument("--out", type=Path, default=DATA_DIR)
    args = parser.parse_args(argv)
    print(json.dumps(generate(args.a_rows, args.b_rows, args.overlap, args.seed, args.out), indent=2))


if __name__ == "__main__":
    main()

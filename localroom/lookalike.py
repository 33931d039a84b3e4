"""The local lookalike rehearsal: a seed against the training data, on this machine (scikit-learn).

Not AWS's model (Clean Rooms ML trains "a deep neural network", User Guide): a
transparent baseline with the same inputs and the same two metrics, so a seed
provider can see what a seed finds before spending a training run.

- Each training user becomes a vector: TF-IDF over the items it interacted with and
  its categorical feature values (``genre=drama``), reduced by truncated SVD.
- A logistic regression learns the seed users (those present in the training data)
  against an equal-or-larger random sample of the others; every user is scored.
- The segment of size N is the N best-scored users that are not seed users:
  "training data providers can never observe the seed data" (User Guide, ml-privacy),
  and the segment is written to the provider's location.
- Recall, as the metrics page defines it ("the percentage of the most similar users
  (by default, the most similar 20%) from a sample of the training data that are
  included in the seed audience"): a quarter of the seed users is held out of
  training; recall is the share of them that score in the top 20% of users. A model
  no better than chance scores about 0.2 ("A recall value approximately equal to the
  maximum bin percentage indicates that the audience model is equivalent to random
  selection").
- Segment-level relevance (-1 to 1, "Relevance scores monotonically decrease as the
  segment size increases [...] When the segment-level relevance score reaches 0, the
  model predicts that all users in the lookalike segment are from the same
  distribution as the seed data"): here the cosine between the segment's mean vector
  and the seed's, both measured from the mean of all users. This project's analogue,
  not AWS's formula, which the page does not give.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

HOLD_OUT = 0.25
RECALL_TOP = 0.20


@dataclass(frozen=True)
class Rehearsal:
    users: int                      # training users
    seed_given: int
    seed_matched: int               # seed users found in the training data
    recall: float
    sizes: tuple[tuple[str, int], ...]  # (label, users) per audience size
    relevance: tuple[float, ...]
    segments: dict[str, list[str]] = field(default_factory=dict)


def interactions(path, user: str, item: str, categorical: list[str]):
    """(user ids, one text document per user) from the training data file."""
    import duckdb

    reader = "read_parquet(?)" if str(path).lower().endswith(".parquet") else "read_csv(?, header = true, all_varchar = true)"
    tokens = " || ' ' || ".join([f"'item=' || \"{item}\"", *(f"'{c}=' || \"{c}\"" for c in categorical)])
    with duckdb.connect() as db:
        rows = db.execute(f"SELECT \"{user}\", string_agg({tokens}, ' ' ORDER BY \"{item}\") FROM {reader} "
                          f"GROUP BY 1 ORDER BY 1", [str(path)]).fetchall()
    return [r[0] for r in rows], [r[1] for r in rows]


def embed(documents: list[str], seed: int) -> np.ndarray:
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    counts = TfidfVectorizer(token_pattern=r"\S+", lowercase=False).fit_transform(documents)
    components = max(2, min(32, counts.shape[1] - 1, counts.shape[0] - 1))
    return normalize(TruncatedSVD(n_components=components, random_state=seed).fit_transform(counts))


def rehearse(users: list[str], vectors: np.ndarray, seed_ids: set[str], sizes: list[tuple[str, int]],
             seed: int = 0) -> Rehearsal:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    index = {u: i for i, u in enumerate(users)}
    matched = np.array(sorted(index[u] for u in seed_ids if u in index), dtype=int)
    rng.shuffle(matched)
    held = matched[: max(1, int(len(matched) * HOLD_OUT))]
    learn = matched[len(held):]
    others = np.setdiff1d(np.arange(len(users)), matched)
    negatives = rng.choice(others, size=min(len(others), max(3 * len(learn), 50)), replace=False)
    x = np.vstack([vectors[learn], vectors[negatives]])
    y = np.concatenate([np.ones(len(learn)), np.zeros(len(negatives))])
    model = LogisticRegression(class_weight="balanced", max_iter=1000, random_state=seed).fit(x, y)
    scores = model.predict_proba(vectors)[:, 1]
    # Recall: the held-out seed users among the top 20% of everyone not used to learn.
    candidates = np.setdiff1d(np.arange(len(users)), np.concatenate([learn, negatives]))
    cut = np.quantile(scores[candidates], 1 - RECALL_TOP)
    recall = float(np.mean(scores[held] >= cut))
    # Segments: the best-scored users that are not seed users, biggest first, each a prefix of the next.
    order = [i for i in np.argsort(-scores, kind="stable") if users[i] not in seed_ids]
    centre = vectors.mean(axis=0)
    seed_direction = vectors[matched].mean(axis=0) - centre
    relevance, segments = [], {}
    for label, n in sizes:
        chosen = order[:n]
        direction = vectors[chosen].mean(axis=0) - centre
        denominator = float(np.linalg.norm(direction) * np.linalg.norm(seed_direction)) or 1.0
        relevance.append(float(np.dot(direction, seed_direction)) / denominator)
        segments[label] = [users[i] for i in chosen]
    return Rehearsal(len(users), len(seed_ids), len(matched), recall, tuple(sizes), tuple(relevance), segments)


def segment_sizes(size_type: str, bins, users: int) -> list[tuple[str, int]]:
    """(label, number of users) per audience size, capped at the users there are."""
    if size_type == "PERCENTAGE":
        return [(f"{b}%", max(1, users * int(b) // 100)) for b in bins]
    return [(str(b), min(int(b), users)) for b in bins]

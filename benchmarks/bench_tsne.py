"""t-SNE time (sklearn.manifold.TSNE) for the joint-latent figures: 2k and 10k points of dimension 64.

The points are a mixture of 10 Gaussian clusters (like codes of a few classes), PCA initialisation, automatic
learning rate, one job. 10k points only without --quick (it takes on the order of a minute on one core).

Run as ``python benchmarks/bench_tsne.py [--quick]``.
"""

from __future__ import annotations

import common  # noqa: I001  (sets thread env vars before numpy/sklearn load)
import numpy as np
from sklearn.manifold import TSNE

DIM = 64


def points(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 4.0, (10, DIM))
    return (centres[rng.integers(0, 10, n)] + rng.normal(0.0, 1.0, (n, DIM))).astype(np.float32)


def run(quick: bool = False) -> list[dict]:
    sizes = {2000: 1 if quick else 3} if quick else {2000: 3, 10000: 2}
    rows = []
    for n, repeats in sizes.items():
        x = points(n)

        def fit(x: np.ndarray = x) -> None:
            TSNE(n_components=2, init="pca", learning_rate="auto", random_state=0, n_jobs=1).fit_transform(x)

        seconds = common.median_seconds(fit, repeats, warmup=0)
        rows.append({"points": n, "dim": DIM, "repeats": repeats, "seconds": seconds, "points/s": n / seconds})
    return rows


def report(rows: list[dict]) -> str:
    return common.table(rows)


if __name__ == "__main__":
    common.main(__doc__, run, report)

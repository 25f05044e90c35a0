"""95 % bootstrap intervals for the ablation table, over evaluation items and training seeds.

Every model is scored on the same items, so the resamples are paired: one replicate draws the
training seeds (with replacement) and, for each evaluation set, the item indices (with replacement),
and applies the same draw to the base and to every arm. An arm's score in a replicate is the mean
over the drawn seeds of its score on the drawn items; its delta is that minus the base's score on
the same items. The interval is the 2.5th and 97.5th percentile of the replicates. With one seed
the interval covers the evaluation items only.

Scores, computed from per-item results (train.evaluate.evaluate_model's items):
perplexity = exp(sum of NLL / sum of tokens); accuracy; weighted F1 (F1 per label weighted by
the label's support in the gold answers, as sklearn's average="weighted", AdaptLLM's FPB metric).
"""

from __future__ import annotations

import numpy as np

CONFIDENCE = 0.95


def _weighted_f1(gold: np.ndarray, predicted: np.ndarray, n_labels: int) -> np.ndarray:
    """Weighted F1 of each row (one resample per row) of label indices."""
    scores = np.zeros(gold.shape[0])
    total = gold.shape[1]
    for label in range(n_labels):
        g, p = gold == label, predicted == label
        tp = (g & p).sum(1)
        support, claimed = g.sum(1), p.sum(1)
        denominator = support + claimed
        f1 = np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)
        scores += f1 * support / total
    return scores


def metrics_of(items: dict, tasks: dict, index: dict[str, np.ndarray]) -> dict:
    """Every score of one model for each resample: {name: array of shape (replicates,)}.
    `tasks` maps a task name to its train.tasks.Task (options, metric); `index[set]` has shape
    (replicates, items): which items each replicate draws."""
    out = {}
    if "perplexity" in items:
        nll = np.array([i[0] for i in items["perplexity"]])[index["perplexity"]]
        count = np.array([i[1] for i in items["perplexity"]])[index["perplexity"]]
        out["perplexity"] = np.exp(nll.sum(1) / count.sum(1))
    for name, task in tasks.items():
        if name not in items:
            continue
        labels = task.options
        code = {label: k for k, label in enumerate(labels)}
        gold = np.array([code[g] for g in items[name]["gold"]])[index[name]]
        predicted = np.array([code[p] for p in items[name]["predicted"]])[index[name]]
        out[f"{name}_accuracy"] = (gold == predicted).mean(1)
        if task.metric == "weighted_f1":
            out[f"{name}_weighted_f1"] = _weighted_f1(gold, predicted, len(labels))
    return out


def _sizes(items: dict) -> dict[str, int]:
    return {k: len(v) if k == "perplexity" else len(v["gold"]) for k, v in items.items()}


def _interval(values: np.ndarray) -> list[float]:
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return [round(float(low), 4), round(float(high), 4)]


def table(
    base: dict, arms: dict[str, list[dict]], tasks: dict, replicates: int = 1000, seed: int = 0
) -> dict:
    """{"base": {score: {value, ci}}, "arms": {arm: {score: {mean, seeds, ci, delta, delta_ci}}},
    "pairs": {"a - b": {score: {difference, ci}}}}: every arm against every later arm, on the
    same replicates (the same items and seed indices), so the interval is of the difference itself.
    `arms[arm]` lists that arm's per-item results, one per training seed (in seed order)."""
    rng = np.random.default_rng(seed)
    sizes = _sizes(base)
    point = {k: np.arange(n)[None, :] for k, n in sizes.items()}  # the full sets, one "replicate"
    draw = {k: rng.integers(0, n, size=(replicates, n)) for k, n in sizes.items()}
    n_seeds = max((len(runs) for runs in arms.values()), default=1)
    seed_draw = rng.integers(0, n_seeds, size=(replicates, n_seeds))
    base_point, base_draw = metrics_of(base, tasks, point), metrics_of(base, tasks, draw)
    result = {
        "base": {
            k: {"value": round(float(v[0]), 4), "ci": _interval(base_draw[k])}
            for k, v in base_point.items()
        },
        "arms": {},
        "pairs": {},
    }
    replicated: dict[str, dict[str, np.ndarray]] = {}
    means: dict[str, dict[str, float]] = {}
    for arm, runs in arms.items():
        for run in runs:
            if _sizes(run) != sizes:
                raise ValueError(f"{arm}: scored on other items than the base")
        per_seed_point = [metrics_of(r, tasks, point) for r in runs]
        per_seed_draw = [metrics_of(r, tasks, draw) for r in runs]
        # seeds of arms with fewer runs than n_seeds wrap around (only when an arm is incomplete)
        picks = seed_draw % len(runs)
        scores, replicated[arm], means[arm] = {}, {}, {}
        for k in base_point:
            stacked = np.stack([d[k] for d in per_seed_draw])  # (seeds, replicates)
            resampled = stacked[picks.T, np.arange(replicates)].mean(0)
            replicated[arm][k] = resampled
            seeds = [float(p[k][0]) for p in per_seed_point]
            mean = means[arm][k] = float(np.mean(seeds))
            scores[k] = {
                "mean": round(mean, 4),
                "seeds": [round(s, 4) for s in seeds],
                "ci": _interval(resampled),
                "delta": round(mean - float(base_point[k][0]), 4),
                "delta_ci": _interval(resampled - base_draw[k]),
            }
        result["arms"][arm] = scores
    names = list(arms)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            result["pairs"][f"{a} - {b}"] = {
                k: {
                    "difference": round(means[a][k] - means[b][k], 4),
                    "ci": _interval(replicated[a][k] - replicated[b][k]),
                }
                for k in base_point
            }
    return result

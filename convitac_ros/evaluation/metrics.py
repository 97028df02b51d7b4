"""Scores of an evaluation: accuracy, confusion and calibration per head, latency, drops.

The one metrics module of the project: training validation, `training/evaluate.py` (a dataset
split) and `convitac_evaluate` (a bag, offline or through a node) score a head with
:func:`head_scores`, so their reports have the same fields computed the same way. Pure
bookkeeping (NumPy and, for the PNGs, matplotlib).

Calibration: every head gets the expected calibration error over `ECE_BINS` equal-width
confidence bins (Guo et al., ICML 2017): the sample-weighted mean of |accuracy - confidence| over
the bins. For a two-class head the confidence is P(second class) (`success`, `soft`, `rough`) and
the "accuracy" of a bin the share of that class in it, so the reliability diagram reads as
"of the grasps given P = 0.7, how many succeeded"; it also gets the ROC AUC and the Brier score
of that probability. A multi-class head's confidence is the top class's probability and its
accuracy whether the top class was right (top-class ECE).
"""

from __future__ import annotations

from dataclasses import dataclass, field
import json
from pathlib import Path
from typing import Any

import numpy as np

from convitac_ros.data.sample import MISSING_LABEL
from convitac_ros.fileio import atomic_write_text

PERCENTILES = (50, 90, 95, 99)
REPORT_FILE = 'report.json'  # beside one confusion_<head>.png per head
ECE_BINS = 15


def accuracy(predicted: np.ndarray, target: np.ndarray) -> float:
    """Fraction of labelled samples predicted right (NaN when none is labelled)."""
    labelled = target != MISSING_LABEL
    if not labelled.any():
        return float('nan')
    return float((predicted[labelled] == target[labelled]).mean())


def balanced_accuracy(predicted: np.ndarray, target: np.ndarray) -> float:
    """Mean recall over the classes present in the labels (NaN when none is labelled)."""
    labelled = target != MISSING_LABEL
    if not labelled.any():
        return float('nan')
    predicted, target = predicted[labelled], target[labelled]
    return float(np.mean([(predicted[target == c] == c).mean() for c in np.unique(target)]))


def macro_f1(predicted: np.ndarray, target: np.ndarray) -> float:
    """Unweighted mean F1 over the classes that are labelled or predicted (NaN when unlabelled).

    A class that is predicted but never labelled counts with F1 = 0, as in scikit-learn.
    """
    labelled = target != MISSING_LABEL
    if not labelled.any():
        return float('nan')
    predicted, target = predicted[labelled], target[labelled]
    scores = []
    for c in np.union1d(np.unique(target), np.unique(predicted)):
        hits = float(np.sum((predicted == c) & (target == c)))
        scores.append(2 * hits / (np.sum(predicted == c) + np.sum(target == c)))
    return float(np.mean(scores))


def confusion_matrix(predicted: np.ndarray, target: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``[true class, predicted class]`` over labelled samples: int64 (C, C).

    A prediction of MISSING_LABEL (no answer) is counted in no cell.
    """
    keep = (target != MISSING_LABEL) & (predicted != MISSING_LABEL)
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (target[keep], predicted[keep]), 1)
    return matrix


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties count 1/2.

    Args:
        scores: (N,) scores, e.g. P(success).
        positive: (N,) bool, the true class.

    Returns:
        The AUC, or None when only one class is present (it is undefined then).
    """
    positive = np.asarray(positive, dtype=bool)
    count_pos, count_neg = int(positive.sum()), int((~positive).sum())
    if count_pos == 0 or count_neg == 0:
        return None
    order = np.argsort(scores, kind='mergesort')
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = np.asarray(scores)[order]
    # Average ranks (1-based) over ties, as in the Mann-Whitney U statistic.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    u_statistic = ranks[positive].sum() - count_pos * (count_pos + 1) / 2.0
    return float(u_statistic / (count_pos * count_neg))


def brier_score(probability: np.ndarray, positive: np.ndarray) -> float:
    """Mean squared difference between P(positive) and the outcome (0 best, 0.25 for P = 0.5)."""
    return float(np.mean((np.asarray(probability, dtype=np.float64)
                          - np.asarray(positive, dtype=np.float64)) ** 2))


def reliability_bins(confidence: np.ndarray, hit: np.ndarray, bins: int = ECE_BINS
                     ) -> dict[str, list]:
    """Equal-width bins of [0, 1] over the confidence, the last one closed.

    Args:
        confidence: (N,) predicted probability of the event.
        hit: (N,) whether the event happened (bool or 0/1).
        bins: Number of bins.

    Returns:
        ``edges`` (bins + 1), and per bin ``count``, ``confidence`` (mean) and ``frequency``
        (share of hits); the means are None in empty bins.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    hit = np.asarray(hit, dtype=np.float64)
    index = np.clip((confidence * bins).astype(np.int64), 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    sums = np.bincount(index, weights=confidence, minlength=bins)
    hits = np.bincount(index, weights=hit, minlength=bins)
    return {'edges': np.linspace(0.0, 1.0, bins + 1).tolist(), 'count': counts.tolist(),
            'confidence': [float(s / c) if c else None for s, c in zip(sums, counts)],
            'frequency': [float(h / c) if c else None for h, c in zip(hits, counts)]}


def expected_calibration_error(confidence: np.ndarray, hit: np.ndarray,
                               bins: int = ECE_BINS) -> float:
    """Sample-weighted mean over equal-width bins of |share of hits - mean confidence|."""
    table = reliability_bins(confidence, hit, bins)
    total = sum(table['count'])
    if not total:
        return float('nan')
    return float(sum(count * abs(freq - conf) for count, conf, freq in
                     zip(table['count'], table['confidence'], table['frequency']) if count)
                 / total)


def calibration_scores(probabilities: np.ndarray, target: np.ndarray) -> dict[str, Any]:
    """ECE and reliability bins of a head; ROC AUC and Brier score for a two-class head.

    Args:
        probabilities: (N, C) class probabilities of labelled, answered samples.
        target: (N,) true class indices.

    Returns:
        ``ece``, ``roc_auc`` and ``brier`` (None for a multi-class head, and AUC also when one
        class is absent), ``reliability`` (:func:`reliability_bins`) and ``confidence_of``
        (the probability the bins are over).
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if len(target) == 0:
        return {'ece': None, 'roc_auc': None, 'brier': None, 'reliability': None,
                'confidence_of': None}
    if probabilities.shape[1] == 2:
        confidence, hit = probabilities[:, 1], target == 1
        what = 'second class'
        auc, brier = roc_auc(confidence, hit), brier_score(confidence, hit)
    else:
        confidence = probabilities.max(axis=1)
        hit = probabilities.argmax(axis=1) == target
        what, auc, brier = 'top class', None, None
    return {'ece': expected_calibration_error(confidence, hit), 'roc_auc': auc, 'brier': brier,
            'reliability': reliability_bins(confidence, hit), 'confidence_of': what}


def head_scores(classes: list[str], predicted: np.ndarray, target: np.ndarray,
                probabilities: np.ndarray | None = None) -> dict[str, Any]:
    """Every score of one head, as both evaluators report it.

    Args:
        classes: The head's class names.
        predicted: (N,) predicted class index, MISSING_LABEL where there was no answer.
        target: (N,) true class index, MISSING_LABEL where unlabelled.
        probabilities: (N, C) probabilities, NaN rows where there was no answer; None: no
            calibration scores.

    Returns:
        ``accuracy``, ``correct``, ``total`` (labelled samples), ``balanced_accuracy``,
        ``macro_f1``, ``classes``, ``confusion`` (rows = truth, columns = prediction), and the
        calibration scores of :func:`calibration_scores` over the answered labelled samples
        (``ece``, ``roc_auc``, ``brier``, ``reliability``, ``confidence_of``).
    """
    predicted = np.asarray(predicted, dtype=np.int64)
    target = np.asarray(target, dtype=np.int64)
    labelled = target != MISSING_LABEL
    scores = {
        'accuracy': accuracy(predicted, target),
        'correct': int(np.sum((predicted == target) & labelled)), 'total': int(labelled.sum()),
        'balanced_accuracy': balanced_accuracy(predicted, target),
        'macro_f1': macro_f1(predicted, target), 'classes': list(classes),
        'confusion': confusion_matrix(predicted, target, len(classes)).tolist(),
    }
    if probabilities is not None:
        probabilities = np.asarray(probabilities, dtype=np.float64).reshape(len(target), -1)
        keep = labelled & np.isfinite(probabilities).all(axis=1)
        scores.update(calibration_scores(probabilities[keep], target[keep]))
    return scores


@dataclass
class EvaluationRecorder:
    """Collects ground truth, predictions and timings; `report()` turns them into numbers.

    Attributes:
        classes: Head -> ordered class names of the model.
        mode: `offline`, `online` or `online-lockstep`.
        truths: Evaluation stamp -> head -> true class name.
        predictions: Evaluation stamp -> head -> predicted class name.
        latencies_s: Per answered message: seconds from the last input published to the answer.
        published_sets: Camera frames offered (each could start a synchronized set).
        paired_sets: Synchronized sets formed from them (by the node, online).
        extra: Anything else worth reporting (node diagnostics, bag facts).
    """

    classes: dict[str, list[str]]
    mode: str = 'offline'
    truths: dict[int, dict[str, str]] = field(default_factory=dict)
    predictions: dict[int, dict[str, str]] = field(default_factory=dict)
    probabilities: dict[int, dict[str, list[float]]] = field(default_factory=dict)
    latencies_s: list[float] = field(default_factory=list)
    published_sets: int = 0
    paired_sets: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def record(self, stamp: int, probabilities: dict[str, Any]) -> None:
        """Note one answer: the class probabilities per head (the label is their argmax)."""
        self.probabilities[stamp] = {head: [float(v) for v in p]
                                     for head, p in probabilities.items()}
        self.predictions[stamp] = {head: self.classes[head][int(np.argmax(p))]
                                   for head, p in probabilities.items() if head in self.classes}

    def head_report(self, head: str, names: list[str]) -> dict[str, Any] | None:
        """:func:`head_scores` of one head over the evaluation points labelled for it.

        Truths the model has no class for count as wrong answers (``unknown_truth``); the
        other scores are over the known ones. None when no point is labelled for the head.
        """
        index = {name: k for k, name in enumerate(names)}
        stamps = [s for s, labels in self.truths.items() if head in labels]
        if not stamps:
            return None
        known = [s for s in stamps if self.truths[s][head] in index]
        target = np.array([index[self.truths[s][head]] for s in known], dtype=np.int64)
        predicted = np.array([index.get(self.predictions.get(s, {}).get(head), MISSING_LABEL)
                              for s in known], dtype=np.int64)
        probabilities = np.full((len(known), len(names)), np.nan)
        for row, stamp in enumerate(known):
            values = self.probabilities.get(stamp, {}).get(head)
            if values is not None and len(values) == len(names):
                probabilities[row] = values
        scores = head_scores(names, predicted, target,
                             probabilities if self.probabilities else None)
        scores['total'] = len(stamps)
        scores['accuracy'] = scores['correct'] / len(stamps)
        scores['unknown_truth'] = len(stamps) - len(known)
        return scores

    def report(self) -> dict[str, Any]:
        """The JSON-serializable report.

        Returns:
            `mode`, `samples`, `answered`, `drops` (evaluation points without an answer),
            `pairing_rate` (paired / published sets), `heads` (per head: the fields of
            :func:`head_scores`, with `unknown_truth` labels the model does not know counted
            as wrong), `latency_ms` percentiles, `predictions` (per sample: stamp, truth and
            prediction per head) and `extra`.
        """
        answered = [s for s in self.truths if s in self.predictions]
        heads = {}
        for head, names in self.classes.items():
            scores = self.head_report(head, names)
            if scores is not None:
                heads[head] = scores
        return {
            'mode': self.mode,
            'samples': len(self.truths),
            'answered': len(answered),
            'drops': len(self.truths) - len(answered),
            'pairing_rate': (self.paired_sets / self.published_sets
                             if self.published_sets else None),
            'heads': heads,
            'latency_ms': latency_summary(self.latencies_s),
            'predictions': [{'stamp_ns': stamp, 'truth': labels,
                             'predicted': self.predictions.get(stamp)}
                            for stamp, labels in sorted(self.truths.items())],
            'extra': self.extra,
        }


def summarize_ms(samples_s: Any, percentiles: Any = PERCENTILES,
                 suffix: str = '') -> dict[str, float]:
    """Count, mean, percentiles and max of durations in seconds, in milliseconds.

    Keys: ``count``, ``mean``, ``p<q>`` for each percentile, ``max``, each name followed by
    ``suffix`` but ``count`` (NaN values when there are no samples).
    """
    ms = np.asarray(samples_s, dtype=np.float64) * 1e3
    values = {'mean': float(ms.mean()) if ms.size else float('nan')}
    values.update({f'p{q}': float(np.percentile(ms, q)) if ms.size else float('nan')
                   for q in percentiles})
    values['max'] = float(ms.max()) if ms.size else float('nan')
    return {'count': int(ms.size), **{key + suffix: value for key, value in values.items()}}


def latency_summary(latencies_s: list[float]) -> dict[str, float] | None:
    """Count, mean, p50/p90/p95/p99 and max in milliseconds (None without samples)."""
    return summarize_ms(latencies_s) if len(latencies_s) else None


def format_table(report: dict[str, Any]) -> str:
    """A fixed-width text table of a report (per-head accuracy, then latency and drops)."""
    lines = [f'{"head":<16}{"accuracy":>10}{"correct":>10}{"total":>8}{"ROC AUC":>9}'
             f'{"Brier":>8}{"ECE":>8}']
    for head, scores in report['heads'].items():
        lines.append(f'{head:<16}{scores["accuracy"] * 100:>9.1f}%{scores["correct"]:>10}'
                     f'{scores["total"]:>8}' + ''.join(
                         f'{format_score(scores.get(key)):>{width}}'
                         for key, width in (('roc_auc', 9), ('brier', 8), ('ece', 8))))
    latency = report['latency_ms']
    if latency:
        what = 'Predictor per window' if report['mode'] == 'offline' else 'publish to answer'
        lines.append(f'latency ms ({what}): ' + '  '.join(
            f'{k} {latency[k]:.1f}' for k in ('mean', 'p50', 'p90', 'p99', 'max')))
    node = report['extra'].get('node_counters')
    if node:
        reasons = ', '.join(f'{key[8:]} {count}' for key, count in node.items()
                            if key.startswith('dropped ') and key != 'dropped total' and count)
        lost = [count for key, count in node.items() if key.endswith(' lost in transport')]
        lines.append(f'node: {node.get("pairs", 0)} pairs, {node.get("inferences", 0)} '
                     f'inferences, {node.get("dropped total", 0)} dropped'
                     + (f' ({reasons})' if reasons else '')
                     + (f', {sum(lost)} lost in transport' if lost else ''))
    rate = report['pairing_rate']
    lines.append(f'mode {report["mode"]}: {report["answered"]}/{report["samples"]} samples '
                 f'answered, {report["drops"]} dropped'
                 + ('' if rate is None else f', pairing rate {rate * 100:.1f}%'))
    return '\n'.join(lines)


def format_score(value: float | None) -> str:
    """A score for a table: three decimals, or a dash when it is undefined."""
    return '-' if value is None or value != value else f'{value:.3f}'


def save_report(report: dict[str, Any], output_dir: str | Path) -> list[Path]:
    """Write `report.json`, one `confusion_<head>.png` and one `reliability_<head>.png` per head.

    Returns:
        The paths written, `report.json` first.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / REPORT_FILE]
    atomic_write_text(paths[0], json.dumps(report, indent=2) + '\n')
    for head, scores in report['heads'].items():
        paths.append(plot_confusion(scores['confusion'], scores['classes'],
                                    f'{head}: {scores["accuracy"] * 100:.1f}% '
                                    f'({report["mode"]})', out / f'confusion_{head}.png'))
        if scores.get('reliability'):
            paths.append(plot_reliability(scores, f'{head} ({report["mode"]})',
                                          out / f'reliability_{head}.png'))
    return paths


def plot_reliability(scores: dict[str, Any], title: str, path: Path) -> Path:
    """Draw a reliability diagram of one head's :func:`head_scores` to a PNG.

    Bars: the observed share of the event in each confidence bin; the diagonal is perfect
    calibration; the lower panel counts the samples per bin. The title carries ECE (and ROC
    AUC and Brier score for a two-class head).
    """
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    table = scores['reliability']
    edges = np.asarray(table['edges'])
    width = np.diff(edges)
    frequency = [np.nan if f is None else f for f in table['frequency']]
    figure, (upper, lower) = plt.subplots(2, 1, figsize=(4.8, 5.6), sharex=True,
                                          gridspec_kw={'height_ratios': (3, 1)})
    upper.bar(edges[:-1], frequency, width=width, align='edge', edgecolor='black',
              color='tab:blue', alpha=0.8, label='observed')
    upper.plot([0, 1], [0, 1], '--', color='grey', label='perfectly calibrated')
    upper.set_ylim(0, 1)
    event = ('P(' + scores['classes'][1] + ')' if scores['confidence_of'] == 'second class'
             else 'top-class probability')
    upper.set_ylabel('observed share' if len(scores['classes']) == 2 else 'accuracy')
    parts = [f'ECE {format_score(scores["ece"])}']
    if scores.get('roc_auc') is not None:
        parts.append(f'AUC {format_score(scores["roc_auc"])}')
    if scores.get('brier') is not None:
        parts.append(f'Brier {format_score(scores["brier"])}')
    upper.set_title(f'{title}\n' + ', '.join(parts))
    upper.legend(loc='upper left', fontsize=8)
    lower.bar(edges[:-1], table['count'], width=width, align='edge', color='grey')
    lower.set_xlabel(event)
    lower.set_ylabel('samples')
    lower.set_xlim(0, 1)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_confusion(confusion: Any, classes: list[str], title: str, path: Path) -> Path:
    """Draw a confusion matrix to a PNG (the one plot of training and bag evaluation).

    Rows are the true class, columns the prediction; each cell shows its count and is coloured
    by the share of its true class, so that imbalanced classes read alike.

    Args:
        confusion: (C, C) counts, rows true, columns predicted (a nested list or an array).
        classes: the C class names.
        title: the figure title.
        path: the PNG to write (its folder is created).
    """
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    matrix = np.asarray(confusion, dtype=np.int64)
    totals = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=float), where=totals > 0)
    size = max(4.0, 0.55 * len(classes) + 2.5)
    figure, axes = plt.subplots(figsize=(size, size * 0.9))
    image = axes.imshow(share, cmap='Blues', vmin=0.0, vmax=1.0)
    ticks = np.arange(len(classes))
    axes.set_xticks(ticks, classes, rotation=45, ha='right')
    axes.set_yticks(ticks, classes)
    axes.set_xlabel('predicted')
    axes.set_ylabel('true')
    axes.set_title(title)
    for (row, column), count in np.ndenumerate(matrix):
        if count:
            axes.text(column, row, str(count), ha='center', va='center', fontsize=8,
                      color='white' if share[row, column] > 0.5 else 'black')
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label='share of true class')
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path

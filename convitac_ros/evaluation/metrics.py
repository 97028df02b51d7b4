"""Scores of an evaluation: accuracy and confusion per head, latency, drops, pairing.

Pure bookkeeping (NumPy and, for the PNGs, matplotlib): the offline and the online evaluator
fill one `EvaluationRecorder` and get the same report, table and files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import json
from pathlib import Path
from typing import Any

import numpy as np

from convitac_ros.fileio import atomic_write_text

PERCENTILES = (50, 90, 95, 99)
REPORT_FILE = 'report.json'  # beside one confusion_<head>.png per head


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
    latencies_s: list[float] = field(default_factory=list)
    published_sets: int = 0
    paired_sets: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def report(self) -> dict[str, Any]:
        """The JSON-serializable report.

        Returns:
            `mode`, `samples`, `answered`, `drops` (evaluation points without an answer),
            `pairing_rate` (paired / published sets), `heads` (per head: `accuracy`,
            `correct`, `total`, `classes`, `confusion` rows = truth, columns = prediction,
            `unknown_truth` labels the model does not know), `latency_ms` percentiles,
            `predictions` (per sample: stamp, truth and prediction per head) and `extra`.
        """
        answered = [s for s in self.truths if s in self.predictions]
        heads = {}
        for head, names in self.classes.items():
            index = {name: k for k, name in enumerate(names)}
            confusion = np.zeros((len(names), len(names)), dtype=np.int64)
            correct = total = unknown = 0
            for stamp, labels in self.truths.items():
                truth = labels.get(head)
                if truth is None:
                    continue
                total += 1
                predicted = self.predictions.get(stamp, {}).get(head)
                correct += int(predicted == truth)
                if truth not in index:
                    unknown += 1
                elif predicted in index:
                    confusion[index[truth], index[predicted]] += 1
            if total:
                heads[head] = {'accuracy': correct / total, 'correct': correct, 'total': total,
                               'unknown_truth': unknown, 'classes': names,
                               'confusion': confusion.tolist()}
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
    lines = [f'{"head":<16}{"accuracy":>10}{"correct":>10}{"total":>8}']
    for head, scores in report['heads'].items():
        lines.append(f'{head:<16}{scores["accuracy"] * 100:>9.1f}%{scores["correct"]:>10}'
                     f'{scores["total"]:>8}')
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


def save_report(report: dict[str, Any], output_dir: str | Path) -> list[Path]:
    """Write `report.json` and one `confusion_<head>.png` per head; return the paths."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / REPORT_FILE]
    atomic_write_text(paths[0], json.dumps(report, indent=2) + '\n')
    for head, scores in report['heads'].items():
        paths.append(plot_confusion(scores['confusion'], scores['classes'],
                                    f'{head}: {scores["accuracy"] * 100:.1f}% '
                                    f'({report["mode"]})', out / f'confusion_{head}.png'))
    return paths


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

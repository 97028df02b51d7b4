r"""The paper's Fig. 2 on the synthetic world: where models with and without CEC look.

Rows are full-press test samples; columns are the camera frame, its Grad-CAM at the fusion
encoders without and with CEC and at the CEC model's frozen E^c (the condition path), then the
GelSight frame and the same three maps. The ground-truth contact region (where
the press-in changed the frame, see ``training.gradcam``) is outlined in green on every panel.
Next to the PNG a JSON file holds the attention-on-contact scores over many test samples, for
Grad-CAM and, where the fusion has token attention, for the CEC attention weights themselves.

Usage::

    cd runs/ablate_reduced/synthetic_tag && python ../../../training/attention_figure.py \\
        --with-cec seed{0,1,2}/convitac_tokens/best.safetensors \\
        --without-cec seed{0,1,2}/cross_attention/best.safetensors \\
        --output ../../../docs/results/gradcam_synthetic_tag.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys
from typing import Any

import cv2  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from convitac_ros.checkpoint import load_checkpoint, LoadedCheckpoint  # noqa: E402
from convitac_ros.fileio import atomic_write_text  # noqa: E402
from training.ablate_table import mean_std  # noqa: E402
from training.command import run_command  # noqa: E402
from training.gradcam import (  # noqa: E402
    contact_scores,
    grad_cam,
    model_inputs,
    press_samples,
    PressSample,
)

MODELS = ('with_cec', 'without_cec')
# Per modality: the frame, Grad-CAM at the fusion encoders without and with CEC, and Grad-CAM
# at the CEC model's frozen E^c (the path that computes the condition).
PANELS = (('without_cec', 'gradcam', 'Grad-CAM\nwithout CEC'),
          ('with_cec', 'gradcam', 'Grad-CAM\nwith CEC'),
          ('with_cec', 'conditioncam', 'Grad-CAM at E^c\n(CEC condition)'))
COLUMNS = tuple(f'{name} {title}' if title else name
                for name in ('camera', 'tactile')
                for title in ('', *(panel[2] for panel in PANELS)))


def attention_maps(model: torch.nn.Module, visual: torch.Tensor, tactile: torch.Tensor
                   ) -> dict[str, np.ndarray] | None:
    """The fusion's own attention on the latest frames, upsampled to the frame size.

    Returns:
        ``{'visual': (B, S, S), 'tactile': (B, S, S)}`` (first sensor) for the modalities the
        model uses, or None when the fusion has no token attention.
    """
    with torch.no_grad():
        _, maps = model.forward_with_attention(visual, tactile)
    if maps is None:
        return None
    size = model.config.image_size
    found = {}
    for side, grids in (('visual', maps.visual), ('tactile', maps.tactile)):
        if grids is None:
            continue
        latest = grids[:, -1] if side == 'visual' else grids[:, 0, -1]  # (B, k, k)
        found[side] = F.interpolate(latest[:, None].float(), size=(size, size),
                                    mode='bilinear', align_corners=False)[:, 0].numpy()
    return found


def explain(loaded: LoadedCheckpoint, samples: list[PressSample], head: str,
            batch_size: int = 16) -> dict[str, Any]:
    """Grad-CAM and attention maps and predictions of one model over the samples."""
    model = loaded.model.eval()
    found: dict[str, list[np.ndarray]] = {}
    predicted = []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start:start + batch_size]
        visual, tactile = model_inputs([p.sample for p in chunk], loaded.preprocess)
        labels = [p.sample.labels[head] for p in chunk]
        for side, values in grad_cam(model, visual, tactile, head, labels).items():
            found.setdefault(f'gradcam_{side}', []).append(
                values if side == 'visual' else values[:, 0])
        # The condition path: Grad-CAM at the frozen E^c.
        for side, values in grad_cam(model, visual, tactile, head, labels,
                                     path='condition').items():
            found.setdefault(f'conditioncam_{side}', []).append(
                values if side == 'visual' else values[:, 0])
        for side, values in (attention_maps(model, visual, tactile) or {}).items():
            found.setdefault(f'attention_{side}', []).append(values)
        with torch.no_grad():
            predicted.append(model(visual, tactile)[head].argmax(dim=1).numpy())
    maps = {key: np.concatenate(parts) for key, parts in found.items()}
    return {'maps': maps, 'predicted': np.concatenate(predicted)}


def score_models(explained: dict[str, dict[str, Any]], samples: list[PressSample]
                 ) -> dict[str, Any]:
    """Attention-on-contact scores of every model, map kind and modality."""
    scores: dict[str, Any] = {}
    for name, result in explained.items():
        scores[name] = {}
        for key, maps in result['maps'].items():
            side = key.split('_')[1]
            masks = np.stack([p.contact[side] for p in samples])
            scores[name][key] = contact_scores(maps, masks)
    return scores


def _outline(axes: Any, mask: np.ndarray) -> None:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_NONE)
    for contour in contours:
        points = contour[:, 0]
        axes.plot(np.append(points[:, 0], points[0, 0]), np.append(points[:, 1], points[0, 1]),
                  color='lime', linewidth=1.2)


def draw_figure(samples: list[PressSample], explained: dict[str, dict[str, Any]],
                classes: list[str], head: str, image_size: int, path: Path) -> None:
    """Saves the figure: one row per sample, the columns of :data:`COLUMNS`."""
    figure, grid = plt.subplots(len(samples), len(COLUMNS),
                                figsize=(1.9 * len(COLUMNS), 2.1 * len(samples)), squeeze=False)
    for row, press in enumerate(samples):
        images = {side: cv2.resize(frames[-1], (image_size, image_size),
                                   interpolation=cv2.INTER_AREA)
                  for side, frames in (('visual', press.sample.visual),
                                       ('tactile', press.sample.tactile[0]))}
        panels = []
        for side in ('visual', 'tactile'):
            panels.append((side, images[side], None))
            for name, kind, _ in PANELS:
                maps = explained[name]['maps'].get(f'{kind}_{side}')
                panels.append((side, images[side], None if maps is None else maps[row]))
        for column, (side, image, heat) in enumerate(panels):
            axes = grid[row, column]
            axes.imshow(image)
            if heat is not None:
                axes.imshow(heat, cmap='jet', alpha=0.45, vmin=0.0, vmax=1.0)
            _outline(axes, press.contact[side])
            axes.set_xticks([])
            axes.set_yticks([])
            if row == 0:
                axes.set_title(COLUMNS[column], fontsize=9)
        lines = [f'true: {classes[press.sample.labels[head]]}'] + [
            f'{label}: {classes[explained[name]["predicted"][row]]}'
            for name, label in (('without_cec', 'w/o CEC'), ('with_cec', 'CEC'))]
        grid[row, 0].set_ylabel('\n'.join(lines), fontsize=7)
    figure.suptitle(f'Grad-CAM of the true {head} class; green: contact region', fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=75)
    plt.close(figure)


def make_figure(with_cec: list[Path], without_cec: list[Path], output: Path,
                head: str = 'material', rows: int = 4, score_samples: int = 64,
                split: str = 'test') -> dict[str, Any]:
    """Writes the figure PNG (first pair of models) and ``<output>.json`` (scores of every pair).

    Args:
        with_cec: CEC checkpoints, one per seed.
        without_cec: Checkpoints without CEC, paired with ``with_cec`` (same data, same seed).
        output: PNG path; the scores go next to it as JSON.
        head: Head whose true class the maps explain.
        rows: Samples in the figure.
        score_samples: Full-press test samples that the scores average over.
        split: Dataset split of the samples.

    Returns:
        The report written to the JSON file (per pair and mean ± std over pairs).

    Raises:
        ValueError: When the lists differ in length, the checkpoints were trained on different
            data, or the data has no press-in sequences with approach frames.
    """
    if len(with_cec) != len(without_cec) or not with_cec:
        raise ValueError('give as many --with-cec as --without-cec checkpoints (at least one)')
    pairs = []
    for paths in zip(with_cec, without_cec):
        pair = dict(zip(MODELS, (load_checkpoint(path) for path in paths)))
        data = {name: tuple((loaded.training or {}).get(key) for key in ('dataset', 'data_root'))
                for name, loaded in pair.items()}
        if len(set(data.values())) != 1 or (pairs and data != pairs[0][1]):
            raise ValueError(f'checkpoints {[str(p) for p in paths]} were trained on other data')
        pairs.append((pair, data))
    first = pairs[0][0]['with_cec']
    dataset, root = pairs[0][1]['with_cec']
    options = (first.training or {}).get('config', {}).get('data', {}).get('options', {})
    samples = press_samples(dataset, root, split, options, first)[:score_samples]
    if not samples:
        raise ValueError(f'{root}: no full-press samples with approach frames in {split!r}')
    labels = np.array([p.sample.labels[head] for p in samples])
    runs = []
    for index, (pair, _) in enumerate(pairs):
        explained = {name: explain(loaded, samples, head) for name, loaded in pair.items()}
        if index == 0:
            picked = _diverse_rows(samples, head, rows)
            draw_figure([samples[i] for i in picked],
                        {name: {'maps': {k: v[picked] for k, v in result['maps'].items()},
                                'predicted': result['predicted'][picked]}
                         for name, result in explained.items()},
                        first.heads[head], head, first.preprocess['image_size'], output)
        runs.append({'checkpoints': {name: str(loaded.path) for name, loaded in pair.items()},
                     'accuracy_on_scored_samples': {
                         name: float((r['predicted'] == labels).mean())
                         for name, r in explained.items()},
                     'scores': score_models(explained, samples)})
    report = {'dataset': dataset, 'data_root': root, 'split': split, 'head': head,
              'figure': output.name, 'figure_checkpoints': runs[0]['checkpoints'],
              'samples': len(samples), 'summary': summarise_runs(runs), 'runs': runs}
    atomic_write_text(output.with_suffix('.json'), json.dumps(report, indent=2))
    return report


def summarise_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample standard deviation over the pairs of every score."""
    summary: dict[str, Any] = {}
    for name, kinds in runs[0]['scores'].items():
        for kind, values in kinds.items():
            for metric in ('mass_inside', 'enrichment'):
                summary.setdefault(name, {}).setdefault(kind, {})[metric] = mean_std(
                    [run['scores'][name][kind][metric] for run in runs])
            summary[name][kind]['area'] = values['area']
    return summary


def _diverse_rows(samples: list[PressSample], head: str, rows: int) -> list[int]:
    """Indices of up to ``rows`` samples with different classes (first come, then any)."""
    picked, seen = [], set()
    for index, press in enumerate(samples):
        if press.sample.labels[head] not in seen and len(picked) < rows:
            picked.append(index)
            seen.add(press.sample.labels[head])
    rest = [i for i in range(len(samples)) if i not in picked]
    return picked + rest[:rows - len(picked)]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point; prints and returns the scores."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--with-cec', type=Path, nargs='+', required=True,
                        help='CEC checkpoints (one per seed; the first is drawn)')
    parser.add_argument('--without-cec', type=Path, nargs='+', required=True,
                        help='checkpoints without CEC (cross_attention, concat, ...), paired')
    parser.add_argument('--output', type=Path, default=Path('docs/results/gradcam.png'))
    parser.add_argument('--head', default='material')
    parser.add_argument('--rows', type=int, default=4, help='samples shown in the figure')
    parser.add_argument('--score-samples', type=int, default=64,
                        help='full-press test samples for the scores')
    parser.add_argument('--threads', type=int, help='torch CPU threads (default: torch)')
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    report = make_figure(args.with_cec, args.without_cec, args.output, args.head, args.rows,
                         args.score_samples)
    print(json.dumps(report['summary'], indent=2))
    print(f'figure: {args.output}')
    return report


if __name__ == '__main__':
    sys.exit(run_command('attention_figure.py', main))

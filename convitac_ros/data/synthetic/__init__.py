"""A synthetic visual-tactile world written in the layouts of the real datasets.

`make_synthetic` is what ``training/make_synthetic.py`` runs; the real loaders read its output.
"""

from collections.abc import Callable
from pathlib import Path

from convitac_ros.data.synthetic.grasp_world import generate_feeling_of_success
from convitac_ros.data.synthetic.touch_world import generate_touch_and_go, LABELLED_PER_TOUCH

FORMATS = ('touch_and_go', 'feeling_of_success')


def work_units(fmt: str, samples: int) -> int:
    """Number of progress steps `make_synthetic` reports: touches or trials."""
    return -(-samples // LABELLED_PER_TOUCH) if fmt == 'touch_and_go' else samples


def make_synthetic(output: str | Path, fmt: str = 'touch_and_go', samples: int = 800,
                   seed: int = 0, progress: Callable[[int], None] | None = None,
                   fingers: int = 1) -> dict[str, int]:
    """Generate a synthetic dataset deterministically from `seed`.

    Args:
        output: Directory to write.
        fmt: 'touch_and_go' (material world) or 'feeling_of_success' (grasp world).
        samples: Labelled samples wanted (frames for Touch and Go, trials for the grasp world).
        seed: Random seed; the same seed writes byte-identical files.
        progress: Called with the number of work units (touches or trials) just finished.
        fingers: Touch and Go: 2 adds the opposite finger of a pinch (a second GelSight);
            the grasp world always has two.

    Returns:
        Counts of what was written (always 'samples', 'train', 'test').
    """
    if fmt == 'touch_and_go':
        return generate_touch_and_go(output, samples, seed, progress, fingers)
    if fmt == 'feeling_of_success':
        return generate_feeling_of_success(output, samples, seed, progress)
    raise ValueError(f'unknown synthetic format {fmt!r}; expected one of {", ".join(FORMATS)}')

"""What a camera frame of the synthetic material world can tell about its tactile frame.

Visual-to-tactile retrieval: for each camera frame of a batch of B synchronous pairs, rank the
B tactile frames and count a hit when its own is among the first k. An ideal observer that
reads everything the two frames share by design -- the touched material as far as each
modality shows it (the camera its look, the gel its feel) and the instance texture (`Weave`
code) -- cannot tell its pair from another tactile frame j that has the same texture code and a
feel that one of the two materials of the camera's look has. With n such impostors in the batch
it ranks the n + 1 consistent frames at random, so its top-k hit rate is min(1, k / (n + 1)).

With the material and the code uniform and independent (the world draws them so), a given
other pair is an impostor with probability q = P(same code) * P(compatible feel) =
1/16 * 1/2 = 1/32, n ~ Binomial(B - 1, q), and the ceiling is E[min(1, k / (n + 1))]; for k = 1
it is (1 - (1 - q)^B) / (B q). At B = 32: top-1 63.8 %, top-5 99.95 %; chance k / B: 3.1 % and
15.6 %.
Nothing else is shared on purpose: session lighting and gel tint are drawn independently.
This is NOT an upper bound of held-out retrieval and training no longer reports it: the
validation and test pairs hold every frame of a touch (three press depths), and the depth is
visible to both sensors, so a model that reads it beats this observer (counting the depth, the
same construction gives about 85 % at B = 32).
"""

from __future__ import annotations

from collections.abc import Sequence
import math
from pathlib import Path

import numpy as np

from convitac_ros.data.synthetic.materials import MATERIALS
from convitac_ros.data.synthetic.render import WEAVE_CODES
from convitac_ros.data.synthetic.touch_world import INSTANCES_FILE


def _compatible_feels(material: int) -> set[str]:
    """Feels of the materials that look like `material` (what its camera frame allows)."""
    look = MATERIALS[material].look
    return {m.feel for m in MATERIALS if m.look == look}


def impostor_probability() -> float:
    """q: chance that another random pair's tactile frame is consistent with a camera frame."""
    feel_share = np.mean([[MATERIALS[j].feel in _compatible_feels(i)
                           for j in range(len(MATERIALS))] for i in range(len(MATERIALS))])
    return float(feel_share) / WEAVE_CODES


def analytic_ceiling(batch_size: int, k: int = 1) -> float:
    """Ideal top-k visual-to-tactile hit rate in batches of `batch_size` random pairs.

    Raises:
        ValueError: for a batch below 2 or k outside 1..batch_size.
    """
    if batch_size < 2 or not 1 <= k <= batch_size:
        raise ValueError(f'need batch_size >= 2 and 1 <= k <= batch_size, got {batch_size}, {k}')
    q = impostor_probability()
    others = batch_size - 1
    return sum(math.comb(others, n) * q ** n * (1 - q) ** (others - n) * min(1.0, k / (n + 1))
               for n in range(others + 1))


def chance(batch_size: int, k: int = 1) -> float:
    """Top-k hit rate of a random ranking: k / batch_size."""
    return min(1.0, k / batch_size)


def batch_ceiling(materials: Sequence[int], codes: Sequence[int], k: int = 1) -> float:
    """Ideal top-k hit rate on one actual batch (row i of both lists is a pair)."""
    hits = []
    for i, (material, code) in enumerate(zip(materials, codes)):
        feels = _compatible_feels(material)
        impostors = sum(1 for j, (other, other_code) in enumerate(zip(materials, codes))
                        if j != i and other_code == code and MATERIALS[other].feel in feels)
        hits.append(min(1.0, k / (impostors + 1)))
    return float(np.mean(hits))


def read_instances(root: str | Path) -> dict[tuple[str, str], tuple[int, int]]:
    """(session, frame) -> (material, weave code) for every contact frame of a synthetic world.

    Raises:
        FileNotFoundError: when the folder has no instances file (not a synthetic world).
        ValueError: for a malformed line, naming the file and line.
    """
    path = Path(root) / INSTANCES_FILE
    if not path.is_file():
        raise FileNotFoundError(f'{path}: no instance file (only the synthetic world has one)')
    table = {}
    for number, line in enumerate(path.read_text(encoding='utf-8').splitlines(), 1):
        try:
            name, material, code = line.split(',')
            session, frame = name.split('/')
            table[session, frame] = (int(material), int(code))
        except ValueError as error:
            raise ValueError(f'{path}:{number}: bad instance line {line!r}') from error
    return table

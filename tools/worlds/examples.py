"""Draw one touch per material of a written world: camera, then the gel frames, one row each.

Runs with the project's environment (OpenCV, NumPy); reads only the world's lists and images.

Example:
    python tools/worlds/examples.py data/tacto_c tools/worlds/tacto_c_examples.jpg
"""

import argparse
from pathlib import Path
import sys

import cv2
import numpy as np

CAMERA = (160, 120)  # drawn size (width, height)
GEL = (90, 120)


def _touches(root: Path) -> dict[int, list[str]]:
    """The first touch of each material: material -> its frame names (approach, then contact)."""
    lines = [line.rsplit(',', 1) for line in
             (root / 'label.txt').read_text(encoding='utf-8').splitlines() if line.strip()]
    found: dict[int, list[str]] = {}
    for index, (_, label) in enumerate(lines):
        material = int(label)
        if material < 0 or material in found or index == 0 or lines[index - 1][1] != '-1':
            continue
        touch = [lines[index - 1][0]]
        for later, later_label in lines[index:]:
            if int(later_label) != material:
                break
            touch.append(later)
        found[material] = touch
    return dict(sorted(found.items()))


def draw(root: Path) -> np.ndarray:
    """The picture as a BGR image: one row per material, named on the camera frame."""
    names = dict(reversed(line.rsplit(':', 1)) for line in
                 (root / 'category_reference.txt').read_text(encoding='utf-8').splitlines())
    rows = []
    for material, touch in _touches(root).items():
        session, last = touch[-1].split('/')
        camera = cv2.resize(cv2.imread(str(root / session / 'video_frame' / last)), CAMERA)
        cv2.putText(camera, names.get(f' {material}', str(material)).strip(), (4, 14),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        gels = [cv2.resize(cv2.imread(str(root / name.split('/')[0] / 'gelsight_frame'
                                          / name.split('/')[1])), GEL) for name in touch]
        rows.append(np.concatenate([camera, *gels], axis=1))
    width = max(row.shape[1] for row in rows)
    return np.concatenate([np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0)))
                           for row in rows], axis=0)


def main(argv: list[str] | None = None) -> int:
    """Command line: WORLD OUTPUT.jpg."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('world', type=Path)
    parser.add_argument('output', type=Path)
    args = parser.parse_args(argv)
    if not (args.world / 'label.txt').is_file():
        print(f'examples: {args.world} has no label.txt (not a written world)', file=sys.stderr)
        return 1
    if not cv2.imwrite(str(args.output), draw(args.world), [cv2.IMWRITE_JPEG_QUALITY, 85]):
        print(f'examples: cannot write {args.output}', file=sys.stderr)
        return 1
    print(f'wrote {args.output}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

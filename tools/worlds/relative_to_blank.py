"""Copy a world with every gel frame made relative to the untouched gel of its touch.

A diagnostic, not part of the package: a GelSight-type image is mostly the sensor's own
illumination; a common preprocessing subtracts a frame taken without contact. This writes the
same world (lists copied, camera folders linked) with each gel frame replaced by
``clip(gain * (frame - reference) + 128)``, the reference being the touch's approach frame (the
last frame listed -1 before it in label.txt; a session whose first listed frame is a contact
frame is refused). Runs with the project's environment (OpenCV, NumPy).

Example:
    python tools/worlds/relative_to_blank.py data/tacto_b data/tacto_b_rel
"""

import argparse
from pathlib import Path
import shutil
import sys

import cv2
import numpy as np


def derive(source: Path, output: Path, gain: float = 1.0) -> int:
    """Write the derived world; returns the number of gel frames written."""
    output.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if item.is_file():
            shutil.copy(item, output / item.name)
    reference: dict[str, np.ndarray] = {}
    written = 0
    for line in (source / 'label.txt').read_text(encoding='utf-8').splitlines():
        if not line.strip():
            continue
        name, label = line.strip().rsplit(',', 1)
        session, frame = name.split('/')
        gel_dir = output / session / 'gelsight_frame'
        gel_dir.mkdir(parents=True, exist_ok=True)
        video = output / session / 'video_frame'
        if not video.exists():
            video.symlink_to((source / session / 'video_frame').resolve())
        image = cv2.imread(str(source / session / 'gelsight_frame' / frame))
        if image is None:
            raise OSError(f'cannot read {source / session / "gelsight_frame" / frame}')
        image = image.astype(np.float32)
        if label.strip() == '-1':
            reference[session] = image
        if session not in reference:
            raise ValueError(f'{name}: a contact frame before any approach frame of {session}')
        relative = np.clip(gain * (image - reference[session]) + 128.0, 0, 255).astype(np.uint8)
        if not cv2.imwrite(str(gel_dir / frame), relative, [cv2.IMWRITE_JPEG_QUALITY, 95]):
            raise OSError(f'cannot write {gel_dir / frame}')
        written += 1
    return written


def main(argv: list[str] | None = None) -> int:
    """Command line: SOURCE OUTPUT [--gain G]."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('source', type=Path)
    parser.add_argument('output', type=Path)
    parser.add_argument('--gain', type=float, default=1.0)
    args = parser.parse_args(argv)
    try:
        count = derive(args.source, args.output, args.gain)
    except (OSError, ValueError) as error:
        print(f'relative_to_blank: {error}', file=sys.stderr)
        return 1
    print(f'{count} gel frames written to {args.output}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

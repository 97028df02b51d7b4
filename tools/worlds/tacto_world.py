r"""Visual-tactile worlds rendered by an outside tactile simulator (tacto), Touch and Go layout.

A development tool, not part of the package: it runs in its own virtual environment (see
README.md next to this file), writes files only and imports nothing from `convitac_ros`. The
DIGIT images come from `tacto.Renderer.render_from_depth` (DIGIT optics and gel model, OpenGL
through OSMesa); the gel deformation maps and the camera images come from one of three world
designs, `surfaces.py` (tacto_a), `shapes.py` (tacto_b) and `objects.py` (tacto_c).

Every session is a recording of touches; a touch is one approach frame (sensor off the surface,
blank gel, listed -1 Inconclusive in label.txt as Touch and Go does) and `PRESS_FRAMES` contact
frames pressing deeper. Sessions `TEST_SESSIONS` are held out (train.txt / test.txt and the rough
lists are split by session).

Example:
    PYOPENGL_PLATFORM=osmesa .venv-tacto/bin/python tools/worlds/tacto_world.py \\
        --world tacto_a --output data/tacto_a --seed 0
"""

import argparse
from collections.abc import Callable
from datetime import datetime, timedelta
import os
from pathlib import Path
import shlex
import sys
import time

from common import GEL_COLS, GEL_ROWS
import cv2
import numpy as np
import objects
import shapes
import surfaces

WORLDS = {'tacto_a': surfaces, 'tacto_b': shapes, 'tacto_c': objects}
SESSIONS = 12
TEST_SESSIONS = (3, 7, 11)
TOUCHES_PER_SESSION = 25
PRESS_FRAMES = 5
DIGIT_HEIGHT, DIGIT_WIDTH = 160, 120  # rendered DIGIT image, portrait like the sensor
_JPEG = [cv2.IMWRITE_JPEG_QUALITY, 95]


class Digit:
    """tacto's DIGIT renderer: gel deformation (mm, (GEL_ROWS, GEL_COLS)) -> RGB uint8 image."""

    def __init__(self) -> None:
        os.environ.setdefault('PYOPENGL_PLATFORM', 'osmesa')
        import tacto  # imported here: the module must load (for --help) without OpenGL

        self._renderer = tacto.Renderer(width=DIGIT_WIDTH, height=DIGIT_HEIGHT, background=None,
                                        config_path=tacto.get_digit_config_path())
        self._blank = self._render(np.zeros((GEL_ROWS, GEL_COLS)))

    def _render(self, depth_mm: np.ndarray) -> np.ndarray:
        # tacto's own noise draws from numpy's global generator: off, the caller adds seeded noise.
        color, _ = self._renderer.render_from_depth(depth_mm / 1000.0, noise=False,
                                                    calibration=False)
        return np.asarray(color, np.float32)

    def image(self, depth_mm: np.ndarray | None, rng: np.random.Generator,
              session_offset: np.ndarray, noise: float) -> np.ndarray:
        """One DIGIT frame of a deformation map (None = no contact), with sensor noise.

        Args:
            depth_mm: (GEL_ROWS, GEL_COLS) gel deformation towards the camera, mm (>= 0).
            rng: Generator for the pixel noise.
            session_offset: (3,) RGB offset of this session's sensor (0..255 scale).
            noise: Standard deviation of the pixel noise (0..255 scale).
        """
        color = self._blank if depth_mm is None else self._render(depth_mm)
        color = color + session_offset + rng.normal(0.0, noise, color.shape)
        return np.clip(color, 0, 255).astype(np.uint8)


def session_name(index: int) -> str:
    """Session folder name in Touch and Go's YYYYMMDD_HHMMSS form."""
    return (datetime(2025, 6, 2, 10, 0, 0) + timedelta(minutes=41 * index)).strftime(
        '%Y%m%d_%H%M%S')


def _write_rgb(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), _JPEG):
        raise OSError(f'cannot write image {path}')


def _write_list(path: Path, lines: list[str]) -> None:
    """A list file as Touch and Go writes it: no newline after the last line."""
    path.write_text('\n'.join(lines), encoding='utf-8')


def generate(world: str, output: Path, seed: int, touches_per_session: int = TOUCHES_PER_SESSION,
             progress: Callable[[str], None] = lambda line: None) -> dict[str, int]:
    """Write one world; returns counts ('contact', 'approach', 'train', 'test', 'sessions').

    `touches_per_session` below the default makes a small world for a quick check.
    """
    design = WORLDS[world]
    digit = Digit()
    output.mkdir(parents=True, exist_ok=True)
    classes = len(design.MATERIALS)
    touches = SESSIONS * touches_per_session
    order = np.random.default_rng([seed, 0])
    # Balanced classes: every block of `classes` touches is a permutation of the classes.
    materials = np.concatenate([order.permutation(classes)
                                for _ in range(-(-touches // classes))])[:touches]
    lists: dict[str, list[str]] = {name: [] for name in
                                   ('label', 'train', 'test', 'train_rough', 'test_rough')}
    for session in range(SESSIONS):
        rng = np.random.default_rng([seed, 1, session])
        name = session_name(session)
        split = 'test' if session in TEST_SESSIONS else 'train'
        for folder in ('video_frame', 'gelsight_frame'):
            (output / name / folder).mkdir(parents=True, exist_ok=True)
        style = design.session_style(rng)
        gel_offset = rng.normal(0.0, 6.0, 3)
        gel_noise = rng.uniform(2.0, 5.0)
        frame = 0
        chunk = materials[session * touches_per_session:(session + 1) * touches_per_session]
        for material in chunk:
            pairs = design.render_touch(rng, int(material), style, PRESS_FRAMES)
            for camera, depth in pairs:
                frame += 1
                file = f'{frame:010d}.jpg'
                _write_rgb(output / name / 'video_frame' / file, camera)
                _write_rgb(output / name / 'gelsight_frame' / file,
                           digit.image(depth, rng, gel_offset, gel_noise))
                label = int(material) if depth is not None else -1
                lists['label'].append(f'{name}/{file},{label}')
                if depth is not None:
                    rough = int(design.MATERIALS[material].rough)
                    lists[split].append(f'{name}/{file},{label}')
                    lists[f'{split}_rough'].append(f'{name}/{file},{rough}')
        progress(f'{world}: session {session + 1}/{SESSIONS} ({name}, {split}) written')
    for key, lines in lists.items():
        _write_list(output / f'{key}.txt', lines)
    _write_list(output / 'category_reference.txt',
                [f'{m.name}: {i}' for i, m in enumerate(design.MATERIALS)])
    contact = len(lists['train']) + len(lists['test'])
    return {'contact': contact, 'approach': len(lists['label']) - contact,
            'train': len(lists['train']), 'test': len(lists['test']), 'sessions': SESSIONS,
            'touches': touches}


def write_readme(output: Path, world: str, seed: int, counts: dict[str, int],
                 seconds: float, argv: list[str]) -> None:
    """README.txt: how the world was made; its last line `complete` marks a finished world."""
    design = WORLDS[world]
    table = '\n'.join(f'  {i}: {m.name:<18} {"soft" if m.soft else "hard"}, '
                      f'{"rough" if m.rough else "smooth"}  ({m.description})'
                      for i, m in enumerate(design.MATERIALS))
    held_out = ', '.join(session_name(i) for i in TEST_SESSIONS)
    command = ('PYOPENGL_PLATFORM=osmesa .venv-tacto/bin/python tools/worlds/tacto_world.py '
               + ' '.join(shlex.quote(a) for a in argv))
    text = f"""World {world}, rendered with tacto {_tacto_version()} (DIGIT, OSMesa) by
tools/worlds/tacto_world.py of the convitac_ros repository.

Command: {command}
Seed: {seed} (same seed, same files)
Design: {design.__doc__.strip().splitlines()[0]}
Layout: Touch and Go (label.txt, category_reference.txt, train.txt, test.txt, train_rough.txt,
  test_rough.txt, <session>/video_frame, <session>/gelsight_frame); lists have no final newline.
Sessions: {counts['sessions']} ({len(TEST_SESSIONS)} held out: {held_out}),
  {counts['touches'] // counts['sessions']} touches each, 1 approach frame (label -1) and
  {PRESS_FRAMES} contact frames per touch.
Frames: {counts['contact']} contact ({counts['train']} train, {counts['test']} test),
  {counts['approach']} approach.
Materials (hard/soft follows Touch and Go's rule by name; rough in *_rough.txt, 1 = rough):
{table}
Generation time: {seconds:.0f} s on this machine (one process).
complete
"""
    (output / 'README.txt').write_text(text, encoding='utf-8')


def _tacto_version() -> str:
    import tacto

    return tacto.__version__


def main(argv: list[str] | None = None) -> int:
    """Generate a world and write its README.txt last."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--world', required=True, choices=sorted(WORLDS))
    parser.add_argument('--output', required=True, type=Path)
    parser.add_argument('--seed', type=int, default=0, help='same seed, same files')
    parser.add_argument('--touches', type=int, default=TOUCHES_PER_SESSION,
                        help='touches per session (fewer for a quick check)')
    args = parser.parse_args(argv)
    if args.touches < 1:
        parser.error('--touches must be >= 1')
    readme = args.output / 'README.txt'
    if readme.exists():
        readme.unlink()  # a re-run is incomplete until it ends
    start = time.perf_counter()
    counts = generate(args.world, args.output, args.seed, args.touches,
                      lambda line: print(line, flush=True))
    seconds = time.perf_counter() - start
    write_readme(args.output, args.world, args.seed, counts, seconds, argv)
    print(f'{args.world}: {counts} in {seconds:.0f} s -> {args.output}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""The tree's structure: imports go one way, down the layers of the design, with no circle.

Every import of the package, the training code and the benchmarks (also imports inside
functions) is read from the source; a module may import from its own layer or the layers below
it (``docs/ARCHITECTURE.md``), and no set of modules imports itself in a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Lower first. A module belongs to the first prefix it starts with.
LAYERS = (
    ('convitac_ros.fileio', 'convitac_ros.share', 'convitac_ros.model', 'convitac_ros.preprocess',
     'convitac_ros.output_paths', 'convitac_ros.contract'),
    ('convitac_ros.data', 'convitac_ros.checkpoint'),
    ('convitac_ros.runtime_onnx', 'convitac_ros.inference', 'convitac_ros.export',
     'convitac_ros.predictor', 'convitac_ros.calibration', 'convitac_ros.drift',
     'convitac_ros.staging', 'convitac_ros.device_preprocess'),
    ('convitac_ros.ros',),
    ('convitac_ros.bags',),
    ('convitac_ros.evaluation',),
    ('convitac_ros.demo', 'convitac_ros'),
    ('training',),
    ('benchmarks', 'tools'),
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix('').parts)
    if parts[-1] == '__init__':
        parts.pop()
    return '.'.join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for folder in ('convitac_ros', 'training', 'benchmarks'):
        for path in (ROOT / folder).rglob('*.py'):
            found[_module_name(path)] = path
    return found


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text())
    package = name if path.name == '__init__.py' else name.rpartition('.')[0]
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                anchor = package.split('.')
                anchor = anchor[:len(anchor) - node.level + 1]
                base = '.'.join([*anchor, base] if base else anchor)
            targets.add(base)
            targets |= {f'{base}.{alias.name}' for alias in node.names}
    resolved = set()
    for target in targets:
        while target and target not in known:
            target = target.rpartition('.')[0]
        if target and target != name:
            resolved.add(target)
    return resolved


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(path, name, known) for name, path in modules.items()}


def _layer(name: str) -> int:
    best = None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if name == prefix or name.startswith(prefix + '.'):
                if best is None or len(prefix) > best[1]:
                    best = (index, len(prefix))
    assert best is not None, f'{name} belongs to no layer: add it to LAYERS'
    return best[0]


def test_every_import_goes_down_or_stays_in_its_layer():
    upward = [f'{source} -> {target}' for source, targets in _graph().items()
              for target in targets
              if not target.endswith('__init__') and _layer(target) > _layer(source)
              and not target == 'convitac_ros']
    assert not upward, 'imports that run back up:\n' + '\n'.join(sorted(upward))


def _circles(graph: dict[str, set[str]]) -> list[str]:
    circles, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = 'open'
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 'open':
                circles.append(' -> '.join([*stack[stack.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 'done'

    for name in sorted(graph):
        if name not in state:
            visit(name)
    return circles


def test_no_modules_import_each_other_in_a_circle():
    # A module importing its own package (``from convitac_ros.model import ...`` inside
    # ``convitac_ros.model.fusion``) is not a circle of modules.
    graph = {name: {t for t in targets if t != 'convitac_ros' and not name.startswith(t + '.')}
             for name, targets in _graph().items()}
    circles = _circles(graph)
    assert not circles, 'import circles:\n' + '\n'.join(circles)


def test_the_structure_check_sees_a_circle_and_an_upward_import():
    assert _circles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == ['a -> b -> c -> a']
    assert _circles({'a': {'b'}, 'b': set()}) == []
    assert _layer('convitac_ros.bags.samples') > _layer('convitac_ros.ros.topics')
    assert _layer('training.data') > _layer('convitac_ros.evaluation.metrics')
    graph = _graph()
    assert 'convitac_ros.ros.stamps' in graph['convitac_ros.ros.synchronizer']

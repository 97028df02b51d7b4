"""convitac.launch.py and convitac.yaml name things that exist (runs without launch installed).

The launch file is read with ``ast`` so that this test needs neither launch nor launch_ros.
"""

from __future__ import annotations

import ast
from pathlib import Path
import re

import yaml

from convitac_ros.ros.node import INPUT_TOPICS, NODE_NAME
from convitac_ros.ros.parameters import INPUT_SPECS, SPECS

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / 'launch' / 'convitac.launch.py'
TREE = ast.parse(LAUNCH.read_text())


def calls(name: str) -> list[ast.Call]:
    return [n for n in ast.walk(TREE) if isinstance(n, ast.Call)
            and getattr(n.func, 'id', getattr(n.func, 'attr', None)) == name]


def assigned_dict(name: str) -> ast.Dict:
    for node in ast.walk(TREE):
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)
                and any(getattr(t, 'id', None) == name for t in node.targets)):
            return node.value
    raise AssertionError(f'{name} not found in {LAUNCH}')


def keywords(call: ast.Call) -> dict[str, ast.expr]:
    return {k.arg: k.value for k in call.keywords}


def console_scripts() -> set[str]:
    return set(re.findall(r"'(\w+) = convitac_ros\.", (ROOT / 'setup.py').read_text()))


def test_launch_file_starts_the_installed_executable_of_this_package():
    (node,) = calls('Node')
    kw = keywords(node)
    assert kw['package'].value == 'convitac_ros'
    assert '<name>convitac_ros</name>' in (ROOT / 'package.xml').read_text()
    assert kw['executable'].value in console_scripts()
    assert kw['name'].value == NODE_NAME


def test_launch_file_parameter_file_exists_and_is_installed():
    (join,) = calls('PathJoinSubstitution')
    parts = [e.value for e in join.args[0].elts if isinstance(e, ast.Constant)]
    assert (ROOT.joinpath(*parts)).is_file()
    assert "'config/*.yaml'" in (ROOT / 'setup.py').read_text()
    assert "'launch/*.launch.py'" in (ROOT / 'setup.py').read_text()


def test_launch_arguments_are_declared_and_used():
    declared = {k.value for k in assigned_dict('ARGUMENTS').keys}
    used = {c.args[0].value for c in calls('LaunchConfiguration')
            if c.args and isinstance(c.args[0], ast.Constant)}
    remaps = assigned_dict('REMAPS')
    used |= {v.value for v in remaps.values}
    assert used <= declared
    assert {'checkpoint', 'device', 'namespace', 'params_file'} <= declared
    assert {k.value for k in remaps.keys} == set(INPUT_TOPICS)
    (node,) = calls('Node')
    overrides = [e for e in keywords(node)['parameters'].elts if isinstance(e, ast.Dict)]
    assert {k.value for d in overrides for k in d.keys} <= set(SPECS)


def flatten(values: dict, prefix: str = '') -> dict:
    """Nested YAML parameters as ROS names: {'a': {'b': x}} -> {'a.b': x}."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat |= flatten(value, f'{prefix}{key}.')
        else:
            flat[f'{prefix}{key}'] = value
    return flat


def test_yaml_holds_every_parameter_with_its_default():
    data = yaml.safe_load((ROOT / 'config' / 'convitac.yaml').read_text())
    (key,) = data
    assert key.endswith(NODE_NAME)
    values = flatten(data[key]['ros__parameters'])
    assert values == {name: spec.default for name, spec in (SPECS | INPUT_SPECS).items()}

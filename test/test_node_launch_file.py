"""convitac.launch.py and convitac.yaml name things that exist (runs without launch installed).

The launch file is read with ``ast`` so that this test needs neither launch nor launch_ros.
"""

from __future__ import annotations

import ast
from pathlib import Path
import re

import yaml

from convitac_ros.ros.launch_arguments import ARGUMENTS, EXECUTABLE
from convitac_ros.ros.node import NODE_NAME
from convitac_ros.ros.parameters import INPUT_SPECS, SPECS

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / 'launch' / 'convitac.launch.py'
TREE = ast.parse(LAUNCH.read_text())


def calls(name: str) -> list[ast.Call]:
    return [n for n in ast.walk(TREE) if isinstance(n, ast.Call)
            and getattr(n.func, 'id', getattr(n.func, 'attr', None)) == name]


def keywords(call: ast.Call) -> dict[str, ast.expr]:
    return {k.arg: k.value for k in call.keywords}


def console_scripts() -> set[str]:
    return set(re.findall(r"'(\w+) = convitac_ros\.", (ROOT / 'setup.py').read_text()))


def test_launch_file_starts_the_installed_executable_as_a_lifecycle_node():
    (node,) = calls('LifecycleNode')
    kw = keywords(node)
    assert kw['package'].value == 'convitac_ros'
    assert '<name>convitac_ros</name>' in (ROOT / 'package.xml').read_text()
    assert EXECUTABLE in console_scripts() and NODE_NAME == 'convitac_node'
    assert {'name', 'namespace', 'parameters', 'ros_arguments'} <= kw.keys()
    assert not calls('Node')


def test_launch_file_declares_every_argument_and_takes_its_values_to_launch_plan():
    (declare,) = calls('DeclareLaunchArgument')
    assert ast.unparse(declare.args[0]) == 'name'
    assert calls('launch_plan') and calls('SetEnvironmentVariable')
    assert {'params_file', 'checkpoint', 'device', 'namespace', 'use_sim_time', 'log_level',
            'autostart', 'sensor', 'camera_topic', 'tactile_topic'} <= set(ARGUMENTS)
    assert "'config/*.yaml'" in (ROOT / 'setup.py').read_text()
    assert "'config/sensors/*.yaml'" in (ROOT / 'setup.py').read_text()
    assert "'config/*.xml'" in (ROOT / 'setup.py').read_text()
    assert "'launch/*.launch.py'" in (ROOT / 'setup.py').read_text()


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

"""package.xml: every dependency is a real rosdep key, every ROS import is declared.

The keys are checked against ``test/rosdep_keys.txt``, a list kept in the repository (its header
says where and when it was checked against rosdistro), so that ``rosdep install`` cannot abort
on a made-up key such as ``rclpy_lifecycle``.
"""

from __future__ import annotations

import ast
from pathlib import Path

from catkin_pkg.package import parse_package
import pytest

ROOT = Path(__file__).resolve().parents[1]
DEPENDENCY_KINDS = ('build_depends', 'buildtool_depends', 'exec_depends', 'test_depends',
                    'build_export_depends', 'doc_depends')
# Top-level Python modules that come from a ROS package of the same name.
ROS_MODULE_SUFFIXES = ('_msgs', '_srvs', '_interfaces')
ROS_MODULES = {'rclpy', 'launch', 'launch_ros', 'ament_index_python'}


def known_keys() -> set[str]:
    lines = (ROOT / 'test' / 'rosdep_keys.txt').read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith('#')}


def package(environment: dict[str, str] | None = None):
    parsed = parse_package(str(ROOT / 'package.xml'))
    parsed.evaluate_conditions(environment or {})
    return parsed


def dependencies(parsed) -> dict[str, object]:
    return {d.name: d for kind in DEPENDENCY_KINDS for d in getattr(parsed, kind)}


def imported_ros_modules() -> set[str]:
    """Top-level ROS modules imported by the installed code and the launch file."""
    files = [*(ROOT / 'convitac_ros').rglob('*.py'), *(ROOT / 'launch').glob('*.py')]
    modules = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module
                     and not node.level else [])
            for name in names:
                top = name.split('.')[0]
                if top in ROS_MODULES or top.endswith(ROS_MODULE_SUFFIXES):
                    modules.add(top)
    return modules


def test_every_dependency_is_a_rosdep_key_of_humble_jazzy_and_kilted():
    unknown = set(dependencies(package())) - known_keys()
    assert not unknown, f'not rosdep keys (see test/rosdep_keys.txt): {sorted(unknown)}'


def test_the_made_up_lifecycle_key_is_gone():
    assert 'rclpy_lifecycle' not in dependencies(package())
    assert 'rclpy_lifecycle' not in known_keys()


def test_every_ros_module_the_package_imports_is_declared():
    exec_depends = {d.name for d in package().exec_depends}
    assert {'rcl_interfaces', 'rosgraph_msgs', 'vision_msgs', 'std_srvs'} <= exec_depends
    missing = imported_ros_modules() - exec_depends
    assert not missing, f'imported but not an exec_depend: {sorted(missing)}'


@pytest.mark.parametrize(('environment', 'installed'), [
    ({}, True), ({'CONVITAC_VISION_MSGS': 'true'}, True),
    ({'CONVITAC_VISION_MSGS': 'false'}, False)])
def test_vision_msgs_is_optional_and_installed_unless_turned_off(environment, installed):
    (dependency,) = [d for d in package(environment).exec_depends if d.name == 'vision_msgs']
    assert dependency.condition
    assert dependency.evaluated_condition is installed
    others = [d for d in package(environment).exec_depends if d.name != 'vision_msgs']
    assert all(d.evaluated_condition for d in others)


def test_package_xml_setup_and_the_module_carry_one_version():
    """Checkpoints and ONNX files record ``convitac_ros.__version__``: it is the release's."""
    import re

    import convitac_ros

    assert package().version == convitac_ros.__version__
    assert re.fullmatch(r'\d+\.\d+\.\d+', convitac_ros.__version__)
    setup_py = (ROOT / 'setup.py').read_text()
    assert 'version=VERSION' in setup_py and "version='" not in setup_py

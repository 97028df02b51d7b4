"""The package's shape: ROS-free core, installable layout, and a real `colcon build`."""

import os
from pathlib import Path
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE_MODULES = (
    'convitac_ros.model', 'convitac_ros.data', 'convitac_ros.checkpoint',
    'convitac_ros.preprocess',
    'convitac_ros.inference', 'convitac_ros.drift')
ROS_MODULES = (
    'rclpy', 'sensor_msgs', 'std_msgs', 'diagnostic_msgs', 'lifecycle_msgs', 'vision_msgs',
    'builtin_interfaces', 'rosbags')


def test_core_modules_import_without_loading_ros():
    code = (
        'import sys\n'
        f'for m in {CORE_MODULES!r}: __import__(m)\n'
        f'loaded = sorted(m for m in sys.modules if m.split(".")[0] in {ROS_MODULES!r})\n'
        'print(",".join(loaded))\n'
    )
    result = subprocess.run(
        [sys.executable, '-c', code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == '', f'core modules loaded ROS: {result.stdout.strip()}'


def test_package_xml_declares_ament_python_and_runtime_dependencies():
    root = ET.parse(ROOT / 'package.xml').getroot()
    assert root.get('format') == '3'
    assert root.findtext('name') == 'convitac_ros'
    assert root.find('export/build_type').text == 'ament_python'
    exec_deps = {e.text for e in root.findall('exec_depend')}
    for dep in ('rclpy', 'sensor_msgs', 'std_msgs', 'diagnostic_msgs', 'lifecycle_msgs'):
        assert dep in exec_deps
    test_deps = {e.text for e in root.findall('test_depend')}
    assert {'ament_flake8', 'ament_pep257', 'python3-pytest', 'launch_testing'} <= test_deps


@pytest.fixture(scope='module')
def colcon_install(tmp_path_factory):
    """Build the package with colcon into a temporary workspace; return the install prefix."""
    colcon = shutil.which('colcon', path=os.path.dirname(sys.executable))
    if colcon is None:
        pytest.skip('colcon is not installed in this environment')
    ws = tmp_path_factory.mktemp('colcon_ws')
    env = dict(os.environ, COLCON_HOME=str(ws / 'colcon_home'))
    env['PATH'] = os.path.dirname(sys.executable) + os.pathsep + env.get('PATH', '')
    result = subprocess.run(
        [colcon, 'build', '--base-paths', str(ROOT), '--build-base', str(ws / 'build'),
         '--install-base', str(ws / 'install'), '--event-handlers', 'console_direct-'],
        cwd=ws, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return ws / 'install' / 'convitac_ros'


def test_colcon_build_installs_executables_launch_config_and_index(colcon_install):
    lib = colcon_install / 'lib' / 'convitac_ros'
    for exe in ('convitac_node', 'convitac_make_bag', 'convitac_replay', 'convitac_evaluate'):
        assert (lib / exe).is_file(), f'{exe} missing from {lib}'
        assert os.access(lib / exe, os.X_OK)
    share = colcon_install / 'share'
    assert (share / 'ament_index' / 'resource_index' / 'packages' / 'convitac_ros').is_file()
    assert (share / 'convitac_ros' / 'package.xml').is_file()
    assert (share / 'convitac_ros' / 'launch' / 'convitac.launch.py').is_file()
    assert (share / 'convitac_ros' / 'config' / 'convitac.yaml').is_file()


def test_colcon_install_ships_demo_checkpoint_and_training_but_not_benchmarks_or_tests(
        colcon_install):
    share = colcon_install / 'share' / 'convitac_ros'
    assert (share / 'models' / 'convitac_demo.safetensors').is_file()
    site = list(colcon_install.glob('lib/python3*/site-packages'))
    assert site, 'no site-packages in the install tree'
    installed = {p.name for p in site[0].iterdir()}
    assert 'convitac_ros' in installed or any(n.startswith('convitac_ros') for n in installed)
    # training is a package of its own (`python training/train.py` finds it installed);
    # the benchmarks and the tests stay in the source checkout.
    assert (site[0] / 'training' / 'configs' / 'demo.yaml').is_file()
    assert 'benchmarks' not in installed and 'test' not in installed


def _imported_modules(path: Path) -> set[str]:
    import ast

    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_imports_go_one_way_product_never_imports_training_or_benchmarks():
    offenders = {}
    for path in sorted((ROOT / 'convitac_ros').rglob('*.py')):
        bad = {name for name in _imported_modules(path)
               if name.split('.')[0] in ('training', 'benchmarks', 'test')}
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert offenders == {}


def test_no_sys_path_edits_in_the_tree():
    edits = [str(path.relative_to(ROOT)) for folder in ('convitac_ros', 'training', 'benchmarks')
             for path in sorted((ROOT / folder).rglob('*.py'))
             if 'sys.path.insert' in path.read_text() or 'sys.path.append' in path.read_text()]
    assert edits == []


def test_training_scripts_run_as_files_without_path_edits():
    result = subprocess.run([sys.executable, 'training/train.py', '--help'], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert '--config' in result.stdout

"""The launch file's rules (convitac_ros/ros/launch_arguments.py), every argument covered."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from convitac_ros.ros.dds_profile import PROFILE_VARIABLES
from convitac_ros.ros.launch_arguments import ARGUMENTS, launch_plan, SENSOR_PRESETS
from convitac_ros.ros.parameters import INPUT_SPECS, SPECS

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = str(ROOT / 'config' / 'convitac.yaml')


def plan(environ=None, **values):
    return launch_plan(values, {} if environ is None else environ)


def test_nothing_given_uses_the_defaults_file_alone_and_overrides_nothing():
    result = plan(**{name: default for name, (default, _) in ARGUMENTS.items()})
    assert result.parameters == [DEFAULTS]
    assert result.namespace == '' and result.name == 'convitac_node'
    assert result.ros_arguments == ['--log-level', 'info']


def test_a_users_params_file_keeps_its_checkpoint_and_device(tmp_path):
    mine = tmp_path / 'team.yaml'
    mine.write_text('/**/convitac_node:\n  ros__parameters:\n    checkpoint: /m.safetensors\n')
    assert plan(params_file=str(mine), checkpoint='', device='').parameters == [str(mine)]


@pytest.mark.parametrize(('argument', 'value', 'parameter', 'expected'), [
    ('checkpoint', '/models/m.safetensors', 'checkpoint', '/models/m.safetensors'),
    ('checkpoint', 'demo', 'checkpoint', 'demo'),
    ('device', 'cuda:1', 'device', 'cuda:1'),
    ('use_sim_time', 'true', 'use_sim_time', True),
    ('use_sim_time', 'False', 'use_sim_time', False),
    ('autostart', 'false', 'autostart', False),
    ('camera_topic', '/wrist_cam/image_raw', 'inputs.camera.topic', '/wrist_cam/image_raw'),
    ('tactile_topic', '/digit/image_raw', 'inputs.tactile.topic', '/digit/image_raw'),
    ('tactile_b_topic', 'right/image', 'inputs.tactile_b.topic', 'right/image'),
])
def test_a_given_argument_overrides_the_files_after_them(
        tmp_path, argument, value, parameter, expected):
    mine = tmp_path / 'team.yaml'
    mine.write_text('{}')
    result = plan(params_file=str(mine), sensor='digit', **{argument: value})
    assert result.parameters[:2] == [str(mine), str(ROOT / 'config' / 'sensors' / 'digit.yaml')]
    assert result.parameters[2] == {parameter: expected}
    assert parameter in {*SPECS, *INPUT_SPECS, 'use_sim_time'}  # use_sim_time: rclpy's own


@pytest.mark.parametrize('sensor', SENSOR_PRESETS)
def test_a_sensor_preset_is_a_second_parameter_file_of_known_parameters(sensor):
    (defaults, preset) = plan(sensor=sensor).parameters
    assert defaults == DEFAULTS
    data = yaml.safe_load(Path(preset).read_text())
    values = data['/**/convitac_node']['ros__parameters']
    flat = {f'inputs.tactile.{k}': v for k, v in values.pop('inputs')['tactile'].items()}
    assert set(values) <= set(SPECS) and set(flat) <= set(INPUT_SPECS)


def test_a_preset_may_be_a_file_and_unknown_presets_are_refused(tmp_path):
    own = tmp_path / 'mine.yaml'
    own.write_text('{}')
    assert plan(sensor=str(own)).parameters == [DEFAULTS, str(own)]
    with pytest.raises(ValueError, match='sensor must be one of gelsight_mini, digit'):
        plan(sensor='biotac')


def test_namespace_and_log_level():
    result = plan(namespace='left_hand', log_level='debug')
    assert result.namespace == 'left_hand'
    assert result.ros_arguments == ['--log-level', 'debug']
    with pytest.raises(ValueError, match='log_level must be one of'):
        plan(log_level='loud')


@pytest.mark.parametrize('bad', [{'use_sim_time': 'maybe'}, {'autostart': '2'}])
def test_booleans_must_be_true_or_false(bad):
    with pytest.raises(ValueError, match='must be true or false'):
        plan(**bad)


def test_missing_files_and_unknown_arguments_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match='params_file .* does not exist'):
        plan(params_file=str(tmp_path / 'nope.yaml'))
    with pytest.raises(ValueError, match='unknown launch arguments: colour'):
        plan(colour='red')


def test_the_shipped_dds_profile_is_set_unless_the_robot_names_one(tmp_path):
    profile = str(ROOT / 'config' / 'fastdds.xml')
    assert plan().environment == dict.fromkeys(PROFILE_VARIABLES, profile)
    assert plan({'FASTRTPS_DEFAULT_PROFILES_FILE': '/etc/robot.xml'}).environment == {}
    assert plan({'RMW_IMPLEMENTATION': 'rmw_cyclonedds_cpp'}).environment == {}
    assert plan(dds_profile='none').environment == {}
    own = tmp_path / 'own.xml'
    own.write_text('<profiles/>')
    assert set(plan(dds_profile=str(own)).environment.values()) == {str(own)}

"""What ``convitac.launch.py`` starts, computed from its arguments (plain Python, tested).

launch and launch_ros are not installable from PyPI, so the launch file only declares the
arguments and hands their values to :func:`launch_plan`; every rule lives here:

- parameters come from ``params_file``, then the ``sensor`` preset (a second parameter file),
  then the arguments the user gave; an argument left empty never overrides the files;
- ``checkpoint:=demo`` asks for the demo model; no checkpoint anywhere makes configure fail;
- the topic arguments set ``inputs.<input>.topic`` (so they also win over a preset's topic);
- the shipped Fast DDS profile is loaded unless the environment already names one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convitac_ros.ros.dds_profile import profile_environment
from convitac_ros.ros.topics import NODE_NAME
from convitac_ros.share import share_file

EXECUTABLE = 'convitac_node'
SENSOR_PRESETS = ('gelsight_mini', 'digit')
LOG_LEVELS = ('debug', 'info', 'warn', 'error', 'fatal')
# Topic argument -> the per-input parameter it sets.
TOPIC_ARGUMENTS = {'camera_topic': 'inputs.camera.topic',
                   'tactile_topic': 'inputs.tactile.topic',
                   'tactile_b_topic': 'inputs.tactile_b.topic'}
BOOLEAN_ARGUMENTS = ('use_sim_time', 'autostart')

# name -> (default, description). An empty default means "not given": the files decide.
ARGUMENTS: dict[str, tuple[str, str]] = {
    'params_file': ('', 'Parameter file of convitac_node; empty: the installed convitac.yaml.'),
    'sensor': ('', 'Tactile sensor preset applied after params_file: '
                   f'{", ".join(SENSOR_PRESETS)}, or the path of a preset file.'),
    'checkpoint': ('', 'Checkpoint (.safetensors), or demo for the demo model; empty: the '
                       "parameter file's."),
    'device': ('', "Inference device: auto, cpu, cuda or cuda:N; empty: the parameter file's."),
    'namespace': ('', 'Namespace of the node: its inputs and outputs are relative to it.'),
    'use_sim_time': ('', "true to follow /clock (bag replay with --clock); empty: the file's."),
    'autostart': ('', 'false to leave configure/activate to a lifecycle manager; empty: the '
                      "file's."),
    'log_level': ('info', f'Log level: {", ".join(LOG_LEVELS)}.'),
    'camera_topic': ('', "Camera image topic; empty: the parameter file's."),
    'tactile_topic': ('', "Tactile sensor image topic; empty: the parameter file's."),
    'tactile_b_topic': ('', 'Second tactile sensor topic (two-sensor models); empty: the '
                            "parameter file's."),
    'dds_profile': ('', 'Fast DDS profile to load; empty: the installed config/fastdds.xml '
                        '(unless FASTRTPS/FASTDDS_DEFAULT_PROFILES_FILE is set); none: no '
                        'profile.'),
}


@dataclass(frozen=True)
class LaunchPlan:
    """Everything the launch file needs to start the node.

    Attributes:
        namespace: The node's namespace ('' for the root).
        parameters: Parameter files, then one dict of the overrides the user gave.
        ros_arguments: Extra ``--ros-args`` (the log level).
        environment: Variables to set for the node process (the DDS profile).
    """

    namespace: str
    parameters: list[str | dict[str, Any]]
    ros_arguments: list[str]
    environment: dict[str, str] = field(default_factory=dict)
    name: str = NODE_NAME


def _boolean(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ('true', '1', 'yes'):
        return True
    if lowered in ('false', '0', 'no'):
        return False
    raise ValueError(f'launch argument {name} must be true or false, got {value!r}')


def _existing(path: Path, what: str) -> str:
    if not path.is_file():
        raise ValueError(f'{what} {path} does not exist')
    return str(path)


def preset_file(sensor: str) -> str:
    """The parameter file of a sensor preset name (or a preset file's path).

    Raises:
        ValueError: Neither a known preset nor an existing file.
    """
    if sensor in SENSOR_PRESETS:
        return _existing(share_file('config', 'sensors', f'{sensor}.yaml'), 'preset file')
    if Path(sensor).expanduser().is_file():
        return str(Path(sensor).expanduser())
    raise ValueError(f'sensor must be one of {", ".join(SENSOR_PRESETS)} or a preset file; '
                     f'got {sensor!r}')


def launch_plan(values: Mapping[str, str], environ: Mapping[str, str]) -> LaunchPlan:
    """Turn launch argument values into the node's parameters and environment.

    Args:
        values: Argument name -> value as launch gives them (strings; missing or '' = not
            given).
        environ: The launch process's environment (decides whether the DDS profile is set).

    Returns:
        The plan; ``parameters`` is ``[params_file, preset?, {given overrides}]``.

    Raises:
        ValueError: An unknown argument, a missing file, a bad boolean or log level.
    """
    unknown = set(values) - set(ARGUMENTS)
    if unknown:
        raise ValueError(f'unknown launch arguments: {", ".join(sorted(unknown))}')

    def given(name: str) -> str:
        return (values.get(name) or '').strip()

    params_file = given('params_file')
    parameters: list[str | dict[str, Any]] = [
        _existing(Path(params_file).expanduser(), 'params_file') if params_file
        else _existing(share_file('config', 'convitac.yaml'), 'parameter file')]
    if given('sensor'):
        parameters.append(preset_file(given('sensor')))
    overrides: dict[str, Any] = {name: given(name) for name in ('checkpoint', 'device')
                                 if given(name)}
    overrides |= {name: _boolean(name, given(name)) for name in BOOLEAN_ARGUMENTS
                  if given(name)}
    overrides |= {parameter: given(argument) for argument, parameter in TOPIC_ARGUMENTS.items()
                  if given(argument)}
    if overrides:
        parameters.append(overrides)
    log_level = given('log_level') or ARGUMENTS['log_level'][0]
    if log_level not in LOG_LEVELS:
        raise ValueError(f'log_level must be one of {", ".join(LOG_LEVELS)}; got {log_level!r}')
    profile = given('dds_profile')
    environment = ({} if profile == 'none' else profile_environment(
        environ, Path(_existing(Path(profile).expanduser(), 'dds_profile')) if profile
        else None))
    return LaunchPlan(namespace=given('namespace'), parameters=parameters,
                      ros_arguments=['--log-level', log_level], environment=environment)

"""The shipped Fast DDS profile for large images (``config/fastdds.xml``), robot-wide.

With Fast DDS's default shared-memory segment, 640x480 rgb8 frames (921 kB) sent best effort
were lost in transport (40-65 % at 5-30 Hz on loopback); a segment that holds whole frames took
that to zero, but only when the *publishing* process uses it too (the sender's segment holds
the sample). So every process on the robot that publishes images must load the profile. This
module sets the variables that make a process load it; a process must call
:func:`use_fastdds_profile` before ``rclpy.init``. No rclpy import.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
import os
from pathlib import Path

from convitac_ros.share import share_file

# Fast DDS 2.x (Humble, Jazzy) reads the first, Fast DDS 3 (Kilted) the second.
PROFILE_VARIABLES = ('FASTRTPS_DEFAULT_PROFILES_FILE', 'FASTDDS_DEFAULT_PROFILES_FILE')


def fastdds_profile() -> Path:
    """The installed ``config/fastdds.xml``."""
    return share_file('config', 'fastdds.xml')


def profile_environment(environ: Mapping[str, str], profile: Path | None = None
                        ) -> dict[str, str]:
    """The variables a process needs to load the profile, given its environment.

    Args:
        environ: The environment the process would get.
        profile: The profile file; default :func:`fastdds_profile`.

    Returns:
        Both :data:`PROFILE_VARIABLES` set to the profile; nothing when the environment already
        names a profile (the robot's own setting wins) or selects another RMW than Fast DDS.
    """
    if any(environ.get(name) for name in PROFILE_VARIABLES):
        return {}
    if environ.get('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp') not in (
            'rmw_fastrtps_cpp', 'rmw_fastrtps_dynamic_cpp'):
        return {}
    path = str(profile or fastdds_profile())
    return dict.fromkeys(PROFILE_VARIABLES, path)


def use_fastdds_profile(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Make this process (and its children) load the profile; return what was set.

    Call before ``rclpy.init``: Fast DDS reads the variables when a participant is created.
    """
    environ = os.environ if environ is None else environ
    added = profile_environment(environ)
    environ.update(added)
    return added

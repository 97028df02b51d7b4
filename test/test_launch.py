"""launch_testing test of convitac.launch.py (ROS distributions with launch_testing only).

Skips with its reason where launch_testing / launch_ros are not installed (the pip wheels);
the launch file's structure is checked everywhere by test_node_launch_file.py. The modules are
taken from ``pytest.importorskip`` so that the skip happens before any of them is needed.
"""

from pathlib import Path
import unittest

import pytest

REASON = 'launch_testing and launch_ros are not installed (ROS distributions only)'
launch_testing = pytest.importorskip('launch_testing', reason=REASON)
pytest.importorskip('launch_ros', reason=REASON)
launch = pytest.importorskip('launch', reason=REASON)
launch_actions = pytest.importorskip('launch.actions', reason=REASON)
launch_sources = pytest.importorskip('launch.launch_description_sources', reason=REASON)
testing_actions = pytest.importorskip('launch_testing.actions', reason=REASON)
testing_asserts = pytest.importorskip('launch_testing.asserts', reason=REASON)

LAUNCH_FILE = Path(__file__).resolve().parents[1] / 'launch' / 'convitac.launch.py'


@pytest.mark.launch_test
def generate_test_description():
    """Launch the node on the CPU with the package's launch file."""
    include = launch_actions.IncludeLaunchDescription(
        launch_sources.PythonLaunchDescriptionSource(str(LAUNCH_FILE)),
        launch_arguments={'checkpoint': 'demo', 'device': 'cpu',
                          'namespace': 'launch_test'}.items())
    return launch.LaunchDescription([include, testing_actions.ReadyToTest()]), {}


class TestNodeComesUp(unittest.TestCase):
    """The node configures, loads the demo checkpoint and activates."""

    def test_node_becomes_active(self, proc_output):
        proc_output.assertWaitFor('active:', timeout=120)


@launch_testing.post_shutdown_test()
class TestNodeShutsDownCleanly(unittest.TestCase):
    """The node exits with code 0 on SIGINT."""

    def test_exit_code(self, proc_info):
        testing_asserts.assertExitCodes(proc_info)

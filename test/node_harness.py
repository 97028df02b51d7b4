"""Test-side names for end-to-end node tests, all built on :mod:`convitac_ros.ros.client`.

The node runs as ``python -m convitac_ros.ros.node`` in a subprocess that inherits this
process's environment (loopback discovery and a private ROS_DOMAIN_ID, set by conftest.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from convitac_ros.ros.client import image_message as image
from convitac_ros.ros.client import NodeClient, NodeProcess, status_values, wait_until
from convitac_ros.ros.topics import NODE_NAME

NODE = f'/{NODE_NAME}'


class Probe(NodeClient):
    """A client with reliable publishers for the camera and ``num_tactile`` tactile inputs."""

    def __init__(self, heads: Sequence[str], num_tactile: int = 1, compressed: bool = False,
                 node: str = NODE) -> None:
        super().__init__(node, inputs=1 + num_tactile, compressed=compressed, heads=heads,
                         name='convitac_test_probe')


__all__ = ['image', 'NODE', 'NodeProcess', 'Probe', 'status_values', 'wait_until']

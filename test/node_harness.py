"""Test-side names for end-to-end node tests, all built on :mod:`convitac_ros.ros.node_client`.

The node runs as ``python -m convitac_ros.ros.node`` in a subprocess that inherits this
process's environment (loopback discovery and a private ROS_DOMAIN_ID, set by conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
import contextlib
from pathlib import Path
from typing import Any

from convitac_ros.ros.image_messages import image_message as image
from convitac_ros.ros.node_client import NodeClient, status_values, wait_until
from convitac_ros.ros.node_process import NodeProcess
from convitac_ros.ros.topics import NODE_NAME

NODE = f'/{NODE_NAME}'


class Probe(NodeClient):
    """A client with reliable publishers for the camera and ``num_tactile`` tactile inputs."""

    def __init__(self, heads: Sequence[str], num_tactile: int = 1, compressed: bool = False,
                 node: str = NODE) -> None:
        super().__init__(node, inputs=1 + num_tactile, compressed=compressed, heads=heads,
                         name='convitac_test_probe')


@contextlib.contextmanager
def running_node(parameters: dict[str, Any], log_path: Path, heads: Sequence[str], *,
                 num_tactile: int = 1, compressed: bool = False, wait: bool = True,
                 check_exit: bool = True, env: dict[str, str] | None = None
                 ) -> Iterator[tuple[NodeProcess, Probe]]:
    """A node process and a probe; both are cleaned up and the log checked, even on failure.

    Args:
        parameters: node parameters.
        log_path: the node's log file.
        heads: heads whose labels and probabilities the probe records.
        num_tactile: tactile inputs the probe publishes.
        compressed: the probe publishes CompressedImage inputs.
        wait: wait until the node subscribed to (and matched) the probe's publishers.
        check_exit: assert that the node exits 0 when stopped.
        env: environment variables for the node process only.
    """
    node = NodeProcess(parameters, log_path, env=env)
    probe = None
    try:
        probe = Probe(heads, num_tactile=num_tactile, compressed=compressed)
        if wait:
            probe.wait_for_subscribers(timeout=60)
        yield node, probe
    finally:
        if probe is not None:
            probe.close()
        code = node.stop()
        text = node.log()
        assert 'Traceback' not in text, text
        if check_exit:
            assert code == 0, text


def random_checkpoint(path: Path, heads: dict[str, list[str]], seed: int = 0,
                      **config: Any) -> Path:
    """A real checkpoint of a randomly initialised tiny model, written by save_checkpoint.

    Args:
        path: the .safetensors file to write.
        heads: head -> class names.
        seed: torch seed of the initialisation.
        config: ModelConfig.tiny arguments (num_tactile, visual_len, tactile_len, ...).
    """
    import torch

    from convitac_ros.checkpoint import save_checkpoint
    from convitac_ros.model import ConViTac, ModelConfig

    torch.manual_seed(seed)
    model_config = ModelConfig.tiny(heads=tuple((h, len(c)) for h, c in heads.items()), **config)
    return save_checkpoint(path, ConViTac(model_config), heads=heads)


__all__ = ['image', 'NODE', 'NodeProcess', 'Probe', 'random_checkpoint', 'running_node',
           'status_values', 'wait_until']

"""Which topics of a bag are the camera and the tactile sensors, and where the node wants them.

A bag written by this package stores relative names (`camera/image_raw`); `ros2 bag record`
stores fully qualified ones (`/camera/image_raw`, `/left_hand/camera/image_raw`), and a team's
drivers publish under their own names (`/wrist_cam/color/image_raw/compressed`,
`/gsmini/image_raw`). A wanted name matches a bag topic when

- it is absolute (`/gsmini/image_raw`): the bag topic is that name (with or without the leading
  slash), optionally followed by `/compressed`;
- it is relative (`camera/image_raw`, the default): the bag topic is that name, or ends with
  `/` + that name (any namespace), optionally followed by `/compressed`.

Raw images win over `/compressed` ones of the same stream; two different streams matching the
same wanted name (two namespaces) are an error that asks for an explicit topic.

Ground truth is found the same way: `ground_truth/<head>` (std_msgs/String) under any namespace,
absolute or relative (`ground_truth/material`, `/ground_truth/material`,
`/left_hand/ground_truth/grasp_success`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from rclpy.serialization import serialize_message
from sensor_msgs.msg import CompressedImage, Image

from convitac_ros.bags.bagfile import (
    BagError,
    BagRecord,
    COMPRESSED_SUFFIX,
    GROUND_TRUTH_PREFIX,
)
from convitac_ros.ros.topics import CAMERA_TOPIC, TACTILE_TOPICS

IMAGE_TYPES = ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage')
TRANSPORTS = ('raw', 'compressed')


def stream_name(topic: str) -> str:
    """A topic without its `/compressed` suffix (the image stream it carries)."""
    return topic[:-len(COMPRESSED_SUFFIX)] if topic.endswith(COMPRESSED_SUFFIX) else topic


def is_compressed(topic: str) -> bool:
    """Whether a topic name is an image_transport `/compressed` topic."""
    return topic.endswith(COMPRESSED_SUFFIX)


def topic_matches(bag_topic: str, wanted: str) -> bool:
    """Whether `bag_topic` carries the stream `wanted` names (rules in the module docstring)."""
    stream = stream_name(bag_topic)
    if wanted.startswith('/'):
        return stream in (wanted, wanted[1:])
    return stream.lstrip('/') == wanted or stream.endswith('/' + wanted)


def truth_head(topic: str) -> str | None:
    """The head a ground-truth topic labels (`[/ns/]ground_truth/<head>`), or None."""
    parts = topic.strip('/').split('/')
    if len(parts) >= 2 and parts[-2] == GROUND_TRUTH_PREFIX.rstrip('/') and parts[-1]:
        return parts[-1]
    return None


def resolve_truth_topics(topics: dict[str, tuple[str, int]]) -> dict[str, str]:
    """The bag's ground-truth topics and the head each labels.

    Args:
        topics: Bag topic -> (msgtype, message count).

    Returns:
        Bag topic -> head.

    Raises:
        BagError: Two topics label the same head (e.g. two namespaces).
    """
    found: dict[str, str] = {}
    for topic in sorted(topics):
        head = truth_head(topic)
        if head is None:
            continue
        other = next((t for t, h in found.items() if h == head), None)
        if other is not None:
            raise BagError(f'ground truth of {head} on two topics, {other} and {topic}; keep one '
                           'in the bag')
        found[topic] = head
    return found


def resolve_topic(topics: dict[str, tuple[str, int]], wanted: str, role: str) -> str | None:
    """The bag topic of one image stream, or None when the bag has none.

    Args:
        topics: Bag topic -> (msgtype, message count).
        wanted: Topic name asked for (see the module docstring).
        role: `camera` or `tactile`, for the error message.

    Raises:
        BagError: Several streams match (e.g. two namespaces).
    """
    found = [t for t, (msgtype, count) in topics.items()
             if count > 0 and msgtype in IMAGE_TYPES and topic_matches(t, wanted)]
    streams = sorted({stream_name(t) for t in found})
    if len(streams) > 1:
        raise BagError(f'{role} topic {wanted} matches {streams} in the bag; name one with '
                       f'--{role}-topic')
    if not streams:
        return None
    raw = [t for t in found if not is_compressed(t)]
    return raw[0] if raw else found[0]


def resolve_image_topics(topics: dict[str, tuple[str, int]], camera: str | None = None,
                         tactile: Sequence[str] | None = None,
                         num_tactile: int | None = None) -> list[str]:
    """Find the camera topic and the tactile topics of a bag.

    Args:
        topics: Bag topic -> (msgtype, message count).
        camera: Camera topic wanted (default `camera/image_raw`).
        tactile: Tactile topics wanted, in sensor order; None: the node's defaults
            (`tactile/image_raw`, `tactile_b/image_raw`), as many as the bag has.
        num_tactile: Tactile sensors the model takes (None: all found).

    Returns:
        The bag's camera topic, then its tactile topics.

    Raises:
        BagError: A wanted topic is missing, ambiguous, or the sensor count does not fit.
    """
    camera = camera or CAMERA_TOPIC
    explicit = tactile is not None and len(tactile) > 0
    wanted_tactile = list(tactile) if explicit else list(TACTILE_TOPICS)
    if explicit and num_tactile is not None and len(wanted_tactile) != num_tactile:
        raise BagError(f'{len(wanted_tactile)} tactile topics given, the model takes '
                       f'{num_tactile}')
    if len(wanted_tactile) > len(TACTILE_TOPICS):
        raise BagError(f'at most {len(TACTILE_TOPICS)} tactile topics, got {wanted_tactile}')
    found_camera = resolve_topic(topics, camera, 'camera')
    found_tactile = [resolve_topic(topics, name, 'tactile') for name in wanted_tactile]
    needed = len(wanted_tactile) if explicit else max(num_tactile or 1, 1)
    present = [t for t in found_tactile if t is not None]
    missing = [name for name, t in zip(wanted_tactile, found_tactile) if t is None]
    if found_camera is None or (explicit and missing) or len(present) < needed:
        wanted = [camera] if found_camera is None else []
        wanted += missing if explicit else wanted_tactile[len(present):needed]
        raise BagError(f'bag has no image topic for {wanted} (raw or {COMPRESSED_SUFFIX}); '
                       f'it has {sorted(topics)}; map them with --camera-topic / '
                       f'--tactile-topic')
    return [found_camera, *present[:needed if num_tactile is not None else len(present)]]


def node_topics(image_topics: Sequence[str], transport: str | None) -> list[str]:
    """The node's input topics (relative, in its namespace) that the image topics feed.

    Args:
        image_topics: The bag's camera topic, then its tactile topics.
        transport: The node's `image_transport` (`raw` or `compressed`); None keeps each
            topic's recorded form.
    """
    names = (CAMERA_TOPIC, *TACTILE_TOPICS)
    if len(image_topics) > len(names):
        raise BagError(f'at most {len(names) - 1} tactile topics, got {len(image_topics) - 1}')
    compressed = [is_compressed(t) if transport is None else transport == 'compressed'
                  for t in image_topics]
    return [name + (COMPRESSED_SUFFIX if c else '') for name, c in zip(names, compressed)]


def convert_record(record: BagRecord, compressed: bool) -> bytes:
    """The CDR bytes of a stored image in the other transport, with the same pixels.

    Compressed images become rgb8 `sensor_msgs/Image` decoded as the node decodes them; raw
    images become lossless PNG `CompressedImage`; the header is kept. A record already in the
    wanted form is returned unchanged.

    Args:
        record: A stored Image or CompressedImage.
        compressed: Whether the result is a CompressedImage.
    """
    if (record.msgtype == IMAGE_TYPES[1]) == compressed:
        return record.raw
    from convitac_ros.ros.image_limits import message_to_rgb
    from convitac_ros.ros.image_messages import encode_frame

    msg = record.decode()
    out = encode_frame(message_to_rgb(msg), 'rgb8', 'png' if compressed else 'none', 0,
                       msg.header.frame_id)
    out.header = msg.header
    return serialize_message(out)


def message_type_of(topic: str) -> type:
    """The rclpy message class of an image topic by its name (`/compressed` or raw)."""
    return CompressedImage if is_compressed(topic) else Image


def add_topic_arguments(parser: argparse.ArgumentParser) -> None:
    """The topic-mapping options every tool that reads a team's bags takes."""
    parser.add_argument('--camera-topic', default=None, metavar='TOPIC',
                        help='camera topic in the bag (default camera/image_raw: matches it '
                        'under any namespace, absolute or relative, raw or /compressed)')
    parser.add_argument('--tactile-topic', action='append', default=None, metavar='TOPIC',
                        help='tactile topic in the bag, repeat for a second sensor (default '
                        'tactile/image_raw and tactile_b/image_raw, matched the same way)')


def one_tactile_topic(args: argparse.Namespace, why: str) -> str | None:
    """The one ``--tactile-topic`` of a tool that reads a single sensor (None: the default).

    Raises:
        ValueError: More than one was given (``why`` says why one).
    """
    if args.tactile_topic and len(args.tactile_topic) > 1:
        raise ValueError(f'{why}; give one --tactile-topic')
    return args.tactile_topic[0] if args.tactile_topic else None

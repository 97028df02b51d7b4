"""The node's output topics: per-head label, probabilities, classification, and the result.

Every output lives under ``convitac/`` relative to the node's namespace (``/left_hand/convitac/
result`` for a node in ``/left_hand``), so the topic API does not change when the node is
renamed, and two instances in two namespaces never share a topic. For each head h:

- ``convitac/h/label`` (std_msgs/String): the argmax class name;
- ``convitac/h/probabilities`` (std_msgs/Float32MultiArray): in the order of ``heads.h.classes``;
- ``convitac/h/classification`` (vision_msgs/Classification, input header), where vision_msgs
  imports.

Plus ``convitac/grasp_success/probability`` (std_msgs/Float32, P(success)) when the checkpoint
has that head, ``convitac/contact`` (std_msgs/Bool) and ``convitac/result`` (std_msgs/String,
JSON): the input stamp, the contact state and every head at once, so that an evaluator can match
each answer to its input (String and Float32MultiArray carry no header). The result is
published first; with ``publish_only_in_contact`` the per-head topics are skipped out of contact.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import (
    Bool,
    Float32,
    Float32MultiArray,
    Header,
    MultiArrayDimension,
    String,
)

from convitac_ros.ros.stamps import time_to_ns
from convitac_ros.ros.topics import OUTPUT_NAMESPACE

try:
    from vision_msgs.msg import Classification, ObjectHypothesis
except ImportError:  # not in the pip wheels; published wherever the distribution has it
    Classification = ObjectHypothesis = None

OUTPUT_QOS_DEPTH = 10

SUCCESS_CLASS = 'success'


def has_vision_msgs() -> bool:
    """True when vision_msgs imports, so ``convitac/h/classification`` is published."""
    return Classification is not None


def result_json(header: Header, probabilities: dict[str, np.ndarray],
                heads: dict[str, list[str]], extra: dict[str, Any]) -> str:
    """The ``convitac/result`` payload: stamp, frame, per-head label and probabilities, extras.

    Example: ``{"stamp": {"sec": 1, "nanosec": 5}, "stamp_ns": 1000000005, "frame_id": "cam",
    "heads": {"hardness": {"label": "soft", "probabilities": [0.2, 0.8]}}, "latency_ms": 3.1}``.
    """
    stamp = header.stamp
    payload = {
        'stamp': {'sec': stamp.sec, 'nanosec': stamp.nanosec},
        'stamp_ns': time_to_ns(stamp),
        'frame_id': header.frame_id,
        'heads': {
            head: {'label': classes[int(np.argmax(probabilities[head]))],
                   'probabilities': [round(float(p), 6) for p in probabilities[head]]}
            for head, classes in heads.items()
        },
    }
    payload.update(extra)
    return json.dumps(payload, separators=(',', ':'))


class OutputPublishers:
    """Lifecycle publishers for every output of a checkpoint's heads."""

    def __init__(self, node: Any, heads: dict[str, list[str]], debug_image: bool = False
                 ) -> None:
        """Create the publishers on a LifecycleNode (they publish only while active).

        ``convitac/debug_image`` is advertised only while ``debug_image`` is on (see
        :meth:`set_debug_image`).
        """
        self._node = node
        self._heads = heads
        self._publishers = []
        create = self._create
        self.result = create(String, 'result')
        self.contact = create(Bool, 'contact')
        self.debug_image = create(Image, 'debug_image') if debug_image else None
        self.labels = {h: create(String, f'{h}/label') for h in heads}
        self.probabilities = {h: create(Float32MultiArray, f'{h}/probabilities') for h in heads}
        self.classifications = (
            {h: create(Classification, f'{h}/classification') for h in heads}
            if has_vision_msgs() else {})
        self.success = None
        if 'grasp_success' in heads:
            self.success = create(Float32, 'grasp_success/probability')
            classes = heads['grasp_success']
            self._success_index = (classes.index(SUCCESS_CLASS) if SUCCESS_CLASS in classes
                                   else len(classes) - 1)

    def set_debug_image(self, enabled: bool, active: bool) -> None:
        """Advertise ``convitac/debug_image`` (enabled) or withdraw it, at once.

        Args:
            enabled: Whether the topic should exist.
            active: Whether the node is active (a publisher made now must be enabled too).
        """
        if enabled and self.debug_image is None:
            publisher = self._create(Image, 'debug_image')
            if active:
                publisher.on_activate(None)
            self.debug_image = publisher
        elif not enabled and self.debug_image is not None:
            publisher, self.debug_image = self.debug_image, None
            self._publishers.remove(publisher)
            self._node.destroy_lifecycle_publisher(publisher)

    def _create(self, msg_type: Any, topic: str) -> Any:
        publisher = self._node.create_lifecycle_publisher(
            msg_type, f'{OUTPUT_NAMESPACE}/{topic}', OUTPUT_QOS_DEPTH)
        self._publishers.append(publisher)
        return publisher

    def publish(self, header: Header, probabilities: dict[str, np.ndarray],
                extra: dict[str, Any], in_contact: bool, labels: bool = True) -> None:
        """Publish one prediction: ``probabilities[h]`` is (C_h,) in class order.

        Args:
            header: The input header (stamp of the newest set, camera frame_id).
            probabilities: Head -> (C_h,) probabilities.
            extra: More fields of the result JSON (latency, sequence, contact score).
            in_contact: The contact state, published on ``convitac/contact``.
            labels: False skips the per-head topics (publish only in contact).
        """
        self.result.publish(String(data=result_json(
            header, probabilities, self._heads, {'contact': in_contact, **extra})))
        self.contact.publish(Bool(data=in_contact))
        if not labels:
            return
        for head, classes in self._heads.items():
            probs = probabilities[head]
            self.labels[head].publish(String(data=classes[int(np.argmax(probs))]))
            array = Float32MultiArray(data=[float(p) for p in probs])
            array.layout.dim = [MultiArrayDimension(label=head, size=len(classes),
                                                    stride=len(classes))]
            self.probabilities[head].publish(array)
            if head in self.classifications:
                self.classifications[head].publish(Classification(header=header, results=[
                    ObjectHypothesis(class_id=name, score=float(p))
                    for name, p in zip(classes, probs)]))
        if self.success is not None:
            p_success = float(probabilities['grasp_success'][self._success_index])
            self.success.publish(Float32(data=p_success))

    def destroy(self) -> None:
        """Destroy every publisher."""
        for publisher in self._publishers:
            self._node.destroy_lifecycle_publisher(publisher)
        self._publishers.clear()

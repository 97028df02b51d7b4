"""The node's names, in one place: its default name, input topics, result topic, image QoS.

Input topics are relative, so that a namespace or a remapping moves them; camera first, then
one topic per tactile sensor. Bags written by the package use the same names.
"""

NODE_NAME = 'convitac_node'
CAMERA_TOPIC = 'camera/image_raw'
TACTILE_TOPICS = ('tactile/image_raw', 'tactile_b/image_raw')
INPUT_TOPICS = (CAMERA_TOPIC, *TACTILE_TOPICS)
RESULT_TOPIC = 'result'
COMPRESSED_SUFFIX = '/compressed'
# Outputs live under <node namespace>/convitac/..., so the topic API does not change when the
# node is renamed, and two hands in two namespaces never collide.
OUTPUT_NAMESPACE = 'convitac'


def image_qos(depth: int, reliable: bool) -> 'rclpy.qos.QoSProfile':  # noqa: F821
    """The QoS of the image inputs: keep the last ``depth``, reliable or best effort.

    One definition for the node's subscriptions and every publisher that feeds it (the client,
    the benchmark's echo), so that they always match.
    """
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=(ReliabilityPolicy.RELIABLE if reliable
                                   else ReliabilityPolicy.BEST_EFFORT))

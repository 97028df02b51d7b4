"""The node's parameters: one table of specs, a typed snapshot, and validation with reasons.

Every parameter is declared from :data:`SPECS` with a ``ParameterDescriptor`` (description and
range); the defaults here equal ``config/convitac.yaml`` (a test checks it). The node reads them
once into a frozen :class:`NodeParameters`; changes go through :func:`validate`, which refuses
bad values with a reason.
"""

from __future__ import annotations

import array
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from convitac_ros.ros.contact import CONTACT_THRESHOLD
from convitac_ros.ros.image_limits import DEFAULT_MAX_PIXELS
from convitac_ros.ros.node_guards import rcl_reason
from convitac_ros.ros.topics import INPUT_TOPICS
from convitac_ros.share import share_file

DEMO = 'demo'
DEMO_CHECKPOINT = 'convitac_demo.safetensors'


@dataclass(frozen=True)
class Spec:
    """One parameter: default, description and the allowed values."""

    default: Any
    description: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    live: bool = False  # takes effect at once; otherwise at the next configure / activate

    def descriptor(self, name: str) -> ParameterDescriptor:
        """Build the ParameterDescriptor: description, range, choices, when it applies."""
        when = 'at once' if self.live else 'at the next configure/activate'
        text = f'{self.description} Takes effect {when}.'
        if self.choices:
            text += f' One of: {", ".join(self.choices)}.'
        descriptor = ParameterDescriptor(name=name, description=text)
        if self.low is not None and isinstance(self.default, bool):
            raise TypeError(f'{name}: a bool parameter has no range')
        if self.low is not None and isinstance(self.default, int):
            descriptor.integer_range = [
                IntegerRange(from_value=int(self.low), to_value=int(self.high), step=1)]
        elif self.low is not None:
            descriptor.floating_point_range = [
                FloatingPointRange(from_value=float(self.low), to_value=float(self.high))]
        return descriptor


SPECS: dict[str, Spec] = {
    'autostart': Spec(True, 'Configure and activate by itself at start-up.'),
    'checkpoint': Spec(
        '', 'Path of the .safetensors checkpoint or of an .onnx export (convitac_export), or '
        'demo for the demo checkpoint installed with the package (a synthetic-world model, for '
        'trying the node out). Must be given: empty fails configure.'),
    'backend': Spec(
        'auto', 'Inference runtime: auto (onnxruntime for an .onnx file, torch otherwise), '
        'torch, or onnxruntime (needs no torch).', choices=('auto', 'torch', 'onnxruntime')),
    'device': Spec('auto', 'Inference device: auto (CUDA if present), cpu, cuda or cuda:N.'),
    'precision': Spec(
        'auto', 'Inference precision: auto (fp32: bf16 autocast was slower at batch 1 on an '
        'H100), fp32, bf16 or fp16 (autocast). onnxruntime: the exported precision.',
        choices=('auto', 'fp32', 'bf16', 'fp16')),
    'torch_compile': Spec(
        False, 'Compile the model with torch.compile at configure (slow start; torch only).'),
    'cuda_graph': Spec(
        True, 'Replay a captured CUDA graph for single predictions on CUDA devices (2.4x '
        'faster on an H100); ignored on CPU and by onnxruntime.'),
    'calibration': Spec(
        True, "Divide each head's logits by the temperature the checkpoint carries (fitted on "
        'its validation split, so that probabilities mean what they say; 1 where it has none). '
        'false: the uncalibrated softmax (an .onnx file must have been exported that way).'),
    'torch_threads': Spec(
        1, 'CPU threads for the model (torch.set_num_threads, or onnxruntime intra-op threads); '
        '0 keeps the runtime default. One thread leaves a core to the executor and is the '
        'fastest for small models.', 0, 256),
    'warmup_iterations': Spec(
        3, 'Dummy predictions at configure so that the first message is not slow.', 0, 100),
    'configure_timeout': Spec(
        300.0, 'Seconds configure may take (loading, warm-up, a TensorRT engine build); a '
        'model that takes longer fails configure.', 1.0, 86400.0),
    'image_transport': Spec(
        'raw', 'raw: sensor_msgs/Image on <topic>; compressed: sensor_msgs/CompressedImage on '
        '<topic>/compressed.', choices=('raw', 'compressed')),
    'max_image_pixels': Spec(
        DEFAULT_MAX_PIXELS, 'Images larger than this (width x height, as declared or read from '
        'the PNG/JPEG header) are dropped before decoding, counted as image_too_large.', 1,
        2 ** 31 - 1, live=True),
    'qos_reliability': Spec(
        'best_effort', 'Reliability of the image subscriptions (sensor data QoS by default).',
        choices=('best_effort', 'reliable')),
    'qos_depth': Spec(5, 'History depth of the image subscriptions.', 1, 1000),
    'direct_input': Spec(
        True, 'Take the images on a thread of their own that waits on them alone (lower '
        'latency, and lost messages counted from sequence numbers) instead of through the '
        'executor.'),
    'sync_queue_size': Spec(
        10, 'Approximate-time synchronizer: distinct stamps kept per input.', 1, 1000),
    'sync_slop': Spec(
        0.05, 'Approximate-time synchronizer: a set is narrower than this, in seconds.',
        0.0, 10.0),
    'sync_purge_older': Spec(
        False, 'After each synchronized set, drop queued messages older than it (message_'
        'filters keeps them until they overflow).'),
    'queue_depth': Spec(
        1, 'Inference queue depth: when full, the oldest waiting window is dropped.', 1, 100,
        live=True),
    'process_every_pair': Spec(
        False, 'Evaluation mode: infer on every synchronized set, up to backlog_limit waiting '
        '(oldest dropped beyond it), instead of only the newest.', live=True),
    'backlog_limit': Spec(
        1000, 'Most windows waiting in process_every_pair mode.', 1, 100000, live=True),
    'max_batch': Spec(
        1, 'In process_every_pair mode, windows waiting together are inferred in batches of up '
        'to this many.', 1, 256, live=True),
    'zero_stamp_policy': Spec(
        'receive_time', 'What to do with images whose header.stamp is zero: stamp them with '
        'the receive time, or drop them. Both are counted and reported.',
        choices=('receive_time', 'drop')),
    'publish_debug_image': Spec(
        False, 'Publish convitac/debug_image (camera and tactile side by side with predictions).',
        live=True),
    'diagnostics_period': Spec(
        1.0, 'Period of /diagnostics in seconds.', 0.1, 60.0, live=True),
    'silent_input_timeout': Spec(
        2.0, 'An input without messages for this long (seconds) is reported (WARN).', 0.1,
        3600.0, live=True),
    'latency_budget_ms': Spec(
        500.0, 'WARN when the p95 processing latency exceeds this (ms); 0 disables.', 0.0,
        1e6, live=True),
    'hardware_id': Spec(
        '', 'hardware_id of the /diagnostics status; empty: <host name>/<inference device> '
        '(e.g. gripper-pc/cuda:0).'),
    'contact_threshold': Spec(
        CONTACT_THRESHOLD, 'A tactile frame shows contact when the 95th percentile of its '
        'absolute differences from the no-contact reference (grey levels 0-255, on a 32x32 '
        'thumbnail) exceeds this (convitac_label finds contact the same way).', 0.0, 255.0,
        live=True),
    'drift_period': Spec(
        1.0, 'Seconds between the frame sets scored for input drift (against the reference '
        'statistics the checkpoint stores; off the per-pair path); 0 disables.', 0.0, 3600.0),
    'publish_only_in_contact': Spec(
        False, 'Publish the per-head label, probabilities, classification and grasp topics only '
        'while the tactile frames show contact (result and contact are always published).',
        live=True),
}

# Per-input settings: inputs.<input>.<setting>, read at activate.
INPUTS = ('camera', 'tactile', 'tactile_b')
ROTATIONS = ('0', '90', '180', '270', 'transpose')
ENCODING_OVERRIDES = ('', 'rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', 'mono16')
NO_CROP = [0, 0, 0, 0]
INPUT_SPECS: dict[str, Spec] = {}
for _input, _topic in zip(INPUTS, INPUT_TOPICS):
    INPUT_SPECS |= {
        f'inputs.{_input}.topic': Spec(
            _topic, f'Topic of the {_input} images (relative names follow the '
            'namespace; compressed transport adds /compressed).'),
        f'inputs.{_input}.transport': Spec(
            '', 'raw or compressed for this input; empty: image_transport.',
            choices=('', 'raw', 'compressed')),
        f'inputs.{_input}.encoding': Spec(
            '', 'Read the raw images as this encoding whatever the message says (same bytes '
            'per pixel), e.g. bgr8 for a driver publishing 8UC3 or passthrough BGR data; '
            'empty: the message encoding.', choices=ENCODING_OVERRIDES),
        f'inputs.{_input}.crop': Spec(
            list(NO_CROP), 'Crop [x, y, width, height] in pixels of the received frame, before '
            'the rotation; a width or height of 0 reaches the edge; [0, 0, 0, 0]: none.'),
        f'inputs.{_input}.stamped': Spec(
            True, 'The driver stamps its images. false: zero stamps are expected (e.g. '
            "GelSight's ROS 2 example driver); they are still counted and handled by "
            'zero_stamp_policy, but /diagnostics does not warn about them.'),
        f'inputs.{_input}.rotation': Spec(
            '0', 'Rotation clockwise in degrees after the crop, or transpose (rows become '
            'columns, e.g. a 240x320 portrait DIGIT frame back to 320x240).',
            choices=ROTATIONS),
    }


@dataclass(frozen=True)
class NodeParameters:
    """Typed snapshot of the parameters (see :data:`SPECS` for their meaning)."""

    autostart: bool
    checkpoint: str
    backend: str
    device: str
    precision: str
    torch_compile: bool
    cuda_graph: bool
    calibration: bool
    torch_threads: int
    warmup_iterations: int
    configure_timeout: float
    image_transport: str
    max_image_pixels: int
    qos_reliability: str
    qos_depth: int
    direct_input: bool
    sync_queue_size: int
    sync_slop: float
    sync_purge_older: bool
    queue_depth: int
    process_every_pair: bool
    backlog_limit: int
    max_batch: int
    zero_stamp_policy: str
    publish_debug_image: bool
    diagnostics_period: float
    silent_input_timeout: float
    latency_budget_ms: float
    hardware_id: str
    contact_threshold: float
    drift_period: float
    publish_only_in_contact: bool

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> NodeParameters:
        """Build from ``{name: value}``; missing names take the defaults of :data:`SPECS`."""
        merged = {name: spec.default for name, spec in SPECS.items()} | values
        return cls(**{f.name: _coerce(SPECS[f.name].default, merged[f.name])
                      for f in fields(cls)})

    def with_changes(self, changes: dict[str, Any]) -> NodeParameters:
        """Return a copy with some values changed (already validated)."""
        return replace(self, **{k: _coerce(SPECS[k].default, v) for k, v in changes.items()})

    @property
    def uses_demo(self) -> bool:
        """True when the demo checkpoint was asked for (``checkpoint: demo``)."""
        return self.checkpoint == DEMO

    def resolved_checkpoint(self) -> Path:
        """The checkpoint to load: the parameter's file, or the installed demo checkpoint.

        Raises:
            ValueError: The parameter is empty (a forgotten checkpoint must not silently
                become the demo model).
        """
        if self.uses_demo:
            return demo_checkpoint()
        if not self.checkpoint:
            raise ValueError("checkpoint is empty: give a .safetensors path, or 'demo' for "
                             'the demo model')
        return Path(self.checkpoint).expanduser()


def _coerce(default: Any, value: Any) -> Any:
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _valid_device(value: str) -> bool:
    if value in ('auto', 'cpu', 'cuda'):
        return True
    prefix, _, index = value.partition(':')
    return prefix == 'cuda' and index.isdigit()


def validate(name: str, value: Any) -> str | None:
    """Check one value; return the reason it is refused, or None when it is fine.

    Ranges are also enforced by rclpy from the descriptor; they are checked here as well so
    that the reason names the parameter and the allowed values.
    """
    spec = SPECS.get(name) or INPUT_SPECS.get(name)
    if spec is None:
        return None
    if name.endswith('.crop'):
        return _crop_reason(name, value)
    expected = type(spec.default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not expected:
        return f'{name} must be a {expected.__name__}, got {type(value).__name__} {value!r}'
    if spec.choices and value not in spec.choices:
        return f'{name} must be one of {", ".join(spec.choices)}; got {value!r}'
    if spec.low is not None and not spec.low <= value <= spec.high:
        return f'{name} must be within [{spec.low}, {spec.high}]; got {value!r}'
    if name == 'device' and not _valid_device(value):
        return f'device must be auto, cpu, cuda or cuda:N; got {value!r}'
    if name == 'checkpoint' and value not in ('', DEMO) and not value.endswith(
            ('.safetensors', '.onnx')):
        return f"checkpoint must be a .safetensors or .onnx file, or 'demo'; got {value!r}"
    if name.endswith('.topic'):
        return topic_name_reason(name, value)
    return None


def topic_name_reason(name: str, value: str) -> str | None:
    """Why ``value`` is not a usable ROS topic name for parameter ``name``, or None.

    Relative, private (``~/``) and absolute names are accepted as rcl accepts them; ``{node}``
    and ``{ns}`` are the only substitutions. Checked when the parameter is set, at start and
    at run time, so that activate never meets a name it cannot subscribe to.
    """
    from rclpy.expand_topic_name import expand_topic_name
    from rclpy.validate_full_topic_name import validate_full_topic_name

    try:
        validate_full_topic_name(expand_topic_name(value, 'convitac_node', '/'))
    except Exception as exc:  # noqa: BLE001 - rclpy raises several types; all mean refused
        return f'{name} {value[:100]!r} is not a valid ROS topic name: {rcl_reason(exc)}'
    return None


def _crop_reason(name: str, value: Any) -> str | None:
    values = list(value) if isinstance(value, (list, tuple, array.array)) else None
    if (values is None or len(values) != 4
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                       for v in values)):
        return f'{name} must be 4 non-negative integers [x, y, width, height]; got {value!r}'
    return None


def demo_checkpoint() -> Path:
    """Locate the demo checkpoint installed with the package (``models/`` of its share).

    Returns:
        ``<share>/convitac_ros/models/convitac_demo.safetensors`` for a colcon or pip install,
        otherwise ``models/`` next to the package sources (editable install, source checkout).
    """
    return share_file('models', DEMO_CHECKPOINT)

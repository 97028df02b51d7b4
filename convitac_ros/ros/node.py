"""``convitac_node``: synchronized camera and tactile images in, ConViTac predictions out.

A lifecycle node (``autostart`` configures and activates it at start-up):

- configure: load the checkpoint into a :class:`~convitac_ros.inference.Predictor` (an
  ``.onnx`` export into an :class:`~convitac_ros.runtime_onnx.OnnxPredictor`, without torch),
  warm it up, declare the read-only ``heads.<h>.classes`` parameters and create the output
  publishers;
- activate: create the image subscriptions and start the inference thread;
- deactivate / cleanup: undo those, and free GPU memory.

Data path: the input thread (:mod:`convitac_ros.ros.direct_take`; with ``direct_input:
false``, the executor's subscription callbacks) takes each image, checks its stamp and its
publication sequence number (a gap is a message lost before the node: counted per input) and
offers it to the :class:`ApproximateTimeSynchronizer`; a synchronized set enters the
:class:`SlidingWindow`, and the window that ends with it goes into a :class:`DropOldestQueue`.
The inference thread (:mod:`convitac_ros.ros.inference_thread`) converts, predicts and
publishes. The executor thread serves the lifecycle and parameter services and /diagnostics.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from convitac_ros.ros import direct_take
from convitac_ros.ros.diagnostics import Health, health_status, InputHealth
from convitac_ros.ros.image_conversion import compressed_to_rgb, image_to_rgb
from convitac_ros.ros.inference_thread import InferenceThread
from convitac_ros.ros.outputs import OutputPublishers
from convitac_ros.ros.parameters import NodeParameters, SPECS, validate
from convitac_ros.ros.pipeline import Counters, DropOldestQueue, FrameSet, SlidingWindow
from convitac_ros.ros.synchronizer import ApproximateTimeSynchronizer, stamp_to_ns
from convitac_ros.runtime_onnx import resolve_backend

NODE_NAME = 'convitac_node'
INPUT_TOPICS = ('camera/image_raw', 'tactile/image_raw', 'tactile_b/image_raw')
# A zero stamp or an inference failure keeps its WARN / ERROR this long (s) after the event.
RECENT_S = 5.0
SWITCH_INTERVAL_S = 0.0005


class InputState:
    """Per-input bookkeeping, touched only by the executor thread (read by diagnostics)."""

    def __init__(self, topic: str) -> None:
        """Start with nothing received on ``topic``."""
        self.topic = topic
        self.received = 0
        self.zero_stamps = 0
        self.backwards = 0
        self.lost = 0
        self.last_stamp_ns: int | None = None
        self.last_sequence: int | None = None
        self.last_receive_s: float | None = None
        self.last_zero_stamp_s: float | None = None
        self.last_lost_s: float | None = None

    def count_sequence(self, sequence: int | None, now: float) -> None:
        """Count the messages skipped before publication sequence number ``sequence``.

        A gap means messages the publisher sent never reached the node (best-effort loss, or
        the subscription's history overflowing). A number that goes backwards (a new or a
        second publisher) restarts the count without counting anything.
        """
        if sequence is None:
            return
        last = self.last_sequence
        if last is not None and sequence > last + 1:
            self.lost += sequence - last - 1
            self.last_lost_s = now
        self.last_sequence = sequence


class ConvitacNode(LifecycleNode):
    """The ConViTac perception node (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        """Declare the parameters and the diagnostics publisher; stay unconfigured."""
        super().__init__(NODE_NAME, **kwargs)
        for name, spec in SPECS.items():
            self.declare_parameter(name, spec.default, spec.descriptor(name))
        self.params = NodeParameters.from_values(
            {name: self.get_parameter(name).value for name in SPECS})
        reasons = [r for r in (validate(n, getattr(self.params, n)) for n in SPECS) if r]
        if reasons:
            raise ValueError('; '.join(reasons))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.counters = Counters()
        self.predictor: Any = None
        self.outputs: OutputPublishers | None = None
        self.inputs: list[InputState] = []
        self._configure_error: str | None = None
        self._checkpoint: Any = None  # the file of the last configure
        self._image_subscriptions: list[Any] = []
        self._input_thread: direct_take.ReaderThread | None = None
        self._sync: ApproximateTimeSynchronizer | None = None
        self._window: SlidingWindow | None = None
        self._convert = image_to_rgb
        self._queue = DropOldestQueue(self.params.queue_depth)
        self._thread: InferenceThread | None = None
        self._state = 'unconfigured'
        self._previous_tick: tuple[float, dict[str, int]] = (time.monotonic(), {})
        self._diagnostics = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._diagnostics_timer = self.create_timer(
            self.params.diagnostics_period, self._publish_diagnostics)

    # ------------------------------------------------------------------ parameters

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        changes = {}
        for parameter in parameters:
            if parameter.name not in SPECS:
                continue
            reason = validate(parameter.name, parameter.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
            changes[parameter.name] = parameter.value
        self.params = self.params.with_changes(changes)
        if {'queue_depth', 'process_every_pair', 'backlog_limit'} & changes.keys():
            self.counters.add('dropped queue_full', self._queue.set_capacity(self._capacity()))
        if 'diagnostics_period' in changes:
            self.destroy_timer(self._diagnostics_timer)
            self._diagnostics_timer = self.create_timer(
                self.params.diagnostics_period, self._publish_diagnostics)
        return SetParametersResult(successful=True)

    def _capacity(self) -> int:
        params = self.params
        return params.backlog_limit if params.process_every_pair else params.queue_depth

    # ------------------------------------------------------------------ lifecycle

    def autostart(self) -> None:
        """Configure and activate when the ``autostart`` parameter is true."""
        if self.params.autostart and self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load and warm up the model, declare the head parameters, create the outputs."""
        path = self._checkpoint = self.params.resolved_checkpoint()
        try:
            predictor = self._load_predictor(path)
            self._declare_heads(predictor.heads)
        except Exception as exc:  # noqa: BLE001 - any failure is a clear configure failure
            self._configure_error = f'{type(exc).__name__}: {exc}'
            self.get_logger().error(f'configure failed: cannot use checkpoint {path}: {exc}')
            return TransitionCallbackReturn.FAILURE
        self.predictor = predictor
        self._configure_error = None
        self.outputs = OutputPublishers(self, predictor.heads)
        self._state = 'inactive'
        self.get_logger().info(
            f'loaded {predictor.model_name} from {path} on {predictor.device} with '
            f'{predictor.backend} (heads {", ".join(predictor.heads)}; '
            f'{predictor.visual_len} visual, '
            f'{predictor.num_tactile}x{predictor.tactile_len} tactile frames)')
        return super().on_configure(state)

    def _load_predictor(self, path: Any) -> Any:
        if not path.is_file():
            raise FileNotFoundError('no such file')
        params = self.params
        if resolve_backend(params.backend, path) == 'onnxruntime':
            # No torch on this path: a robot can run the node from requirements-runtime.txt.
            from convitac_ros.runtime_onnx import OnnxPredictor

            predictor = OnnxPredictor(path, device=params.device, precision=params.precision,
                                      threads=params.torch_threads)
        else:
            import torch  # imported only when needed: the node starts fast without a model

            from convitac_ros.inference import Predictor

            if params.torch_threads:
                torch.set_num_threads(params.torch_threads)
            predictor = Predictor.from_checkpoint(
                path, device=params.device, precision=params.precision,
                compile=params.torch_compile, cuda_graph=None if params.cuda_graph else False,
                backend='torch')
        if params.warmup_iterations:
            predictor.warmup(params.warmup_iterations, batch_size=params.max_batch)
        return predictor

    def _declare_heads(self, heads: dict[str, list[str]]) -> None:
        for head, classes in heads.items():
            name = f'heads.{head}.classes'
            if self.has_parameter(name):
                if list(self.get_parameter(name).value) != list(classes):
                    raise ValueError(
                        f'its {head} classes differ from the read-only {name} already declared '
                        'by an earlier checkpoint: restart the node to change heads')
                continue
            self.declare_parameter(name, list(classes), ParameterDescriptor(
                description=f'Class names of head {head}, in the order of ~/{head}/'
                            'probabilities (from the checkpoint).', read_only=True))

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Create the synchronizer, the window, the subscriptions and the inference thread."""
        params, predictor = self.params, self.predictor
        num_inputs = 1 + predictor.num_tactile
        self.inputs = [InputState(topic) for topic in INPUT_TOPICS[:num_inputs]]
        self._sync = ApproximateTimeSynchronizer(
            num_inputs, params.sync_queue_size, params.sync_slop, self._on_synchronized,
            purge_older=params.sync_purge_older)
        self._window = SlidingWindow(max(predictor.visual_len, predictor.tactile_len))
        self._queue.set_capacity(self._capacity())
        self._queue.reopen()
        self._thread = InferenceThread(self, self._queue)
        self._thread.start()
        compressed = params.image_transport == 'compressed'
        msg_type = CompressedImage if compressed else Image
        self._convert = compressed_to_rgb if compressed else image_to_rgb
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=params.qos_depth,
            reliability=(ReliabilityPolicy.RELIABLE if params.qos_reliability == 'reliable'
                         else ReliabilityPolicy.BEST_EFFORT))
        direct = params.direct_input and direct_take.available()
        group = direct_take.HiddenCallbackGroup() if direct else None
        for index, item in enumerate(self.inputs):
            topic = item.topic + ('/compressed' if compressed else '')
            self._image_subscriptions.append(
                direct_take.create_direct_subscription(self, msg_type, topic, qos, group)
                if direct else self.create_subscription(
                    msg_type, topic, lambda msg, i=index: self._on_image(msg, i), qos))
        if direct:
            self._input_thread = direct_take.start_reader(
                self.context, self._image_subscriptions, self._on_taken, self._on_input_error,
                'convitac_input')
        self._state = 'active'
        self.get_logger().info(
            'active: ' + ', '.join(self.resolve_topic_name(s.topic_name) for s in
                                   self._image_subscriptions)
            + (' (input thread)' if direct else ' (executor callbacks)'))
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop the inputs and the inference thread."""
        self._stop_inputs()
        self._state = 'inactive'
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release the model and the output publishers, and free GPU memory."""
        self._release_model()
        self._state = 'unconfigured'
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything, whatever the state."""
        self.release()
        self._state = 'finalized'
        return super().on_shutdown(state)

    def release(self) -> None:
        """Stop the inputs and the inference thread, free the model (idempotent)."""
        self._stop_inputs()
        self._release_model()

    def _stop_inputs(self) -> None:
        if self._input_thread is not None:
            self._input_thread.stop()
            self._input_thread = None
        for subscription in self._image_subscriptions:
            self.destroy_subscription(subscription)
        self._image_subscriptions.clear()
        self._queue.close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._queue.clear()
        if self._window is not None:
            self._window.clear()

    def _release_model(self) -> None:
        if self.outputs is not None:
            self.outputs.destroy()
            self.outputs = None
        if self.predictor is not None:
            device = str(self.predictor.device)
            self.predictor = None
            if device.startswith('cuda') and 'torch' in sys.modules:
                import torch

                torch.cuda.empty_cache()

    # ------------------------------------------------------------------ inputs

    def _on_taken(self, index: int, msg: Any, info: dict) -> None:
        """Input thread: one message taken directly, with its message info."""
        self.inputs[index].count_sequence(info.get('publication_sequence_number'),
                                          time.monotonic())
        self._on_image(msg, index)

    def _on_input_error(self, exc: Exception) -> None:
        self.counters.add('input errors')
        self.get_logger().error(f'input thread: {type(exc).__name__}: {exc}',
                                throttle_duration_sec=RECENT_S)

    def _on_image(self, msg: Any, index: int) -> None:
        """One image: stamp checks, then the synchronizer (which only enqueues)."""
        item = self.inputs[index]
        now = time.monotonic()
        item.received += 1
        item.last_receive_s = now
        stamp = stamp_to_ns(msg)
        if not stamp:
            item.zero_stamps += 1
            item.last_zero_stamp_s = now
            if self.params.zero_stamp_policy == 'drop':
                self.counters.add('dropped zero_stamp')
                return
            stamp = self.get_clock().now().nanoseconds
        elif item.last_stamp_ns is not None and stamp < item.last_stamp_ns:
            # A looping bag or a restarted driver: pairs and windows across the jump are
            # meaningless, so start over.
            item.backwards += 1
            self.counters.add('time jumps backwards')
            self._sync.clear()
            self._window.clear()
            for other in self.inputs:
                other.last_stamp_ns = None
        item.last_stamp_ns = stamp
        self._sync.add((msg, stamp), index, stamp_ns=stamp)

    def _on_synchronized(self, *stamped: tuple[Any, int]) -> None:
        self.counters.add('pairs')
        frame_set = FrameSet(msgs=tuple(m for m, _ in stamped), stamp_ns=stamped[0][1],
                             received_ns=time.perf_counter_ns(), convert=self._convert)
        window = self._window.push(frame_set)
        if isinstance(window, str):
            self.counters.add(f'dropped {window}')
            return
        if self._queue.put(window):
            self.counters.add('dropped queue_full')

    # ------------------------------------------------------------------ diagnostics

    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        counts = self.counters.snapshot()
        previous_time, previous = self._previous_tick
        elapsed = max(now - previous_time, 1e-9)
        self._previous_tick = (now, counts | {f'received {i}': item.received
                                              for i, item in enumerate(self.inputs)})

        def rate(key: str, value: int) -> float:
            return max(value - previous.get(key, 0), 0) / elapsed

        thread, predictor = self._thread, self.predictor
        health = Health(
            node_name=self.get_name(), state=self._state,
            model=getattr(predictor, 'model_name', ''),
            device=str(getattr(predictor, 'device', '')),
            checkpoint=str(self._checkpoint or self.params.checkpoint),
            pairing_rate_hz=rate('pairs', counts.get('pairs', 0)),
            inference_rate_hz=rate('inferences', counts.get('inferences', 0)),
            drops={k[8:]: v for k, v in counts.items() if k.startswith('dropped ')},
            counts={k: v for k, v in counts.items() if not k.startswith('dropped ')},
            queue_length=len(self._queue),
            silent_timeout_s=self.params.silent_input_timeout,
            latency_budget_ms=self.params.latency_budget_ms,
            configure_error=self._configure_error)
        subscriptions = self._image_subscriptions
        for i, item in enumerate(self.inputs):
            publishers = matched = None
            if i < len(subscriptions):
                publishers = self.count_publishers(subscriptions[i].topic_name)
                matched = subscriptions[i].get_publisher_count()
            health.inputs.append(InputHealth(
                topic=item.topic, rate_hz=rate(f'received {i}', item.received),
                received=item.received,
                silent_s=None if item.last_receive_s is None else now - item.last_receive_s,
                zero_stamps=item.zero_stamps,
                recent_zero_stamps=(item.last_zero_stamp_s is not None
                                    and now - item.last_zero_stamp_s < RECENT_S),
                backwards=item.backwards, lost=item.lost,
                recent_lost=item.last_lost_s is not None and now - item.last_lost_s < RECENT_S,
                publishers=publishers, matched=matched))
        if thread is not None:
            health.latency_ms = thread.latency.percentiles()
            health.age_ms = thread.age.percentiles()
            health.recent_inference_error = thread.recent_error(RECENT_S)
            health.last_conversion_error = thread.last_conversion_error
        array = DiagnosticArray(status=[health_status(health)])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics.publish(array)


def main(args: list[str] | None = None) -> int:
    """Run the node until Ctrl-C or shutdown; return the exit code."""
    # Under overload the executor thread is always busy in Python and would keep the GIL for
    # the default 5 ms between forced switches, starving the inference thread each time a
    # torch op returns; 0.5 ms raised the answered rate at 300 pairs/s by about 15 % here.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = ConvitacNode()
        node.autostart()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as exc:  # noqa: BLE001 - a clear line instead of a traceback
        print(f'{NODE_NAME}: {type(exc).__name__}: {exc}', file=sys.stderr)
        code = 1
    finally:
        if node is not None:
            node.release()
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == '__main__':
    sys.exit(main())

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

import os
import socket
import sys
import threading
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image
from std_srvs.srv import Trigger

from convitac_ros.drift import DriftMonitor, DriftReference, input_names
from convitac_ros.predictor import DeviceError, open_predictor, resolve_backend
from convitac_ros.ros import direct_take
from convitac_ros.ros.contact import ContactDetector
from convitac_ros.ros.diagnostics import Health, health_status, InputHealth
from convitac_ros.ros.image_conversion import (
    image_to_rgb,
    ImageConversionError,
)
from convitac_ros.ros.image_limits import check_image_size, ImageTooLargeError
from convitac_ros.ros.inference_thread import InferenceThread
from convitac_ros.ros.input_settings import InputSettings, make_converter
from convitac_ros.ros.node_guards import (
    guard_change_state,
    ignore_stop_signals,
    init_ros,
    install_stop_signals,
    one_line,
)
from convitac_ros.ros.outputs import OutputPublishers
from convitac_ros.ros.parameters import INPUT_SPECS, INPUTS, NodeParameters, SPECS, validate
from convitac_ros.ros.pipeline import Counters, Drop, DropOldestQueue, FrameSet, SlidingWindow
from convitac_ros.ros.stamps import stamp_to_ns
from convitac_ros.ros.synchronizer import ApproximateTimeSynchronizer
from convitac_ros.ros.topics import image_qos, NODE_NAME

# A zero stamp or an inference failure keeps its WARN / ERROR this long (s) after the event.
RECENT_S = 5.0
SWITCH_INTERVAL_S = 0.0005
# The executor wakes at least this often (s) so that SIGINT / SIGTERM stop the node promptly.
SIGNAL_POLL_S = 0.1


class InputState:
    """Per-input bookkeeping, touched only by the executor thread (read by diagnostics)."""

    def __init__(self, topic: str, stamped: bool = True) -> None:
        """Start with nothing received on ``topic`` (``stamped``: zero stamps are news)."""
        self.topic = topic
        self.stamped = stamped
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
        guard_change_state(self)
        for name, spec in (SPECS | INPUT_SPECS).items():
            self.declare_parameter(name, spec.default, spec.descriptor(name))
        self.params = NodeParameters.from_values(
            {name: self.get_parameter(name).value for name in SPECS})
        reasons = [r for r in (validate(n, self.get_parameter(n).value)
                               for n in SPECS | INPUT_SPECS) if r]
        if reasons:
            raise ValueError('; '.join(reasons))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.counters = Counters()
        self._drift_reference: DriftReference | None = None
        self._drift: DriftMonitor | None = None
        self.contact = ContactDetector()
        self.create_service(Trigger, '~/reset_contact_reference', self._on_reset_contact)
        self.predictor: Any = None
        self.outputs: OutputPublishers | None = None
        self.inputs: list[InputState] = []
        self._configure_error: str | None = None
        self._activate_error: str | None = None
        self._last_refused_image: str | None = None
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
            reason = validate(parameter.name, parameter.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
            if parameter.name in SPECS:  # inputs.* are read at the next activate
                changes[parameter.name] = parameter.value
        self.params = self.params.with_changes(changes)
        if {'queue_depth', 'process_every_pair', 'backlog_limit'} & changes.keys():
            self.counters.drop(Drop.QUEUE_FULL, self._queue.set_capacity(self._capacity()))
        if 'publish_debug_image' in changes and self.outputs is not None:
            self.outputs.set_debug_image(self.params.publish_debug_image, self._state == 'active')
        if 'diagnostics_period' in changes:
            self.destroy_timer(self._diagnostics_timer)
            self._diagnostics_timer = self.create_timer(
                self.params.diagnostics_period, self._publish_diagnostics)
        return SetParametersResult(successful=True)

    def set_parameters_atomically(self, parameter_list: list[Parameter]
                                  ) -> SetParametersResult:
        """Refuse undeclared parameters by name, then set as rclpy does.

        rclpy's own refusal lists an already exhausted generator, so its reason names none.
        """
        undeclared = [p.name for p in parameter_list if not self.has_parameter(p.name)]
        if undeclared:
            return SetParametersResult(successful=False, reason=one_line(
                f'undeclared parameter(s): {", ".join(undeclared)} (see ros2 param list)'))
        return super().set_parameters_atomically(parameter_list)

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
        path = self._checkpoint = self.params.checkpoint
        try:
            path = self._checkpoint = self.params.resolved_checkpoint()
            predictor = self._load_predictor(path)
            self._declare_heads(predictor.heads)
            self._drift_reference = drift_reference_of(path, self.params.backend)
        except Exception as exc:  # noqa: BLE001 - any failure is a clear configure failure
            self._configure_error = one_line(f'{type(exc).__name__}: {exc}')
            self.get_logger().error(one_line(f'configure failed: {configure_reason(exc, path)}',
                                             limit=1000))
            return TransitionCallbackReturn.FAILURE
        self.predictor = predictor
        self._configure_error = None
        self.outputs = OutputPublishers(self, predictor.heads,
                                        self.params.publish_debug_image)
        self._state = 'inactive'
        self.get_logger().info(
            f'loaded {predictor.model_name} from {path} on {predictor.device} with '
            f'{predictor.backend} (heads {", ".join(predictor.heads)}; '
            f'{predictor.visual_len} visual, '
            f'{predictor.num_tactile}x{predictor.tactile_len} tactile frames)')
        if self.params.uses_demo:
            self.get_logger().warning(
                'running the DEMO model (checkpoint: demo), trained on a synthetic world: its '
                'answers mean nothing for real objects; give checkpoint:=<model>.safetensors')
        return super().on_configure(state)

    def _load_predictor(self, path: Any) -> Any:
        """Load and warm up the model on a worker thread while this thread waits for it.

        The waiting thread (the main thread) stays free for SIGINT / SIGTERM, which end the
        node within a poll period even while a model warms up, and ``configure_timeout``
        bounds the whole: a file whose graph never finishes (an onnxruntime Loop of 1e12
        steps) fails configure instead of holding the node. The run in progress is
        interrupted (onnxruntime) or left to end on the daemon thread (torch).
        """
        params = self.params
        found: dict[str, Any] = {}

        def load() -> None:
            try:
                found['predictor'] = open_predictor(
                    path, backend=params.backend, device=params.device,
                    precision=params.precision, threads=params.torch_threads,
                    compile=params.torch_compile, cuda_graph=None if params.cuda_graph else False,
                    max_batch=params.max_batch, calibrated=params.calibration)
                if params.warmup_iterations:
                    self.get_logger().info(f'warming up ({params.warmup_iterations} iterations)')
                    found['predictor'].warmup(params.warmup_iterations,
                                              batch_size=params.max_batch)
            except Exception as exc:  # noqa: BLE001 - re-raised on the configuring thread
                found['error'] = exc

        worker = threading.Thread(target=load, name='convitac_configure', daemon=True)
        deadline = time.monotonic() + params.configure_timeout
        worker.start()
        try:
            while worker.is_alive():
                worker.join(SIGNAL_POLL_S)
                if worker.is_alive() and time.monotonic() > deadline:
                    raise TimeoutError(
                        f'loading and warming up took longer than configure_timeout '
                        f'({params.configure_timeout:g} s); the model is too slow here or its '
                        'graph does not end')
        except BaseException:
            _interrupt(found.get('predictor'))
            raise
        if 'error' in found:
            raise found['error']
        return found['predictor']

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
        """Start the inputs (see `_activate`); a failure is logged and reported as ERROR."""
        try:
            self._activate()
        except Exception as exc:  # noqa: BLE001 - any failure is a clear activate failure
            self._stop_inputs()
            self._activate_error = one_line(f'{type(exc).__name__}: {exc}')
            self.get_logger().error(f'activate failed: {self._activate_error}')
            return TransitionCallbackReturn.FAILURE
        self._activate_error = None
        return super().on_activate(state)

    def _activate(self) -> None:
        """Create the synchronizer, the window, the subscriptions and the inference thread."""
        params, predictor = self.params, self.predictor
        num_inputs = 1 + predictor.num_tactile
        settings = self._input_settings(num_inputs)
        reasons = [r for r in (validate(name, self.get_parameter(name).value)
                               for name in INPUT_SPECS) if r]
        if reasons:
            raise ValueError('; '.join(reasons))
        converters = [make_converter(s) for s in settings]
        self.inputs = [InputState(s.topic, s.stamped) for s in settings]
        self._sync = ApproximateTimeSynchronizer(
            num_inputs, params.sync_queue_size, params.sync_slop, self._on_synchronized,
            purge_older=params.sync_purge_older)
        self._window = SlidingWindow(max(predictor.visual_len, predictor.tactile_len))
        self._queue.set_capacity(self._capacity())
        self._queue.reopen()
        self._drift = self._drift_monitor(predictor)
        self._thread = InferenceThread(
            self._queue, predictor, self.outputs, self.counters, self.contact, self.get_logger(),
            params=lambda: self.params, now_ns=lambda: self.get_clock().now().nanoseconds,
            drift=self._drift)
        self._thread.start()
        self._convert = converters
        self.contact.request_reference()
        qos = image_qos(params.qos_depth, params.qos_reliability == 'reliable')
        direct = params.direct_input and direct_take.available()
        group = direct_take.HiddenCallbackGroup() if direct else None
        for index, setting in enumerate(settings):
            topic = setting.subscribed_topic
            msg_type = CompressedImage if setting.compressed else Image
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
            + (' (input thread)' if direct else ' (executor callbacks)') + '; '
            + '; '.join(s.describe() for s in settings))

    def _drift_monitor(self, predictor: Any) -> DriftMonitor | None:
        """The drift scorer: the checkpoint's reference, E^c embeddings with the torch backend."""
        reference, period = self._drift_reference, self.params.drift_period
        if reference is None or period <= 0:
            return None
        embed = getattr(predictor, 'contrasted_embeddings', None)
        model = getattr(predictor, 'model', None)
        if getattr(model, 'contrastive_encoder', None) is None:
            embed = None
        return DriftMonitor(reference, predictor.image_size, embed, period)

    def _input_settings(self, count: int) -> list[InputSettings]:
        values = {name: self.get_parameter(name).value for name in INPUT_SPECS}
        return [InputSettings.from_parameters(name, values, self.params.image_transport)
                for name in INPUTS[:count]]

    def _on_reset_contact(self, request: Trigger.Request,
                          response: Trigger.Response) -> Trigger.Response:
        """``~/reset_contact_reference``: the next tactile frames become the reference."""
        self.contact.request_reference()
        response.success = True
        response.message = 'the next tactile frames become the no-contact reference'
        return response

    def _hardware_id(self) -> str:
        device = getattr(self.predictor, 'device', None)
        return self.params.hardware_id or f'{socket.gethostname()}/{device or "no model"}'

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
        if self._drift is not None:
            self._drift.close()
            self._drift = None
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
        self.get_logger().error(one_line(f'input thread: {type(exc).__name__}: {exc}'),
                                throttle_duration_sec=RECENT_S)

    def _on_image(self, msg: Any, index: int) -> None:
        """One image: stamp checks, then the synchronizer (which only enqueues)."""
        item = self.inputs[index]
        now = time.monotonic()
        item.received += 1
        item.last_receive_s = now
        if not self._size_allowed(msg, index):
            return
        stamp = stamp_to_ns(msg)
        if not stamp:
            item.zero_stamps += 1
            item.last_zero_stamp_s = now
            if self.params.zero_stamp_policy == 'drop':
                self.counters.drop(Drop.ZERO_STAMP)
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

    def _size_allowed(self, msg: Any, index: int) -> bool:
        """Refuse (counted, logged) an image that would decode to more than the limit.

        Checked from the declared size or the PNG/JPEG header before anything is decoded or
        enters the synchronizer; a compressed payload whose size cannot be read is refused too.
        """
        try:
            check_image_size(msg, self.params.max_image_pixels)
        except ImageConversionError as exc:
            self.counters.drop(Drop.IMAGE_TOO_LARGE if isinstance(exc, ImageTooLargeError)
                               else Drop.UNREADABLE_IMAGE_SIZE)
            self._last_refused_image = one_line(f'{self.inputs[index].topic}: {exc}')
            self.get_logger().warning(f'dropped an image: {self._last_refused_image}',
                                      throttle_duration_sec=RECENT_S)
            return False
        return True

    def _on_synchronized(self, *stamped: tuple[Any, int]) -> None:
        self.counters.add('pairs')
        frame_set = FrameSet(msgs=tuple(m for m, _ in stamped), stamp_ns=stamped[0][1],
                             received_ns=time.perf_counter_ns(), convert=self._convert)
        window = self._window.push(frame_set)
        if isinstance(window, Drop):
            self.counters.drop(window)
            return
        if self._queue.put(window):
            self.counters.drop(Drop.QUEUE_FULL)

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
            node_name=self.get_fully_qualified_name(), state=self._state,
            model=getattr(predictor, 'model_name', ''),
            device=str(getattr(predictor, 'device', '')),
            checkpoint=str(self._checkpoint or self.params.checkpoint),
            pairing_rate_hz=rate('pairs', counts.get('pairs', 0)),
            inference_rate_hz=rate('inferences', counts.get('inferences', 0)),
            drops=self.counters.drops(), counts=counts | {
                f'cuda graphs {name}': value
                for name, value in getattr(predictor, 'graph_counts', {}).items()},
            queue_length=len(self._queue),
            silent_timeout_s=self.params.silent_input_timeout,
            latency_budget_ms=self.params.latency_budget_ms,
            configure_error=self._configure_error, activate_error=self._activate_error,
            hardware_id=self._hardware_id(),
            demo=self.params.uses_demo, last_refused_image=self._last_refused_image)
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
                recent_zero_stamps=(item.stamped and item.last_zero_stamp_s is not None
                                    and now - item.last_zero_stamp_s < RECENT_S),
                backwards=item.backwards, lost=item.lost,
                recent_lost=item.last_lost_s is not None and now - item.last_lost_s < RECENT_S,
                publishers=publishers, matched=matched))
        if thread is not None:
            health.latency_ms = thread.latency.percentiles()
            health.age_ms = thread.age.percentiles()
            health.recent_inference_error = thread.recent_error(RECENT_S)
            health.last_conversion_error = thread.last_conversion_error
            health.recent_conversion_error = thread.recent_conversion_error(RECENT_S)
        if self._drift_reference is not None and predictor is not None:
            scored = self._drift.snapshot() if self._drift is not None else {}
            health.drift = [scored.get(name) for name in input_names(predictor.num_tactile)]
            health.drift_off = self._state == 'active' and self._drift is None
        array = DiagnosticArray(status=[health_status(health)])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics.publish(array)


def drift_reference_of(path: Any, backend: str) -> DriftReference | None:
    """The checkpoint's drift reference; None for an ONNX export or a checkpoint without one."""
    if resolve_backend(backend, path) == 'onnxruntime':
        return None
    from convitac_ros.checkpoint import read_drift_reference

    return read_drift_reference(path)


def configure_reason(error: Exception, path: Any) -> str:
    """What a configure failure blames: the device, the time limit, or the checkpoint file."""
    if isinstance(error, (DeviceError, TimeoutError)):
        return str(error)
    return f'cannot use checkpoint {path}: {error}'


def _interrupt(predictor: Any) -> None:
    """Stop a predictor's run in progress where its runtime can (onnxruntime)."""
    interrupt = getattr(predictor, 'interrupt', None)
    if interrupt is not None:
        interrupt()


def _end_process(code: int) -> None:
    """Leave now, skipping the interpreter's finalisation.

    Everything is already shut down in order; the finalisation that remains (torch, the DDS
    libraries and their threads) took 2.2 s after a SIGINT on an idle node here, against 0.1 s
    for the whole orderly shutdown.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(args: list[str] | None = None) -> int:
    """Run the node until SIGINT, SIGTERM or shutdown; return the exit code.

    Exit codes: 0 after a stop signal or a shutdown request, 2 for a command line that rcl
    refuses (one line on stderr), 1 for any other failure (one line on stderr).
    """
    # Under overload the executor thread is always busy in Python and would keep the GIL for
    # the default 5 ms between forced switches, starving the inference thread each time a
    # torch op returns; 0.5 ms raised the answered rate at 300 pairs/s by about 15 % here.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    install_stop_signals()
    node = None
    code = 0
    try:
        reason = init_ros(args)
        if reason is not None:
            print(f'{NODE_NAME}: invalid command line: {reason}', file=sys.stderr)
            return 2
        node = ConvitacNode()
        node.autostart()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while rclpy.ok():
            executor.spin_once(timeout_sec=SIGNAL_POLL_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as exc:  # noqa: BLE001 - a clear line instead of a traceback
        print(f'{NODE_NAME}: {one_line(f"{type(exc).__name__}: {exc}", limit=1000)}',
              file=sys.stderr)
        code = 1
    finally:
        ignore_stop_signals()  # a second signal must not interrupt the orderly shutdown
        if node is not None:
            node.release()
            node.destroy_node()
        rclpy.try_shutdown()
    return code


def run() -> None:
    """The ``convitac_node`` executable: :func:`main`, then exit at once with its code."""
    _end_process(main())


if __name__ == '__main__':
    run()

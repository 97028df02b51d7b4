"""The node's inference thread: windows from the queue -> RGB -> Predictor -> outputs.

Kept off the executor thread so that subscription callbacks never wait for the model. Every
failure is counted and logged (throttled), never raised, and the next window is processed: a
bad image drops its window (``dropped conversion_error``); a failing model
(``dropped inference_error``), an output that is not finite probabilities shaped as declared
(``dropped output_error``, nothing published) or a failing publisher
(``dropped publish_error``) drop the batch, count ``<stage> errors`` and turn /diagnostics to
ERROR for a while with the message. Anything else that escapes a batch is counted as
``worker errors``: the thread cannot die while the node looks active.
"""

from __future__ import annotations

from collections.abc import Callable
import threading
import time
from typing import Any

import numpy as np
from std_msgs.msg import Header

from convitac_ros.contract import OutputError
from convitac_ros.ros.debug_image import render_debug_image
from convitac_ros.ros.image_conversion import ImageConversionError
from convitac_ros.ros.image_messages import image_message
from convitac_ros.ros.node_guards import one_line
from convitac_ros.ros.pipeline import (
    Counters,
    Drop,
    DropOldestQueue,
    FrameSet,
    LatencyWindow,
    window_inputs,
)
from convitac_ros.ros.stamps import ns_to_time, time_to_ns

LOG_THROTTLE_S = 5.0


Window = tuple[FrameSet, ...]


def header_of(frame_set: FrameSet) -> Header:
    """The output header of a set: the camera message's own header, copied as it came.

    Only where the set's stamp was replaced (a zero stamp taken as the receive time) is a new
    header made, with that stamp and the camera's frame_id.
    """
    header = frame_set.msgs[0].header
    stamp = frame_set.stamp_ns
    if time_to_ns(header.stamp) == stamp:
        return header
    return Header(stamp=ns_to_time(stamp), frame_id=header.frame_id)


class InferenceThread(threading.Thread):
    """Consumes windows until the queue is closed. Started by activate, joined by deactivate."""

    def __init__(self, queue: DropOldestQueue, predictor: Any, outputs: Any, counters: Counters,
                 contact: Any, logger: Any, params: Callable[[], Any],
                 now_ns: Callable[[], int]) -> None:
        """Bind to what the worker needs and nothing more.

        Args:
            queue: Where the windows come from.
            predictor: ``Predictor`` or ``OnnxPredictor``.
            outputs: The node's output publishers.
            counters: Shared event and drop counters.
            contact: The contact-state estimator.
            logger: An rclpy logger.
            params: Returns the node's current parameters (they may change while active).
            now_ns: The node's clock in nanoseconds (ROS time, for the age of a window).
        """
        super().__init__(name='convitac_inference', daemon=True)
        self._queue = queue
        self._predictor = predictor
        self._outputs = outputs
        self._counters = counters
        self._contact = contact
        self._logger = logger
        self._params = params
        self._now_ns = now_ns
        self.latency = LatencyWindow()
        self.age = LatencyWindow()
        self.last_conversion_error: str | None = None
        self._last_conversion_error_s: float | None = None
        self._last_error: tuple[float, str] | None = None
        self._logged_s: dict[str, float] = {}
        self._sequence = 0

    def recent_error(self, within_s: float) -> str | None:
        """The last inference error if it happened less than ``within_s`` seconds ago."""
        last = self._last_error
        if last is None or time.monotonic() - last[0] > within_s:
            return None
        return last[1]

    def recent_conversion_error(self, within_s: float) -> str | None:
        """The last conversion error if a window was dropped for it within ``within_s`` s."""
        last = self._last_conversion_error_s
        if last is None or time.monotonic() - last > within_s:
            return None
        return self.last_conversion_error

    def run(self) -> None:
        """Take windows (batches of them in process_every_pair mode) until closed."""
        while True:
            window = self._queue.get()
            if window is None:
                return
            batch = [window]
            params = self._params()
            if params.process_every_pair:
                while len(batch) < params.max_batch:
                    more = self._queue.get(timeout=0)
                    if more is None:
                        break
                    batch.append(more)
            try:
                self._process(batch)
            except Exception as exc:  # noqa: BLE001 - the worker must outlive any window
                self._fail('worker', Drop.INFERENCE_ERROR, len(batch), exc)

    def _sample(self, window: Window
                ) -> tuple[list[np.ndarray], list[list[np.ndarray]]] | None:
        """The model inputs of a window, or None (counted) when an image does not convert.

        For a predictor that resizes on the host the frames come resized to the model's size,
        converted once per set (a set is in several windows); one that resizes on its device
        (CUDA) takes them at their received size, so the CPU does no resize at all.
        """
        predictor = self._predictor
        size = None if getattr(predictor, 'resize_on_device', False) else predictor.image_size
        try:
            return window_inputs(window, predictor.visual_len, predictor.tactile_len, size)
        except ImageConversionError as exc:
            self._counters.drop(Drop.CONVERSION_ERROR)
            self.last_conversion_error = one_line(str(exc))
            self._last_conversion_error_s = time.monotonic()
            self._logger.warning(f'dropped a window: {self.last_conversion_error}',
                                 throttle_duration_sec=LOG_THROTTLE_S)
            return None
        except Exception as exc:  # noqa: BLE001 - a fault of the code, not of the image
            self._fail('conversion', Drop.CONVERSION_ERROR, 1, exc)
            return None

    def _process(self, batch: list[Window]) -> None:
        # The picture (and the attention it needs) is only made for someone who looks at it.
        # The publisher exists only while publish_debug_image is on; it is taken once here so
        # that a parameter change during the batch cannot withdraw it under the publish.
        debug_publisher = self._outputs.debug_image
        debug = debug_publisher is not None and debug_publisher.get_subscription_count() > 0
        pairs = [(w, s) for w in batch if (s := self._sample(w)) is not None]
        if not pairs:
            return
        attention = None
        try:
            if debug and len(pairs) == 1:
                probabilities, attention = self._predictor.predict_with_attention(*pairs[0][1])
                results = [probabilities]
            elif len(pairs) == 1:
                results = [self._predictor.predict(*pairs[0][1])]
            else:
                results = self._predictor.predict_batch([s for _, s in pairs])
        except OutputError as exc:
            self._fail('output', Drop.OUTPUT_ERROR, len(pairs), exc)
            return
        except Exception as exc:  # noqa: BLE001 - counted, logged and reported as ERROR
            self._fail('inference', Drop.INFERENCE_ERROR, len(pairs), exc)
            return
        for index, ((window, sample), probabilities) in enumerate(zip(pairs, results)):
            try:
                self._publish(window, probabilities, sample)
                if debug:
                    self._publish_debug(debug_publisher, window, sample, probabilities,
                                        attention)
            except Exception as exc:  # noqa: BLE001 - the rest of the batch is not published
                self._fail('publish', Drop.PUBLISH_ERROR, len(pairs) - index, exc)
                return

    def _fail(self, stage: str, reason: Drop, windows: int, exc: Exception) -> None:
        """Count a failed stage (``<stage> errors``) and its dropped windows; log and report."""
        self._counters.add(f'{stage} errors')
        self._counters.drop(reason, windows)
        message = one_line(f'{stage}: {type(exc).__name__}: {exc}')
        now = time.monotonic()
        self._last_error = (now, message)
        # Throttled per stage: a stream of one failure must not hide the first of another.
        if now - self._logged_s.get(stage, -LOG_THROTTLE_S) >= LOG_THROTTLE_S:
            self._logged_s[stage] = now
            self._logger.error(f'dropped {windows} window(s): {message}')

    def _publish(self, window: Window, probabilities: dict[str, np.ndarray],
                 sample: tuple[list[np.ndarray], list[list[np.ndarray]]]) -> None:
        newest = window[-1]
        self._sequence += 1
        params = self._params()
        contact = self._contact.update([sensor[-1] for sensor in sample[1]],
                                       params.contact_threshold)
        latency_ms = (time.perf_counter_ns() - newest.received_ns) / 1e6
        self._outputs.publish(
            header_of(newest), probabilities,
            {'contact_score': round(contact.score, 3), 'latency_ms': round(latency_ms, 3),
             'sequence': self._sequence},
            in_contact=contact.in_contact,
            labels=contact.in_contact or not params.publish_only_in_contact)
        self.latency.add(latency_ms)
        self.age.add((self._now_ns() - newest.stamp_ns) / 1e6)
        self._counters.add('inferences')

    def _publish_debug(self, publisher: Any, window: Window, sample: tuple,
                       probabilities: dict, attention: Any) -> None:
        tactile = sample[1]
        # The picture shows the newest set at its own size (converted once more, for it alone);
        # the attention maps are at the model's size and are scaled onto it.
        frames = window[-1].rgb()
        maps = None
        if attention is not None:
            tactile_maps = [sensor[-1] if sensor else None for sensor in attention.tactile]
            maps = [attention.visual[-1] if attention.visual else None,
                    *(tactile_maps or [None] * len(tactile))]
        picture = render_debug_image(frames, self._predictor.heads, probabilities, maps)
        msg = image_message(picture, encoding='rgb8')
        msg.header = header_of(window[-1])
        publisher.publish(msg)

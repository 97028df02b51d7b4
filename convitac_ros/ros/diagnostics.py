"""The node's health as a diagnostic_msgs/DiagnosticStatus (published on /diagnostics).

:class:`Health` is a plain snapshot the node fills each period; :func:`health_status` turns it
into a status with a level and a message, so the rules (WARN for a silent input, zero stamps,
latency over budget, windows dropped for images that do not convert; ERROR for a recent
inference failure, or when every window fails to convert) are tested without a ROS graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from convitac_ros.ros.node_guards import one_line

OK, WARN, ERROR, STALE = (DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR,
                          DiagnosticStatus.STALE)


@dataclass
class InputHealth:
    """One input topic over the last period."""

    topic: str
    rate_hz: float
    received: int
    silent_s: float | None  # seconds since the last message; None: none since activation
    zero_stamps: int
    recent_zero_stamps: bool
    backwards: int
    lost: int = 0  # publication sequence gaps: sent, never received
    recent_lost: bool = False
    publishers: int | None = None  # on the topic in the ROS graph (None: not subscribed)
    matched: int | None = None  # of those, connected to this node's subscription


@dataclass
class Health:
    """Everything /diagnostics reports, gathered by the node once per period."""

    node_name: str  # fully qualified (/left_hand/convitac_node): unique per instance
    state: str
    model: str = ''
    device: str = ''
    checkpoint: str = ''
    inputs: list[InputHealth] = field(default_factory=list)
    pairing_rate_hz: float = 0.0
    inference_rate_hz: float = 0.0
    latency_ms: dict[float, float] | None = None  # receive of the set -> outputs published
    age_ms: dict[float, float] | None = None  # header stamp -> outputs published
    drops: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    queue_length: int = 0
    silent_timeout_s: float = 2.0
    latency_budget_ms: float = 0.0
    recent_inference_error: str | None = None
    last_conversion_error: str | None = None
    last_refused_image: str | None = None  # too large, or a size that cannot be read
    recent_conversion_error: str | None = None  # a window was dropped for it recently
    configure_error: str | None = None
    activate_error: str | None = None
    hardware_id: str = ''  # e.g. gripper-pc/cuda:0; empty: the device
    demo: bool = False  # the demo checkpoint was asked for (checkpoint: demo)


def _fmt(value: float) -> str:
    return f'{value:.3f}'


def _percentile_values(prefix: str, percentiles: dict[float, float] | None) -> list[KeyValue]:
    if percentiles is None:
        return [KeyValue(key=f'{prefix} p{q:g} (ms)', value='n/a') for q in (50, 95, 99)]
    return [KeyValue(key=f'{prefix} p{q:g} (ms)', value=_fmt(v)) for q, v in percentiles.items()]


def _problems(health: Health) -> tuple[int, list[str]]:
    level, problems = OK, []
    if health.configure_error:
        level = ERROR
        problems.append(f'configure failed: {one_line(health.configure_error)}')
    if health.activate_error:
        level = ERROR
        problems.append(f'activate failed: {one_line(health.activate_error)}')
    if health.recent_inference_error:
        level = ERROR
        problems.append(f'inference failed: {one_line(health.recent_inference_error)}')
    if health.state != 'active':
        return level, problems
    for item in health.inputs:
        if item.silent_s is None or item.silent_s > health.silent_timeout_s:
            level = max(level, WARN)
            since = 'since activation' if item.silent_s is None else f'for {item.silent_s:.1f} s'
            problems.append(f'{item.topic} silent {since}')
        if item.recent_zero_stamps:
            level = max(level, WARN)
            problems.append(f'{item.topic} has zero stamps ({item.zero_stamps})')
        if item.publishers is not None and item.matched is not None \
                and item.publishers > item.matched:
            level = max(level, WARN)
            problems.append(f'{item.topic} has {item.publishers - item.matched} publisher(s) '
                            'this node cannot connect to (incompatible QoS or type)')
        if item.recent_lost:
            level = max(level, WARN)
            problems.append(f'{item.topic} lost {item.lost} messages in transport (large '
                            'frames: every image publisher needs config/fastdds.xml, see the '
                            'README, or use reliable QoS / compressed images)')
    if health.recent_conversion_error:
        # Some windows still answered: WARN; none at all: the input is unusable, ERROR.
        level = max(level, WARN if health.inference_rate_hz > 0 else ERROR)
        problems.append(f'windows dropped: image conversion failed: '
                        f'{health.recent_conversion_error}')
    budget = health.latency_budget_ms
    if budget > 0 and health.latency_ms is not None and health.latency_ms[95] > budget:
        level = max(level, WARN)
        problems.append(f'p95 latency {health.latency_ms[95]:.1f} ms over budget {budget:g} ms')
    return level, problems


def health_status(health: Health) -> DiagnosticStatus:
    """Build the DiagnosticStatus ``"<fully qualified node name>: inference"`` for a snapshot.

    The level is ERROR for a configure or recent inference failure, or when recent windows all
    failed to convert; WARN (while active) for a silent input, zero stamps, a publisher it
    cannot connect to, messages lost in transport (recently), windows dropped for conversion
    failures (recently), or p95 latency over budget; else OK. The message lists the problems,
    or summarises the state (and says when the demo model runs).
    """
    level, problems = _problems(health)
    if problems:
        message = '; '.join(problems)
    elif health.state == 'active':
        message = f'running {health.model} on {health.device}'
    else:
        message = health.state
    if health.demo:
        message += ' (the demo model: checkpoint demo, trained on a synthetic world)'
    values = [
        KeyValue(key='state', value=health.state),
        KeyValue(key='model', value=health.model),
        KeyValue(key='device', value=health.device),
        KeyValue(key='checkpoint', value=health.checkpoint),
        KeyValue(key='demo model', value='yes' if health.demo else 'no'),
    ]
    for item in health.inputs:
        values += [
            KeyValue(key=f'{item.topic} rate (Hz)', value=_fmt(item.rate_hz)),
            KeyValue(key=f'{item.topic} received', value=str(item.received)),
            KeyValue(key=f'{item.topic} zero stamps', value=str(item.zero_stamps)),
            KeyValue(key=f'{item.topic} stamps backwards', value=str(item.backwards)),
            KeyValue(key=f'{item.topic} lost in transport', value=str(item.lost)),
            KeyValue(key=f'{item.topic} publishers (matched)',
                     value='n/a' if item.publishers is None
                     else f'{item.publishers} ({item.matched})'),
        ]
    values += [
        KeyValue(key='pairing rate (Hz)', value=_fmt(health.pairing_rate_hz)),
        KeyValue(key='inference rate (Hz)', value=_fmt(health.inference_rate_hz)),
        *_percentile_values('latency', health.latency_ms),
        *_percentile_values('age', health.age_ms),
        KeyValue(key='queue length', value=str(health.queue_length)),
    ]
    values += [KeyValue(key=f'{name}', value=str(n)) for name, n in sorted(health.counts.items())]
    values += [KeyValue(key=f'dropped {reason}', value=str(n))
               for reason, n in sorted(health.drops.items())]
    values.append(KeyValue(key='dropped total', value=str(sum(health.drops.values()))))
    # Reasons quote message fields (an encoding, a format) of any length: one bounded line.
    if health.last_conversion_error:
        values.append(KeyValue(key='last conversion error',
                               value=one_line(health.last_conversion_error)))
    if health.last_refused_image:
        values.append(KeyValue(key='last refused image',
                               value=one_line(health.last_refused_image)))
    return DiagnosticStatus(level=level, name=f'{health.node_name}: inference', message=message,
                            hardware_id=health.hardware_id or health.device or 'none',
                            values=values)

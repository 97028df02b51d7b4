"""Start a `convitac_node` process (or another command) with DDS kept on loopback.

Used by the demo, the online evaluator, the benchmarks and the tests alike:

- :func:`loopback_dds`: keep DDS discovery on this machine, in a private domain (the settings
  are inherited by every process started afterwards).
- :class:`NodeProcess`: the node (or another command) in a subprocess whose output goes to a
  log file; :meth:`NodeProcess.stop` interrupts it like Ctrl-C and kills it if it hangs.

Talking to the node: :mod:`convitac_ros.ros.node_client`.
"""

from __future__ import annotations

from collections.abc import Sequence
import os
from pathlib import Path
import signal
import subprocess
import sys
from typing import Any

NODE_COMMAND = (sys.executable, '-m', 'convitac_ros.ros.node')
STOP_TIMEOUT_S = 20.0
HUMBLE = 'humble'


def loopback_dds(domain_id: int | None = None, private: bool = False) -> dict[str, str]:
    """Keep DDS discovery on this machine, in a private domain, for this process and children.

    Args:
        domain_id: the ROS domain to use; without it, the caller's ``ROS_DOMAIN_ID`` is kept and
            a private one (1..100, from the process id) is chosen when none is set.
        private: choose the private domain even when the caller set one (the demo never joins
            the domain of a robot the shell happens to be configured for).

    Returns:
        The discovery settings now in force.
    """
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    if os.environ.get('ROS_DISTRO') == HUMBLE:  # Humble predates the discovery range
        os.environ['ROS_LOCALHOST_ONLY'] = '1'
    else:  # deprecated from Jazzy on; unset, it stays silent
        os.environ.pop('ROS_LOCALHOST_ONLY', None)
    if domain_id is not None:
        os.environ['ROS_DOMAIN_ID'] = str(domain_id)
    elif private or 'ROS_DOMAIN_ID' not in os.environ:
        chosen = 1 + os.getpid() % 100
        if str(chosen) == os.environ.get('ROS_DOMAIN_ID'):  # never the caller's own
            chosen = chosen % 100 + 1
        os.environ['ROS_DOMAIN_ID'] = str(chosen)
    os.environ['HF_HUB_OFFLINE'] = '1'  # nothing started from here may reach a model hub
    keys = ('ROS_AUTOMATIC_DISCOVERY_RANGE', 'ROS_LOCALHOST_ONLY', 'ROS_DOMAIN_ID')
    return {key: os.environ[key] for key in keys if key in os.environ}


def _parameter_text(value: Any) -> str:
    """A parameter value as ``-p name:=value`` wants it."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, str) and not value:
        return "''"
    return str(value)


class NodeProcess:
    """`convitac_node` (or another command) in a subprocess; a context manager that stops it.

    Args:
        parameters: node parameters, passed as ``-p name:=value``.
        log_path: where the process's stdout and stderr go.
        name: node name (``-r __node:=NAME``); namespace: node namespace (``-r __ns:=NS``).
        params_files: parameter files (``--params-file``), before the ``-p`` values.
        command: run this instead of the node (e.g. the benchmark's echo node); its ROS
            arguments are appended the same way.
        cwd: working directory of the process.
        env: environment variables to set (or replace) for the process only.
    """

    def __init__(self, parameters: dict[str, Any], log_path: Path, *, name: str | None = None,
                 namespace: str | None = None, params_files: Sequence[Path] = (),
                 command: Sequence[str] | None = None, cwd: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        ros: list[str] = []
        if name:
            ros += ['-r', f'__node:={name}']
        if namespace:
            ros += ['-r', f'__ns:={namespace}']
        for path in params_files:
            ros += ['--params-file', str(path)]
        for key, value in parameters.items():
            ros += ['-p', f'{key}:={_parameter_text(value)}']
        args = [*(command or NODE_COMMAND), *(['--ros-args', *ros] if ros else [])]
        self.command = args
        self.log_path = Path(log_path)
        self._log = self.log_path.open('w')  # closed in stop()
        self.popen = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                      env={**os.environ, **(env or {})}, cwd=cwd)

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        """The process id."""
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        """The exit code (None while running)."""
        return self.popen.poll()

    def alive(self) -> bool:
        """True while the process runs."""
        return self.popen.poll() is None

    def send_signal(self, signum: int) -> None:
        """Send a signal to the process."""
        self.popen.send_signal(signum)

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit; return its code (raises TimeoutExpired)."""
        return self.popen.wait(timeout)

    def rss_mib(self) -> float:
        """Resident memory of the process in MiB."""
        import psutil

        return psutil.Process(self.pid).memory_info().rss / 2**20

    def cpu_seconds(self) -> float:
        """User + system CPU seconds used by the process so far."""
        import psutil

        times = psutil.Process(self.pid).cpu_times()
        return times.user + times.system

    def log(self) -> str:
        """Everything the process printed so far."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors='replace')

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the output (for error messages)."""
        return '\n'.join(self.log().splitlines()[-lines:])

    def stop(self, timeout: float = STOP_TIMEOUT_S, signum: int = signal.SIGINT) -> int:
        """Interrupt the process like Ctrl-C (or ``signum``); kill it if it does not exit in time.

        Returns:
            The exit code.
        """
        if self.alive():
            self.popen.send_signal(signum)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()
        return self.popen.returncode

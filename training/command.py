"""Running a training script as a command: user errors in one line, tracebacks only for bugs."""

from __future__ import annotations

from collections.abc import Callable
import sys
from typing import Any

from convitac_ros.checkpoint import CheckpointError
from convitac_ros.data.files import DataError
from training.engine import NonFiniteLossError, RunStopped
from training.state import TrainingStateError
from training.train_config import ConfigError

# Mistakes a user can make (a config key or value, a data root, a file, a state to resume) and
# a run that diverged: one line, exit 2.
USER_ERRORS = (ConfigError, DataError, CheckpointError, FileNotFoundError, TrainingStateError,
               NonFiniteLossError)


def run_command(prog: str, main: Callable[[list[str] | None], Any],
                argv: list[str] | None = None) -> int:
    """Run ``main(argv)`` as the command ``prog``; return the exit code.

    Returns:
        0 on success; 1 when a run was stopped on purpose (continue with ``--resume``); 2 for a
        user error, printed as ``<prog>: error: <what>`` on one line. Anything else is a bug
        and keeps its traceback.
    """
    try:
        main(argv)
    except RunStopped as stopped:
        print(f'{stopped}; continue with --resume', file=sys.stderr)
        return 1
    except USER_ERRORS as error:
        from training.runs import discard_new_run  # runs imports torch-heavy modules

        discard_new_run()
        print(f'{prog}: error: {error}', file=sys.stderr)
        return 2
    return 0

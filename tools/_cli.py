"""How every tool starts and ends: absl flags; a user's mistake is one line and exit 1, a bug keeps its traceback.

A user's mistake is a `tflite_fg.errors.UserError` (bad model, data, checkpoint, asset), an `app.UsageError` (flags
that do not fit together), a bad flag value, or a path that does not exist. `--debug` shows the traceback of any
error. SIGTERM ends a tool as Ctrl-C does; a training loop can ask to finish its step first (`StopSignals`).
"""
import _paths  # noqa: F401

import signal
import sys
from typing import Callable

from absl import app, flags

from tflite_fg.errors import UserError

FLAGS = flags.FLAGS
flags.DEFINE_bool("debug", False, "Show the full traceback of any error (a user's mistake is otherwise one line).")

USER_ERRORS = (UserError, app.UsageError, FileNotFoundError, IsADirectoryError, NotADirectoryError)


def fail(message: str) -> None:
    """One line on stderr, exit status 1."""
    sys.exit(f"error: {message}")


def refuse_ignored(names: tuple[str, ...] | list[str], why: str) -> None:
    """A flag the user gave that would have no effect is refused, not silently dropped."""
    given = [f"--{n}" for n in names if FLAGS[n].present]
    if given:
        raise app.UsageError(f"{', '.join(given)} {why}")


def _parse_flags(argv: list[str]) -> list[str]:
    try:
        return FLAGS(argv)
    except flags.Error as e:
        fail(f"{e} (--helpshort lists the flags)")


def _interrupt(signum, frame):  # SIGTERM behaves as Ctrl-C: the same clean, one-line exit
    raise KeyboardInterrupt(signal.Signals(signum).name)


def run(main: Callable[[list[str]], None]) -> None:
    """app.run(main) with one-line user errors and clean interrupts."""
    def guarded(argv: list[str]) -> None:
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            main(argv)
        except USER_ERRORS as e:
            if FLAGS.debug:
                raise
            fail(str(e) if not isinstance(e, OSError) or not e.filename else f"{e.filename}: {e.strerror}")
        except KeyboardInterrupt as e:
            if FLAGS.debug:
                raise
            name = str(e) or "SIGINT"
            print(f"interrupted ({name}); nothing more was written", file=sys.stderr)
            sys.exit(128 + signal.Signals[name].value)

    app.run(guarded, flags_parser=_parse_flags)


class StopSignals:
    """Within `with StopSignals() as stop:`, SIGINT/SIGTERM only set `stop.signal`, so the loop can finish its
    step, checkpoint and exit cleanly; a second signal interrupts at once (KeyboardInterrupt)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signal: signal.Signals | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame):
        if self.signal is not None:
            raise KeyboardInterrupt(signal.Signals(signum).name)
        self.signal = signal.Signals(signum)
        print(f"\n{self.signal.name}: finishing the step in flight (send it again to stop at once)",
              file=sys.stderr, flush=True)

    @property
    def exit_code(self) -> int:
        return 128 + self.signal.value if self.signal else 0

    def __enter__(self) -> "StopSignals":
        self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

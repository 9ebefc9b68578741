"""The process-wide stop request, set by SIGTERM/SIGINT (importable before torch)."""

import signal


class StopFlag:
    """Set by SIGTERM/SIGINT; the loop polls it between optimizer updates."""

    def __init__(self):
        self.requested = False
        self.signal = None

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.requested = True
        self.signal = signal.Signals(signum).name


STOP = StopFlag()

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


    @property
    def code(self) -> int:
        """0 when no stop was asked, else the signal's number (1 for a stop without one)."""
        if not self.requested:
            return 0
        return int(signal.Signals[self.signal]) if self.signal else 1

    def adopt(self, code: int) -> None:
        """Take the stop the ranks agreed on: in a multi-node job only one node's task may have
        been signalled (and rank 0, which writes the status, need not be on that node)."""
        if code and not self.requested:
            self.requested = True
            self.signal = signal.Signals(code).name if code > 1 else None


STOP = StopFlag()

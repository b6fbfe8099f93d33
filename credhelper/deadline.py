"""Total deadlines (product.md "Interfaces: Total deadlines").

A per-read socket timeout is not a deadline: an upstream that trickles one
byte every few seconds defeats it forever. Every wait in credhelper (an
upstream call, a helper process, a profile lock, the daemon's answer) is
taken from one `Deadline`, the export's budget, measured from the moment the
process started the export. A call that outlives its deadline is abandoned:
`Deadline.call` runs it in a daemon thread and stops waiting for it.

Stdlib only: the export fast path imports this module.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: default export budget in seconds (the settings key `export_timeout`)
DEFAULT_BUDGET = 30
#: when this process started the work the budget is for (set by the fast path)
STARTED = time.monotonic()


class DeadlineExceeded(Exception):
    """Raised by `Deadline.call`/`check`; callers turn it into a user error
    that names what was being waited for."""

    def __init__(self, what: str, budget: float) -> None:
        self.what, self.budget = what, budget
        super().__init__(f"{what} did not finish within the {budget:.0f} s budget")


class Deadline:
    """A point in monotonic time, and the budget it was made from."""

    def __init__(self, budget: float, *, start: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.budget = float(budget)
        self.clock = clock
        self.at = (clock() if start is None else start) + self.budget

    @classmethod
    def for_export(cls, budget: float) -> Deadline:
        """The deadline of this process's export: the budget counts from start-up."""
        return cls(budget, start=STARTED)

    def remaining(self) -> float:
        return max(0.0, self.at - self.clock())

    def expired(self) -> bool:
        return self.remaining() <= 0

    def check(self, what: str) -> None:
        if self.expired():
            raise DeadlineExceeded(what, self.budget)

    def sub(self, share: float, cap: float) -> float:
        """A per-attempt timeout: `share` of what is left, at most `cap`, at least 0.1 s."""
        return max(0.1, min(cap, share * self.remaining()))

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """`fn()`, or `DeadlineExceeded` once the deadline passes. The call goes
        on in a daemon thread that nobody waits for (its result is dropped):
        Python cannot stop a thread, but the caller is free."""
        self.check(what)
        box: list[T] = []
        error: list[BaseException] = []
        done = threading.Event()

        def work() -> None:
            try:
                box.append(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                error.append(exc)
            finally:
                done.set()

        threading.Thread(target=work, name=f"deadline:{what}", daemon=True).start()
        if not done.wait(self.remaining()):
            raise DeadlineExceeded(what, self.budget)
        if error:
            raise error[0]
        return box[0]


def unlimited() -> Deadline:
    """For callers that have no budget of their own (tests, one-off tools): a day."""
    return Deadline(86400)

"""Ctrl-C during an engine step takes effect when the step ends; a second one at once.

The signal is real: the test process sends SIGINT to itself."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from voltloop.orchestrator.interrupts import NOTICE, StopAfterStep, interrupts_deferred


@pytest.fixture
def default_sigint() -> Iterator[None]:
    """Python's own SIGINT handler, also when the suite runs with SIGINT ignored."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.01)  # the handler runs here at the latest


def test_the_block_finishes_then_the_interrupt_is_raised(default_sigint, capsys) -> None:
    done = []
    with pytest.raises(StopAfterStep), interrupts_deferred():
        ctrl_c()
        done.append("the rest of the step")
    assert done == ["the rest of the step"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert NOTICE.strip() in capsys.readouterr().err


def test_a_second_ctrl_c_stops_at_once(default_sigint) -> None:
    done = []
    with pytest.raises(KeyboardInterrupt) as stopped, interrupts_deferred():
        ctrl_c()
        ctrl_c()
        done.append("never")
    assert done == []
    assert not isinstance(stopped.value, StopAfterStep)  # inside the step: nothing is safe
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_no_ctrl_c_no_interrupt_and_the_block_keeps_its_own_error(default_sigint) -> None:
    with interrupts_deferred():
        pass
    with pytest.raises(ValueError, match="own"), interrupts_deferred():
        ctrl_c()
        raise ValueError("its own")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_blocks_nest(default_sigint) -> None:
    done = []
    with pytest.raises(KeyboardInterrupt), interrupts_deferred():
        with interrupts_deferred():
            ctrl_c()
            done.append("inner")
        done.append("outer")
    assert done == ["inner", "outer"]


def test_an_ignored_or_foreign_handler_is_left_alone() -> None:
    seen = []
    before = signal.signal(signal.SIGINT, lambda *_: seen.append("theirs"))
    try:
        with interrupts_deferred():
            ctrl_c()
        assert seen == ["theirs"]
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with interrupts_deferred():
            ctrl_c()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_other_threads_are_not_touched(default_sigint) -> None:
    handlers = []

    def in_thread() -> None:
        with interrupts_deferred():
            handlers.append(signal.getsignal(signal.SIGINT))

    worker = threading.Thread(target=in_thread)
    worker.start()
    worker.join(5)
    assert handlers == [signal.default_int_handler]

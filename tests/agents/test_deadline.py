"""The stop deadline (agents/deadline.py) on a fake exit: no process ends here."""

from __future__ import annotations

import threading

from agents.deadline import EXIT_CODE, StopDeadline


def test_an_armed_deadline_exits_with_its_code_once_the_time_is_up() -> None:
    fired = threading.Event()
    codes: list[int] = []

    def exit_(code: int) -> None:
        codes.append(code)
        fired.set()

    deadline = StopDeadline(0.05, exit=exit_)
    assert not deadline.armed
    deadline.arm("signal SIGTERM")
    assert deadline.armed
    assert fired.wait(5)
    assert codes == [EXIT_CODE]


def test_the_first_signal_counts_a_second_does_not_restart_the_countdown() -> None:
    codes: list[int] = []
    deadline = StopDeadline(0.2, exit=codes.append)
    deadline.arm("signal SIGTERM")
    first = deadline._timer
    deadline.arm("signal SIGINT")
    assert deadline._timer is first
    deadline.cancel()
    assert first is not None
    first.join(5)
    assert codes == []  # cancelled before it fired


def test_an_unarmed_deadline_never_exits() -> None:
    codes: list[int] = []
    deadline = StopDeadline(0.01, exit=codes.append)
    deadline.cancel()
    assert not deadline.armed and codes == []


def test_the_timer_thread_never_keeps_the_process_alive() -> None:
    deadline = StopDeadline(60, exit=lambda code: None)
    deadline.arm("signal SIGTERM")
    try:
        assert deadline._timer is not None and deadline._timer.daemon
    finally:
        deadline.cancel()

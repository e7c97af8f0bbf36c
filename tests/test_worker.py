"""The loop of the worker commands: outages waited out, logged once each way,
and a clean stop on a signal."""

from __future__ import annotations

import logging
import os
import signal
import threading

import click
import pytest
import sqlalchemy as sa

from flask_patterns._worker import run_worker


def outage():
    return sa.exc.OperationalError("SELECT 1", None, Exception("server closed"))


def test_an_outage_is_waited_out_and_logged_when_it_starts_and_ends(caplog):
    caplog.set_level(logging.WARNING, "flask_patterns.worker")
    calls = []
    results = iter([outage(), outage(), outage(), 3, 0])

    def step(stop):
        calls.append(1)
        result = next(results)
        if isinstance(result, Exception):
            raise result
        if result == 0:
            stop.set()
        return result

    done = []
    run_worker(
        step, name="The test worker", once=False, interval=0.01, done=done.append
    )
    assert len(calls) == 5
    assert done == [3, 0]
    messages = [r.getMessage() for r in caplog.records]
    assert [m.split(":")[0] for m in messages] == [
        "The test worker waits for an outage to end",
        "The test worker works again.",
    ]


def test_once_turns_an_outage_into_an_error():
    def step(stop):
        raise outage()

    with pytest.raises(click.ClickException, match=r"The test worker: .*server closed"):
        run_worker(step, name="The test worker", once=True, interval=0.01)


def test_other_errors_are_not_outages():
    def step(stop):
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        run_worker(step, name="The test worker", once=False, interval=0.01)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_lets_the_item_in_flight_finish_then_stops(signum):
    finished = []

    def step(stop):
        # The signal arrives in the middle of an item.
        os.kill(os.getpid(), signum)
        assert stop.is_set()
        finished.append("item")
        return 1

    before = signal.getsignal(signum)
    run_worker(step, name="The test worker", once=False, interval=0.01)
    assert finished == ["item"], "finished, and no second round"
    assert signal.getsignal(signum) is before, "the old handler is back"


def test_outside_the_main_thread_no_handler_is_installed():
    seen = []

    def step(stop):
        seen.append(signal.getsignal(signal.SIGTERM))
        stop.set()
        return 0

    thread = threading.Thread(
        target=run_worker,
        args=(step,),
        kwargs={"name": "w", "once": False, "interval": 0},
    )
    thread.start()
    thread.join()
    assert seen == [signal.getsignal(signal.SIGTERM)]

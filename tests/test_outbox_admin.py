"""Looking after the outbox from the command line: messages by state, retrying
the failed ones, purging the sent ones past their retention."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from flask_patterns.outbox import outbox_table

from .conftest import db
from .conftest import insert
from .conftest import rows


def give_up(app, outbox, clock):
    """A message delivered and one that failed for good."""
    app.config["PATTERNS_OUTBOX_MAX_ATTEMPTS"] = 1
    with app.app_context():
        outbox.add("mail", {"n": "sent"})
    outbox.failures = 1
    with app.app_context():
        outbox.add("mail", {"n": "failed"})
    sent, failed = rows(app)
    return sent.key, failed.key


def cli(app, *args):
    result = app.test_cli_runner().invoke(args=["outbox", *args])
    return result.exit_code, result.output


def test_messages_are_listed_by_state_and_shown_one_by_one(app, outbox, clock):
    sent, failed = give_up(app, outbox, clock)
    code, listed = cli(app, "list")
    assert code == 0
    assert [line.split()[:3] for line in listed.splitlines()] == [
        [failed, "failed", "mail"],
        [sent, "sent", "mail"],
    ]
    assert cli(app, "list", "--state", "failed")[1].split()[0] == failed
    assert cli(app, "list", "--state", "pending")[1] == ""
    code, shown = cli(app, "show", failed)
    assert code == 0
    assert "state: failed" in shown
    assert "smtp down" in shown, "the last error"
    assert '"n": "failed"' in shown
    code, missing = cli(app, "show", "no-such-key")
    assert code == 1
    assert "No outbox message no-such-key." in missing


def test_a_failed_message_is_retried_and_then_delivered(app, outbox, clock):
    _, failed = give_up(app, outbox, clock)
    status = cli(app, "status")[1]
    assert "1 failed: see 'flask outbox list --state failed'." in status
    assert cli(app, "retry")[0] == 2, "a key or --all"
    assert cli(app, "retry", "no-such-key")[0] == 1
    assert cli(app, "retry", failed) == (0, "1 message(s) will be delivered again.\n")
    (_, again) = rows(app)
    assert (again.failed_at, again.attempts) == (None, 0)
    assert cli(app, "work", "--once") == (0, "Delivered 1 message(s).\n")
    assert [p for p, _, _ in outbox.delivered] == [{"n": "sent"}, {"n": "failed"}]


def test_retry_all_makes_every_failed_message_pending(app, outbox, clock):
    app.config["PATTERNS_OUTBOX_MAX_ATTEMPTS"] = 1
    outbox.failures = 3
    for n in range(3):
        with app.app_context():
            outbox.add("mail", {"n": n})
    assert cli(app, "retry", "--all") == (0, "3 message(s) will be delivered again.\n")
    assert cli(app, "status")[1].startswith("3 message(s) pending, the oldest for ")


def test_sent_messages_past_the_retention_are_purged_by_the_worker(app, outbox):
    long_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=8)
    insert(app, "old", "mail", "{}", at=long_ago)
    insert(app, "recent", "mail", "{}", at=long_ago)
    insert(app, "waiting", "mail", "{}", at=long_ago)
    with app.app_context():
        db.session.execute(
            outbox_table.update()
            .where(outbox_table.c.key == "old")
            .values(sent_at=long_ago)
        )
        db.session.execute(
            outbox_table.update()
            .where(outbox_table.c.key == "recent")
            .values(sent_at=sa.func.now())
        )
    outbox.failures = 10  # "waiting" stays pending
    assert cli(app, "work", "--once")[0] == 0
    assert sorted(r.key for r in rows(app)) == ["recent", "waiting"]
    assert cli(app, "purge", "--older-than", "0") == (0, "Purged 1 sent message(s).\n")
    assert [r.key for r in rows(app)] == ["waiting"]

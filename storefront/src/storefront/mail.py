"""Mail rendered from ``templates/mails/*.txt`` and sent after the commit.

With ``STOREFRONT_SMTP_URL`` set, mail goes out through that server. Without it,
mail lands in the development mailbox (``/dev/mailbox``) when that is on (debug,
or ``STOREFRONT_DEV_MAILBOX=true``), and otherwise waits in the outbox until a
server is configured: mail with reset links is never shown to whoever asks.
"""

from __future__ import annotations

import dataclasses
import smtplib
import ssl
import typing as t
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import parse_qs
from urllib.parse import unquote
from urllib.parse import urlsplit

from flask import current_app
from flask import Flask
from flask import render_template

from flask_patterns.outbox import Message

from .extensions import db
from .extensions import outbox
from .mailbox import mailbox_enabled
from .models import SentMail


@dataclass(frozen=True)
class Mail:
    recipient: str
    subject: str
    body: str


def render_mail(recipient: str, template: str, **context: t.Any) -> Mail:
    """Render ``mails/<template>.txt``: its first line is ``Subject: ...``, the
    rest after a blank line is the body."""
    text = render_template(f"mails/{template}.txt", **context)
    head, _, body = text.partition("\n\n")
    if not head.startswith("Subject: "):
        raise ValueError(f"mails/{template}.txt must start with a 'Subject: ' line.")
    return Mail(recipient, head.removeprefix("Subject: ").strip(), body.strip() + "\n")


def send_mail(recipient: str, template: str, **context: t.Any) -> Mail:
    """Render the mail now and put it in the outbox, in the current task's
    transaction: it goes out once the task commits, and not at all if it rolls
    back; if the process dies first, the outbox worker sends it. Links in it
    come from :func:`~storefront.links.public_url`."""
    mail = render_mail(recipient, template, **context)
    outbox.add("mail", dataclasses.asdict(mail))
    return mail


def mail_transport(app: Flask | None = None) -> str | None:
    """Where mail goes: ``"smtp"``, ``"mailbox"``, or ``None`` when it must wait
    in the outbox (no SMTP server, and no development mailbox)."""
    app = app or current_app
    if app.config.get("SMTP_URL"):
        return "smtp"
    return "mailbox" if mailbox_enabled(app) else None


def register_handler() -> None:
    """Make :func:`deliver_mail` the outbox's handler of ``"mail"`` messages;
    while there is no transport they wait, unclaimed (the app factory calls
    this)."""
    outbox.handler("mail", available=_has_transport)(deliver_mail)


def _has_transport() -> bool:
    return mail_transport() is not None


def deliver_mail(message: Message) -> None:
    """Deliver one outbox message of kind ``"mail"``."""
    deliver(Mail(**message.payload), message_id=f"<{message.key}@storefront>")


def deliver(mail: Mail, *, message_id: str | None = None) -> None:
    """Send ``mail`` through SMTP, or keep it in the development mailbox.
    ``message_id`` stays the same across attempts, so receivers can drop a
    duplicate."""
    transport = mail_transport()
    if transport == "smtp":
        url = current_app.config["SMTP_URL"]
        send_smtp(url, current_app.config["MAIL_FROM"], mail, message_id=message_id)
        return
    if transport is None:
        raise RuntimeError("No mail transport: set STOREFRONT_SMTP_URL.")
    with db.transaction():
        db.session.add(
            SentMail(recipient=mail.recipient, subject=mail.subject, body=mail.body)
        )


def send_smtp(
    url: str,
    sender: str,
    mail: Mail,
    *,
    message_id: str | None = None,
    timeout: float = 10,
) -> None:
    """Send one mail through the server at ``url``: ``smtp://host:port``
    (``?starttls=true`` to upgrade) or ``smtps://host:port``, with optional
    ``user:password@``."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError(f"Unsupported SMTP URL: {parts.scheme}://{parts.hostname}")
    message = EmailMessage()
    message["From"] = sender
    message["To"] = mail.recipient
    message["Subject"] = mail.subject
    if message_id is not None:
        message["Message-ID"] = message_id
    message.set_content(mail.body)
    host = parts.hostname
    if parts.scheme == "smtps":
        client: smtplib.SMTP = smtplib.SMTP_SSL(
            host,
            parts.port or 465,
            timeout=timeout,
            context=ssl.create_default_context(),
        )
    else:
        client = smtplib.SMTP(host, parts.port or 25, timeout=timeout)
    with client:
        if parse_qs(parts.query).get("starttls") == ["true"]:
            client.starttls(context=ssl.create_default_context())
        if parts.username:
            client.login(unquote(parts.username), unquote(parts.password or ""))
        client.send_message(message)

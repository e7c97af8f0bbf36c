"""Every stored address in the form the shop compares addresses in

Accounts made before the forms checked addresses with email-validator kept an
address only trimmed and lowered: ``ada@bücher.example`` stayed as typed, while
the forms now look up ``ada@xn--bcher-kva.example``, so that account could no
longer log in and the same mailbox could sign up a second time. This writes
each address as :func:`storefront.forms.normalized_email` gives it.

Two accounts may turn out to be one mailbox (one made as ``bücher``, one as
``xn--bcher-kva``). An address already in the new form keeps its account, then
the oldest account takes the address; any other account of that mailbox keeps
its old spelling, which no form finds any more, and is named in a warning for
staff to merge or remove.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 23:10:00
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

from storefront.forms import normalized_email

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

log = logging.getLogger("storefront.schema")

_accounts = sa.table(
    "user_account", sa.column("id", sa.Integer), sa.column("email", sa.String)
)


def upgrade() -> None:
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(_accounts.c.id, _accounts.c.email).order_by(_accounts.c.id)
    ).all()
    holder = {email: id_ for id_, email in rows}
    for id_, email in rows:
        wanted = normalized_email(email)
        if wanted == email:
            continue
        if wanted in holder:
            log.warning(
                "Account %s (%s) is the mailbox of account %s (%s); it keeps its"
                " old address, which no login finds: merge or remove it.",
                id_,
                email,
                holder[wanted],
                wanted,
            )
            continue
        connection.execute(
            sa.update(_accounts).where(_accounts.c.id == id_).values(email=wanted)
        )
        del holder[email]
        holder[wanted] = id_


def downgrade() -> None:
    # Nothing to undo that the older code could use: it compared addresses as
    # typed, and which spelling each account was made with is not kept.
    pass

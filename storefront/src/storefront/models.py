"""The shop's tables."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship


class Base(DeclarativeBase):
    pass


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def in_utc(value: dt.datetime) -> dt.datetime:
    """``value`` as an aware time in UTC; SQLite hands back naive datetimes of
    what was UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


def _isoformat(value: dt.datetime) -> str:
    """ISO 8601 in UTC."""
    return in_utc(value).isoformat()


def readable_utc(value: dt.datetime) -> str:
    """A time for people, in UTC: ``"7 Dec 2026, 14:03 UTC"``."""
    value = in_utc(value)
    return f"{value.day} {value:%b %Y, %H:%M} UTC"


def money(cents: int) -> str:
    """An amount of cents formatted for display, such as ``"12.50"``."""
    return f"{cents // 100}.{cents % 100:02d}"


class Product(Base):
    __tablename__ = "product"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(sa.String(80), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    price_cents: Mapped[int] = mapped_column(sa.CheckConstraint("price_cents >= 0"))
    stock: Mapped[int] = mapped_column(sa.CheckConstraint("stock >= 0"), default=0)
    created_at: Mapped[dt.datetime] = mapped_column(
        sa.DateTime(timezone=True), default=_now
    )

    @property
    def price(self) -> str:
        """The price formatted for display, such as ``"12.50"``."""
        return money(self.price_cents)

    def to_json(self) -> dict[str, object]:
        """The product as the API shows it."""
        return {
            "id": self.id,
            "slug": self.slug,
            "name": self.name,
            "description": self.description,
            "price": self.price,
            "price_cents": self.price_cents,
            "stock": self.stock,
            "created_at": _isoformat(self.created_at),
        }


class User(Base):
    """An account, and to Flask-Login the logged-in user."""

    __tablename__ = "user_account"
    # For ``login_token``, an attribute of the object that is no column.
    __allow_unmapped__ = True

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    #: ``None`` until the account is activated: whoever follows the activation
    #: link chooses the password, not whoever signed up.
    password_hash: Mapped[str | None] = mapped_column(sa.String(255))
    #: The name the public activity feed shows; "Someone" when unset.
    display_name: Mapped[str | None] = mapped_column(sa.String(40))
    #: Staff may upload product images.
    is_staff: Mapped[bool] = mapped_column(default=False)
    activated_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    last_login_at: Mapped[dt.datetime | None] = mapped_column(
        sa.DateTime(timezone=True)
    )
    created_at: Mapped[dt.datetime] = mapped_column(
        sa.DateTime(timezone=True), default=_now
    )

    #: The token of the login session this object was loaded for, which
    #: Flask-Login keeps in the session cookie (:mod:`storefront.logins`).
    login_token: str | None = None

    @property
    def is_active(self) -> bool:
        """Activated: only an active account can log in."""
        return self.activated_at is not None

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str | None:
        """What Flask-Login keeps in the session cookie: the login session's
        token, never the user id, so that deleting the session ends it."""
        return self.login_token

    @property
    def public_name(self) -> str:
        """How the public feed names this user."""
        return self.display_name or "Someone"

    @property
    def activation_fingerprint(self) -> str:
        """Changes when the account is activated: an activation link works once."""
        return f"{self.id}:{self.activated_at}"

    @property
    def reset_fingerprint(self) -> str:
        """Changes when the password is set or the user logs in: a reset link
        works once, and not after the user remembered the password."""
        return f"{self.password_hash}:{self.last_login_at}"


class LoginSession(Base):
    """One logged-in browser. The session cookie carries a random token; only
    its SHA-256 is stored, so the table does not hand out live sessions. Logging
    out deletes the row; a password reset or change, an activation and "log out
    everywhere" delete all of the user's rows, so copied cookies stop working."""

    __tablename__ = "login_session"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(
        sa.DateTime(timezone=True), default=_now
    )
    user: Mapped[User] = relationship(lazy="joined")


class Order(Base):
    __tablename__ = "purchase_order"
    # One order per purchase key and buyer: a repeated POST buys nothing more.
    __table_args__ = (sa.UniqueConstraint("user_id", "purchase_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("user_account.id"))
    product_id: Mapped[int] = mapped_column(sa.ForeignKey("product.id"))
    price_cents: Mapped[int]
    #: The one-time key of the form or the ``Idempotency-Key`` it was placed
    #: with, if any.
    purchase_key: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[dt.datetime] = mapped_column(
        sa.DateTime(timezone=True), default=_now
    )
    product: Mapped[Product] = relationship(lazy="joined")
    user: Mapped[User] = relationship()

    @property
    def price(self) -> str:
        """The price paid, formatted for display, such as ``"12.50"``."""
        return money(self.price_cents)

    @property
    def placed_at_iso(self) -> str:
        """When the order was placed, ISO 8601 in UTC."""
        return _isoformat(self.created_at)

    @property
    def placed_at_text(self) -> str:
        """When the order was placed, for people: ``"7 Dec 2026, 14:03 UTC"``."""
        return readable_utc(self.created_at)

    def to_json(self) -> dict[str, object]:
        """The order as the API shows it; the product is serialized in turn."""
        return {
            "id": self.id,
            "product": self.product,
            "price_cents": self.price_cents,
            "created_at": _isoformat(self.created_at),
        }


class SentMail(Base):
    """A mail as the development mailbox shows it (no SMTP server configured)."""

    __tablename__ = "sent_mail"

    id: Mapped[int] = mapped_column(primary_key=True)
    recipient: Mapped[str] = mapped_column(sa.String(254))
    subject: Mapped[str] = mapped_column(sa.String(255))
    body: Mapped[str] = mapped_column(sa.Text)
    sent_at: Mapped[dt.datetime] = mapped_column(
        sa.DateTime(timezone=True), default=_now
    )

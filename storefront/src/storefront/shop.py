"""Browsing the products."""

from __future__ import annotations

import sqlalchemy as sa
from flask import abort
from flask import Blueprint
from flask import flash
from flask import g
from flask import redirect
from flask import render_template
from flask import url_for
from flask.typing import ResponseReturnValue

from .extensions import db
from .extensions import streams
from .images import image_url
from .links import public_url
from .live import ACTIVITY
from .live import user_channel
from .logins import login_required
from .mail import send_mail
from .models import Order
from .models import Product

bp = Blueprint("shop", __name__)


@bp.get("/")
def index() -> str:
    products = db.session.scalars(sa.select(Product).order_by(Product.name)).all()
    return render_template("shop/index.html", products=products)


@bp.get("/products/<int:product_id>")
def product(product_id: int) -> str:
    item = db.session.get(Product, product_id)
    if item is None:
        abort(404)
    return render_template("shop/product.html", product=item, image=image_url(item))


@bp.get("/orders")
@login_required
def orders() -> str:
    mine = db.session.scalars(
        sa.select(Order).where(Order.user_id == g.user.id).order_by(Order.id.desc())
    ).all()
    return render_template("shop/orders.html", orders=mine)


@bp.post("/products/<int:product_id>/purchase")
@login_required
def purchase(product_id: int) -> ResponseReturnValue:
    """Buy one item: the stock, the order, the confirmation mail (outbox) and
    the live events commit together, or not at all."""
    product = db.session.get(Product, product_id)
    if product is None:
        abort(404)
    # One conditional UPDATE: two buyers of the last item cannot both get it.
    taken = db.session.execute(
        sa.update(Product)
        .where(Product.id == product_id, Product.stock > 0)
        .values(stock=Product.stock - 1)
        .returning(Product.stock)
    ).first()
    if taken is None:
        flash(f"Sorry, {product.name} is sold out.", "error")
        return render_template(
            "shop/product.html", product=product, image=image_url(product)
        ), 409
    order = Order(
        user_id=g.user.id, product_id=product.id, price_cents=product.price_cents
    )
    db.session.add(order)
    db.session.flush()
    send_mail(
        g.user.email,
        "product_purchased",
        user=g.user,
        product=product,
        order=order,
        orders=public_url("shop.orders"),
    )
    # The public feed names a buyer only by the name they chose to show.
    streams.publish(
        ACTIVITY,
        {
            "kind": "purchase",
            "text": f"{g.user.public_name} bought {product.name}",
            "product": product.id,
        },
    )
    streams.publish(
        user_channel(g.user.id),
        {"kind": "order", "text": f"Order {order.id} confirmed: {product.name}"},
    )
    flash(f"Thank you! Order {order.id} is confirmed; a mail is on its way.")
    return redirect(url_for("shop.orders"), 303)

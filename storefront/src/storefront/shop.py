"""Browsing the products."""

from __future__ import annotations

import sqlalchemy as sa
from flask import abort
from flask import Blueprint
from flask import flash
from flask import redirect
from flask import render_template
from flask import url_for
from flask.typing import ResponseReturnValue

from .extensions import db
from .forms import PurchaseForm
from .images import image_url
from .logins import current_user
from .logins import login_required
from .models import Order
from .models import Product
from .orders import checked_key
from .orders import new_purchase_key
from .orders import place_order

bp = Blueprint("shop", __name__)


@bp.get("/")
def index() -> str:
    """Every product, by name, with its price, stock and picture."""
    products = db.session.scalars(sa.select(Product).order_by(Product.name)).all()
    return render_template("shop/index.html", products=products)


@bp.get("/products/<int:product_id>")
def product(product_id: int) -> str:
    """One product, and the form that buys it."""
    item = db.session.get(Product, product_id)
    if item is None:
        abort(404)
    form = PurchaseForm(formdata=None, purchase_key=new_purchase_key())
    return render_template(
        "shop/product.html", product=item, image=image_url(item), purchase_form=form
    )


@bp.get("/orders")
@login_required
def orders() -> str:
    """The logged-in user's orders, newest first, with number and date."""
    mine = db.session.scalars(
        sa.select(Order)
        .where(Order.user_id == current_user.id)
        .order_by(Order.id.desc())
    ).all()
    return render_template("shop/orders.html", orders=mine)


@bp.post("/products/<int:product_id>/purchase")
@login_required
def purchase(product_id: int) -> ResponseReturnValue:
    """Buy one item (see :func:`~storefront.orders.place_order`); the form's
    one-time key makes a repeated POST return the first order. Every outcome
    redirects: to the orders once bought, back to the product when it is sold
    out, so that a reload sends nothing again."""
    product = db.session.get(Product, product_id)
    if product is None:
        abort(404)
    form = PurchaseForm()
    placed = place_order(product, checked_key(form.purchase_key.data))
    if placed.order is None:
        flash(f"Sorry, {product.name} is sold out.", "error")
        return redirect(url_for("shop.product", product_id=product.id), 303)
    if placed.repeated:
        flash(f"Order {placed.order.id} was already placed; nothing more was bought.")
    else:
        flash(f"Thank you! Order {placed.order.id} is confirmed; a mail is on its way.")
    return redirect(url_for("shop.orders"), 303)

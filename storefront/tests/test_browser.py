"""The shop in a real browser (Debian's Chromium through Playwright)."""

from __future__ import annotations


def test_sign_up_activate_and_log_in_back_to_orders(
    app_factory, live_server, unused_port, chromium, output_dir
):
    # Links in mail lead to the public origin: the server's own address here.
    server = live_server(app_factory(PUBLIC_URL=f"http://127.0.0.1:{unused_port}"))
    page = chromium.new_page()
    try:
        page.goto(f"{server.url}/signup")
        page.fill("input[name=email]", "grace@example.com")
        page.click("form.form button[type=submit]")
        page.wait_for_url(f"{server.url}/login")
        assert "We sent a mail to grace@example.com" in page.content()
        page.screenshot(path=output_dir / "1-after-signup.png", full_page=True)

        page.goto(f"{server.url}/dev/mailbox")
        page.screenshot(path=output_dir / "2-mailbox.png", full_page=True)
        page.click("a[href*='/activate/']")
        assert page.locator("h1").inner_text() == "Choose your password"
        page.fill("input[name=password]", "correct horse battery")
        page.click("form.form button[type=submit]")
        page.wait_for_url(f"{server.url}/")
        assert "Your account is active" in page.content()
        page.click("button:has-text('Log out')")
        page.wait_for_url(f"{server.url}/")

        page.goto(f"{server.url}/orders")
        page.wait_for_url(f"{server.url}/login?next=%2Forders")
        page.fill("input[name=email]", "grace@example.com")
        page.fill("input[name=password]", "correct horse battery")
        page.click("form.form button[type=submit]")
        page.wait_for_url(f"{server.url}/orders")
        assert page.locator("h1").inner_text() == "Your orders"
        page.screenshot(path=output_dir / "3-orders.png", full_page=True)
    finally:
        page.close()


def sign_up_and_log_in(page, base, email, password="correct horse battery"):
    """Sign up, then choose the password on the activation page (which logs
    in)."""
    page.goto(f"{base}/signup")
    page.fill("input[name=email]", email)
    page.click("form.form button[type=submit]")
    page.wait_for_url(f"{base}/login")
    page.goto(f"{base}/dev/mailbox")
    page.click(f"article:has-text('{email}') a[href*='/activate/']")
    page.fill("input[name=password]", password)
    page.click("form.form button[type=submit]")
    page.wait_for_url(f"{base}/")


def test_a_purchase_shows_up_live_on_another_open_page(
    app_factory, live_server, unused_port, chromium, output_dir
):
    app = app_factory(PUBLIC_URL=f"http://127.0.0.1:{unused_port}")
    app.test_cli_runner().invoke(args=["demo"])
    server = live_server(app)
    watcher = chromium.new_context().new_page()
    buyer = chromium.new_context().new_page()
    try:
        watcher.goto(f"{server.url}/activity")
        watcher.wait_for_selector("#status:has-text('Live')")

        sign_up_and_log_in(buyer, server.url, "linus@example.com")
        buyer.click("a:has-text('Pour-over kettle')")
        buyer.screenshot(path=output_dir / "1-product.png", full_page=True)
        buyer.click("button:has-text('Buy now')")
        buyer.wait_for_url(f"{server.url}/orders")
        assert "Order 1 is confirmed" in buyer.content()
        buyer.screenshot(path=output_dir / "2-orders.png", full_page=True)

        # Within 2 s of the purchase, without a reload.
        watcher.wait_for_selector(
            "#feed li:has-text('Someone bought Pour-over kettle')", timeout=2000
        )
        assert "linus" not in watcher.locator("#feed").inner_text()
        watcher.screenshot(path=output_dir / "3-activity.png", full_page=True)

        buyer.goto(f"{server.url}/activity")
        buyer.wait_for_selector("#status:has-text('Live')")
        buyer.goto(f"{server.url}/dev/mailbox")
        assert "Your order 1: Pour-over kettle" in buyer.content()
        buyer.screenshot(path=output_dir / "4-mailbox.png", full_page=True)
    finally:
        watcher.context.close()
        buyer.context.close()


def test_the_activity_page_replays_what_it_missed_across_a_server_restart(
    tmp_path, redis_url, unused_port, chromium, output_dir
):
    import os
    import subprocess
    import sys
    import time
    import urllib.request

    from flask_patterns.streams import RedisBroker

    env = {
        **os.environ,
        "STOREFRONT_DATABASE_URL": f"sqlite:///{tmp_path}/shop.sqlite",
        "STOREFRONT_SECRET_KEY": "restart test",
        "STOREFRONT_REDIS_URL": redis_url,
    }
    flask = [sys.executable, "-m", "flask", "--app", "storefront"]
    subprocess.run([*flask, "init-db"], env=env, check=True, capture_output=True)
    base = f"http://127.0.0.1:{unused_port}"

    def start():
        server = subprocess.Popen(
            [*flask, "run", "--port", str(unused_port), "--with-threads"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1).close()
                return server
            except OSError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)

    publisher = RedisBroker(redis_url)
    server = start()
    page = chromium.new_page()
    try:
        page.goto(f"{base}/activity")
        page.wait_for_selector("#status:has-text('Live')")
        publisher.publish("activity", {"text": "before the restart"})
        page.wait_for_selector("#feed li:has-text('before the restart')")

        server.terminate()
        server.wait(timeout=10)
        page.wait_for_selector("#status:has-text('Reconnecting')")
        publisher.publish("activity", {"text": "while the server was down"})
        server = start()

        page.wait_for_selector(
            "#feed li:has-text('while the server was down')", timeout=15000
        )
        assert page.locator("#feed li:has-text('before the restart')").count() == 1
        page.screenshot(path=output_dir / "after-restart.png", full_page=True)
    finally:
        page.close()
        server.terminate()
        server.wait(timeout=10)
        publisher.close()


def test_pages_fit_a_phone_screen(app_factory, live_server, chromium, output_dir):
    app = app_factory()
    app.test_cli_runner().invoke(args=["demo"])
    server = live_server(app)
    context = chromium.new_context(viewport={"width": 375, "height": 740})
    page = context.new_page()
    try:
        for name, path in [
            ("home", "/"),
            ("product", "/products/2"),
            ("login", "/login?next=/orders"),
            ("activity", "/activity"),
        ]:
            page.goto(server.url + path)
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 0, f"{path} is {overflow}px wider than the phone"
            page.screenshot(path=output_dir / f"phone-{name}.png", full_page=True)
    finally:
        context.close()

from __future__ import annotations

import importlib
import sys

import pytest

from storefront import create_app
from storefront.extensions import db


def test_config_mapping_overrides_defaults(tmp_path):
    app = create_app({"SECRET_KEY": "x", "DATABASE_URL": f"sqlite:///{tmp_path}/a.db"})
    assert app.config["PATTERNS_DATABASE_URL"] == f"sqlite:///{tmp_path}/a.db"
    assert app.config["SECRET_KEY"] == "x"


def test_environment_configures_the_app(tmp_path, monkeypatch):
    monkeypatch.setenv("STOREFRONT_DATABASE_URL", f"sqlite:///{tmp_path}/env.db")
    monkeypatch.setenv("STOREFRONT_SECRET_KEY", "from-env")
    app = create_app()
    assert app.config["SECRET_KEY"] == "from-env"
    assert str(db.engine_for(app).url) == f"sqlite:///{tmp_path}/env.db"


def test_each_call_builds_a_separate_app(tmp_path):
    config = {"SECRET_KEY": "x", "DATABASE_URL": f"sqlite:///{tmp_path}/a.db"}
    first, second = create_app(config), create_app(config)
    assert first is not second
    assert db.engine_for(first) is not db.engine_for(second)


def test_missing_secret_key_is_generated_once_and_kept(tmp_path, monkeypatch):
    monkeypatch.delenv("STOREFRONT_SECRET_KEY", raising=False)
    config = {"DATABASE_URL": f"sqlite:///{tmp_path}/a.db"}
    app = create_app(config)
    monkeypatch.setattr(app, "instance_path", str(tmp_path / "instance"))
    from storefront import _instance_secret_key

    key = _instance_secret_key(app)
    assert len(key) >= 32
    assert _instance_secret_key(app) == key
    assert (tmp_path / "instance" / "secret_key").stat().st_mode & 0o077 == 0


def test_only_the_wsgi_module_builds_an_app_on_import(monkeypatch, tmp_path):
    monkeypatch.setenv("STOREFRONT_DATABASE_URL", f"sqlite:///{tmp_path}/w.db")
    monkeypatch.setenv("STOREFRONT_SECRET_KEY", "x")
    for name in [m for m in sys.modules if m.startswith("storefront.")]:
        module = sys.modules[name]
        assert not any(type(v).__name__ == "Flask" for v in vars(module).values()), name
    sys.modules.pop("storefront.wsgi", None)
    wsgi = importlib.import_module("storefront.wsgi")
    assert wsgi.app.name == "storefront"


def test_registering_the_database_twice_is_refused(tmp_path):
    app = create_app({"SECRET_KEY": "x", "DATABASE_URL": f"sqlite:///{tmp_path}/a.db"})
    with pytest.raises(RuntimeError, match="already registered"):
        db.init_app(app)


def test_forwarded_headers_are_trusted_only_behind_the_configured_proxies(tmp_path):
    from flask import request

    headers = {
        "X-Forwarded-For": "203.0.113.9",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "shop.example",
    }
    seen = []
    for hops in (0, 1):
        app = create_app(
            {
                "SECRET_KEY": "x",
                "DATABASE_URL": f"sqlite:///{tmp_path}/a.db",
                "PROXY_HOPS": hops,
                "TRUSTED_HOSTS": ["localhost", "shop.example"],
            }
        )
        app.add_url_rule(
            "/whoami", "whoami", lambda: f"{request.remote_addr} {request.host_url}"
        )
        seen.append(
            app.test_client().get("/whoami", headers=headers).get_data(as_text=True)
        )
    assert seen == ["127.0.0.1 http://localhost/", "203.0.113.9 https://shop.example/"]

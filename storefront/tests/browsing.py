"""What the browser tests share: the two screen sizes every page is looked at
in, screenshots at both, and the axe-core accessibility check."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import typing as t

#: A laptop and a phone (an iPhone X's CSS pixels).
SIZES = {"desktop": (1280, 800), "phone": (375, 812)}

#: The axe-core release the check runs, from the npm registry.
AXE_VERSION = "4.14.1"
#: What a page must not have: axe-core's two highest impacts.
BLOCKING_IMPACTS = ("serious", "critical")


def screenshots(page: t.Any, directory: pathlib.Path, name: str) -> list[pathlib.Path]:
    """Full-page screenshots of ``page`` at every size, ``<name>-<size>.png``
    in ``directory``; the page is left at the desktop size."""
    paths = []
    for size, (width, height) in SIZES.items():
        page.set_viewport_size({"width": width, "height": height})
        path = directory / f"{name}-{size}.png"
        page.screenshot(path=path, full_page=True)
        paths.append(path)
    width, height = SIZES["desktop"]
    page.set_viewport_size({"width": width, "height": height})
    return paths


def horizontal_overflow(page: t.Any) -> int:
    """How many CSS pixels the page is wider than the window (0 if it fits)."""
    return int(
        page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    )


def axe_script(cache: pathlib.Path) -> str:
    """The source of ``axe.min.js``, installed from the npm registry into
    ``cache`` the first time."""
    folder = cache / f"axe-core-{AXE_VERSION}"
    script = folder / "node_modules" / "axe-core" / "axe.min.js"
    if not script.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is needed to install axe-core")
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                npm,
                "install",
                "--no-save",
                "--no-package-lock",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(folder),
                f"axe-core@{AXE_VERSION}",
            ],
            check=True,
            capture_output=True,
            timeout=300,
            env={**os.environ, "npm_config_update_notifier": "false"},
        )
    return script.read_text()


def axe_violations(page: t.Any, source: str) -> list[dict[str, t.Any]]:
    """The violations axe-core finds on ``page`` as it is now, of any impact."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        # As a script element the Content-Security-Policy would refuse it.
        page.evaluate(source)
    result = page.evaluate("async () => await window.axe.run(document)")
    return list(result["violations"])


def blocking(violations: list[dict[str, t.Any]]) -> list[str]:
    """One line per violation of serious or critical impact, naming the rule
    and the elements."""
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + json.dumps([node["target"] for node in v["nodes"]][:5])
        for v in violations
        if v["impact"] in BLOCKING_IMPACTS
    ]

"""Every public module declares exactly its public names, and the names other
code relies on stay importable from where they always were."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import types

import pytest

import flask_patterns


def public_modules():
    """Every module and package of the library whose name has no underscore."""
    names = []
    for info in pkgutil.walk_packages(flask_patterns.__path__, "flask_patterns."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def defined_here(module):
    """The public classes, functions and UPPER_CASE constants a module defines
    itself, read from its source (what it imports does not count)."""
    if module.__file__.endswith("__init__.py"):
        return set()  # a package re-exports; its own test below
    tree = ast.parse(inspect.getsource(module))
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(
                target.id
                for target in targets
                if isinstance(target, ast.Name)
                and target.id.isupper()
                and len(target.id) > 1  # not a TypeVar
            )
    return {name for name in names if not name.startswith("_")}


@pytest.mark.parametrize("name", public_modules())
def test_a_module_declares_its_public_names_sorted_and_present(name):
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), n.islower(), n))
    for public in exported:
        assert hasattr(module, public), f"{name}.{public}"
    missing = defined_here(module) - set(exported)
    assert not missing, f"{name} defines but does not export {sorted(missing)}"


def test_the_package_exports_exactly_what_it_imports_by_name():
    exported = {
        name
        for name, value in vars(flask_patterns).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"
    }
    assert exported == set(flask_patterns.__all__)


STABLE = {
    "flask_patterns.db": ["Database", "after_commit", "capture_on_commit_callbacks"],
    "flask_patterns.streams": ["RedisBroker", "MemoryBroker", "EventStreams"],
    "flask_patterns.sse": ["ServerSentEvent"],
    "flask_patterns.tokens": [
        "Tokens",
        "dumps",
        "loads",
        "TokenError",
        "TokenExpired",
        "TokenInvalid",
    ],
    "flask_patterns.redirects": ["is_safe_url", "redirect_back"],
}


@pytest.mark.parametrize("module", sorted(STABLE))
def test_the_stable_names_import_from_where_they_always_did(module):
    imported = importlib.import_module(module)
    for name in STABLE[module]:
        assert name in imported.__all__, f"{module}.{name}"

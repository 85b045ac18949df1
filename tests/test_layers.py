"""The import layers of govc, checked from the source.

    govc/transport  ->  govc/services  ->  govc/core  ->  govc/storage
                                      \\->  govc/search (beside core: it may use core and
                                                         storage; core never uses search)

Nothing imports a layer above its own. govc/wire is the fast codec (generated messages only);
govc/errors.py is a leaf anyone may import; govc/server.py, cli.py, commands.py, client.py (and
the package's __init__) assemble the rest and may import anything of govc. Third-party
libraries with one home: lmdb (storage), tantivy (search), grpclib (transport, and client.py).

Every module under govc/ is parsed with `ast`: every import statement counts, wherever it is
(inside functions, under `if TYPE_CHECKING:`), relative ones resolved against their package.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

LAYERS = ("storage", "core", "search", "services", "transport", "wire")
TOP_LEVEL = "top level"  # server.py, cli.py, commands.py, client.py, __init__.py
# What each layer may import besides itself: layers of govc, "errors" (govc/errors.py),
# "generated" (the generated protobuf package). The package root `govc` (its version) is free.
ALLOWED: dict[str, frozenset[str]] = {
    "storage": frozenset({"errors"}),
    "core": frozenset({"storage", "errors"}),
    "search": frozenset({"core", "storage", "errors"}),
    "services": frozenset({"core", "search", "wire", "errors", "generated"}),
    "transport": frozenset({"services", "wire", "errors", "generated"}),
    "wire": frozenset({"generated", "errors"}),
    "errors": frozenset(),
}
# Third-party packages only these files (a path, or a directory ending in "/") may import.
EXCLUSIVE: dict[str, tuple[str, ...]] = {
    "lmdb": ("govc/storage/",),
    "tantivy": ("govc/search/",),
    "grpclib": ("govc/transport/", "govc/client.py"),
}


@dataclass(frozen=True)
class Violation:
    path: str  # relative to the root, with "/"
    line: int
    imported: str
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line} {self.imported} -- {self.rule}"


@dataclass(frozen=True)
class Import:
    line: int
    module: str  # dotted, absolute


def module_name(relative: Path) -> str:
    """govc/core/blobs.py -> govc.core.blobs; govc/core/__init__.py -> govc.core."""
    parts = list(relative.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, is_package: bool, known: set[str]) -> list[Import]:
    """Every import in `source` (of `module`), relative ones made absolute. `from a import b`
    is `a.b` when that is a module in `known`, else `a`."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found: list[Import] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [Import(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                found.append(Import(node.lineno, candidate if candidate in known else target))
    return found


def layer_of_module(name: str) -> str | None:
    """The layer an imported module belongs to; None for the package root and for anything
    outside govc and generated."""
    parts = name.split(".")
    if parts[0] == "generated":
        return "generated"
    if parts[0] != "govc" or len(parts) == 1:
        return None
    if parts[1] == "errors":
        return "errors"
    if parts[1] in LAYERS:
        return parts[1]
    return TOP_LEVEL


def layer_of_file(relative: str) -> str:
    parts = relative.split("/")
    if len(parts) > 2 and parts[1] in LAYERS:
        return parts[1]
    if relative == "govc/errors.py":
        return "errors"
    return TOP_LEVEL


def find_violations(root: Path) -> tuple[int, list[Violation]]:
    """(modules checked, violations) for the govc package under `root`."""
    files = sorted((root / "govc").rglob("*.py"))
    known = {module_name(f.relative_to(root)) for f in files}
    violations: list[Violation] = []
    for file in files:
        relative = file.relative_to(root).as_posix()
        layer = layer_of_file(relative)
        module = module_name(file.relative_to(root))
        for imported in imports_of(file.read_text(), module, file.name == "__init__.py", known):
            name = imported.module
            top = name.split(".")[0]
            if top in EXCLUSIVE:
                homes = EXCLUSIVE[top]
                if not any(relative == h or relative.startswith(h) for h in homes):
                    rule = f"only {' and '.join(homes)} may import {top}"
                    violations.append(Violation(relative, imported.line, name, rule))
            target = layer_of_module(name)
            if layer == TOP_LEVEL or target is None or target == layer:
                continue
            allowed = ALLOWED[layer]
            if target not in allowed:
                may = ", ".join(sorted(allowed)) or "nothing of govc"
                rule = f"{layer} may import {may}; not {target}"
                violations.append(Violation(relative, imported.line, name, rule))
    return len(files), list(dict.fromkeys(violations))  # one per line and module


def test_imports_follow_the_layers() -> None:
    checked, violations = find_violations(REPO_ROOT)
    assert checked > 40, f"only {checked} modules found under {REPO_ROOT / 'govc'}"
    for violation in violations:
        print(violation)
    assert not violations, f"{len(violations)} import(s) break the layers:\n" + "\n".join(
        str(v) for v in violations
    )


def test_the_check_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The checker itself, on a small tree: relative imports at any depth, imports inside
    functions and under TYPE_CHECKING, `from package import module`, third-party homes."""
    sources = {
        "govc/__init__.py": "",
        "govc/errors.py": "",
        "govc/server.py": "import lmdb\nfrom govc.transport import grpc\n",
        "govc/core/__init__.py": "",
        "govc/core/blobs.py": (
            "from typing import TYPE_CHECKING\n"
            "from govc import errors\n"
            "from . import cache\n"
            "from ..storage import env\n"
            "if TYPE_CHECKING:\n"
            "    from govc.services.blobs import BlobService\n"
            "def f():\n"
            "    from ..search import engine\n"
            "    import generated.govc\n"
        ),
        "govc/core/cache.py": "",
        "govc/storage/__init__.py": "from .env import Storage\n",
        "govc/storage/env.py": "import lmdb\nimport tantivy\n",
        "govc/search/__init__.py": "",
        "govc/search/engine.py": "import tantivy\nfrom govc.core import blobs\n",
        "govc/services/__init__.py": "",
        "govc/services/blobs.py": "from govc.storage.env import Storage\nimport grpclib\n",
        "govc/transport/__init__.py": "",
        "govc/transport/grpc.py": "import grpclib.server\nfrom govc.services import blobs\n",
    }
    for path, text in sources.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    checked, violations = find_violations(tmp_path)
    assert checked == len(sources)
    assert {(v.path, v.line, v.imported) for v in violations} == {
        ("govc/core/blobs.py", 6, "govc.services.blobs"),  # under TYPE_CHECKING
        ("govc/core/blobs.py", 8, "govc.search.engine"),  # relative, inside a function
        ("govc/core/blobs.py", 9, "generated.govc"),
        ("govc/storage/env.py", 2, "tantivy"),
        ("govc/services/blobs.py", 1, "govc.storage.env"),
        ("govc/services/blobs.py", 2, "grpclib"),
        ("govc/server.py", 1, "lmdb"),
    }

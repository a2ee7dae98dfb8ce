"""The package's one-way dependency direction, read from the source with ``ast``.

    leaves  (errors, models, settings, config, keys, logs, client, redis_client, redis, sigv4_primitives)
      ^
    middle  (policy, auth, backends, cache, audit, metrics, ratelimit)   never each other
      ^
    service
      ^
    api                                     never the composition root
      ^
    app, runtime, build, cli, __main__      the composition root

Only the composition root may import the concrete backends (gateway.backends.local/s3/gcs).
Imports under ``if TYPE_CHECKING:`` count like any other: a type-only import of a higher layer is
still a dependency on it, and it is how an import circle hides (``api`` once imported ``Runtime``
from ``app`` that way, while ``app`` imported ``api``). Modules stay under MAX_LINES lines.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gateway"
MAX_LINES = 300

# redis_client is the shared Redis connection helper used by several middle packages: a leaf, and so
# is the redis package behind it (URLs, options, clients, scripts). sigv4_primitives is the SigV4 math
# shared by the S3 backend and the ElastiCache IAM token.
LEAVES = {"errors", "models", "settings", "config", "keys", "logs", "client", "redis_client", "redis", "version",
          "sigv4_primitives"}
MIDDLE = {"policy", "auth", "backends", "cache", "audit", "metrics", "ratelimit"}
ROOT = {"app", "runtime", "build", "serving", "tls", "protocol", "cli", "cli_urls", "__main__"}
CONCRETE_BACKENDS = {"gateway.backends.local", "gateway.backends.s3", "gateway.backends.gcs"}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. gateway.service.core
    target: str  # the imported gateway module, e.g. gateway.backends.local
    line: int

    def __str__(self) -> str:
        return f"{self.module} (line {self.line}) imports {self.target}"


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth: lazy imports in functions and ``if TYPE_CHECKING:``
    blocks count too."""
    found: list[ast.Import | ast.ImportFrom] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            found.append(child)
        found.extend(_walk(child))
    return found


def gateway_imports(source: str, module: str, *, is_package: bool, known: set[str]) -> list[Import]:
    """The gateway modules that ``module`` imports (at run time or for the type checker)."""
    imports: list[Import] = []
    for node in _walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            # `from gateway.x import y` imports gateway.x, and gateway.x.y when y is a module.
            targets = [origin] + [f"{origin}.{a.name}" for a in node.names if f"{origin}.{a.name}" in known]
            if origin == "gateway" and len(targets) > 1:
                targets = targets[1:]  # `from gateway import client` is about gateway.client
        imports.extend(Import(module, t, node.lineno) for t in targets if t == "gateway" or t.startswith("gateway."))
    return imports


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "package"
    return parts[1]


def violation(imp: Import) -> str | None:
    """Why this import breaks the layering, or None when it is allowed."""
    src, dst = layer_of(imp.module), layer_of(imp.target)
    if dst == "package":  # gateway/__init__.py holds only the version
        return None
    if imp.target in CONCRETE_BACKENDS and src not in ROOT and src != "backends":
        return "only gateway.app and gateway.cli may import a concrete backend"
    if src == dst:
        return None
    if src == "client":
        return "gateway.client is shipped to vendors and imports nothing from the package"
    if src in LEAVES:
        return None if dst in LEAVES - {src} else f"leaf module gateway.{src} may import only other leaves"
    if src in MIDDLE:
        if dst in LEAVES:
            return None
        return f"gateway.{src} may import only leaf modules and itself (never another middle package)"
    if src == "service":
        return None if dst in LEAVES | MIDDLE else "gateway.service may import only leaves and middle packages"
    if src == "api":
        if dst in LEAVES | MIDDLE | {"service"}:
            return None
        return "gateway.api may not import the composition root (gateway.app, gateway.cli)"
    if src in ROOT or src == "package":
        return None
    return f"gateway.{src} is in no layer; add it to LEAVES, MIDDLE or a layer in {__file__}"


def _all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _all_imports() -> list[Import]:
    modules = _all_modules()
    known = set(modules)
    imports: list[Import] = []
    for name, path in modules.items():
        source = path.read_text(encoding="utf-8")
        imports.extend(gateway_imports(source, name, is_package=path.name == "__init__.py", known=known))
    return imports


def test_every_module_is_in_a_layer() -> None:
    unplaced = sorted(
        name for name in _all_modules()
        if layer_of(name) not in LEAVES | MIDDLE | ROOT | {"service", "api", "package"}
    )
    assert not unplaced, f"modules in no layer (place them in tests/test_architecture.py): {unplaced}"


def test_dependencies_point_one_way() -> None:
    imports = _all_imports()
    assert imports, "found no gateway imports at all: the scanner is broken"
    offenders = [f"{imp}: {why}" for imp in imports if (why := violation(imp))]
    assert not offenders, "layering violations:\n  " + "\n  ".join(offenders)


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in _all_modules()}
    for imp in _all_imports():
        if imp.target in graph and imp.target != imp.module:
            graph[imp.module].add(imp.target)
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def test_no_import_circle() -> None:
    circles = import_circles(_graph())
    assert not circles, "import circles (type-only imports included):\n  " + "\n  ".join(map(str, circles))


def test_the_circle_finder_sees_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_circles(graph) == [["a", "b", "c"]]
    assert import_circles({"a": {"b"}, "b": set()}) == []


def test_no_module_is_too_long() -> None:
    lengths = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in _all_modules().items()}
    offenders = sorted(f"{name}: {n} lines" for name, n in lengths.items() if n > MAX_LINES)
    assert not offenders, f"modules over {MAX_LINES} lines (split them):\n  " + "\n  ".join(offenders)


# -- the scanner itself must be able to see violations -------------------------------------------

def _scan(source: str, module: str, *, is_package: bool = False) -> list[str]:
    known = set(_all_modules()) | {"gateway.backends.gcs"}
    return [i.target for i in gateway_imports(source, module, is_package=is_package, known=known)]


def test_scanner_sees_type_checking_and_lazy_imports() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "import typing\n"
        "if TYPE_CHECKING:\n"
        "    from gateway.app import Runtime\n"
        "else:\n"
        "    from gateway.cli import main\n"
        "if typing.TYPE_CHECKING:\n"
        "    import gateway.app\n"
        "def lazy():\n"
        "    from gateway.backends import local\n"
    )
    assert _scan(source, "gateway.api.routes") == [
        "gateway.app", "gateway.cli", "gateway.app", "gateway.backends", "gateway.backends.local"]
    # A type-only import of the composition root from the HTTP layer is a layering violation.
    assert violation(Import("gateway.api.objects", "gateway.app", 1)) is not None


def test_scanner_resolves_relative_and_package_imports() -> None:
    assert _scan("from . import local\n", "gateway.backends", is_package=True) == [
        "gateway.backends", "gateway.backends.local"]
    assert _scan("from ..policy import engine\n", "gateway.service.core") == [
        "gateway.policy", "gateway.policy.engine"]
    assert _scan("from gateway import client\n", "gateway.auth.vendor") == ["gateway.client"]
    assert _scan("import os\nimport gateway.keys as k\n", "gateway.cache.memory") == ["gateway.keys"]


@pytest.mark.parametrize(
    ("module", "target", "allowed"),
    [
        ("gateway.config", "gateway.errors", True),
        ("gateway.config", "gateway.policy", False),
        ("gateway.client", "gateway.errors", False),
        ("gateway.policy.engine", "gateway.config", True),
        ("gateway.policy.engine", "gateway.policy", True),
        ("gateway.policy.engine", "gateway.cache", False),
        ("gateway.audit.log", "gateway.metrics", False),
        ("gateway.metrics", "gateway.audit", False),
        ("gateway.auth.vendor", "gateway.client", True),
        ("gateway.service.core", "gateway.backends", True),
        ("gateway.service.core", "gateway.backends.local", False),
        ("gateway.service.core", "gateway.backends.gcs", False),
        ("gateway.service.core", "gateway.api", False),
        ("gateway.api.routes", "gateway.service", True),
        ("gateway.api.routes", "gateway.app", False),
        ("gateway.api.routes", "gateway.cli", False),
        ("gateway.api.routes", "gateway.runtime", False),
        ("gateway.api.routes", "gateway.build", False),
        ("gateway.app", "gateway.runtime", True),
        ("gateway.api.routes", "gateway.backends.s3", False),
        ("gateway.app", "gateway.backends.s3", True),
        ("gateway.cli", "gateway.app", True),
        ("gateway.backends.s3", "gateway.backends.sigv4", True),
        ("gateway.backends.s3", "gateway.keys", True),
        ("gateway.cache.redis", "gateway.redis_client", True),
        ("gateway.redis_client", "gateway.cache", False),
        ("gateway.redis_client", "gateway.redis.connect", True),
        ("gateway.redis.auth", "gateway.sigv4_primitives", True),
        ("gateway.redis.auth", "gateway.backends.sigv4", False),
        ("gateway.backends.sigv4", "gateway.sigv4_primitives", True),
        ("gateway.ratelimit.redis", "gateway.auth", False),
        ("gateway.service.core", "gateway.ratelimit", True),
    ],
)
def test_layer_rules(module: str, target: str, allowed: bool) -> None:
    assert (violation(Import(module, target, 1)) is None) is allowed


# -- one path that decides, one that refuses (issue 11) ------------------------------------------

# The offline `gateway explain` command prints a decision; it answers no request.
DECIDERS_OUTSIDE_SERVICE = {"gateway.cli"}


def _calls(tree: ast.AST, attribute: str) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute) and node.func.attr == attribute]


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]


def decision_sites(modules: dict[str, str]) -> list[str]:
    """Where a policy decision is taken but not refused through GatewayService.refused: each entry
    names the offending module and function. Empty when every decision has one way to say no."""
    problems = []
    for name, source in modules.items():
        tree = ast.parse(source)
        if not _calls(tree, "decide"):
            continue
        if not name.startswith("gateway.service") and name not in DECIDERS_OUTSIDE_SERVICE:
            problems.append(f"{name} decides outside the service layer")
            continue
        if name in DECIDERS_OUTSIDE_SERVICE:
            continue
        for function in _functions(tree):
            if _calls(function, "decide") and not _calls(function, "refused"):
                problems.append(f"{name}.{function.name} decides but does not refuse through refused()")
    return problems


def test_every_decision_is_refused_in_one_place() -> None:
    sources = {name: path.read_text(encoding="utf-8") for name, path in _all_modules().items()}
    assert decision_sites(sources) == []
    # And the one place that shapes a refusal for the caller is GatewayService.refused.
    shapers = [(name, function.name) for name, source in sources.items()
               for function in _functions(ast.parse(source))
               if any(isinstance(c.func, ast.Name) and c.func.id == "refusal" for c in ast.walk(function)
                      if isinstance(c, ast.Call))]
    assert shapers == [("gateway.service.core", "refused")]


def test_there_is_no_second_object_route() -> None:
    # The fast lane that answered repeats by itself is gone; the object route is gateway.api.objects.
    assert "gateway.api.fastlane" not in _all_modules()
    assert [name for name in _all_modules() if "fastlane" in name or "fast_lane" in name] == []


def test_the_decision_finder_sees_a_stray_decision() -> None:
    stray = "async def read(ds, ctx):\n    d = ds.decide(ctx.principal, ctx.client_ip, 'k')\n    raise d\n"
    assert decision_sites({"gateway.api.objects": stray}) == ["gateway.api.objects decides outside the service layer"]
    assert decision_sites({"gateway.service.x": stray}) == [
        "gateway.service.x.read decides but does not refuse through refused()"]
    fine = "async def read(self, ds, ctx):\n    d = ds.decide(1, 2, 3)\n    await self.refused(ctx, d)\n"
    assert decision_sites({"gateway.service.x": fine}) == []

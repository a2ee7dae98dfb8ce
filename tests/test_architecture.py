"""The package's one-way dependency direction, read from the source with ``ast``, by folder.

    cli                                          the command line (over the composition root)
    app                                          the composition root: builds every part once
    api                                          HTTP
    service                                      the use cases and the one admit step
    policy  auth  backends  cache  audit  ratelimit   the middle: never each other
    redis                                        the shared Redis client
    config  sigv4                                the policy's schema; AWS SigV4
    errors models settings keys logs metrics ... every file directly in gateway/: the leaves

A module may import the leaves, its own package, and packages on lower floors; never a package on
its own floor or above. A leaf imports only other leaves. The floors are folders: a new module
belongs to the folder it is put in, and a new folder must be given a floor here. Only the
composition root imports a concrete backend. Imports under ``if TYPE_CHECKING:`` count like any
other: a type-only import of a higher layer is still a dependency on it, and it is how an import
circle hides. Modules stay under MAX_LINES lines.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gateway"
MAX_LINES = 300

# Lowest first. Every folder of the package is on exactly one floor.
FLOORS: tuple[tuple[str, ...], ...] = (
    ("config", "sigv4"),
    ("redis",),
    ("policy", "auth", "backends", "cache", "audit", "ratelimit"),
    ("service",),
    ("api",),
    ("app",),
    ("cli",),
)
FLOOR = {folder: level for level, folders in enumerate(FLOORS, start=1) for folder in folders}
LEAF, ENTRY = 0, len(FLOORS) + 1  # files directly in gateway/; gateway/__main__.py
CONCRETE_BACKEND_ROOT = "app"  # the one folder that may import gateway.backends.<kind>
BACKEND_PROTOCOL = {"gateway.backends"}  # the Protocols; every other module of backends/ is a concrete one


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
                targets = targets[1:]  # `from gateway import vendor_signing` is about gateway.vendor_signing
        imports.extend(Import(module, t, node.lineno) for t in targets if t == "gateway" or t.startswith("gateway."))
    return imports


def place(module: str) -> tuple[str, int]:
    """(folder or leaf name, floor) of a module: ``gateway.service.admit`` is (service, 4)."""
    parts = module.split(".")
    if len(parts) == 1:
        return "package", LEAF
    name = parts[1]
    if name == "__main__":
        return name, ENTRY
    if (PACKAGE / name).is_dir() or name in FLOOR:
        return name, FLOOR.get(name, -1)
    return name, LEAF


def violation(imp: Import) -> str | None:
    """Why this import breaks the layering, or None when it is allowed."""
    (src, src_floor), (dst, dst_floor) = place(imp.module), place(imp.target)
    if dst == "package":  # gateway/__init__.py holds only the docstring
        return None
    if src_floor < 0 or dst_floor < 0:
        unplaced = src if src_floor < 0 else dst
        return f"gateway/{unplaced}/ is on no floor: add it to FLOORS in {__file__}"
    if (imp.target.startswith("gateway.backends.") and imp.target not in BACKEND_PROTOCOL
            and src not in (CONCRETE_BACKEND_ROOT, "backends")):
        return "only the composition root (gateway.app) may import a concrete backend"
    if src == dst:
        return None
    if src_floor == LEAF:
        if src == "vendor_signing":
            return "gateway.vendor_signing is shipped to vendors and imports nothing from the package"
        return None if dst_floor == LEAF else f"leaf module gateway.{src} may import only other leaves"
    if dst_floor == LEAF or dst_floor < src_floor:
        return None
    if dst_floor == src_floor:
        return f"gateway.{src} and gateway.{dst} are on one floor and may not import each other"
    return f"gateway.{src} may not import gateway.{dst}, which is above it"


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


def test_every_folder_is_on_a_floor() -> None:
    folders = {path.name for path in PACKAGE.iterdir() if path.is_dir() and (path / "__init__.py").exists()}
    assert folders == set(FLOOR), f"folders without a floor: {folders - set(FLOOR)}; floors without a folder: " \
        f"{set(FLOOR) - folders}"
    assert not [p.name for p in PACKAGE.iterdir() if p.is_dir() and not (p / "__init__.py").exists()
                and p.name != "__pycache__"]


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
    assert _scan("from gateway import vendor_signing\n", "gateway.auth.vendor") == ["gateway.vendor_signing"]
    assert _scan("import os\nimport gateway.keys as k\n", "gateway.cache.memory") == ["gateway.keys"]


@pytest.mark.parametrize(
    ("module", "target", "allowed"),
    [
        ("gateway.config", "gateway.errors", True),
        ("gateway.config", "gateway.policy", False),
        ("gateway.errors", "gateway.config", False),  # a leaf imports only leaves
        ("gateway.settings", "gateway.redis.url", False),  # the arrow that once ran back up
        ("gateway.vendor_signing", "gateway.errors", False),
        ("gateway.policy.engine", "gateway.config", True),
        ("gateway.policy.engine", "gateway.policy", True),
        ("gateway.policy.engine", "gateway.cache", False),
        ("gateway.audit.log", "gateway.metrics", True),
        ("gateway.audit.log", "gateway.auth", False),
        ("gateway.auth.vendor", "gateway.vendor_signing", True),
        ("gateway.service.core", "gateway.backends", True),
        ("gateway.service.core", "gateway.backends.local", False),
        ("gateway.service.core", "gateway.backends.gcs", False),
        ("gateway.service.core", "gateway.api", False),
        ("gateway.api.routes", "gateway.service", True),
        ("gateway.api.routes", "gateway.app", False),
        ("gateway.api.routes", "gateway.cli", False),
        ("gateway.api.routes", "gateway.app.runtime", False),
        ("gateway.api.routes", "gateway.backends.s3", False),
        ("gateway.app.runtime", "gateway.api", True),
        ("gateway.app.build", "gateway.backends.s3", True),
        ("gateway.cli", "gateway.app", True),
        ("gateway.cli.urls", "gateway.backends.s3", False),  # the CLI goes through the composition root
        ("gateway.app", "gateway.cli", False),
        ("gateway.backends.s3", "gateway.sigv4.presign", True),
        ("gateway.backends.s3", "gateway.keys", True),
        ("gateway.cache.redis", "gateway.redis.client", True),
        ("gateway.redis.client", "gateway.cache", False),
        ("gateway.redis.options", "gateway.settings", True),
        ("gateway.redis.auth", "gateway.sigv4.primitives", True),
        ("gateway.redis.auth", "gateway.backends", False),
        ("gateway.sigv4.headers", "gateway.redis", False),
        ("gateway.sigv4.presign", "gateway.config", False),  # one floor
        ("gateway.ratelimit.redis", "gateway.auth", False),
        ("gateway.service.core", "gateway.ratelimit", True),
        ("gateway.__main__", "gateway.cli", True),
        ("gateway.cli", "gateway.__main__", False),
    ],
)
def test_layer_rules(module: str, target: str, allowed: bool) -> None:
    assert (violation(Import(module, target, 1)) is None) is allowed


# -- one admit step decides; one place shapes a refusal; one table of paths ------------------------

ADMIT = "gateway.service.admit"
# The offline `gateway explain` prints a decision and what each rule lacked; it answers no request.
DECIDERS_OUTSIDE_ADMIT = {"gateway.cli.explain"}
DECIDING_CALLS = ("decide", "matching_rule")


def _calls(tree: ast.AST, attribute: str) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute) and node.func.attr == attribute]


def _key_checks(tree: ast.AST) -> list[ast.Call]:
    """``<...>.key_pattern.match(...)``: the dataset's allow_keys applied to a key."""
    return [call for call in _calls(tree, "match") if isinstance(call.func, ast.Attribute)
            and isinstance(call.func.value, ast.Attribute) and call.func.value.attr == "key_pattern"]


def decision_sites(modules: dict[str, str]) -> list[str]:
    """Modules outside the admit step (and the policy engine that defines the decision) that take a
    policy decision: rules or allow_keys. Empty when only the admit step decides."""
    problems = []
    for name, source in modules.items():
        if name == ADMIT or name.startswith((ADMIT + ".", "gateway.policy")) or name in DECIDERS_OUTSIDE_ADMIT:
            continue
        tree = ast.parse(source)
        if any(_calls(tree, call) for call in DECIDING_CALLS) or _key_checks(tree):
            problems.append(f"{name} takes a policy decision outside {ADMIT}")
    return problems


def test_only_the_admit_step_decides() -> None:
    sources = {name: path.read_text(encoding="utf-8") for name, path in _all_modules().items()}
    assert decision_sites(sources) == []
    # And every refusal of the admit step goes through one method, GateBase._refuse.
    raising = sorted(function.name for name, source in sources.items() if name.startswith(ADMIT)
                     for function in _functions(ast.parse(source))
                     if any(isinstance(node, ast.Raise) for node in ast.walk(function)))
    # (_verify raises only to its one caller, which turns every failure into a refusal through _refuse.)
    assert raising == ["_refuse", "_verify", "require_gateway_urls"], raising


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]


def test_the_decision_finder_sees_a_stray_decision() -> None:
    stray = "async def read(ds, ctx):\n    d = ds.decide(ctx.principal, ctx.client_ip, 'k')\n    raise d\n"
    assert decision_sites({"gateway.api.objects": stray}) == [
        "gateway.api.objects takes a policy decision outside gateway.service.admit"]
    globbing = "def keys(ds, key):\n    return ds.key_pattern.match(key)\n"
    assert decision_sites({"gateway.service.redirects": globbing}) != []
    assert decision_sites({ADMIT: stray, "gateway.service.x": "def f(p):\n    return p.match('x')\n"}) == []


GATEWAY_PATHS = ("/v1/datasets", "/v1/local", "/v1/sign", "/v1/auth", "/v1/c/", "/v1/sdk", "/healthz", "/readyz",
                 "/metrics")


def test_gateway_paths_are_written_in_one_table() -> None:
    """Every public path of the gateway is a constant of gateway.routes: a path literal elsewhere in
    the package is a second copy that can drift (the FastAPI decorators use the constants too)."""
    offenders = []
    for name, path in _all_modules().items():
        if name == "gateway.routes":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
                text = node.value.decode("latin-1") if isinstance(node.value, bytes) else node.value
                if text.startswith(GATEWAY_PATHS):
                    offenders.append(f"{name}: {text!r}")
    assert offenders == []


# Reaching into prometheus_client's histogram child is the tally's documented shortcut (gateway/metrics.py).
PRIVATE_ACCESS_ALLOWED = {"gateway.metrics"}
NAMED_TUPLE_API = {"_replace", "_asdict", "_fields"}  # public, underscored only to leave field names free


def private_reaches(modules: dict[str, str]) -> list[str]:
    """``other._member``: a module using another object's private member (``self``/``cls`` are its own)."""
    found = []
    for name, source in modules.items():
        for node in ast.walk(ast.parse(source)):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and node.attr not in NAMED_TUPLE_API
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
                found.append(f"{name}:{node.lineno} {ast.unparse(node)}")
    return found


def test_no_use_case_reaches_into_another_objects_private_members() -> None:
    sources = {name: path.read_text(encoding="utf-8") for name, path in _all_modules().items()
               if name not in PRIVATE_ACCESS_ALLOWED}
    assert private_reaches(sources) == []
    assert private_reaches({"gateway.service.x": "def f(service):\n    return service._dataset(1)\n"}) == [
        "gateway.service.x:2 service._dataset"]


def body_readers(modules: dict[str, str]) -> list[str]:
    """Functions that read a request body (``read_body``, or Starlette's ``body``/``stream``/``json``/
    ``form``) without holding it to its signature (``check_body``) in the same function."""
    problems = []
    for name, source in modules.items():
        if not name.startswith("gateway.api") or name == "gateway.api.context":
            continue
        for function in _functions(ast.parse(source)):
            calls = [node.func for node in ast.walk(function) if isinstance(node, ast.Call)]
            reads = any((isinstance(f, ast.Name) and f.id == "read_body") or (
                isinstance(f, ast.Attribute) and f.attr in ("body", "stream", "json", "form")
                and isinstance(f.value, ast.Name) and f.value.id == "request") for f in calls)
            checks = any(isinstance(f, ast.Attribute) and f.attr == "check_body" for f in calls)
            if reads and not checks:
                problems.append(f"{name}.{function.name}")
    return problems


def test_every_body_that_is_read_is_held_to_its_signature() -> None:
    """A vendor's version 2 signature covers the body: no route may use a body it did not check."""
    sources = {name: path.read_text(encoding="utf-8") for name, path in _all_modules().items()}
    assert body_readers(sources) == []
    assert body_readers({"gateway.api.x": "async def f(request):\n    return await read_body(request, 1)\n"}) == [
        "gateway.api.x.f"]

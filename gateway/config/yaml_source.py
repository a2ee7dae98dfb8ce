"""Reading the policy's YAML so that what the file says twice is an error, not "the last one wins".

A policy that defines ``datasets.office`` twice (office-only near the top, open to everyone further
down) would otherwise be served with whichever came last, and nobody reading the top of the file
would know. So every mapping, at every level (datasets, rules, backends, auth, ...), may define a
key once; each key defined again is a problem naming both lines, reported with the file's other
problems.

Anchors, aliases and merge keys:

- An anchor (``&office``) and its aliases (``*office``) are allowed: an alias is the anchored value
  itself, written once, so it overrides nothing. The anchored value is checked once, where it is
  written. Aliases may not contain themselves, and may repeat at most ``ALIAS_BUDGET`` values in all,
  so that a few lines cannot expand into a document too large to validate ("billion laughs").
- A merge key (``<<: *defaults``, YAML 1.1; YAML 1.2 dropped it) may only **add** keys: a key that is
  merged in and also written out, or merged in from two mappings, is defined twice, the same as if
  it were written twice. Merge semantics would otherwise let one silently override the other, which is
  exactly what this module refuses.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from gateway.errors import ConfigError

MERGE_TAG = "tag:yaml.org,2002:merge"
ALIAS_BUDGET = 100_000  # values that aliases may repeat; a real policy repeats a few networks lists


def read_yaml(text: str, source: str) -> tuple[Any, list[str]]:
    """The document's data, and the problems found in how it is written (keys defined twice).

    Raises ConfigError when the text is not YAML, or when its aliases cannot be expanded safely:
    there is then no data to validate further.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, []
        _check_aliases(node, source)
        problems = [f"{path}: defined {_times(at)} ({_places(at)})" for path, at in _duplicates(loader, node)]
        return loader.construct_document(node), problems
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(source, [f"{where}not valid YAML ({getattr(exc, 'problem', exc)})"]) from None
    except RecursionError:  # PyYAML composes nodes recursively
        raise ConfigError(source, ["(top level): the YAML is nested too deeply"]) from None
    finally:
        loader.dispose()


def _children(node: Node) -> Iterator[Node]:
    if isinstance(node, SequenceNode):
        yield from node.value
    elif isinstance(node, MappingNode):
        for key, value in node.value:
            yield key
            yield value


def _check_aliases(root: Node, source: str) -> None:
    """Refuse an alias inside its own anchor, and aliases that repeat more than ALIAS_BUDGET values.

    Counts the expanded document in one pass over the written nodes (each node's size is memoized),
    so that the count itself cannot be made expensive.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in open_nodes:
            line = node.start_mark.line + 1
            raise ConfigError(source, [f"line {line}: an alias refers to the value that contains it"])
        open_nodes.add(id(node))
        total = 1 + sum(size(child) for child in _children(node))
        open_nodes.discard(id(node))
        sizes[id(node)] = total
        return total

    expanded = size(root)
    if expanded - len(sizes) > ALIAS_BUDGET:
        raise ConfigError(source, [f"(top level): aliases repeat {expanded - len(sizes):,} values "
                                   f"(at most {ALIAS_BUDGET:,})"])


Place = tuple[int, int]  # line and column, from 1


def _definitions(loader: yaml.SafeLoader, mapping: MappingNode) -> Iterator[tuple[object, Place, Node]]:
    """Each key the mapping defines (written out or merged in), with its place and value."""
    for key, value in mapping.value:
        if key.tag == MERGE_TAG:
            merged = value.value if isinstance(value, SequenceNode) else [value]
            for source in merged:
                if isinstance(source, MappingNode):  # anything else: the constructor's YAML error
                    yield from _definitions(loader, source)
        elif isinstance(key, ScalarNode):
            # The constructed key, so that `office` and "office" (or `1` and `0x1`) are the same key.
            yield loader.construct_object(key), (key.start_mark.line + 1, key.start_mark.column + 1), value


def _duplicates(loader: yaml.SafeLoader, root: Node) -> list[tuple[str, list[Place]]]:
    """Keys defined more than once, as (path, places), in the order the file first defines them.

    Every value is visited, the overridden ones too, and an anchored value once, at its anchor.
    """
    found: list[tuple[str, list[Place]]] = []
    seen: set[int] = set()

    def visit(node: Node, path: str) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                visit(item, f"{path}.{i}" if path else str(i))
        elif isinstance(node, MappingNode):
            places: dict[object, list[Place]] = {}
            values: list[tuple[str, Node]] = []
            for key, place, value in _definitions(loader, node):
                places.setdefault(key, []).append(place)  # scalar keys: always hashable
                values.append((f"{path}.{key}" if path else str(key), value))
            found.extend((f"{path}.{key}" if path else str(key), sorted(at))
                         for key, at in places.items() if len(at) > 1)
            for name, value in values:
                visit(value, name)

    visit(root, "")
    return found


def _times(places: list[Place]) -> str:
    return "twice" if len(places) == 2 else f"{len(places)} times"


def _places(places: list[Place]) -> str:
    """``lines 3 and 12``; with the columns when two are on one line (a flow mapping)."""
    lines = [line for line, _ in places]
    if len(set(lines)) == len(lines):
        return "lines " + ", ".join(map(str, lines[:-1])) + f" and {lines[-1]}"
    named = [f"line {line} column {column}" for line, column in places]
    return ", ".join(named[:-1]) + f" and {named[-1]}"

"""Reading the YAML and JSON files a user hands us: configs, presets, label maps, manifests.

Every such file goes through :func:`read_yaml` or :func:`read_json` (and a ``--set`` value
through :func:`parse_yaml_value`), so each refuses the same hostile inputs the same way, fast and
with one :class:`~sam2_finetune.errors.OptionsError` naming the file:

- YAML aliases that refer to themselves (``a: &a [*a]``): PyYAML builds a cyclic list, and the
  first code that walks it dies with ``RecursionError``;
- aliases that expand past :data:`MAX_ALIAS_NODES` nodes (a "billion laughs" bomb: nine levels of
  nine aliases is 387 million nodes from a few hundred bytes). PyYAML shares the aliased objects,
  so loading is cheap, but anything that walks or copies the result expands it. The composer
  counts each alias at its expanded size, which is arithmetic on already composed nodes, and
  stops before anything is built;
- nesting deeper than :data:`MAX_DEPTH` (YAML or JSON), which the recursive parsers turn into
  ``RecursionError``;
- text that is not UTF-8, and a top level that is not a mapping;
- a key written twice in one mapping, which YAML and JSON silently resolve to the last one.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "c.yaml"
>>> _ = path.write_text("base: &b {x: 1}\\nother: *b\\n")
>>> read_yaml(path, "config")
{'base': {'x': 1}, 'other': {'x': 1}}
"""

from __future__ import annotations

import codecs
import json
import re
import typing
from pathlib import Path
from typing import Any

import yaml

from sam2_finetune.errors import OptionsError, describe

# A training config has about a hundred nodes and nests five deep; a label map a few thousand
# entries. The bounds leave a wide margin for honest files and none for a bomb.
MAX_ALIAS_NODES = 10_000
MAX_DEPTH = 64


_ALIAS_FIX = (
    "write the values out plainly (an alias may name a mapping or value defined before it, "
    "not one that contains it)"
)
_DEPTH_FIX = f"nest at most {MAX_DEPTH} levels (is it the right file?)"


class HostileFileError(Exception):
    """Raised inside the loader; :func:`read_yaml` turns it into one ``OptionsError``."""

    def __init__(self, problem: str, line: int | None = None, fix: str = _ALIAS_FIX) -> None:
        super().__init__(problem)
        self.problem, self.line, self.fix = problem, line, fix


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int, column: int, first_line: int) -> None:
        super().__init__(key)
        self.key, self.line, self.column, self.first_line = key, line, column, first_line


class BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (no arbitrary objects) that refuses recursive aliases, aliases
    expanding past :data:`MAX_ALIAS_NODES` nodes, nesting deeper than :data:`MAX_DEPTH`, and
    a key written twice in one mapping.

    ``alias_nodes`` is what the aliases have added so far (their expanded size), readable
    after a load for tests.
    """

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self.alias_nodes = 0
        self._depth = 0
        self._sizes: dict[int, int] = {}  # id(node) -> its size with aliases expanded

    def _size(self, node: yaml.Node) -> int:
        return self._sizes.get(id(node), 1)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            # PyYAML registers an anchor before composing the collection it names and sets the
            # node's end mark after: an alias to a node without one is inside that node.
            if target is not None and target.end_mark is None:
                raise HostileFileError(
                    f"the alias *{event.anchor} refers to itself (a recursive structure)",
                    event.start_mark.line + 1,
                )
            if target is not None:
                self.alias_nodes += self._size(target)
                if self.alias_nodes > MAX_ALIAS_NODES:
                    raise HostileFileError(
                        f"its aliases expand to more than {MAX_ALIAS_NODES:,} nodes "
                        f"(an alias bomb; *{event.anchor} is the one that went past)",
                        event.start_mark.line + 1,
                    )
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            mark = self.peek_event().start_mark
            raise HostileFileError(
                f"it nests deeper than {MAX_DEPTH} levels", mark.line + 1, _DEPTH_FIX
            )
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    # Once composed, a collection records its expanded size for the aliases that name it later.
    def compose_sequence_node(self, anchor: str | None) -> yaml.SequenceNode:
        node = super().compose_sequence_node(anchor)
        self._sizes[id(node)] = 1 + sum(self._size(child) for child in node.value)
        return node

    def compose_mapping_node(self, anchor: str | None) -> yaml.MappingNode:
        node = super().compose_mapping_node(anchor)
        self._sizes[id(node)] = 1 + sum(self._size(k) + self._size(v) for k, v in node.value)
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base`: keys written next to it override the merged ones
            key = self.construct_object(key_node, deep=deep)
            mark = key_node.start_mark
            if isinstance(key, typing.Hashable) and key in seen:
                raise _DuplicateKey(key, mark.line + 1, mark.column + 1, seen[key])
            if isinstance(key, typing.Hashable):
                seen[key] = mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _read_text(path: Path, what: str) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise OptionsError(
            describe(f"no such {what} file (cannot read it)", file=path, fix="check the path")
        ) from None
    except IsADirectoryError:
        raise OptionsError(
            describe(f"is a folder, not a {what} file", file=path, fix="give the file inside it")
        ) from None
    except OSError as exc:
        raise OptionsError(
            describe(f"cannot read the {what} ({exc.strerror or exc})", file=path)
        ) from None
    try:
        # Editors on Windows start files with a byte-order mark.
        return data.removeprefix(codecs.BOM_UTF8).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise OptionsError(
            describe(
                f"the {what} is not UTF-8 text (byte {exc.start} cannot be decoded)",
                file=path,
                fix="save it as UTF-8 text (is it the right file?)",
            )
        ) from None


def _hostile(path: Path, what: str, exc: HostileFileError) -> OptionsError:
    where = f"{path}:{exc.line}" if exc.line else str(path)
    return OptionsError(f"{where}: the {what} is refused: {exc.problem}. Fix: {exc.fix}.")


def load_yaml_text(text: str, source: str | Path, what: str) -> Any:
    """The YAML document in ``text`` (any top level), read with :class:`BoundedLoader`;
    ``source`` names it in messages."""
    path = Path(source)
    loader = BoundedLoader(text)
    try:
        return loader.get_single_data()
    except HostileFileError as exc:
        raise _hostile(path, what, exc) from None
    except _DuplicateKey as exc:
        raise OptionsError(
            f"{path}:{exc.line}:{exc.column}: duplicate key {exc.key!r} (first on line "
            f"{exc.first_line}): YAML would silently keep only the last one. Fix: merge the two "
            "into one."
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise OptionsError(
            f"{where}: the {what} is not valid YAML: {problem}. Fix: correct the syntax at that "
            "line (indentation, a missing ':' or an unclosed quote or bracket)."
        ) from None
    finally:
        loader.dispose()


def _mapping(data: Any, path: Path, what: str, shape: str, expected: str) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise OptionsError(
            describe(
                f"the {what} must be {shape}",
                file=path,
                expected=expected,
                found=f"a {type(data).__name__}",
                fix="write `key: value` lines at the top level",
            )
        )
    return data


def read_yaml(
    path: str | Path, what: str, *, shape: str = "a mapping", expected: str = "`key: value` pairs"
) -> dict[str, Any]:
    """The YAML mapping in ``path``; an empty file is ``{}``. ``what`` names the file's role
    in messages ("config", "label map"); ``shape`` and ``expected`` say what its top level
    must be.

    Raises :class:`OptionsError` naming the file (and line) for a missing or unreadable file,
    text that is not UTF-8, invalid YAML, a duplicate key, a recursive or exploding alias, too
    deep nesting, or a top level that is not a mapping.
    """
    path = Path(path)
    data = load_yaml_text(_read_text(path, what), path, what)
    return _mapping(data, path, what, shape, expected)


# Strings first (they may hold brackets), then every bracket outside them.
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_JSON_BRACKET = re.compile(r"[\[\]{}]")


def _json_depth(text: str) -> int:
    depth = deepest = 0
    for match in _JSON_BRACKET.finditer(_JSON_STRING.sub('""', text)):
        depth += 1 if match.group() in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key, 0, 0, 0)
        result[key] = value
    return result


def load_json_text(text: str, source: str | Path, what: str) -> Any:
    """The JSON document in ``text`` (any top level); refuses nesting deeper than
    :data:`MAX_DEPTH` before parsing (``json`` would raise ``RecursionError``), duplicate keys,
    and ``NaN`` / ``Infinity`` (not JSON)."""
    path = Path(source)
    if _json_depth(text) > MAX_DEPTH:
        problem = f"it nests deeper than {MAX_DEPTH} levels"
        raise _hostile(path, what, HostileFileError(problem, None, _DEPTH_FIX))

    def refuse_constant(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON value")

    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=refuse_constant)
    except _DuplicateKey as exc:
        raise OptionsError(
            describe(
                f"duplicate key {exc.key!r} in the {what}: JSON would silently keep only the "
                "last one",
                file=path,
                fix="merge the two into one",
            )
        ) from None
    except ValueError as exc:  # JSONDecodeError is a ValueError
        raise OptionsError(
            describe(f"the {what} is not valid JSON ({exc})", file=path, fix="correct the syntax")
        ) from None


def read_json(
    path: str | Path, what: str, *, shape: str = "a mapping", expected: str = '{"key": value}'
) -> dict[str, Any]:
    """The JSON object in ``path``, refused as :func:`read_yaml` refuses (nesting, duplicate
    keys, not UTF-8, not an object) with one :class:`OptionsError` naming the file."""
    path = Path(path)
    data = load_json_text(_read_text(path, what), path, what)
    return _mapping(data, path, what, shape, expected)


def read_mapping(
    path: str | Path, what: str, *, shape: str = "a mapping", expected: str = "`key: value` pairs"
) -> dict[str, Any]:
    """``path`` read as JSON when it ends in ``.json``, else as YAML (which also reads JSON)."""
    read = read_json if Path(path).suffix.lower() == ".json" else read_yaml
    return read(path, what, shape=shape, expected=expected)


def parse_yaml_value(text: str, source: str) -> Any:
    """One YAML value typed by the user (a ``--set`` value), with the loader's bounds; text
    that is not valid YAML stays a string. ``source`` names it in messages.

    >>> parse_yaml_value("[detect, count]", "--set data.tasks")
    ['detect', 'count']
    >>> parse_yaml_value("a: b: c", "--set x")
    'a: b: c'
    """
    loader = BoundedLoader(text)
    try:
        return loader.get_single_data()
    except HostileFileError as exc:
        raise _hostile(Path(source), "value", exc) from None
    except (yaml.YAMLError, _DuplicateKey):
        return text
    finally:
        loader.dispose()

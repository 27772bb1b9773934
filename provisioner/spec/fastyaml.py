"""One pass over the YAML parser's events building the data and the location of every key and value, for
stack files of thousands of resources (checking the structure, composing a node tree, indexing it and constructing
from it costs about three times as much).

It covers the common case only: no aliases (so no "billion laughs" to guard against), nesting no deeper than
`max_depth`, no merge keys (`<<`), collection tags, or duplicate and non-scalar keys. On anything else, including
a YAML error, it returns None and the loader takes its general path, which checks and reports as it always has.
The result equals the general path's: the same data, the same `(line, column)` per location (keys by their text
as written, as `loader._index` records them).
"""

from __future__ import annotations

from typing import Any

import yaml

Loc = tuple[str | int, ...]
_STR = "tag:yaml.org,2002:str"
_MAP_TAGS = (None, "!", "tag:yaml.org,2002:map")
_SEQ_TAGS = (None, "!", "tag:yaml.org,2002:seq")
#: keys the constructor treats specially (merge `<<`, value `=`): the general path handles them
_SPECIAL_KEYS = ("tag:yaml.org,2002:merge", "tag:yaml.org,2002:value")


class _Unsupported(Exception):
    """Something the single pass leaves to the general path."""


def parse(text: str, loader_class: type,
          max_depth: int) -> tuple[Any, dict[Loc, tuple[int, int]], dict[Loc, tuple[int, int]]] | None:
    """(data, key locations, value locations) of a one-document YAML text, or None: use the general path."""
    loader = loader_class(text)
    try:
        builder = _Builder(loader, max_depth)
        return builder.document()
    except (_Unsupported, yaml.YAMLError):
        return None
    finally:
        loader.dispose()


class _Builder:
    def __init__(self, loader: Any, max_depth: int) -> None:
        self.loader, self.max_depth = loader, max_depth
        self.key_locs: dict[Loc, tuple[int, int]] = {}
        self.value_locs: dict[Loc, tuple[int, int]] = {}

    def document(self) -> tuple[Any, dict[Loc, tuple[int, int]], dict[Loc, tuple[int, int]]]:
        get = self.loader.get_event
        if not isinstance(get(), yaml.StreamStartEvent) or not isinstance(get(), yaml.DocumentStartEvent):
            raise _Unsupported  # an empty stream: the general path says so
        data = self.node(get(), ())
        if not isinstance(get(), yaml.DocumentEndEvent) or not isinstance(get(), yaml.StreamEndEvent):
            raise _Unsupported  # a second document: the general path refuses it
        return data, self.key_locs, self.value_locs

    def node(self, event: yaml.Event, loc: Loc) -> Any:
        mark = event.start_mark
        self.value_locs[loc] = (mark.line + 1, mark.column + 1)
        if isinstance(event, yaml.ScalarEvent):
            return self.scalar(event)
        if len(loc) >= self.max_depth:
            raise _Unsupported  # too deep: the general path refuses it
        if isinstance(event, yaml.MappingStartEvent) and event.tag in _MAP_TAGS:
            return self.mapping(loc)
        if isinstance(event, yaml.SequenceStartEvent) and event.tag in _SEQ_TAGS:
            get = self.loader.get_event
            items: list[Any] = []
            while not isinstance(item := get(), yaml.SequenceEndEvent):
                items.append(self.node(item, (*loc, len(items))))
            return items
        raise _Unsupported  # an alias, or a tagged collection

    def mapping(self, loc: Loc) -> dict[Any, Any]:
        get = self.loader.get_event
        out: dict[Any, Any] = {}
        seen: set[str] = set()
        while not isinstance(key := get(), yaml.MappingEndEvent):
            if not isinstance(key, yaml.ScalarEvent) or key.value in seen:
                raise _Unsupported  # a non-scalar or duplicate key: the general path reports it
            seen.add(key.value)
            tag = self.tag(key)
            if tag in _SPECIAL_KEYS:
                raise _Unsupported
            here = (*loc, key.value)
            mark = key.start_mark
            self.key_locs[here] = (mark.line + 1, mark.column + 1)
            name = key.value if tag == _STR else self.construct(key, tag)
            out[name] = self.node(get(), here)
        return out

    def tag(self, event: yaml.ScalarEvent) -> str:
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.loader.resolve(yaml.ScalarNode, event.value, event.implicit)
        return tag

    def scalar(self, event: yaml.ScalarEvent) -> Any:
        tag = self.tag(event)
        return event.value if tag == _STR else self.construct(event, tag)

    def construct(self, event: yaml.ScalarEvent, tag: str) -> Any:
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
        return self.loader.construct_object(node, deep=True)

"""A fast stand-in for `rich.console.Console.print` for the CLI's line output (plans, costs, summaries).

rich renders each `print` through Text objects, segments and a width measurement: ~150 µs a line, which made
printing a 1,000-resource plan cost half a second. The CLI's lines are markup strings printed with soft wrap (no
wrapping by rich), so this writes each one with a single `write`: markup tags become ANSI codes on a colour
terminal (styles parsed once, by rich, then cached) and are dropped in a pipe, a log or under NO_COLOR. Anything
that is not a string (a table, a panel) is handed to a real rich Console on the same stream.
"""

from __future__ import annotations

import os
import re
import sys
from functools import lru_cache
from typing import IO, Any

#: a markup tag as rich reads it: `[bold]`, `[/]`, `[dim red]`; a backslash before `[` escapes it
_TAG = re.compile(r"(\\*)\[([a-z#/@][^[]*?)]")


class FastConsole:
    """Prints markup strings as lines, quickly; `color`: None decides from the stream (a terminal, NO_COLOR…)."""

    def __init__(self, file: IO[str] | None = None, *, stderr: bool = False, color: bool | None = None) -> None:
        self._file = file
        self._stderr = stderr
        self.is_terminal = _isatty(self.file)
        self.color = _wants_color(self.is_terminal) if color is None else color
        self._rich: Any = None

    @property
    def file(self) -> IO[str]:
        return self._file or (sys.stderr if self._stderr else sys.stdout)

    def print(self, *objects: Any, markup: bool = True, end: str = "\n", **_: Any) -> None:
        """`console.print` for strings (`soft_wrap` and the like are implied); other renderables go to rich."""
        if any(not isinstance(o, str) for o in objects):
            self.rich.print(*objects, markup=markup, end=end)
            return
        text = " ".join(objects)
        if markup and "[" in text:
            text = to_ansi(text) if self.color else strip_markup(text)
        self.file.write(text + end)

    def write(self, text: str) -> None:
        self.file.write(text)

    @property
    def rich(self) -> Any:
        """A rich Console on the same stream, for renderables (made on first use)."""
        if self._rich is None:
            from rich.console import Console

            self._rich = Console(file=self.file, highlight=False, soft_wrap=True,
                                 no_color=not self.color, force_terminal=self.color or None)
        return self._rich


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _wants_color(terminal: bool) -> bool:
    """As rich decides: NO_COLOR turns colour off, FORCE_COLOR on; else a terminal that is not TERM=dumb."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return terminal and os.environ.get("TERM", "") not in ("dumb", "unknown")


#: what rich reads as a markup tag (rich.markup's own pattern), with the backslashes before it
_ESCAPABLE = re.compile(r"(\\*)(\[[a-z#/@][^[]*?])")


def escape(text: str) -> str:
    """What `rich.markup.escape` returns (the same rule: a backslash before each tag-like `[…]`, backslashes
    before it doubled, a trailing lone backslash doubled), without importing rich (12 ms of a piped apply)."""
    if "[" not in text and not text.endswith("\\"):
        return text
    text = _ESCAPABLE.sub(lambda m: f"{m.group(1)}{m.group(1)}\\{m.group(2)}", text)
    if text.endswith("\\") and not text.endswith("\\\\"):
        return text + "\\"
    return text


def strip_markup(text: str) -> str:
    """The text a markup string shows, without its styles (`\\[` becomes `[`)."""
    if "\\" not in text:  # no escapes: every tag just goes (the common case, done in C)
        return _TAG.sub("", text)
    return _TAG.sub(_plain_tag, text)


def _plain_tag(match: re.Match[str]) -> str:
    backslashes, tag = match.group(1), match.group(2)
    if len(backslashes) % 2:  # an escaped bracket: keep it, literally
        return backslashes[: len(backslashes) // 2] + f"[{tag}]"
    return backslashes[: len(backslashes) // 2]


def to_ansi(text: str) -> str:
    """A markup string as ANSI escape codes (nested tags combine; `[/]` closes the last one)."""
    out: list[str] = []
    stack: list[str] = []
    position = 0
    for match in _TAG.finditer(text):
        out.append(text[position:match.start()])
        position = match.end()
        backslashes, tag = match.group(1), match.group(2)
        out.append(backslashes[: len(backslashes) // 2])
        if len(backslashes) % 2:
            out.append(f"[{tag}]")
            continue
        if tag.startswith("/"):
            if stack:
                stack.pop()
        else:
            stack.append(tag)
        out.append(_codes(tuple(stack)))
    out.append(text[position:])
    if stack:
        out.append(_codes(()))
    return "".join(out)


@lru_cache(maxsize=256)
def _codes(styles: tuple[str, ...]) -> str:
    """The ANSI sequence that resets, then switches on every style in `styles` (rich parses them)."""
    from rich.console import ColorSystem
    from rich.style import Style

    reset = "\x1b[0m"
    if not styles:
        return reset
    try:
        style = Style.combine(Style.parse(s) for s in styles)
    except Exception:  # not a style rich knows (e.g. a link): shown unstyled, as rich would fail loudly instead
        return reset
    sample = style.render("\0", color_system=ColorSystem.TRUECOLOR)
    return reset + sample.split("\0", 1)[0]

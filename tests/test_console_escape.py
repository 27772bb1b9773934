"""`provisioner.console.escape` is rich's markup escape, re-implemented so piped output need not import rich."""

from __future__ import annotations

import random

from rich.markup import escape as rich_escape

from provisioner.console import escape


def test_escape_matches_rich_on_random_markup_like_text():
    rng = random.Random(17)
    alphabet = "ab[]\\/#@1 "
    cases = ["", "plain", "[bold]x", "x\\", "x\\\\", "\\[red]", "[1, 2]", "[a] [/b] [#f00] [@click]", "[[a]]"]
    cases += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14))) for _ in range(5000)]
    for text in cases:
        assert escape(text) == rich_escape(text), text

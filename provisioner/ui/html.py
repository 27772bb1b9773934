"""HTML building blocks the pages share: the layout (navigation, stack chooser, CSRF meta tag), tables, badges.
Every value goes through `esc`; pages never build markup from unescaped text."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

if TYPE_CHECKING:
    from provisioner.ui.app import UiApp

NAV = (("platform", "Platform"), ("plan", "Plan"), ("serving", "Serving"), ("resources", "Resources"),
       ("history", "History"))
#: status -> (css class, label): the colours of the Platform page, the legend and every badge
STATUS = {
    "in-sync": ("ok", "in sync"),
    "drift": ("drift", "drift"),
    "pending": ("pending", "pending change"),
    "failed": ("failed", "failed"),
    "unknown": ("unknown", "unknown"),
}


def esc(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def href(page: str, key: str | None, **params: Any) -> str:
    query = {"stack": key} if key else {}
    query.update({k: v for k, v in params.items() if v is not None})
    return f"/{page}?{urlencode(query)}" if query else f"/{page}"


def badge(status: str, text: str | None = None) -> str:
    css, label = STATUS.get(status, ("unknown", status))
    return f'<span class="badge {css}" data-status="{esc(status)}">{esc(text or label)}</span>'


def value(v: Any) -> str:
    """A JSON value for a table cell: text as is, the rest as compact JSON."""
    if isinstance(v, str):
        return esc(v)
    return f"<code>{esc(json.dumps(v, sort_keys=True, default=str))}</code>"


def table(headers: Iterable[str], rows: Iterable[Iterable[str]], *, css: str = "", attrs: str = "") -> str:
    """`rows` hold markup already (pass text through `esc`)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="{esc(css)}" {attrs}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def kv(data: dict[str, Any], *, empty: str = "none") -> str:
    if not data:
        return f'<p class="dim">{esc(empty)}</p>'
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{value(v)}</td></tr>" for k, v in sorted(data.items()))
    return f'<table class="kv"><tbody>{rows}</tbody></table>'


def when(at: float | None) -> str:
    if not at:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def number(v: float | None, fmt: str = ".2f", unit: str = "") -> str:
    return "-" if v is None else f"{v:{fmt}}{unit}"


def notes(items: Iterable[str]) -> str:
    items = list(items)
    if not items:
        return ""
    return '<ul class="notes">' + "".join(f"<li>{esc(n)}</li>" for n in items) + "</ul>"


def layout(app: UiApp, key: str | None, page: str, title: str, body: str, *, served_ms: float | None = None) -> str:
    links = "".join(f'<a href="{esc(href(name, key))}" class="{"on" if name == page else ""}" '
                    f'data-page="{name}">{label}</a>' for name, label in NAV)
    choices = "".join(f'<option value="{esc(k)}"{" selected" if k == key else ""}>{esc(k)}</option>'
                      for k in app.keys)
    chooser = (f'<form class="stacks" method="get" action="/{esc(page)}"><label>stack '
               f'<select name="stack" data-autosubmit>{choices}</select></label></form>')
    served = f'<footer class="dim">served in {served_ms:.0f} ms</footer>' if served_ms is not None else ""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta name="csrf-token" content="{esc(app.csrf)}">'
            f'<title>{esc(title)} · {esc(key or "")} · mlplat</title>'
            f'<link rel="stylesheet" href="/static/ui.css"><script src="/static/ui.js" defer></script></head>'
            f'<body data-page="{esc(page)}" data-stack="{esc(key or "")}">'
            f'<header><a class="brand" href="{esc(href("platform", key))}">mlplat</a><nav>{links}</nav>{chooser}'
            f'</header><main id="main">{body}</main>{served}</body></html>')


def error_page(app: UiApp, key: str | None, message: str) -> str:
    body = f'<h1>Something needs fixing</h1><pre class="error" id="error">{esc(message)}</pre>'
    return layout(app, key if key in app.paths else None, "", "error", body)


def refusal_page(status: int, message: str) -> str:
    """For refused requests: no layout, no tokens."""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{status} · mlplat</title></head>'
            f'<body><h1>{status}: refused</h1><p id="refused">{esc(message)}</p></body></html>')

"""`mlplat ui`: a local web dashboard over the same engine API the CLI uses.

Only `mlplat ui` imports this package (the other commands never pay for it). It is the standard library's
`http.server` (threads, one per request) with pages rendered on the server and a little hand-written JavaScript
(`static/ui.js`: the apply confirmation, server-sent progress, auto-refresh): no Node build step and nothing
vendored.

- `app.UiApp`: the stacks shown (each request opens its stack file afresh, so edits show at once), the access
  and CSRF tokens, the previews and runs (`runs.py`) and the traffic samplers (`sampler.py`).
- `server.py`: routing and the guards: 127.0.0.1 only, a `Host` check (DNS rebinding), the access token on every
  request (query `?token=`, then a cookie), the CSRF token and `Origin` on every POST.
- one module per page, each with `data(app, key, query) -> dict` (the page's JSON at `/api/<page>`) and
  `render(app, key, data) -> str` (its HTML body): `platform.py`, `plan.py`, `serving.py`, `resources.py`,
  `history.py`.
"""

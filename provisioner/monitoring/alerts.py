"""Alerts of `mlplat monitor`: a JSON POST to a webhook, an e-mail through a plain SMTP relay.

Webhook body (one POST per alert)::

    {"stack": "quickstart", "endpoint": "iris", "kind": "drift", "feature": "petal_length", "metric": "psi",
     "value": 0.41, "threshold": 0.2, "ts": 1700000000.0, "message": "iris: feature petal_length drifted ..."}

A shadow alert has "kind": "shadow" and, instead of feature/metric/value/threshold, "primary", "shadow",
"pairs", "instances", "agreement", "min_agreement" (or "latency_delta_ms", "max_latency_delta_ms").

A delivery that fails (refused, timed out, an HTTP error status, no SMTP server) is reported in the `Delivery`,
never raised; its error text is redacted (a webhook URL may hold a token: ${secret:NAME}).
"""

from __future__ import annotations

import json
import socket
from dataclasses import asdict, dataclass, field
from typing import Any

#: seconds a webhook or SMTP server has to answer
TIMEOUT_S = 10.0


@dataclass
class Alert:
    endpoint: str
    kind: str  # "drift" | "shadow"
    message: str
    ts: float
    details: dict[str, Any] = field(default_factory=dict)  # feature/metric/value/threshold, or agreement numbers

    def body(self, stack: str) -> dict[str, Any]:
        return {"stack": stack, "endpoint": self.endpoint, "kind": self.kind, **self.details, "ts": self.ts,
                "message": self.message}


@dataclass
class Delivery:
    channel: str  # "webhook" | "email"
    to: str  # masked when it is a secret
    alert: str  # the alert's message
    ok: bool
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def shown(value: str) -> str:
    """A destination as output shows it: a secret (a webhook URL with a token) masked."""
    from provisioner.secrets import MASK, is_secret

    return MASK if is_secret(value) else value


def _problem(exc: BaseException) -> str:
    from provisioner.secrets import redact

    text = str(exc) or type(exc).__name__
    return redact(f"{type(exc).__name__}: {text}" if not isinstance(exc, OSError) else text)


def post_webhook(url: str, body: dict[str, Any], timeout: float = TIMEOUT_S) -> str | None:
    """POST `body` as JSON to `url` (http or https); None when it answered 2xx, else what went wrong."""
    import http.client
    import urllib.error
    import urllib.request
    from urllib.parse import urlsplit

    if urlsplit(url).scheme not in ("http", "https"):
        return "the webhook is not an http:// or https:// URL"
    data = json.dumps(body, default=str).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "mlplat-monitor"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(65536)
            if not 200 <= response.status < 300:
                return f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code} {exc.reason}"
    except urllib.error.URLError as exc:
        return _problem(exc.reason if isinstance(exc.reason, BaseException) else exc)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return _problem(exc)
    return None


def send_email(smtp: str, recipients: list[str], subject: str, text: str, timeout: float = TIMEOUT_S) -> str | None:
    """Send a plain-text mail through the SMTP relay `smtp` ("host:port"; no TLS, no login); None when the relay
    accepted it for every recipient, else what went wrong."""
    import smtplib
    from email.message import EmailMessage

    host, _, port = smtp.rpartition(":")
    message = EmailMessage()
    message["From"] = f"mlplat <mlplat@{socket.gethostname() or 'localhost'}>"
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message.set_content(text)
    try:
        with smtplib.SMTP(host, int(port), timeout=timeout) as server:
            refused = server.send_message(message)
    except (OSError, smtplib.SMTPException, ValueError) as exc:
        return _problem(exc)
    if refused:
        return "refused: " + ", ".join(sorted(refused))
    return None


def deliver(alerts: list[Alert], *, stack: str, webhook: str | None, emails: list[str],
            smtp: str | None, smtp_setting: str = "targets.<target>.smtp") -> list[Delivery]:
    """Send every alert to the webhook and the e-mail addresses; one `Delivery` per alert and channel."""
    deliveries = []
    for alert in alerts:
        if webhook:
            problem = post_webhook(webhook, alert.body(stack))
            deliveries.append(Delivery("webhook", shown(webhook), alert.message, problem is None, problem))
        if emails:
            if not smtp:
                problem: str | None = f"no SMTP server to send e-mail through: set {smtp_setting} (host:port)"
            else:
                subject = f"[mlplat] {stack}/{alert.endpoint}: {alert.kind} alert"
                text = alert.message + "\n\n" + json.dumps(alert.body(stack), indent=2, default=str) + "\n"
                problem = send_email(smtp, emails, subject, text)
            deliveries.append(Delivery("email", ", ".join(emails), alert.message, problem is None, problem))
    return deliveries

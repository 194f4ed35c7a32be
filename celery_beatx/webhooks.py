"""POST alerts to the ``beatx_alert_webhooks`` in the background.

Each webhook has its own bounded queue and thread, so a slow or dead receiver delays
neither beat's loop (enqueueing never blocks nor does I/O) nor the other webhooks.  A
delivery that fails (no answer within ``timeout``, a connection error, a 5xx, 408, 425 or
429) is tried again after 1, 2, 4 ... seconds, at most :data:`MAX_DELAY` apart, for up to
:data:`MAX_AGE` seconds; other answers (3xx, 4xx) are final.  The queue keeps the newest
:data:`QUEUE_SIZE` alerts: when it is full the oldest is dropped, with one log line.

Header values are never logged (nor the URL's query string or user part, where tokens
also hide): log lines name a webhook by scheme, host, port and path.  Standard library only
(``urllib``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from .alerts import Alert, Webhook, add_sink, alert_payload, remove_sink

logger = logging.getLogger("celery_beatx.webhooks")

#: Alerts kept per webhook while it cannot be reached.
QUEUE_SIZE = 1000
#: The longest wait between two attempts of one delivery (seconds).
MAX_DELAY = 60.0
#: A delivery is given up this long after its alert was queued (seconds).
MAX_AGE = 3600.0
#: Answers after which the same request is worth sending again.
RETRY_STATUSES = (408, 425, 429)
USER_AGENT = "celery-beatx"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a place to send the headers (and their tokens) to."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(_NoRedirect())


class _Outcome:
    DELIVERED, RETRY, FINAL = "delivered", "retry", "final"


class _Channel:
    """One webhook: its queue, its thread, its outage state."""

    def __init__(self, webhook: Webhook, instance_id: str | None, *, queue_size: int,
                 first_delay: float, max_delay: float, max_age: float,
                 mono: Callable[[], float]) -> None:
        self.webhook = webhook
        self.instance_id = instance_id
        self.queue_size = queue_size
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.max_age = max_age
        self.mono = mono
        self.queue: deque[tuple[Alert, float]] = deque()
        self.cond = threading.Condition()
        self.stopping = False
        self.busy = False
        self.failing_since: float | None = None
        self.overflowing = False
        self.delivered = 0
        self.dropped = 0
        self.opener = _opener()
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"beatx-webhook {webhook.safe_url}")

    # -- beat's side (never blocks on I/O) ---------------------------------------------------

    def put(self, alert: Alert) -> None:
        with self.cond:
            if len(self.queue) >= self.queue_size:
                self.queue.popleft()
                self.dropped += 1
                if not self.overflowing:
                    self.overflowing = True
                    logger.warning("alert webhook %s: %d alerts are waiting; dropping the "
                                   "oldest ones until it catches up", self.webhook.safe_url,
                                   self.queue_size)
            self.queue.append((alert, self.mono()))
            self.cond.notify()

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        attempt = 0
        while True:
            with self.cond:
                while not self.queue and not self.stopping:
                    self.cond.wait()
                if self.stopping:
                    return
                alert, queued_at = self.queue[0]
                self.busy = True
            outcome, detail = self._post(alert)
            with self.cond:
                self.busy = False
                if outcome == _Outcome.RETRY and self.mono() - queued_at < self.max_age:
                    attempt += 1
                    self._failing(detail)
                    delay = min(self.first_delay * 2 ** (attempt - 1), self.max_delay)
                    deadline = time.monotonic() + delay
                    while not self.stopping and time.monotonic() < deadline:
                        self.cond.wait(deadline - time.monotonic())  # a stop wakes it up
                    continue
                if self.queue and self.queue[0][0] is alert:
                    self.queue.popleft()
                if len(self.queue) < self.queue_size // 2:
                    self.overflowing = False
                self.cond.notify_all()
            attempt = 0
            if outcome == _Outcome.DELIVERED:
                self.delivered += 1
                self._recovered()
            elif outcome == _Outcome.FINAL:
                logger.error("alert webhook %s refused alert %s (%s): not sent again",
                             self.webhook.safe_url, alert.id, detail)
            else:
                logger.error("alert webhook %s: gave up alert %s after %.0f s of failures "
                             "(%s)", self.webhook.safe_url, alert.id, self.max_age, detail)

    def _failing(self, detail: str) -> None:
        if self.failing_since is None:
            self.failing_since = self.mono()
            logger.warning("alert webhook %s cannot be reached (%s); retrying with back-off "
                           "(at most every %g s)", self.webhook.safe_url, detail,
                           self.max_delay)
        else:
            logger.debug("alert webhook %s still failing: %s", self.webhook.safe_url, detail)

    def _recovered(self) -> None:
        if self.failing_since is not None:
            logger.warning("alert webhook %s reachable again after %.1f s",
                           self.webhook.safe_url, self.mono() - self.failing_since)
            self.failing_since = None

    def _post(self, alert: Alert) -> tuple[str, str]:
        hook = self.webhook
        body = json.dumps(alert_payload(alert, self.instance_id), default=str).encode()
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        headers.update(dict(hook.headers))
        request = urllib.request.Request(hook.url, data=body, headers=headers, method="POST")
        try:
            with self.opener.open(request, timeout=hook.timeout) as response:
                response.read(65536)
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
            exc.close()
        except Exception as exc:  # connection refused, timeout, DNS...
            return _Outcome.RETRY, self._scrub(exc)
        if 200 <= status < 300:
            return _Outcome.DELIVERED, ""
        if status >= 500 or status in RETRY_STATUSES:
            return _Outcome.RETRY, f"HTTP {status}"
        return _Outcome.FINAL, f"HTTP {status}"

    def _scrub(self, exc: BaseException) -> str:
        """One line naming the error, with anything secret taken out."""
        reason = getattr(exc, "reason", None)
        text = f"{type(exc).__name__}: {reason if reason is not None else exc}"
        text = text.splitlines()[0] if text.strip() else type(exc).__name__
        secrets = [v for _, v in self.webhook.headers if v] + [self.webhook.url]
        for secret in sorted(secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text[:300]

    def idle(self) -> bool:
        with self.cond:
            return not self.queue and not self.busy


class WebhookSender:
    """Delivers alerts to webhooks from background threads; see the module docstring.

    :param webhooks: the validated ``beatx_alert_webhooks``.
    :param instance_id: this beat's name, sent in every payload.
    """

    def __init__(self, webhooks: Sequence[Webhook], *, instance_id: str | None = None,
                 queue_size: int = QUEUE_SIZE, first_delay: float = 1.0,
                 max_delay: float = MAX_DELAY, max_age: float = MAX_AGE,
                 mono: Callable[[], float] = time.monotonic) -> None:
        self.channels = [_Channel(w, instance_id, queue_size=queue_size,
                                  first_delay=first_delay, max_delay=max_delay,
                                  max_age=max_age, mono=mono) for w in webhooks]
        self._started = False

    def start(self) -> WebhookSender:
        """Start the threads and receive every alert dispatched in this process."""
        if not self._started:
            self._started = True
            for channel in self.channels:
                channel.thread.start()
            add_sink(self.enqueue)
        return self

    def enqueue(self, alert: Alert) -> None:
        """Queue ``alert`` for each webhook whose ``min_level`` it reaches (no I/O)."""
        for channel in self.channels:
            if channel.webhook.wants(alert):
                channel.put(alert)

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s until every queue is empty; True when they are."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(c.idle() for c in self.channels):
                return True
            time.sleep(0.02)
        return all(c.idle() for c in self.channels)

    def close(self, timeout: float = 2.0) -> None:
        """Stop receiving alerts; give the queued ones up to ``timeout`` seconds to go out
        (a dead receiver costs a clean shutdown that long), then stop the threads."""
        remove_sink(self.enqueue)
        self.flush(timeout)
        for channel in self.channels:
            with channel.cond:
                channel.stopping = True
                channel.cond.notify_all()
        for channel in self.channels:
            if channel.thread.is_alive():
                channel.thread.join(timeout)
        self._started = False

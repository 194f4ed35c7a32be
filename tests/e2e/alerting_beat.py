"""``celery_beatx.Scheduler`` with the alert engine, webhooks and metrics wired in, the way
scheduler.py wires them (see the report of the alerts branch): the end-to-end tests of
alerts start ``celery beat -S alerting_beat.AlertingScheduler``.

This subclass exists only until the wiring is in ``celery_beatx.Scheduler`` itself; it adds
nothing the scheduler should not do.
"""

from __future__ import annotations

import time
from typing import Any

from celery_beatx.beat.alerting import AlertEngine
from celery_beatx.scheduler import Scheduler, logger, signals_deferred
from celery_beatx.webhooks import WebhookSender


class AlertingScheduler(Scheduler):
    def setup_schedule(self) -> None:
        super().setup_schedule()
        assert self.leadership is not None
        self.alert_engine = AlertEngine(
            self.repo, default_alerts=self.beatx.default_alerts,  # type: ignore[arg-type]
            cooldown=self.beatx.alert_cooldown, logger=logger, db=self.db,
            fence=self.leadership.check_fence, instance_id=self.beatx.instance_id)
        self.webhooks = WebhookSender(self.beatx.alert_webhooks,
                                      instance_id=self.beatx.instance_id).start() \
            if self.beatx.alert_webhooks else None
        self._last_alerts = float("-inf")
        gain, loss = self.leadership.on_gain, self.leadership.on_loss

        def on_gain() -> None:
            self.alert_engine.reset()
            gain()

        def on_loss() -> None:
            loss()
            self.alert_engine.leader_lost(self.leadership.last_loss, self.clock())

        self.leadership.on_gain, self.leadership.on_loss = on_gain, on_loss

    def tick(self, *args: Any, **kwargs: Any) -> float:  # type: ignore[override]
        wait = super().tick(*args, **kwargs)
        leadership = self.leadership
        if leadership is not None and leadership.may_send() and self.db.ready() and \
                time.monotonic() - self._last_alerts >= self.beatx.sync_interval:
            self._last_alerts = time.monotonic()
            with signals_deferred():
                self.alert_engine.evaluate(self.clock())
        return wait

    def close(self) -> None:
        try:
            super().close()
        finally:
            if getattr(self, "webhooks", None) is not None:
                self.webhooks.close()

"""The states of a run (a row of ``beatx_runs``), shared by beat, the worker hook and the
admin API.

Beat writes ``pending`` (recorded, not yet published) then ``sent``; the worker hook
(:func:`celery_beatx.track`) writes ``started`` and an outcome.  Runs that are not sent right
away wait as ``blocked`` (a dependency has not succeeded), ``buffered`` (``overlap=
"buffer_one"``: sent when the previous run finishes) or ``waiting`` (a retry due at
``retry_at``).
"""

from __future__ import annotations

PENDING = "pending"
SENT = "sent"
STARTED = "started"
SUCCEEDED = "succeeded"
FAILED = "failed"
RETRIED = "retried"
REVOKED = "revoked"
SEND_FAILED = "send_failed"
SKIPPED = "skipped"
BLOCKED = "blocked"
BUFFERED = "buffered"
WAITING = "waiting"
STUCK = "stuck"

#: A run of the task is still on its way or executing (``overlap`` looks at these).
RUNNING = (PENDING, SENT, STARTED, RETRIED)
#: The worker may move these to ``started`` (one delivery of a task id wins; ``send_failed``
#: because a publish that raised may still have arrived, ``stuck`` because it may be late).
STARTABLE = (PENDING, SENT, RETRIED, STUCK, SEND_FAILED)
#: Outcomes after which a retry policy is consulted.
RETRYABLE = (FAILED, SEND_FAILED)
#: Runs that will still be sent by beat.
QUEUED = (BLOCKED, BUFFERED, WAITING)

#: ``beatx_runs.retry_state`` of a failed run: not decided yet (``None``), a retry is
#: scheduled, the policy's retries are used up, or the task has no retry policy.
RETRY_SCHEDULED, RETRY_EXHAUSTED, RETRY_NONE = "scheduled", "exhausted", "none"

#: Name of the ``beatx_counters`` row bumped when runs are queued outside beat (run_now,
#: backfill), so a running beat looks for them without waiting for its periodic check.
RUNS_COUNTER = "runs"

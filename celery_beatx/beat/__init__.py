"""The parts of beat's loop, each small: the heap of due times (:mod:`.heap`), the change feed
(:mod:`.feed`), the leader lease (:mod:`.lease`), outage tracking (:mod:`.outage`) and the
record -> send -> confirm path (:mod:`.dispatch`).  :class:`celery_beatx.Scheduler` wires them.
"""

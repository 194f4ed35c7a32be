"""celery-beatx: a SQL-backed Celery beat scheduler."""

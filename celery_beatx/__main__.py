"""``python -m celery_beatx --database-url URL <command>``: the ``beatx`` commands without a
Celery app (the database is given, or found as beat finds it without one)."""

from celery_beatx.cli import main

if __name__ == "__main__":
    main()

"""``celery beat`` refuses to start on an empty database when auto-migration is off."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_beat_without_auto_migrate_on_empty_db_exits_naming_migrate(make_cluster, db):
    cluster = make_cluster("redis", db, schedule={"every2": {"every": 2}})
    beat = cluster.start_beat(wait=False, E2E_AUTO_MIGRATE="0")
    status = beat.wait_exit(30)
    output = beat.output()
    assert status != 0, output
    assert "beatx migrate" in output, output
    assert "beat: loaded" not in output, output
    # Nothing was written: the database is still empty.
    engine = sa.create_engine(cluster.database_url)
    try:
        assert sa.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()
    assert not cluster.markers()

"""The alert log and the hourly statistics rotate by day and expire after keep_days; a restart
reads only the newest files it needs."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

from emowatch.deploy.live import LiveState
from emowatch.deploy.retention import DailyLog

DAY1 = datetime(2026, 12, 1, 23, 59, tzinfo=UTC)


def test_one_file_per_day_and_old_days_are_deleted(tmp_path):
    clock = [DAY1]
    log = DailyLog(tmp_path / "alerts.jsonl", keep_days=2, clock=lambda: clock[0])
    log.append({"event": "alert", "n": 1})
    clock[0] += timedelta(minutes=2)  # past midnight UTC: a new file
    log.append({"event": "alert", "n": 2})
    names = [p.name for _, p in log.files()]
    assert names == ["alerts.2026-12-01.jsonl", "alerts.2026-12-02.jsonl"]
    records, bad = log.records()
    assert [r["n"] for r in records] == [1, 2] and bad == 0
    since = datetime(2026, 12, 2, tzinfo=UTC)
    assert [r["n"] for r in log.records(since)[0]] == [2]  # a window reads only its days
    clock[0] += timedelta(days=3)
    log.append({"event": "alert", "n": 3})  # the day turned: expired files are deleted
    assert [p.name for _, p in log.files()] == ["alerts.2026-12-05.jsonl"]
    log.close()


def test_the_single_file_of_an_older_emowatch_is_read_and_expires_by_its_age(tmp_path):
    legacy = tmp_path / "alerts.jsonl"
    legacy.write_text(json.dumps({"event": "alert", "n": 0}) + "\n")
    log = DailyLog(legacy, keep_days=30)
    assert [r["n"] for r in log.records()[0]] == [0]
    old = (datetime.now(UTC) - timedelta(days=40)).timestamp()
    os.utime(legacy, (old, old))
    assert log.expire() == [legacy] and not legacy.exists()


def test_a_restart_lists_the_newest_alerts_from_the_newest_files_only(tmp_path):
    clock = [DAY1 - timedelta(days=5)]
    log = DailyLog(tmp_path / "alerts.jsonl", keep_days=30, clock=lambda: clock[0])
    for day in range(5):
        for n in range(3):
            event = {"event": "alert", "alert_id": f"d{day}-{n}", "time": clock[0].isoformat()}
            log.append(event)
        clock[0] += timedelta(days=1)
    log.append({"event": "alert_acknowledged", "alert_id": "d3-2", "by": "Ana", "time": "t"})
    log.close()
    # An unreadable old file proves the restart never opened it.
    first_day = log.files()[0][1]
    first_day.write_bytes(b"\xff\xfe not even text")
    state = LiveState(max_alerts=5)
    assert state.restore(log, keep=5) == 5
    listed = [a["alert_id"] for a in state.view()["alerts"]]
    assert listed == ["d4-2", "d4-1", "d4-0", "d3-2", "d3-1"]  # newest first
    assert state.view()["alerts"][3]["acknowledged"]["by"] == "Ana"

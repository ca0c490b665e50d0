"""smbca.stall: what a daemon reports when its stop overruns."""

import asyncio
import logging
import time

from smbca.stall import StopOverrun


def test_an_overrun_stop_names_the_task_it_waits_on_and_dumps_the_threads(tmp_path, caplog):
    dump = open(tmp_path / "threads.txt", "w+")

    async def stuck_refresh():
        await asyncio.Event().wait()

    async def scenario():
        overrun = StopOverrun("clusdisk", 0.3, stream=dump)
        task = asyncio.create_task(stuck_refresh(), name="status-loop")
        overrun.arm()
        await asyncio.sleep(0.6)
        overrun.disarm()
        task.cancel()

    with caplog.at_level(logging.WARNING, logger="smbca.stall"):
        asyncio.run(scenario())
    report = "\n".join(r.getMessage() for r in caplog.records)
    assert "clusdisk is still stopping after 0.3 s" in report
    assert "clusdisk is still stopping" in report
    assert "task status-loop" in report and "stuck_refresh" in report
    dump.seek(0)
    threads = dump.read()
    assert "Thread" in threads and "test_smbca_stall.py" in threads


def test_a_stop_in_time_reports_nothing(tmp_path, caplog):
    dump = open(tmp_path / "threads.txt", "w+")

    async def scenario():
        overrun = StopOverrun("witnessd", 0.3, stream=dump)
        overrun.arm()
        await asyncio.sleep(0.01)
        overrun.loop_done()
        overrun.disarm()

    with caplog.at_level(logging.WARNING, logger="smbca.stall"):
        asyncio.run(scenario())
    time.sleep(0.5)
    dump.seek(0)
    assert dump.read() == "" and not caplog.records

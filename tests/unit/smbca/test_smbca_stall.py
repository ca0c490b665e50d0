"""smbca.stall: what a daemon reports when its stop overruns."""

import asyncio
import logging
import time

from smbca.stall import StopOverrun


def run_stop(tmp_path, caplog, what: str, stopping_s: float, stuck: bool):
    """A stop of ``what`` that takes ``stopping_s`` (a task stuck meanwhile,
    if ``stuck``), armed at 0.3 s; the log's report and the thread dump."""
    async def stuck_refresh():
        await asyncio.Event().wait()

    with open(tmp_path / "threads.txt", "w+") as dump:
        async def scenario():
            overrun = StopOverrun(what, 0.3, stream=dump)
            task = asyncio.create_task(stuck_refresh(), name="status-loop") if stuck else None
            overrun.arm()
            await asyncio.sleep(stopping_s)
            overrun.loop_done()
            overrun.disarm()
            if task is not None:
                task.cancel()

        with caplog.at_level(logging.WARNING, logger="smbca.stall"):
            asyncio.run(scenario())
        time.sleep(0.5)                    # past the thread dump's timer either way
        dump.seek(0)
        return "\n".join(r.getMessage() for r in caplog.records), dump.read()


def test_an_overrun_stop_names_the_task_it_waits_on_and_dumps_the_threads(tmp_path, caplog):
    report, threads = run_stop(tmp_path, caplog, "clusdisk", 0.6, stuck=True)
    assert "clusdisk is still stopping after 0.3 s" in report
    assert "clusdisk is still stopping" in report
    assert "task status-loop" in report and "stuck_refresh" in report
    assert "Thread" in threads and "test_smbca_stall.py" in threads


def test_a_stop_in_time_reports_nothing(tmp_path, caplog):
    report, threads = run_stop(tmp_path, caplog, "witnessd", 0.01, stuck=False)
    assert threads == "" and not report

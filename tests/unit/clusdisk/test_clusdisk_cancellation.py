"""A stop cancels clusdisk's periodic tasks; a cancellation that arrives in
the loop iteration an awaited answer completed must still end the task
(Python 3.11's ``asyncio.wait_for`` returned the answer instead, the status
loop ran on and the daemon's stop hung until SIGKILL)."""

import asyncio
import types

import pytest

from clusdisk.pair_status import PairStatus


def test_a_cancel_that_meets_the_smbcad_answer_is_not_swallowed():
    async def scenario():
        answer = asyncio.get_running_loop().create_future()

        async def smbcad_status():
            return await answer

        ports = types.SimpleNamespace(smbcad_status=smbcad_status)
        task = asyncio.create_task(PairStatus._local_in_sync(ports))
        await asyncio.sleep(0)                   # the task now waits for smbcad
        answer.set_result({"aggregates": [{"name": "aggr1", "mirror": {"in_sync": True}}]})
        task.cancel()                            # in the same loop iteration
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())

"""The collector settings of a serving process and of a bulk process (app/collector.py), each in a
process of their own: they freeze what exists and change the process's thresholds, which a test
process must not inherit."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

from tests.server_process import ROOT

SCRIPT = textwrap.dedent(
    """
    import asyncio, gc, json
    import sys
    from app.collector import YOUNG_EVERY_SECONDS, collected_as_batches, tune_for_serving

    young = []
    gc.callbacks.append(lambda phase, info: phase == "stop" and info["generation"] == 0 and young.append(1))

    async def ticks():
        before = len(young)
        await asyncio.sleep(YOUNG_EVERY_SECONDS * 30)  # nothing allocated meanwhile: only the timer collects
        return {"young": len(young) - before, "thresholds": gc.get_threshold()}

    async def main():
        tune_for_serving(batches_only=sys.argv[1] == "batches")
        if sys.argv[1] != "loading":
            print(json.dumps(await ticks()))
            return
        with collected_as_batches():
            loading = await ticks()
        print(json.dumps({"loading": loading, "after": await ticks()}))

    asyncio.run(main())
    """
)


def _tuned(kind: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, kind], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_the_young_generation_is_collected_on_a_timer_whatever_is_allocated() -> None:
    report = _tuned("serving")
    assert report["young"] >= 10  # about 30 ticks; a loaded machine may run fewer
    assert report["thresholds"][0] == 10_000


def test_a_bulk_process_collects_far_apart() -> None:
    report = _tuned("batches")
    assert report["young"] == 0  # its timer's period is far longer than the 30 ticks waited
    assert report["thresholds"] == [1_000_000, 10, 10]


def test_a_serving_process_loading_the_demo_data_collects_as_a_bulk_process_until_it_is_in() -> None:
    report = _tuned("loading")
    assert report["loading"] == {"young": 0, "thresholds": [1_000_000, 10, 10]}
    assert report["after"]["young"] >= 10
    assert report["after"]["thresholds"] == [10_000, 2_000, 100]

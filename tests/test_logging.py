"""What applications print or log reaches the main process, tagged with app and worker."""

from __future__ import annotations

import pytest
from loguru import logger
from support import app_config, wait_for


@pytest.mark.parametrize("isolation", ["subinterpreter", "process"])
def test_print_stderr_and_logging_of_a_worker_reach_the_runtime_log(watt_runtime, isolation):
    records: list[tuple[str, str, object, object]] = []
    sink = logger.add(lambda m: records.append((m.record["level"].name, m.record["message"],
                                                m.record["extra"].get("app"),
                                                m.record["extra"].get("worker"))))
    try:
        rt = watt_runtime({"applications": [app_config("talky", isolation=isolation)]})
        assert rt.inject("talky", "GET", "/say").json() == {"said": True}
        expected = {
            ("INFO", "print from talky", "talky", 0),
            ("WARNING", "stderr from talky", "talky", 0),
            ("ERROR", "basic: logging from talky", "talky", 0),
            ("INFO", "thread print from talky", "talky", 0),
        }
        wait_for(lambda: expected <= set(records))
    finally:
        logger.remove(sink)

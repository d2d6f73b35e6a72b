"""pcmodel inside a real Jupyter kernel, whose event loop is already running."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

CELLS = [
    "import asyncio, json, threading\nimport pcmodel\nfrom pcmodel.workloads import seed_job\njob = seed_job()",
    # The sync helper in a cell: a loop is running, so it must use its private loop.
    "asyncio.get_running_loop().is_running()",
    (
        "real = pcmodel.run_job(job.function, [c._replace(seconds=c.seconds / 100) for c in job.params], workers=5)\n"
        "print(real.tasks, real.failed, real.clock)"
    ),
    # Top-level await of the primary API.
    (
        "summary = await pcmodel.run_job_async(job.function, job.params, workers=5, clock='virtual')\n"
        "print(json.dumps([summary.tasks, round(summary.elapsed, 6), round(summary.busy_time, 6)]))"
    ),
    (
        "virtual = pcmodel.run_job(job.function, job.params, workers=5, clock='virtual')\n"
        "print(virtual.elapsed == summary.elapsed == virtual.ideal_makespan)"
    ),
    (
        "task = pcmodel.start_job(job.function, job.params, workers=5, clock='virtual')\n"
        "print((await task).elapsed == summary.elapsed)"
    ),
    "print(sorted(t.name for t in threading.enumerate() if t.name.startswith('pcmodel')))",
]


@pytest.fixture
def isolated_jupyter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("IPYTHONDIR", "MPLCONFIGDIR", "JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR"):
        monkeypatch.setenv(variable, str(tmp_path / variable.lower()))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_notebook_runs_jobs_through_a_real_kernel(isolated_jupyter: None) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
    NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": os.getcwd()}}
    ).execute()
    outputs = [
        "".join(
            output.get("text", "") or output.get("data", {}).get("text/plain", "") for output in cell.outputs
        )
        for cell in notebook.cells
    ]
    errors = [output for cell in notebook.cells for output in cell.outputs if output.output_type == "error"]
    assert errors == []
    assert outputs[1] == "True"
    assert outputs[2] == "10 0 real\n"
    assert json.loads(outputs[3]) == [10, 2.682673, 10.690328]
    assert outputs[4] == "True\n"
    assert outputs[5] == "True\n"
    assert outputs[6] == "[]\n"


INTERRUPTED_CELLS = {
    "sync run_job": "pcmodel.run_job(slow, range(10_000), workers=4, on_task_complete=seen.append)",
    "top-level await": "await pcmodel.run_job_async(slow, range(10_000), workers=4, on_task_complete=seen.append)",
}


@pytest.mark.parametrize("how", sorted(INTERRUPTED_CELLS))
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_interrupt_kernel_cancels_a_real_time_job_and_the_kernel_stays_usable(
    how: str, isolated_jupyter: None
) -> None:
    import time

    from jupyter_client.manager import start_new_kernel

    manager, client = start_new_kernel(kernel_name="python3")
    try:
        setup = (
            "import asyncio, threading, pcmodel\n"
            "seen = []\n"
            "async def slow(n):\n"
            "    await asyncio.sleep(0.05)\n"
            "    return n\n"
        )
        assert client.execute_interactive(setup, timeout=60)["content"]["status"] == "ok"
        message_id = client.execute(INTERRUPTED_CELLS[how])
        # Wait until the cell runs, give the job a second, then press "Interrupt kernel".
        while True:
            status = client.get_iopub_msg(timeout=60)
            if status["msg_type"] == "status" and status["content"]["execution_state"] == "busy":
                break
        time.sleep(1.0)
        manager.interrupt_kernel()
        reply = client.get_shell_msg(timeout=60)
        while reply["parent_header"].get("msg_id") != message_id:
            reply = client.get_shell_msg(timeout=60)
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] in {"KeyboardInterrupt", "CancelledError"}
        # Right after an error the kernel drops requests already on their way ("aborted"),
        # as JupyterLab's Run All does; a person runs the next cell a moment later.
        for _ in range(100):
            if client.execute_interactive("pass", timeout=60)["content"]["status"] == "ok":
                break
            time.sleep(0.05)
        outputs: list[str] = []
        after = client.execute_interactive(
            "done = len(seen)\n"
            "leftover = [t.name for t in threading.enumerate() if t.name.startswith('pcmodel')]\n"
            "summary = pcmodel.run_job(slow, range(8), workers=8, clock='virtual')\n"
            "print(done > 0, done < 10_000, leftover, summary.elapsed)",
            timeout=60,
            output_hook=lambda msg: outputs.append(msg["content"].get("text", "")),
        )
        assert after["content"]["status"] == "ok"
        assert "".join(outputs) == "True True [] 0.05\n"
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)

"""The course's structure: every notebook indexed and chained, executed, with a widget and a
figure; every exercise labelled, with hints, a stub, a check and an explained solution that
passes it; the set-up check; 09's processes stopped however its cells run; and the instructor
guide and cheat sheet in step with the notebooks and with `run_job`.

The notebooks' outputs themselves are checked by nbval (`pytest --nbval` over notebooks/);
these tests check what nbval cannot: how the notebooks fit together.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import os
import re
import shutil
import signal
from pathlib import Path
from typing import Any

import nbclient as _nbclient
import nbformat as _nbformat
import pytest

import pcmodel

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
COURSE = [
    "00-index.ipynb",
    "01-why-concurrency.ipynb",
    "02-producer-and-work-queue.ipynb",
    "03-workers.ipynb",
    "04-result-queue-and-handler.ipynb",
    "05-controller-and-the-whole-job.ipynb",
    "06-memory-vs-wait.ipynb",
    "07-workshop-exercises.ipynb",
    "08-real-api.ipynb",
    "09-scaling-out.ipynb",
    "10-finding-the-limit.ipynb",
]
EXERCISES = "07-workshop-exercises.ipynb"
SOLUTIONS = "solutions/07-workshop-solutions.ipynb"
SETUP_CHECK = "setup-check.ipynb"  # run before the course: not numbered, not part of the chain
WIDGET = "application/vnd.jupyter.widget-view+json"
LINK = re.compile(r"\]\(([^)\s]+\.ipynb)\)")
nbformat: Any = _nbformat  # no type hints: a dynamic module
nbclient: Any = _nbclient


def _read(name: str) -> Any:
    return nbformat.read(NOTEBOOKS / name, as_version=4)


def _markdown(notebook: Any) -> str:
    return "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")


def _code_cells(notebook: Any) -> list[Any]:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def _text(cell: Any) -> str:
    """Everything a code cell printed or returned, as text."""
    parts = []
    for output in cell.outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in ("execute_result", "display_data"):
            parts.append(output.data.get("text/plain", ""))
    return "".join(parts)


def test_the_course_is_exactly_the_numbered_notebooks() -> None:
    found = sorted(path.name for path in NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))
    assert found == COURSE


def test_the_index_lists_every_notebook() -> None:
    links = set(LINK.findall(_markdown(_read(COURSE[0]))))
    missing = [name for name in [*COURSE[1:], SOLUTIONS, SETUP_CHECK] if name not in links]
    assert missing == []


@pytest.mark.parametrize(("name", "following"), list(zip(COURSE, COURSE[1:] + COURSE[:1], strict=True)))
def test_each_notebook_ends_with_a_recap_and_a_link_to_the_next(name: str, following: str) -> None:
    cells = _read(name).cells
    last = cells[-1]
    assert last.cell_type == "markdown"
    assert f"]({following})" in last.source, f"{name} should end with a link to {following}"
    assert any(cell.cell_type == "markdown" and cell.source.startswith("## Recap") for cell in cells[-2:])


@pytest.mark.parametrize("name", COURSE)
def test_each_notebook_opens_with_a_title_and_one_setup_cell(name: str) -> None:
    notebook = _read(name)
    first = notebook.cells[0]
    assert first.cell_type == "markdown"
    assert first.source.startswith("# ")
    code = _code_cells(notebook)
    assert "import pcmodel" in code[0].source
    later_imports = [
        cell.source
        for cell in code[1:]
        # A %%script cell runs in another process: its imports are its own.
        if not cell.source.startswith("%%script")
        and re.search(r"^(import|from) \S+", cell.source, re.MULTILINE)
    ]
    assert later_imports == [], f"{name}: imports belong in the setup cell"


@pytest.mark.parametrize("name", COURSE)
def test_each_notebook_has_a_widget_and_a_figure(name: str) -> None:
    outputs = [output for cell in _code_cells(_read(name)) for output in cell.outputs]
    kinds = {key for output in outputs for key in output.get("data", {})}
    assert WIDGET in kinds, f"{name} has no widget"
    assert "image/png" in kinds, f"{name} has no static figure"


@pytest.mark.parametrize("name", [*COURSE, SOLUTIONS, SETUP_CHECK])
def test_each_notebook_is_committed_executed_and_stripped(name: str) -> None:
    notebook = _read(name)
    nbformat.validate(notebook)
    assert "widgets" not in notebook.metadata, "metadata.widgets makes GitHub refuse the notebook"
    counts = []
    for cell in _code_cells(notebook):
        if cell.source.strip():
            assert cell.execution_count is not None, f"{name}: a cell was not executed:\n{cell.source}"
            counts.append(cell.execution_count)
        else:
            assert cell.outputs == []
        assert "execution" not in cell.metadata
    assert counts == sorted(counts), f"{name}: cells were not run top to bottom in one kernel"
    assert counts[0] == 1, f"{name}: not run from a fresh kernel"


@pytest.mark.parametrize("name", [*COURSE, SOLUTIONS, SETUP_CHECK])
def test_nbval_markers_are_cell_tags(name: str) -> None:
    """Learners read the code: nbval's markers go in the cell's tags, not in comments."""
    for cell in _code_cells(_read(name)):
        assert "NBVAL_" not in cell.source, f"{name}: tag the cell instead: {cell.source[:60]!r}"


def test_the_setup_check_prints_ok_lines_and_no_versions() -> None:
    """Its saved output is what a ready machine prints, and the same on every machine."""
    notebook = _read(SETUP_CHECK)
    checked = [
        cell for cell in _code_cells(notebook) if "nbval-ignore-output" not in cell.metadata.get("tags", [])
    ]
    printed = "".join(
        output.text for cell in checked for output in cell.outputs if output.output_type == "stream"
    )
    lines = printed.splitlines()
    assert any(line.startswith("OK: Python is 3.11") for line in lines)
    assert lines[-1].startswith("All set"), lines[-1]
    for line in lines[:-1]:
        assert line.startswith("OK: "), line
        assert not re.search(r"\d+\.\d+\.\d+", line), f"a version differs between machines: {line}"
    kinds = {key for cell in checked for output in cell.outputs for key in output.get("data", {})}
    assert {WIDGET, "image/png"} <= kinds, "the check shows a widget and a figure, to see them render"


def test_the_setup_check_says_how_to_fix_each_problem() -> None:
    source = "\n".join(cell.source for cell in _code_cells(_read(SETUP_CHECK)))
    assert "Fix: {fix}" in source
    checks = re.findall(r"^report\(", source, re.MULTILINE) + re.findall(
        r"^    report\(", source, re.MULTILINE
    )
    assert len(checks) >= 6
    assert 'report(True, "await works in a cell", "")' in source  # the only check that cannot fail quietly


def test_cells_that_fail_on_purpose_are_tagged() -> None:
    for name in COURSE:
        for cell in _code_cells(_read(name)):
            errors = [output for output in cell.outputs if output.output_type == "error"]
            tagged = "raises-exception" in cell.metadata.get("tags", [])
            assert bool(errors) == tagged, f"{name}: {cell.source!r}"


STARS = re.compile(r"\*\*(★+)☆*\s+(easy|medium|hard) · about (\d+) minutes · (core|optional)")
CORE_MINUTES = 45  # 07's slot in the three-hour agenda (docs/instructor-guide.md), core exercises only


def _exercises(notebook: Any) -> list[tuple[str, Any, Any, Any]]:
    """(heading, statement cell, answer cell, check cell) for each `### Exercise` of a notebook."""
    cells = notebook.cells
    found = []
    for index, cell in enumerate(cells):
        if cell.cell_type == "markdown" and cell.source.startswith("### Exercise"):
            heading = cell.source.splitlines()[0]
            answer, check = cells[index + 1], cells[index + 2]
            assert answer.cell_type == check.cell_type == "code", heading
            found.append((heading, cell, answer, check))
    return found


def _label(heading: str, statement: Any) -> tuple[int, int, str]:
    """(stars, minutes, "core" or "optional") from an exercise's label line."""
    match = STARS.search(statement.source)
    assert match, f"{heading}: no label such as **★☆☆ easy · about 4 minutes · core**"
    stars, _, minutes, kind = match.groups()
    return len(stars), int(minutes), kind


def test_there_are_at_least_six_exercises_across_the_stages() -> None:
    exercises = _exercises(_read(EXERCISES))
    assert len(exercises) >= 6
    statements = _markdown(_read(EXERCISES))
    for stage in COURSE[1:7]:
        assert f"]({stage})" in statements, f"no exercise points to {stage}"


def test_exercises_are_labelled_and_ordered_from_easy_to_hard() -> None:
    labels = [_label(heading, statement) for heading, statement, _, _ in _exercises(_read(EXERCISES))]
    stars = [label[0] for label in labels]
    assert stars == sorted(stars), f"difficulty should never go down: {stars}"
    assert stars[-1] == 3, "the hardest exercise comes last"
    core = [minutes for _, minutes, kind in labels if kind == "core"]
    assert 0 < sum(core) <= CORE_MINUTES, f"the core exercises take {sum(core)} min, more than 07's slot"


def test_each_exercise_has_hints_and_a_link_to_its_explained_solution() -> None:
    solutions = {heading: statement for heading, statement, _, _ in _exercises(_read(SOLUTIONS))}
    for heading, statement, _, _ in _exercises(_read(EXERCISES)):
        hints = re.findall(r"<details><summary>Hint \d</summary>", statement.source)
        assert len(hints) >= 2, f"{heading}: two folded hints, please"
        assert statement.source.count("<details>") == statement.source.count("</details>"), heading
        link = re.search(r"\]\((solutions/07-workshop-solutions\.ipynb#[\w-]+)\)", statement.source)
        assert link, f"{heading}: no link to its solution"
        assert heading in solutions, f"{heading}: not in the solutions notebook"


def test_each_exercise_has_a_stub_and_a_check_that_says_not_yet() -> None:
    for heading, _, answer, check in _exercises(_read(EXERCISES)):
        assert answer.source.strip(), f"{heading}: the answer cell holds a stub to start from"
        assert "pass  #" in answer.source or "# run" in answer.source, f"{heading}: the stub says what to do"
        assert "check(" in check.source, heading
        assert _text(check).startswith("✗ "), f"{heading}: the stub must not pass its check"


def test_each_exercise_has_a_solution_that_passes_the_same_check_and_says_why() -> None:
    exercises = _exercises(_read(EXERCISES))
    notebook = _read(SOLUTIONS)
    solutions = _exercises(notebook)
    assert [heading for heading, *_ in solutions] == [heading for heading, *_ in exercises]
    for (heading, _, stub, check), (_, _, solution, solved_check) in zip(exercises, solutions, strict=True):
        assert solution.source.strip() != stub.source.strip(), f"{heading}: no solution"
        assert solved_check.source == check.source, f"{heading}: the solution must be checked the same way"
        assert _text(solved_check).startswith("✓ "), (
            f"{heading}: the solution does not pass: {_text(solved_check)}"
        )
        after = notebook.cells[notebook.cells.index(solved_check) + 1]
        assert after.cell_type == "markdown", heading
        assert after.source.startswith("**Why it works.**"), f"{heading}: say why the solution works"


def test_an_exercise_practises_timeouts_and_retries() -> None:
    solutions = "\n".join(answer.source for _, _, answer, _ in _exercises(_read(SOLUTIONS)))
    assert "asyncio.timeout(" in solutions
    assert "raise" in solutions


@pytest.mark.parametrize("name", [EXERCISES, SOLUTIONS])
def test_the_exercise_checks_leave_nothing_behind(name: str) -> None:
    """A check must retrieve every task it starts: an exception never retrieved is logged
    later, in whichever cell happens to run then."""
    for cell in _code_cells(_read(name)):
        for output in cell.outputs:
            assert output.get("name") != "stderr", f"{name}: {cell.source[:60]!r} wrote to stderr"
            assert "never retrieved" not in output.get("text", ""), name


def test_the_solutions_link_back_to_the_exercises() -> None:
    assert "](../07-workshop-exercises.ipynb)" in _markdown(_read(SOLUTIONS))


def test_a_notebook_that_starts_the_car_price_api_stops_it() -> None:
    """A server left running would keep its port and its tasks in the learner's kernel."""
    starting = [
        name for name in COURSE if "CarAPIServer(" in "\n".join(c.source for c in _code_cells(_read(name)))
    ]
    assert starting, "the course should call a real HTTP API somewhere"
    for name in starting:
        cells = _code_cells(_read(name))
        first = next(i for i, cell in enumerate(cells) if "CarAPIServer(" in cell.source)
        assert any("server running: False" in _text(cell) for cell in cells[first:]), name


def test_a_live_slider_turns_a_knob_of_a_running_job() -> None:
    """The browser suite re-runs each cell that binds a slider to `handle.set_workers`, moves the
    slider and reads the running job's limit from its live figures ("limit N: ...", see
    `check_live_knobs` in tests/e2e/test_course_notebooks.py). Without such a cell that check
    would pass by checking nothing; each one also needs a Stop button, to end its job, and its
    nbval-ignore-output tag, since its figures come from the real clock."""
    live = [
        (name, cell)
        for name in COURSE
        for cell in _code_cells(_read(name))
        if ".set_workers(" in cell.source and ".observe(" in cell.source
    ]
    assert live, "no notebook binds a slider to a running job's knob"
    for name, cell in live:
        assert ".attach(" in cell.source, f"{name}: the live job needs a LiveProgress with its buttons"
        assert "stop=" in cell.source, f"{name}: the live job needs a Stop button (a StopSignal)"
        assert "nbval-ignore-output" in cell.metadata.get("tags", []), f"{name}: tag the real-clock cell"
        source = "\n".join(c.source for c in _code_cells(_read(name)))
        assert 'f"limit {stats.limit}:' in source, f"{name}: the live figures must show the job's limit"


GUIDE = NOTEBOOKS.parent / "docs" / "instructor-guide.md"
AGENDA_ROW = re.compile(r"^\| *(\d+):(\d\d) *\| *(\d*) *\| *(.+?) *\| *(\d*) *\|", re.MULTILINE)
TIMING = re.compile(r"\*Timing: (?:about )?(\d+) minutes")


def test_the_instructor_guide_agenda_fills_three_hours_and_agrees_with_the_notebooks() -> None:
    rows = AGENDA_ROW.findall(GUIDE.read_text(encoding="utf-8"))
    assert rows, "no agenda table in the instructor guide"
    clock = 0
    covered = []
    for hours, minutes, length, part, own in rows:
        assert int(hours) * 60 + int(minutes) == clock, (
            f"{part}: starts at {hours}:{minutes}, not at {clock} min"
        )
        clock += int(length or 0)
        link = re.search(r"\(\.\./notebooks/([\w.-]+\.ipynb)\)", part)
        if link:
            covered.append(link.group(1))
            timing = TIMING.search(_read(link.group(1)).cells[0].source)
            assert timing, f"{link.group(1)}: no timing line under its title"
            assert own == timing.group(1), (
                f"{link.group(1)}: the guide says {own} min, the notebook {timing.group(1)}"
            )
    assert clock == 180, f"the agenda lasts {clock} minutes, not three hours"
    assert covered == COURSE[:8], f"the core path is 00 to 07, in order: {covered}"


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="09's processes need redis-server")
def test_scaling_out_stops_its_processes_when_run_twice_and_at_exit() -> None:
    """09 starts a Redis server and two worker processes. Running its cells a second time must
    replace them, not add more; and the kernel's exit must stop them even if the clean-up cell
    never ran (a cell failed first)."""
    code = [cell.source for cell in _code_cells(_read(COURSE[9]))]
    setup, server, workers = code[0], code[1], code[2]
    assert "servers.append(" in server, "the server cell moved: update this test"
    assert "workers +=" in workers, "the workers cell moved: update this test"
    probe = "import json\nprint(json.dumps([[p.pid, p.poll()] for p in servers + workers]))"
    # Record what the notebook registers with atexit, to run it as the kernel's exit would
    # (running atexit's whole list here would also close the kernel's own sockets).
    spy = "import atexit\nregistered = []\natexit.register = lambda f, *a: registered.append((f, a)) or f\n"
    at_exit = "assert registered, 'nothing registered with atexit'\nfor function, args in registered:\n    function(*args)\n"
    cells = [
        spy + setup,
        server,
        workers,
        probe,
        server,
        workers,
        workers,
        probe,
        at_exit + probe,
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    client = nbclient.NotebookClient(
        notebook, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    try:
        client.execute()
    finally:
        printed = [_text(cell) for cell in notebook.cells if "json.dumps" in cell.source]
        seen = {pid for text in printed if text for pid, _ in json.loads(text)}
        for pid in seen:  # whatever the test found, leave nothing behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    first, second, after_exit = (json.loads(text) for text in printed)
    assert len(first) == len(second) == 3, "one server and two workers, however often the cells run"
    assert all(status is None for _, status in first + second), "every process ran until stopped"
    assert not {pid for pid, _ in first} & {pid for pid, _ in second}, "the second run replaced the first's"
    assert after_exit == [], "the exit handler stopped the server and the workers, and forgot them"
    left = [pid for pid, _ in first + second if _running(pid)]
    assert left == [], "processes still running"


def _running(pid: int) -> bool:
    """True if process `pid` exists and is not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


CHEAT_SHEET = NOTEBOOKS.parent / "docs" / "cheat-sheet.md"


def test_the_cheat_sheet_lists_every_run_job_option_with_its_default() -> None:
    text = CHEAT_SHEET.read_text(encoding="utf-8")
    options = inspect.signature(pcmodel.run_job).parameters.values()
    for option in (option for option in options if option.kind is option.KEYWORD_ONLY):
        default = repr(option.default).replace("'", '"')
        assert f"| `{option.name}` | `{default}` |" in text, (
            f"run_job's {option.name}={default} is not listed"
        )


def test_the_cheat_sheet_names_every_field_of_the_records() -> None:
    text = CHEAT_SHEET.read_text(encoding="utf-8")
    fields = [field.name for field in dataclasses.fields(pcmodel.JobSummary)] + list(
        pcmodel.TaskResult._fields
    )
    assert [name for name in fields if f"`{name}`" not in text] == []


def test_the_cheat_sheet_names_every_cause_of_a_limit_change() -> None:
    """Every cause `pcmodel.records.LimitChange.cause` documents, in the `limit_changes` row."""
    row = next(
        line for line in CHEAT_SHEET.read_text(encoding="utf-8").splitlines() if "| `limit_changes` |" in line
    )
    documented = inspect.getsource(pcmodel.records.LimitChange).split("cause: str", 1)[1].split('"""')[1]
    causes = sorted(set(re.findall(r'"([a-z_]+)"', documented)))
    assert causes == ["congestion", "gradient", "grow", "set_workers", "start"]
    assert [cause for cause in causes if f'`"{cause}"`' not in row] == []

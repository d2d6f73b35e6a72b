"""The pipeline diagram names every piece and the module that holds it."""

from __future__ import annotations

from pcmodel.pipeline_diagram import plot_pipeline


def test_plot_pipeline_names_every_piece() -> None:
    fig = plot_pipeline()
    text = " ".join(t.get_text() for t in fig.axes[0].texts)
    # The workers put rows of fields; the handler builds the TaskResult (as worker.py says).
    assert "builds a\nTaskResult" in text
    assert "row of fields" in text
    for piece in (
        "producer.py",
        "work queue",
        "worker.py",
        "result queue",
        "result_handler.py",
        "controller.py",
    ):
        assert piece in text

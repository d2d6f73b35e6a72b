"""The map of pcmodel's pieces: producers, work queue, workers, result queue, result handler.

A diagram, not data: `plot_pipeline` draws the pipeline the notebooks build, each box naming
the module that holds its piece, inside the controller that starts and stops them all. It is
the first figure of the course and of the README (`assets/pipeline.png`). Import it from
`pcmodel.timeline`, the one import path of every plot.

matplotlib is imported inside the function, only when the figure is drawn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_pipeline"]


def plot_pipeline() -> Figure:
    """Draw the map of pcmodel's pieces: producers, work queue, workers, result queue, handler.

    The controller, which starts and stops every piece, frames the pipeline; each box names
    the module that holds the piece.

    Returns:
        The figure.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    fig = Figure(figsize=(11, 4.6), layout="constrained")
    ax = fig.subplots()
    ax.set_xlim(0, 110)
    ax.set_ylim(0, 46)
    ax.axis("off")

    def box(x: float, y: float, w: float, h: float, text: str, color: str, *, size: float = 9) -> None:
        ax.add_patch(
            FancyBboxPatch(
                (x, y), w, h, boxstyle="round,pad=0.6", facecolor=color, edgecolor="#333333", linewidth=1
            )
        )
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size)

    def arrow(start: tuple[float, float], end: tuple[float, float], text: str = "") -> None:
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, color="#333333"))
        if text:
            ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 1.6, text, ha="center", fontsize=8)

    def queue(x: float, y: float, slots: int, filled: int, label: str) -> None:
        for slot in range(slots):
            color = "#F2C894" if slot >= slots - filled else "white"
            ax.add_patch(
                FancyBboxPatch(
                    (x + slot * 2.6, y),
                    2.2,
                    5,
                    boxstyle="square,pad=0",
                    facecolor=color,
                    edgecolor="#333333",
                    linewidth=0.8,
                )
            )
        ax.text(x + slots * 1.3, y - 2.6, label, ha="center", va="top", fontsize=8.5)

    ax.add_patch(
        FancyBboxPatch(
            (1, 1),
            108,
            36,
            boxstyle="round,pad=0.4",
            facecolor="#F4F4F4",
            edgecolor="#999999",
            linestyle="--",
        )
    )
    ax.text(
        3,
        34.5,
        "controller.py: checks the arguments, wires the queues, starts every piece in a TaskGroup,\n"
        "waits for the drain, stops the pieces, builds the JobSummary",
        fontsize=8.5,
        va="top",
        color="#444444",
    )
    box(3, 15, 12, 8, "params\n(iterable or\nasync iterable)", "white", size=8)
    box(20, 15, 12, 8, "producer(s)\nproducer.py", "#DCE6F2")
    queue(37, 16.5, 6, 4, "work queue\n(bounded: queue_size)")
    lane_y = [24.0, 15.5, 7.0]  # worker 0 on top, as in the timelines
    for lane, y in enumerate(lane_y):
        box(59, y, 11, 5, f"worker {lane}\nworker.py", "#C9D9EE", size=8)
    ax.text(64.5, 4.2, "workers = N", ha="center", fontsize=8)
    queue(75, 16.5, 5, 2, "result queue")
    box(91, 15, 15, 8, "result handler\nresult_handler.py", "#D5EBD9")
    arrow((15.8, 19), (19.4, 19))
    arrow((32.6, 19), (36.4, 19))
    ax.text(34.5, 25.5, "put: waits\nwhen full", ha="center", fontsize=8)
    for y in lane_y:
        arrow((53, 19), (58.4, y + 2.5))
        arrow((70.6, y + 2.5), (74.4, 19))
    # Workers put a row of fields (records.Row); the handler builds the TaskResult from it.
    ax.text(75, 25.5, "row of fields\n(value or error, times)", ha="left", fontsize=8)
    arrow((88.4, 19), (90.4, 19))
    box(86, 40, 22, 4.5, "on_task_complete(result)", "#D5EBD9", size=8.5)
    box(52, 40, 28, 4.5, "JobSummary -> on_job_complete(summary)", "#EFE3C8", size=8.5)
    arrow((98.5, 23.8), (97, 39.3))
    ax.text(96.8, 31.5, "builds a\nTaskResult", ha="right", va="center", fontsize=8)
    arrow((55, 36.8), (60, 39.3))
    ax.text(64.5, 31.5, "function(params)", ha="center", fontsize=8, style="italic")
    fig.suptitle("pcmodel: the producer-consumer pipeline", fontsize=12)
    return fig

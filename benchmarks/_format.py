"""Markdown helpers for the results file."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None) -> str:
    """A Markdown table; `align` has one letter per column, "l" or "r" (default: first l)."""
    if align is None:
        align = "l" + "r" * (len(headers) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def rate(value: float) -> str:
    """A rate such as 312,400 (no decimals)."""
    return f"{value:,.0f}"


def ratio(value: float | None) -> str:
    """A ratio with two decimals, or a dash."""
    return "-" if value is None else f"{value:.2f}"


def spread(low: float, high: float) -> str:
    """The spread of the rounds around the median, in percent."""
    return f"{(low - 1) * 100:+.0f}% / {(high - 1) * 100:+.0f}%"


def verdict(met: bool) -> str:
    """ "met" or "NOT met"."""
    return "met" if met else "**NOT met**"


def throughput_table(first: str, rows: Sequence[Mapping[str, Any]]) -> str:
    """A throughput table: name, tasks/s, CPU-time ratio and spread, wall-time ratio and spread."""
    return table(
        [first, "tasks/s", "ratio", "spread", "ratio (wall)", "spread (wall)"],
        [
            [
                r["name"],
                rate(r["tasks_per_s"]),
                ratio(r["ratio"]),
                spread(*r["spread"]),
                ratio(r["ratio_wall"]),
                spread(*r["spread_wall"]),
            ]
            for r in rows
        ],
    )

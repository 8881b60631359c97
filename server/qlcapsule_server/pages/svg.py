"""Geometry of the server-drawn SVG: the lineage graph and the charts.

Only numbers are computed here; the templates write the SVG elements, so every text in a graph (a version, a
tag, a provider) goes through Jinja's autoescaping like the rest of the page. The graphs work without
JavaScript, and each is paired on its page with a table of the same data (colour is never the only signal).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ROW = 28
LANE = 18
PAD = 12


@dataclass
class Node:
    version: str
    digest: str
    lane: int
    row: int
    tags: list[str]
    branches: list[str]
    status: str

    @property
    def x(self) -> int:
        return PAD + self.lane * LANE

    @property
    def y(self) -> int:
        return PAD + self.row * ROW


@dataclass
class Lineage:
    nodes: list[Node]
    #: (x1, y1, x2, y2) of each edge, child to parent; a parent outside the page gets a short edge down
    edges: list[tuple[int, int, int, int]]
    lanes: int
    width: int
    height: int
    merges: int = 0
    labels_x: int = field(default=0)


def lineage(versions: list[dict[str, Any]]) -> Lineage:
    """Lay out versions (newest first, each with ``commit`` and parent commits) in lanes like ``git log
    --graph``: a version continues the lane that expects its commit; a merge's other parents get lanes."""
    expected: list[str | None] = []  # the commit each lane waits for
    nodes: list[Node] = []
    at: dict[str, Node] = {}
    for row, v in enumerate(versions):
        key = v.get("commit") or f"digest:{v['digest']}"
        lanes = [i for i, c in enumerate(expected) if c == key]
        if lanes:
            lane = lanes[0]
            for other in lanes[1:]:
                expected[other] = None  # two lanes converge here (a branch point)
        else:
            lane = _free(expected)
        parents = [p for p in v.get("parents") or [] if isinstance(p, str)]
        expected[lane] = parents[0] if parents else None
        for parent in parents[1:]:
            if parent not in expected:
                expected[_free(expected)] = parent
        node = Node(
            v["version"],
            v["digest"],
            lane,
            row,
            list(v.get("tags") or []),
            list(v.get("branches") or []),
            v.get("signature", {}).get("status", ""),
        )
        nodes.append(node)
        at[key] = node
    edges: list[tuple[int, int, int, int]] = []
    merges = 0
    for v, node in zip(versions, nodes, strict=True):
        parents = [p for p in v.get("parents") or [] if isinstance(p, str)]
        merges += len(parents) > 1
        for parent in parents:
            target = at.get(parent)
            if target is not None:
                edges.append((node.x, node.y, target.x, target.y))
            else:
                edges.append((node.x, node.y, node.x, node.y + ROW // 2))
    width = max((n.lane for n in nodes), default=0) + 1
    labels_x = PAD + width * LANE + 4
    return Lineage(nodes, edges, width, labels_x + 360, PAD * 2 + max(len(nodes) - 1, 0) * ROW + 8, merges, labels_x)


def _free(expected: list[str | None]) -> int:
    for i, c in enumerate(expected):
        if c is None:
            return i
    expected.append(None)
    return len(expected) - 1


@dataclass
class Chart:
    """A chart in a 600 x 200 box with its left/bottom margins; ``marks`` are ready-made shapes."""

    width: int = 600
    height: int = 220
    left: int = 44
    bottom: int = 30
    top: int = 10
    marks: list[dict[str, Any]] = field(default_factory=list)
    ticks: list[dict[str, Any]] = field(default_factory=list)
    labels: list[dict[str, Any]] = field(default_factory=list)
    line: str = ""

    @property
    def plot_height(self) -> int:
        return self.height - self.bottom - self.top

    @property
    def plot_width(self) -> int:
        return self.width - self.left - 10


def score_line(points: list[tuple[str, float | None]]) -> Chart:
    """Scores (0..1) in time order as a polyline with a dot per version (its label in the dot's title)."""
    chart = Chart()
    known = [(label, s) for label, s in points if s is not None]
    step = chart.plot_width / max(len(known) - 1, 1)
    coords = []
    for i, (label, score) in enumerate(known):
        x = chart.left + i * step
        y = chart.top + (1 - max(0.0, min(1.0, score))) * chart.plot_height
        coords.append(f"{x:.1f},{y:.1f}")
        chart.marks.append({"x": round(x, 1), "y": round(y, 1), "label": label, "value": score})
    chart.line = " ".join(coords)
    for v in (0.0, 0.5, 1.0):
        chart.ticks.append({"y": round(chart.top + (1 - v) * chart.plot_height, 1), "text": f"{v:.1f}"})
    return chart


def stacked_bars(groups: list[tuple[str, dict[str, int]]], keys: list[str]) -> Chart:
    """One bar per group (a day, a cause), stacked by ``keys`` in that order (the legend's order)."""
    chart = Chart()
    top = max((sum(counts.values()) for _, counts in groups), default=0) or 1
    slot = chart.plot_width / max(len(groups), 1)
    width = max(min(slot * 0.8, 40), 2)
    for i, (label, counts) in enumerate(groups):
        x = chart.left + i * slot + (slot - width) / 2
        base = float(chart.top + chart.plot_height)
        for k, key in enumerate(keys):
            n = counts.get(key, 0)
            if not n:
                continue
            h = n / top * chart.plot_height
            base -= h
            chart.marks.append(
                {
                    "x": round(x, 1),
                    "y": round(base, 1),
                    "w": round(width, 1),
                    "h": round(h, 1),
                    "key": key,
                    "index": k,
                    "label": label,
                    "value": n,
                }
            )
        if len(groups) <= 12 or i % max(len(groups) // 6, 1) == 0:
            chart.labels.append({"x": round(x + width / 2, 1), "text": label})
    for v in (0, top // 2, top):
        chart.ticks.append({"y": round(chart.top + (1 - v / top) * chart.plot_height, 1), "text": str(v)})
    return chart

"""The geometry behind the pages' SVG: the lineage lanes and the charts' marks (pure functions, no server)."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the catalog pages need the [server] extra")

from qlcapsule_server.pages import svg  # noqa: E402


def _v(version: str, commit: str | None, *parents: str) -> dict[str, Any]:
    return {"version": version, "digest": version * 8, "commit": commit, "parents": list(parents), "tags": []}


def test_a_branch_gets_its_own_lane_and_a_merge_joins_it_back() -> None:
    # newest first: m merges b (on a branch) into a2; both grew from a1
    graph = svg.lineage([_v("m", "M", "A2", "B"), _v("a2", "A2", "A1"), _v("b", "B", "A1"), _v("a1", "A1")])
    lanes = {n.version: n.lane for n in graph.nodes}
    assert lanes == {"m": 0, "a2": 0, "b": 1, "a1": 0}
    assert graph.merges == 1 and graph.lanes == 2
    assert len(graph.edges) == 4  # m->a2, m->b, a2->a1, b->a1
    by_version = {n.version: n for n in graph.nodes}
    assert (by_version["m"].x, by_version["m"].y, by_version["b"].x, by_version["b"].y) in graph.edges


def test_a_parent_outside_the_page_gets_a_short_edge_and_unknown_commits_still_draw() -> None:
    graph = svg.lineage([_v("2", "C2", "C1"), _v("x", None)])
    assert [n.lane for n in graph.nodes] == [0, 1]
    (edge,) = graph.edges
    assert edge[0] == edge[2] and edge[3] - edge[1] == svg.ROW // 2
    assert svg.lineage([]).nodes == []


def test_charts_scale_to_their_box() -> None:
    bars = svg.stacked_bars([("d1", {"delivered": 3, "failed": 1}), ("d2", {"delivered": 2})], ["delivered", "failed"])
    tallest = sum(m["h"] for m in bars.marks if m["label"] == "d1")
    assert tallest == pytest.approx(bars.plot_height, abs=0.2)
    assert [m["key"] for m in bars.marks] == ["delivered", "failed", "delivered"]
    line = svg.score_line([("1.0", 1.0), ("1.1", None), ("1.2", 0.0)])
    assert [m["label"] for m in line.marks] == ["1.0", "1.2"]  # a version without a score is not plotted
    assert line.marks[0]["y"] == line.top and line.marks[1]["y"] == line.top + line.plot_height

"""``qlcapsule new`` run again on what it generated is a no-op, so the README's first line works twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_new_on_its_own_output_with_the_same_answers_touches_nothing(
    qlcapsule_cli, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    first = qlcapsule_cli("new", "fastapi-service", "orders", "--no-input", "--set", "port=9000", "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["result"]["created"] is True
    (tmp_path / "orders" / "main.py").write_text("# my edit\n")  # the user's work since: never overwritten
    before = _tree(tmp_path / "orders")
    again = qlcapsule_cli("new", "fastapi-service", "orders", "--no-input", "--set", "port=9000", "--json")
    assert again.exit_code == 0, again.output
    result = json.loads(again.stdout)["result"]
    assert result["created"] is False and result["capsule"] == "orders"
    plain = qlcapsule_cli("new", "fastapi-service", "orders", "--no-input")  # unspecified answers: any recorded
    assert plain.exit_code == 0 and "nothing to do, no file touched" in plain.stdout
    assert _tree(tmp_path / "orders") == before


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["new", "fastapi-service", "orders", "--no-input", "--set", "port=8001"], "another answer"),
        (["new", "fastapi-service", "orders", "--no-input", "--set", "nosuch=1"], "an answer never recorded"),
        (["new", "./elsewhere", "orders", "--no-input"], "another template"),
    ],
)
def test_new_still_refuses_a_capsule_generated_otherwise(qlcapsule_cli, tmp_path: Path, monkeypatch, argv, why) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    assert qlcapsule_cli("new", "fastapi-service", "orders", "--no-input", "--set", "port=9000").exit_code == 0
    before = _tree(tmp_path / "orders")
    res = qlcapsule_cli(*argv)
    assert res.exit_code == 2, why
    assert "already exists and is not an empty directory" in res.stderr and "qlcapsule update orders" in res.stderr
    assert _tree(tmp_path / "orders") == before


def test_new_refuses_a_plain_directory_without_a_hint_to_update(qlcapsule_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("mine\n")
    res = qlcapsule_cli("new", "fastapi-service", str(tmp_path / "d"), "--no-input")
    assert res.exit_code == 2 and "update" not in res.stderr
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["notes.txt"]

"""The secrets validator measured against detect-secrets on the same labelled files (docs/validation.md).

Each case is one file that holds a live-looking secret (``SECRETS``) or a
decoy a scanner should leave alone (``DECOYS``); the cases and where each
came from are in secrets_corpus.py. A scanner *finds* a secret
file when it reports anything in it, *misses* it otherwise; any report on a
decoy is a false positive. detect-secrets runs through its Python API with
its default settings (every plugin, its default filters). Our figures are held as floors (found) and ceilings
(false positives); detect-secrets' are printed beside them.
"""

from __future__ import annotations

from pathlib import Path

from detect_secrets import SecretsCollection
from detect_secrets.settings import default_settings
from secrets_corpus import DECOYS, MORE_DECOYS, MORE_SECRETS, SECRETS
from vcase import findings

from qlcapsule import Severity

#: our figures (docs/validation.md): floors for what is found, ceilings for false positives; the first
#: measurement (before the JWT, Slack webhook, Twilio, npm, Azure and keyword rules) found 13 of the 20
OURS_FOUND, OURS_FALSE = 20, 0
MORE_FOUND = 18


def _ours(tmp_path: Path, cases: list[tuple[str, str]]) -> set[str]:
    """The files holding a finding at warning or error (the severities that can fail a run)."""
    found = findings(tmp_path, dict(cases), "secrets")
    return {f.path for f in found if f.severity in (Severity.ERROR, Severity.WARNING)}


def _detect_secrets(tmp_path: Path, cases: list[tuple[str, str]]) -> set[str]:
    folder = tmp_path / "ds"
    folder.mkdir(parents=True)
    for name, text in cases:
        (folder / name).write_text(text)
    flagged = set()
    with default_settings():
        for name, _ in cases:
            collection = SecretsCollection()
            collection.scan_file(str(folder / name))
            if any(True for _ in collection):
                flagged.add(name)
    return flagged


def _measure(
    tmp_path: Path, secrets: list[tuple[str, str]], decoys: list[tuple[str, str]]
) -> tuple[set[str], set[str]]:
    """Ours and detect-secrets' figures, printed; ours returned (files found, decoys flagged)."""
    names = [n for n, _ in secrets + decoys]
    assert len(set(names)) == len(names)
    print()
    for scanner, scan in (("qlcapsule", _ours), ("detect-secrets", _detect_secrets)):
        found, false = scan(tmp_path / scanner / "s", secrets), scan(tmp_path / scanner / "d", decoys)
        print(f"{scanner}: found {len(found)}/{len(secrets)}, false positives {len(false)}/{len(decoys)}")
        print(f"  missed: {sorted(n for n, _ in secrets if n not in found)}; false: {sorted(false)}")
        if scanner == "qlcapsule":
            ours = found, false
    return ours


def test_found_missed_and_false_positives_against_detect_secrets(tmp_path):
    found, false = _measure(tmp_path, SECRETS, DECOYS)
    assert len(found) >= OURS_FOUND
    assert len(false) <= OURS_FALSE


def test_the_new_kinds_on_other_scanners_test_data(tmp_path):
    """Shapes from gitleaks' and detect-secrets' own tests and from real files (sources in secrets_corpus.py)."""
    found, false = _measure(tmp_path, [c[:2] for c in MORE_SECRETS], [c[:2] for c in MORE_DECOYS])
    assert len(found) >= MORE_FOUND
    assert false == set()

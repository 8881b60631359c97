"""names.py: the format's light constants and the one SemVer ordering."""

from __future__ import annotations

import pytest

from qlcapsule.errors import InputError
from qlcapsule.format.names import semver_key


def test_semver_key_orders_by_semver_precedence() -> None:
    # the example list of semver.org, section 11, plus numeric identifiers compared as numbers
    order = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.0.1",
        "1.9.0",
        "1.10.0",
        "2.0.0",
    ]
    assert sorted(reversed(order), key=semver_key) == order  # noqa: C414 - from the reverse order on purpose
    assert semver_key("1.0.0+build.1") == semver_key("1.0.0")  # build metadata has no precedence


@pytest.mark.parametrize("bad", ["", "1.0", "v1.0.0", "1.0.0\n", "01.0.0", "latest"])
def test_semver_key_refuses_what_is_not_semver(bad: str) -> None:
    """Bad input (exit 2), never quietly sorted first: the store once ranked such a string lowest."""
    with pytest.raises(InputError, match="is not a SemVer 2.0.0 version") as info:
        semver_key(bad)
    assert info.value.exit_code == 2


def test_every_module_uses_the_one_semver_key() -> None:
    from qlcapsule.signing import signatures as signing
    from qlcapsule.store import merge
    from qlcapsule.store import versions as store

    assert signing.semver_key is store.semver_key is merge.semver_key is semver_key

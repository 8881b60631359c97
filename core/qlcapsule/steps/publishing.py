"""``ship --publish URL``'s live half: the catalog hears of a version before its deliveries, then of each
delivery step as it happens.

:class:`LivePublisher` is the :class:`qlcapsule.steps.ship.ShipWatcher` the CLI hands to ``ship``. When a
capsule is ready to deliver (sealed, validated, signed, committed) it publishes it through
``qlcapsule_publish`` (the same publication the final publish sends, before any artifact or receipt: the
catalog merges them when the final publish brings them); then it sends each delivery step through
``qlcapsule_publish_status``. pluggy dispatches both (:mod:`qlcapsule.plugins.manager`).

Best effort, by design: a delivery must neither fail nor wait long because the catalog is down. Each call is
one request bounded by :data:`LIVE_TIMEOUT` seconds (no retry); the first failure is reported once, as a
``warning:`` line on stderr and in :meth:`LivePublisher.to_dict`, and nothing more is sent live in this run.
The final publish after shipping still sends the whole report and keeps its own retries and exit codes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TextIO

from ..errors import QlcapsuleError
from ..log import event, get_logger, scrub
from ..plugins.manager import Registry, registry

__all__ = ["LIVE_TIMEOUT", "LivePublisher"]

log = get_logger("ship.publish")

#: seconds one live request may take before the catalog is given up on for the run
LIVE_TIMEOUT = 5.0


class LivePublisher:
    """Publish each capsule when its deliveries start, then their steps, to the catalog at ``url``.

    ``registry`` defaults to the plugin registry (built on first use); ``stream`` gets the one warning line
    (default: stderr).
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = LIVE_TIMEOUT,
        registry: Registry | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self.url, self._token, self.timeout = url, token, timeout
        self._registry = registry
        self._stream = stream
        #: ``name@version`` of each capsule published before its deliveries
        self.published: list[str] = []
        #: delivery steps the catalog recorded
        self.statuses = 0
        #: the first problem (then nothing more is sent live), else None
        self.warning: str | None = None

    def ready(self, index: int, capsule: dict[str, Any]) -> None:
        ref = f"{capsule.get('name')}@{capsule.get('version')}"
        if self._send(lambda reg: reg.publish(self.url, self._token, {"capsules": [capsule]}, timeout=self.timeout)):
            self.published.append(ref)

    def delivery(self, index: int, status: dict[str, Any]) -> None:
        if self._send(lambda reg: reg.publish_status(self.url, self._token, status, timeout=self.timeout)):
            self.statuses += 1

    def to_dict(self) -> dict[str, Any]:
        """What ``ship --json`` reports as ``live``."""
        return {"published": list(self.published), "statuses": self.statuses, "warning": self.warning}

    def _send(self, call: Callable[[Registry], object]) -> bool:
        if self.warning is not None:
            return False
        try:
            if self._registry is None:
                self._registry = registry()
            call(self._registry)
            return True
        except QlcapsuleError as exc:
            problem = exc.message
        except Exception as exc:  # noqa: BLE001 - a publisher plugin's bug must not fail a delivery; it is reported
            problem = f"{type(exc).__name__}: {exc}"
        line = " ".join(scrub(problem).split())[:500]
        self.warning = f"--publish {self.url}: the catalog did not take a live status ({line}); the deliveries go on"
        event(log, "publish.live.failed", url=self.url, error=line)
        stream = self._stream or sys.stderr
        stream.write(f"warning: {self.warning}\n")
        stream.flush()
        return False

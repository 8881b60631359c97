"""The pages: capsules, a capsule, a version, live deliveries, templates and drift, keys, the dashboard.

Handlers are plain functions (FastAPI runs them in its thread pool), one read transaction each, reading only
through ``catalog.py`` (and ``events.read_events`` for the live page's first rows). Query parameters are
clamped, never refused: a shared URL with a stale offset still shows a page.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.orm import Session, sessionmaker

from .. import catalog as queries
from .. import db
from ..catalog import Catalog
from ..config import Settings
from ..events import Filter, Hub, last_event_id, read_events
from ..web import KEYID
from . import svg
from .auth import viewer
from .render import HEADERS, PageError, render

PAGE = 50
#: files of a version shown per page (a lock may list hundreds of thousands)
FILES_PAGE = 500
STATUSES = ("planned", "uploading", "verifying", "delivered", "failed")
SEVERITIES = ("error", "warning", "note")
#: a help link's only shape: https, a host name (nothing can follow it but a port, a path, a query or a fragment),
#: then printable ASCII without space, double quote or angle brackets
HELP_URI = re.compile(r"https://[A-Za-z0-9.-]+(:[0-9]{1,5})?([/?#][!#-;=?-~]*)?\Z")
#: the dashboard's series and their columns (the CSV header, also when a series is empty)
SERIES = {
    "deliveries": ("day", "status", "provider", "count"),
    "failures": ("cause", "count"),
    "scores": ("band", "count"),
    "published": ("day", "count"),
}


def _text(request: Request, name: str, limit: int = 256) -> str | None:
    value = request.query_params.get(name, "").strip()
    return value[:limit] or None


def _offset(request: Request) -> int:
    raw = request.query_params.get("offset", "0")
    return min(int(raw), 10**9) if raw.isdigit() else 0


def _help_link(finding: dict[str, Any]) -> str | None:
    """The rule's help page (``extra.help_uri``, as ``Finding.to_dict`` writes it) when it is an https URL with a
    host and no space or control character; anything else (javascript:, data:, http:, a path) is not a link."""
    extra = finding.get("extra")
    value = extra.get("help_uri") if isinstance(extra, dict) else None
    if not isinstance(value, str) or len(value) > 2048 or not HELP_URI.match(value):
        return None
    return value


def _group_findings(findings: list[Any]) -> list[dict[str, Any]]:
    """Findings by engine (the validator), then by severity, errors first."""
    engines: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for f in findings:
        if not isinstance(f, dict):
            continue
        engine = str(f.get("validator") or str(f.get("rule", "other")).split(".", 1)[0])
        severity = str(f.get("severity", "note"))
        item = {**f, "help": _help_link(f), "severity": severity}
        engines.setdefault(engine, {}).setdefault(severity, []).append(item)
    order = {s: i for i, s in enumerate(SEVERITIES)}
    return [
        {
            "engine": engine,
            "count": sum(len(v) for v in by.values()),
            "severities": [{"severity": s, "findings": by[s]} for s in sorted(by, key=lambda s: order.get(s, 9))],
        }
        for engine, by in sorted(engines.items())
    ]


def _csv_cell(value: Any) -> Any:
    """A cell a spreadsheet will not run as a formula (publisher text may start with = + - @)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def router(sessions: sessionmaker[Session], settings: Settings, hub: Hub) -> APIRouter:  # noqa: C901
    pages = APIRouter(include_in_schema=False)

    def who(request: Request) -> Any:
        return viewer(request, sessions, settings)

    @pages.get("/")
    def capsules(request: Request) -> Response:
        me = who(request)
        offset = _offset(request)
        filters = {k: _text(request, k, 63 if k == "q" else 512) for k in ("q", "label", "template", "repository")}
        with db.transaction(sessions) as session:
            items, total = queries.search_capsules(Catalog(session), offset, PAGE, **filters)
        return render(
            request,
            "capsules.html",
            "Capsules",
            me,
            items=items,
            total=total,
            offset=offset,
            size=PAGE,
            filters=filters,
        )

    @pages.get("/capsules/{name}")
    def capsule(request: Request, name: str) -> Response:
        me = who(request)
        offset = _offset(request)
        with db.transaction(sessions) as session:
            catalog = Catalog(session)
            versions, total = catalog.versions(name, offset, PAGE)
            if not total:
                raise PageError(404, f"no capsule named {name!r} in the catalog")
            scores, _ = catalog.scores(name, 0, 200)
            targets = queries.capsule_targets(catalog, name)
        graph = svg.lineage(versions)
        chart = svg.score_line([(s["version"], s["score"]) for s in reversed(scores)])
        signers: dict[str, dict[str, Any]] = {}
        for v in versions:
            for k in v["signature"]["keys"]:
                entry = signers.setdefault(k["keyid"], {"keyid": k["keyid"], "verified": [], "unverified": []})
                entry["verified" if k["verified"] else "unverified"].append(v["version"])
        return render(
            request,
            "capsule.html",
            f"{name} · capsule",
            me,
            name=name,
            versions=versions,
            total=total,
            offset=offset,
            size=PAGE,
            graph=graph,
            scorechart=chart,
            scores=scores,
            targets=targets,
            signers=sorted(signers.values(), key=lambda s: s["keyid"]),
        )

    @pages.get("/capsules/{name}/versions/{version}")
    def version(request: Request, name: str, version: str) -> Response:
        me = who(request)
        against = _text(request, "diff")
        offset = _offset(request)
        with db.transaction(sessions) as session:
            catalog = Catalog(session)
            found = catalog.version(name, version)
            if found is None:
                raise PageError(404, f"{name}@{version} is not in the catalog")
            parents = queries.versions_at_commits(catalog, name, found["parents"])
            base = against or next((parents[c] for c in found["parents"] if c in parents), None)
            diff = catalog.diff(name, base, version) if base else None
            deliveries = catalog.deliveries(name, version) or []
            receipts = queries.delivery_receipts(catalog, name, version)
            recent, _ = catalog.scores(name, 0, PAGE)  # the newest versions' names (cheaper than versions())
        if against and diff is None:
            raise PageError(404, f"{name}@{against} is not in the catalog")
        commands = {
            "verify": f"qlcapsule verify {shlex.quote(name)} --trust trust.yaml",
            "import": [
                f"qlcapsule import {shlex.quote(a['location'] or a['name'])} {shlex.quote(name)} --trust trust.yaml"
                for a in found["artifacts"]
            ],
        }
        files = found["files"]
        return render(
            request,
            "version.html",
            f"{name}@{version}",
            me,
            name=name,
            v=found,
            files=files[offset : offset + FILES_PAGE],
            files_total=len(files),
            offset=offset,
            size=FILES_PAGE,
            parents=parents,
            diff=diff,
            base=base,
            against=against,
            deliveries=deliveries,
            receipts=receipts,
            findings=_group_findings(found["findings"]),
            commands=commands,
            others=[r["version"] for r in recent if r["version"] != version],
        )

    def _filter(request: Request) -> Filter:
        status = _text(request, "status")
        return Filter(_text(request, "capsule", 63), _text(request, "target"), status if status in STATUSES else None)

    @pages.get("/live")
    def live(request: Request) -> Response:
        me = who(request)
        wanted = _filter(request)
        with db.transaction(sessions) as session:
            last = last_event_id(session)
            events = [e for e in read_events(session, max(last - 500, 0), 500) if wanted.matches(e)]
        return render(
            request,
            "live.html",
            "Deliveries, live",
            me,
            events=list(reversed(events[-PAGE:])),
            last=last,
            wanted=wanted,
            statuses=STATUSES,
        )

    @pages.get("/live/events")
    def live_events(request: Request) -> Response:
        """The API's event stream (the same hub) under the pages' authentication: EventSource sends cookies,
        never an Authorization header."""
        who(request)
        resume = request.headers.get("last-event-id") or request.query_params.get("after", "")
        after = min(int(resume), 2**63 - 1) if resume.isdigit() else None
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(hub.stream(_filter(request), after), media_type="text/event-stream", headers=headers)

    @pages.get("/templates")
    def templates(request: Request) -> Response:
        me = who(request)
        with db.transaction(sessions) as session:
            catalog = Catalog(session)
            known = catalog.templates()
            behind = catalog.behind(1)
        grouped: dict[str, list[dict[str, Any]]] = {}
        for t in known:
            grouped.setdefault(t["name"], []).append(t)
        for row in behind:
            row["command"] = (
                f"qlcapsule update {shlex.quote(row['capsule'])} --to {shlex.quote(row['newest_template_version'])}"
            )
        return render(request, "templates.html", "Templates and drift", me, grouped=grouped, behind=behind)

    @pages.get("/keys")
    def keys(request: Request) -> Response:
        me = who(request)
        with db.transaction(sessions) as session:
            found = queries.signing_keys(Catalog(session))
        return render(request, "keys.html", "Keys", me, keys=found)

    @pages.get("/keys/{keyid}")
    def key(request: Request, keyid: str) -> Response:
        me = who(request)
        if not re.match(KEYID, keyid):
            raise PageError(404, "not a key id")
        offset = _offset(request)
        with db.transaction(sessions) as session:
            catalog = Catalog(session)
            signed, total = catalog.signed_by(keyid, only=False, offset=offset, limit=PAGE)
            only, only_total = catalog.signed_by(keyid, only=True, offset=0, limit=500)
            delivered = queries.deliveries_of(catalog, [(o["capsule"], o["digest"]) for o in only])
        return render(
            request,
            "key.html",
            f"Key {keyid}",
            me,
            keyid=keyid,
            signed=signed,
            total=total,
            offset=offset,
            size=PAGE,
            only=only,
            only_total=only_total,
            delivered=delivered,
        )

    @pages.get("/dashboard")
    def dashboard(request: Request) -> Response:
        me = who(request)
        with db.transaction(sessions) as session:
            data = queries.dashboard(Catalog(session))
        days: dict[str, dict[str, int]] = {}
        providers: dict[str, dict[str, int]] = {}
        for d in data["deliveries"]:
            days.setdefault(d["day"], {}).setdefault(d["status"], 0)
            days[d["day"]][d["status"]] += d["count"]
            providers.setdefault(d["provider"], {}).setdefault(d["status"], 0)
            providers[d["provider"]][d["status"]] += d["count"]
        charts = {
            "deliveries": svg.stacked_bars(sorted(days.items()), list(STATUSES)),
            "providers": svg.stacked_bars(sorted(providers.items()), list(STATUSES)),
            "failures": svg.stacked_bars([(f["cause"], {"count": f["count"]}) for f in data["failures"]], ["count"]),
            "scores": svg.stacked_bars([(s["band"], {"count": s["count"]}) for s in data["scores"]], ["count"]),
            "published": svg.stacked_bars([(p["day"], {"count": p["count"]}) for p in data["published"]], ["count"]),
        }
        return render(
            request, "dashboard.html", "Dashboard", me, data=data, charts=charts, statuses=STATUSES, series=list(SERIES)
        )

    @pages.get("/dashboard/{series}.{fmt}")
    def dashboard_data(request: Request, series: str, fmt: str) -> Response:
        who(request)
        if series not in SERIES or fmt not in ("csv", "json"):
            raise PageError(404, "no such series (deliveries, failures, scores, published; .csv or .json)")
        with db.transaction(sessions) as session:
            rows = queries.dashboard(Catalog(session))[series]
        headers = {**HEADERS, "Content-Disposition": f'attachment; filename="{series}.{fmt}"'}
        if fmt == "json":
            return Response(json.dumps(rows, indent=1), media_type="application/json", headers=headers)
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=SERIES[series])
        writer.writeheader()
        writer.writerows({k: _csv_cell(v) for k, v in r.items()} for r in rows)
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)

    return pages

"""The two workflows of docs/action.md, run by a simulated runner against a hostile pull request.

The runner is simulated as GitHub runs the composite step: ``action/main.py`` in
its own process with ``GITHUB_EVENT_NAME``, ``GITHUB_EVENT_PATH``,
``GITHUB_OUTPUT``, ``GITHUB_STEP_SUMMARY`` and ``INPUT_*`` in its environment,
the workflow's secrets (canaries here) in ``env:``, and its stdout read the way
the runner reads it for workflow commands. The "attacker's server" is a real HTTP
server on 127.0.0.1 that records every request; nothing leaves the machine.

The hostile capsule is what a pull request can write: a capsule.yaml that
redefines the release target to point at that server with the workflow's token,
a ``policy.trust`` naming the attacker's own key (and a signature by it), and
target, file and message text carrying ``::warning::``, ``::stop-commands::`` and
``##[...]`` workflow commands.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from action_main import load_main

REPO = Path(__file__).resolve().parents[2]
MAIN = REPO / "action" / "main.py"

INJECT = "x\n::warning::spoofed-annotation\n::stop-commands::tok123\n##[error]legacy-spoof\n::add-mask::ok"
CANARIES = {
    "GITLAB_TOKEN": "canary-gitlab-token-5f1e",
    "GITHUB_TOKEN": "canary-github-token-77aa",
    "AWS_SECRET_ACCESS_KEY": "canary-aws-secret-0b9c",
    "AWS_ACCESS_KEY_ID": "AKIACANARY0000000001",
}
#: a line the runner would read as a workflow command (v2 after leading white space, or legacy ``##[``)
COMMAND = re.compile(r"^\s*::|##\[")


class Recorder(http.server.ThreadingHTTPServer):
    requests: list[dict[str, Any]]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Recorder

    def _record(self) -> None:
        size = min(int(self.headers.get("Content-Length") or 0), 1 << 20)
        body = self.rfile.read(size) if size else b""
        self.server.requests.append(
            {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
        )
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "26")
        self.end_headers()
        self.wfile.write(b'{"message": "404 Not fo"}\n')

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _record

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        return


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder(("127.0.0.1", 0), _Handler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qlcapsule", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


class World:
    """A runner's disk: ``base/`` (the default branch, with the release public key and the targets file)
    and ``pr/`` (the pull request's checkout, with the hostile capsule signed by the attacker)."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.keys = root / "secrets"
        self.keys.mkdir()
        for who in ("release", "attacker"):
            proc = cli("keygen", "-o", str(self.keys / f"{who}.key"))
            assert proc.returncode == 0, proc.stderr
        self.base = root / "base"
        (self.base / "keys").mkdir(parents=True)
        shutil.copy(self.keys / "release.key.pub", self.base / "keys" / "release.pub")
        self.releases = root / "released"
        (self.base / "targets.yaml").write_text(
            f"targets:\n  releases:\n    provider: local\n    options: {{path: {json.dumps(str(self.releases))}}}\n"
        )
        self.home = root / "home"
        self.temp = root / "runner_temp"
        self.temp.mkdir()
        self.pr = root / "pr"
        self.capsule = self.pr / "caps" / "hostile"
        self.capsule.mkdir(parents=True)
        (self.capsule / "app.py").write_text("print('hi')\n")
        (self.capsule / f"{INJECT}.txt").write_text("a file whose name is a workflow command\n")
        shutil.copy(self.keys / "attacker.key.pub", self.capsule / "attacker.pub")
        (self.capsule / "trust.yaml").write_text("keys:\n  - algorithm: ed25519\n    key_file: attacker.pub\n")
        evil = json.dumps(INJECT)
        (self.capsule / "capsule.yaml").write_text(
            "name: hostile\nversion: 1.0.0\n"
            f"description: {evil}\nlicense: Apache-2.0\n"
            "policy:\n  trust: trust.yaml\n"
            f"ship:\n  targets: [releases, {evil}]\n"
            "targets:\n"
            "  releases:\n    provider: gitlab\n"
            f"    options: {{url: 'http://127.0.0.1:{port}', project: a/b, token_env: GITLAB_TOKEN}}\n"
            "    notify:\n"
            f"      - url: 'http://127.0.0.1:{port}/hook'\n"
            f"  {evil}:\n    provider: local\n"
        )
        for step in (
            ["seal", str(self.capsule)],
            ["sign", str(self.capsule), "--key", str(self.keys / "attacker.key")],
        ):
            proc = cli(*step)
            assert proc.returncode == 0, proc.stdout + proc.stderr

    def run(
        self, event: str, cwd: Path, payload: Any = None, env_extra: dict[str, str] | None = None, **inputs: str
    ) -> Run:
        out, summary = self.root / "github_output", self.root / "step_summary"
        out.write_text("")
        summary.write_text("")
        event_path = self.root / "event.json"
        event_path.write_text(json.dumps(payload or {}))
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "QLCAPSULE_HOME": str(self.home / "qlcapsule"),
            "XDG_CONFIG_HOME": str(self.home / "config"),
            "QLCAPSULE_NO_PROGRESS": "1",
            "GIT_CEILING_DIRECTORIES": str(self.root),
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_EVENT_NAME": event,
            "GITHUB_EVENT_PATH": str(event_path),
            "GITHUB_OUTPUT": str(out),
            "GITHUB_STEP_SUMMARY": str(summary),
            "RUNNER_TEMP": str(self.temp),
        }
        env |= CANARIES | {"QLCAPSULE_KEY": (self.keys / "release.key").read_text()}  # the workflow's secrets
        env |= env_extra or {}
        env |= {"INPUT_" + k.upper(): v for k, v in inputs.items()}
        proc = subprocess.run(
            [sys.executable, str(MAIN)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
        )
        return Run(proc, out.read_text(), summary.read_text())

    def signed_by(self, key: str, capsule: Path | None = None) -> bool:
        proc = cli("verify", str(capsule or self.capsule), "--key", str(key))
        return proc.returncode == 0


class Run:
    def __init__(self, proc: subprocess.CompletedProcess[str], output: str, summary: str) -> None:
        self.code = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.output = output
        self.summary = summary

    def commands(self) -> list[str]:
        """Every workflow command the runner would read, from stdout and stderr (split as .NET's ReadLine does)."""
        lines = re.split(r"\r\n|\r|\n", self.stdout + "\n" + self.stderr)
        return [line for line in lines if COMMAND.search(line)]

    def assert_nothing_injected(self) -> None:
        for line in self.commands():
            assert re.match(r"::(add-mask|error|warning|notice)( [^:]*)?::", line), line
            assert "spoofed-annotation" not in line.split("::", 2)[1], line  # never a property
        names = [line.split("::", 2)[1].split(" ")[0] for line in self.commands()]
        assert "stop-commands" not in names and "tok123" not in names
        masks = [line for line in self.commands() if line.startswith("::add-mask::")]
        assert all(m.split("::", 2)[2] != "ok" for m in masks), "the capsule registered a mask"
        assert "<" not in self.summary.replace("<br>", ""), "data turned into HTML in the step summary"

    def assert_no_canary(self) -> None:
        """No secret anywhere but in the ``::add-mask::`` lines that tell the runner to hide it."""
        stdout = "\n".join(line for line in self.stdout.splitlines() if not line.startswith("::add-mask::"))
        for text in (stdout, self.stderr, self.output, self.summary):
            for value in CANARIES.values():
                assert value not in text


@pytest.fixture
def world(tmp_path: Path, recorder: Recorder) -> World:
    return World(tmp_path, recorder.server_address[1])


def _no_canary_reached(recorder: Recorder, world: World) -> None:
    release_key = (world.keys / "release.key").read_text().splitlines()[1]
    for req in recorder.requests:
        blob = json.dumps(req["headers"]) + req["path"] + req["body"].decode("latin-1")
        for value in [*CANARIES.values(), release_key]:
            assert value not in blob, f"{value} reached the attacker's server: {req['method']} {req['path']}"


# -- the pull-request workflow ------------------------------------------------------------


@pytest.mark.parametrize("event", ["pull_request", "pull_request_target"])
def test_pr_workflow_against_a_hostile_capsule(world: World, recorder: Recorder, event: str) -> None:
    # step 1: verify with the release key from the base branch: the attacker's signature is refused,
    # although the capsule's own policy.trust names the attacker's key
    verify = world.run(
        event, world.pr, command="verify", path="caps/*", **{"trusted-keys": str(world.base / "keys" / "release.pub")}
    )
    assert verify.code == 1, verify.stdout + verify.stderr
    assert "::error file=caps/hostile/capsule.lock,title=qlcapsule verify::" in verify.stdout
    assert json.loads(re.search(r"report<<(\S+)\n(.*)\n\1", verify.output, re.S).group(2))["ok"] is False  # type: ignore[union-attr]
    verify.assert_nothing_injected()

    # step 2: ship, as the old documented workflow did: targets named, secrets in env:
    ship = world.run(event, world.pr, command="ship", path="caps/*", targets="releases")
    assert recorder.requests == [], "the pull request's target was contacted"
    _no_canary_reached(recorder, world)
    assert not world.signed_by(str(world.keys / "release.key.pub")), "the PR's code was signed with the release key"
    assert not (world.capsule / "capsule.sig").exists() or not world.signed_by(str(world.keys / "release.key.pub"))
    assert not (world.home / "qlcapsule" / "dev.key").exists(), "a sandboxed run signs with no key at all"
    assert ship.code == 0, ship.stdout + ship.stderr
    assert (world.pr / "dist" / "hostile-1.0.0.tar.gz").is_file()
    assert not world.releases.exists()
    assert f"::notice title=qlcapsule ship::{event} event: validate, seal and export" in ship.stdout
    ship.assert_nothing_injected()
    ship.assert_no_canary()

    # step 3: deliver is refused outright, with one annotation
    deliver = world.run(event, world.pr, command="deliver", path="caps/*", targets="releases")
    assert deliver.code == 2
    errors = [line for line in deliver.commands() if line.startswith("::error")]
    assert len(errors) == 1 and "deliver is refused on a " + event in errors[0]
    assert recorder.requests == []


def test_pr_verify_without_trusted_keys_warns_that_nothing_was_checked(world: World) -> None:
    run = world.run("pull_request", world.pr, command="verify", path="caps/hostile")
    # whatever the core decides about policy.trust, the Action never reports a capsule-chosen key as trusted
    # without saying so: either it fails, or it warns that the signature was not checked
    if run.code == 0:
        report = json.loads(re.search(r"report<<(\S+)\n(.*)\n\1", run.output, re.S).group(2))  # type: ignore[union-attr]
        assert report["capsules"][0]["signature"] in ("unchecked", "verified")
        if report["capsules"][0]["signature"] == "verified":
            pytest.fail("policy.trust in the pull request's capsule.yaml was used as a trust root")
        assert "::warning file=caps/hostile/capsule.sig" in run.stdout and "trusted-keys" in run.stdout
    else:
        assert run.code in (1, 2)
    run.assert_nothing_injected()


@pytest.mark.parametrize(
    ("inputs", "env_extra", "needle"),
    [
        ({"trust-capsule-targets": "true"}, {}, "trust-capsule-targets (QLCAPSULE_CAPSULE_TARGETS) is refused"),
        ({}, {"QLCAPSULE_CAPSULE_TARGETS": "trust"}, "is refused on a pull_request event"),
        ({"allow-pull-request-release": "maybe"}, {}, "allow-pull-request-release: 'maybe' is not true or false"),
    ],
)
def test_pr_refuses_capsule_targets_and_bad_switches(
    world: World, recorder: Recorder, inputs: dict[str, str], env_extra: dict[str, str], needle: str
) -> None:
    run = world.run("pull_request", world.pr, env_extra=env_extra, command="ship", path="caps/*", **inputs)
    assert run.code == 2, run.stdout + run.stderr
    errors = [line for line in run.commands() if line.startswith("::error")]
    assert len(errors) == 1 and needle in errors[0]
    assert recorder.requests == []
    assert not (world.pr / "dist").exists()


def test_comment_on_a_pull_request_is_a_pull_request_event(world: World, recorder: Recorder) -> None:
    on_pr = {"issue": {"number": 7, "pull_request": {"url": "https://api.github.com/repos/o/r/pulls/7"}}}
    run = world.run("issue_comment", world.pr, payload=on_pr, command="ship", path="caps/*", targets="releases")
    assert run.code == 0, run.stdout + run.stderr
    assert recorder.requests == []
    assert not world.signed_by(str(world.keys / "release.key.pub"))
    assert "issue_comment on a pull request event" in run.stdout


@pytest.mark.parametrize(
    "payload",
    [
        {"workflow_run": {"event": "pull_request", "pull_requests": []}},
        {"workflow_run": {"event": "push", "pull_requests": [{"number": 7}]}},
        ["not", "an", "object"],
    ],
)
def test_a_workflow_run_after_a_pull_request_is_a_pull_request_event(
    world: World, recorder: Recorder, payload: object
) -> None:
    """The "pwn request" shape: workflow_run has the secrets, but builds what a pull request made."""
    run = world.run("workflow_run", world.pr, payload=payload, command="ship", path="caps/*", targets="releases")
    assert run.code == 0, run.stdout + run.stderr
    assert recorder.requests == []
    assert not world.signed_by(str(world.keys / "release.key.pub"))
    assert "workflow_run on a pull request event" in run.stdout


def test_opting_in_on_a_pull_request_is_loud_and_still_ignores_the_capsules_endpoint(
    world: World, recorder: Recorder
) -> None:
    """allow-pull-request-release lifts the sandbox, but capsule.yaml still cannot define a credentialed
    target (the core's rule; the Action never sets QLCAPSULE_CAPSULE_TARGETS on a pull request)."""
    run = world.run(
        "pull_request",
        world.pr,
        command="ship",
        path="caps/hostile",
        targets="releases",
        **{"allow-pull-request-release": "true", "targets-file": str(world.base / "targets.yaml")},
    )
    assert "::warning title=qlcapsule ship::allow-pull-request-release is on" in run.stdout
    _no_canary_reached(recorder, world)
    assert recorder.requests == [], "capsule.yaml's gitlab target was used instead of the operator's"
    run.assert_nothing_injected()
    run.assert_no_canary()


# -- the release workflow ----------------------------------------------------------------


def test_release_workflow_on_push_ships_a_genuine_capsule(world: World, recorder: Recorder) -> None:
    genuine = world.base / "caps" / "orders"
    genuine.mkdir(parents=True)
    (genuine / "app.py").write_text("print('orders')\n")
    (genuine / "capsule.yaml").write_text(
        "name: orders\nversion: 2.1.0\ndescription: the orders service\nlicense: Apache-2.0\n"
        "ship:\n  targets: [releases]\n"
    )
    run = world.run(
        "push",
        world.base,
        command="ship",
        path="caps/*",
        **{"targets-file": str(world.base / "targets.yaml")},
    )
    assert run.code == 0, run.stdout + run.stderr
    assert world.signed_by(str(world.base / "keys" / "release.pub"), genuine), "not signed with the release key"
    assert (world.releases / "orders-2.1.0.tar.gz").is_file()
    assert recorder.requests == []
    run.assert_nothing_injected()
    run.assert_no_canary()
    verify = world.run("push", world.base, command="verify", path="caps/orders", **{"trusted-keys": "keys/release.pub"})
    assert verify.code == 0, verify.stdout + verify.stderr
    report = json.loads(re.search(r"report<<(\S+)\n(.*)\n\1", verify.output, re.S).group(2))  # type: ignore[union-attr]
    assert report["capsules"][0]["signature"] == "verified"


def test_push_run_prints_hostile_names_as_data(world: World) -> None:
    """Not sandboxed (push): the capsule's own local target, named with workflow commands, is delivered
    to, and every line naming it (progress, library warnings on stderr, summary) stays data."""
    cap = world.base / "caps" / "named"
    cap.mkdir(parents=True)
    (cap / "app.py").write_text("print('x')\n")
    (cap / f"{INJECT}.txt").write_text("x\n")
    evil = json.dumps(INJECT)
    (cap / "capsule.yaml").write_text(
        f"name: named\nversion: 1.0.0\ndescription: d\nlicense: Apache-2.0\nship:\n  targets: [{evil}]\n"
        f"targets:\n  {evil}:\n    provider: local\n"
    )
    run = world.run("push", world.base, command="ship", path="caps/named")
    assert "spoofed-annotation" in run.stdout + run.stderr + run.summary, "the hostile name was never printed"
    run.assert_nothing_injected()
    run.assert_no_canary()


@pytest.mark.parametrize(
    "data",
    [
        INJECT,
        "::warning::at the start",
        "  \t::error::after white space",
        "\u00a0::error::after a no-break space",
        "a\r::error::after a carriage return",
        "##[warning]legacy anywhere",
        "%0A::error::pre-escaped",
    ],
)
def test_every_printed_line_is_data(data: str, capsys: pytest.CaptureFixture[str]) -> None:
    action = load_main("qlcapsule_action_main_pr")
    action.emit(None, f"{data}: seal: ok")
    action.emit("error", data, file=data, title=data)
    lines = [action.neutralize(part) for part in re.split(r"\r\n|\r|\n", data)]
    out = capsys.readouterr().out.splitlines() + lines
    assert len(out) == 2 + len(lines)
    assert out[0].startswith("qlcapsule: ") and "##[" not in out[0]
    assert re.fullmatch(r"::error file=[^:,]*,title=[^:,]*::[^\r\n]*", out[1]), out[1]
    assert all(not line or line.startswith("qlcapsule: ") and "##[" not in line for line in lines)

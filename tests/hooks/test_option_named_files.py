"""A committed file named like an option never changes what a hook decides (issue 16, finding 3).

pre-commit runs ``entry + args + FILES`` and the git hooks run ``xargs -0
qlcapsule hook ... -- FILES``; a file named ``--help`` used to make ``hook
verify`` pass a tampered capsule, ``--key=evil.key.pub`` added the committer's
key to the trusted set and ``--fail-on=never`` passed a syntax error. For every
option of every hook command (read from the click commands, so a new option is
covered without touching this file) and of the ``qlcapsule`` group, a file of
that name sits next to an invalid capsule, and the hook must fail exactly as it
does next to a harmless name — through (a) the real pre-commit framework with
this repository's .pre-commit-hooks.yaml, (b) the installed git hooks on a real
``git commit`` and ``git push`` to a local bare repository, and (c) the
command itself.

As in test_precommit.py, pre-commit gets a copy of the manifest that differs
only in ``language: system`` (that test checks the copy), with this checkout's
``qlcapsule`` first on PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml

from qlcapsule.cli import main
from qlcapsule.signing import signatures as signing
from qlcapsule.testing import write_capsule

REPO = Path(__file__).resolve().parents[2]
META = "description: sample\nlicense: Apache-2.0\n"
HARMLESS = "harmless.txt"
# What an attacker would put after '=': their key, their trust file, the weakest threshold.
VALUES = {"keys": "evil.key.pub", "key": "evil.key", "trust": "evil.yaml", "fail_on": "never", "min_score": "0"}

# Per hook: the invalid capsule whose file is passed, the operator's options, and what the failure prints.
CASES = {
    "seal": ("stale", [], "sealed stale: capsule.lock updated"),
    "validate": ("broken", [], "python.syntax"),
    "verify": ("signed", ["--key", "release.key.pub"], "not signed by a trusted key"),
}


MAIN_CTX = click.Context(main, **main.context_settings)  # -h/--help come from here, as in a real run


def _hook_command(name: str) -> click.Command:
    group = main.get_command(MAIN_CTX, "hook")
    assert isinstance(group, click.Group)
    command = group.get_command(click.Context(group, parent=MAIN_CTX), name)
    assert command is not None, name
    return command


def option_names(command: click.Command) -> list[str]:
    """Every spelling of every option of ``command`` and of the main group, bare and as ``--opt=value``."""
    names = {"--", "-"}
    for cmd in (command, main):
        for param in cmd.get_params(click.Context(cmd, parent=MAIN_CTX)):
            if not isinstance(param, click.Option):
                continue
            for opt in (*param.opts, *param.secondary_opts):
                names.add(opt)
                if opt.startswith("--") and not param.is_flag and not param.count:
                    names.add(f"{opt}={VALUES.get(param.name or '', 'evil')}")
    return sorted(names)


def _params() -> list[tuple[str, str]]:
    return [(hook, name) for hook in CASES for name in option_names(_hook_command(hook))]


def test_the_names_cover_the_dangerous_options() -> None:
    """The generated list is not empty by accident: the options of the finding are in it."""
    assert {"--help", "-h", "--all", "--json", "--key=evil.key.pub", "--trust=evil.yaml"} <= set(
        option_names(_hook_command("verify"))
    )
    assert {"--fail-on=never", "--min-score=0", "--version"} <= set(option_names(_hook_command("validate")))
    assert {"--sign", "--key=evil.key"} <= set(option_names(_hook_command("seal")))


# -- the sample repository -----------------------------------------------------------


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One environment (and one pre-commit cache) for the module; QLCAPSULE_HOME is the module's own."""
    tmp = tmp_path_factory.mktemp("env")
    e = dict(os.environ)
    e.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}",
        PRE_COMMIT_HOME=str(tmp / "pre-commit-home"),
        QLCAPSULE_HOME=str(tmp / "qlcapsule-home"),
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.com",
        GIT_CEILING_DIRECTORIES=str(tmp.parent),
        PRE_COMMIT_COLOR="never",
    )
    for name in ("QLCAPSULE_STORE", "QLCAPSULE_TRUST_FILE", "QLCAPSULE_SIGNING_KEY", "PRE_COMMIT"):
        e.pop(name, None)
    return e


def git(cwd: Path, env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> Path:
    """work/: stale/ (lock out of date), broken/ (sealed, a syntax error), signed/ (intact, signed by the
    attacker's key), the attacker's key and trust file, the operator's release.key.pub, a pre-commit
    config using the hooks repository below; one pushed commit (a README) on origin/main. Nothing staged."""
    tmp_path = tmp_path_factory.mktemp("template")
    hooks_repo = tmp_path / "hooks-repo"
    hooks_repo.mkdir()
    git(hooks_repo, env, "init", "-q")
    manifest = [{**h, "language": "system"} for h in yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())]
    (hooks_repo / ".pre-commit-hooks.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    git(hooks_repo, env, "add", ".")
    git(hooks_repo, env, "commit", "-qm", "hooks")
    rev = git(hooks_repo, env, "rev-parse", "HEAD").stdout.strip()

    base = tmp_path / "template"
    work = base / "work"
    work.mkdir(parents=True)
    git(base, env, "init", "-q", "--bare", "remote.git")
    git(work, env, "init", "-q", "-b", "main")
    git(work, env, "remote", "add", "origin", "../remote.git")
    (work / "README.md").write_text("sample\n")
    git(work, env, "add", "README.md")
    git(work, env, "commit", "-qm", "base")
    git(work, env, "push", "-q", "origin", "main")

    signing.keygen("ed25519", work / "evil.key")
    signing.keygen("ed25519", base / "release.key")
    shutil.copy(base / "release.key.pub", work / "release.key.pub")
    (work / "evil.yaml").write_text("keys:\n  - algorithm: ed25519\n    key_file: evil.key.pub\n")
    write_capsule(work / "stale", {"app.py": "print('ok')\n"}, definition=f"name: stale\nversion: 1.0.0\n{META}")
    (work / "stale" / "app.py").write_text("print('changed after the seal')\n")
    write_capsule(work / "broken", {"app.py": "def f(:\n"}, definition=f"name: broken\nversion: 1.0.0\n{META}")
    write_capsule(work / "signed", {"app.py": "print('ok')\n"}, definition=f"name: signed\nversion: 1.0.0\n{META}")
    signing.sign_capsule(work / "signed", key=work / "evil.key")
    hooks = [
        {"id": f"qlcapsule-{hook}", **({"args": [*opts, "--"]} if opts else {})} for hook, (_, opts, _) in CASES.items()
    ]
    config = {"repos": [{"repo": str(hooks_repo), "rev": rev, "hooks": hooks}]}
    (work / ".pre-commit-config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (work / HARMLESS).write_text("x\n")
    return base


@pytest.fixture(scope="module")
def baseline(template: Path, env: dict[str, str], tmp_path_factory: pytest.TempPathFactory):
    """``baseline(run, hook)``: what ``run`` gives next to a harmless file name, computed once per module."""
    seen: dict[tuple[str, str], tuple[int, str]] = {}

    def get(run, hook: str) -> tuple[int, str]:
        key = (run.__name__, hook)
        if key not in seen:
            seen[key] = run(copy_of(template, tmp_path_factory.mktemp("harmless"), HARMLESS), env, hook, HARMLESS)
        return seen[key]

    return get


def copy_of(template: Path, dest: Path, name: str) -> Path:
    """A fresh copy of the template, plus a file called ``name`` at the top of the work tree."""
    shutil.copytree(template, dest, symlinks=True, dirs_exist_ok=True)
    work = dest / "work"
    (work / name).write_text("a file, whatever its name says\n")
    return work


# -- (a) the pre-commit framework -------------------------------------------------------


def precommit(work: Path, env: dict[str, str], hook: str, name: str) -> tuple[int, str]:
    capsule = CASES[hook][0]
    git(work, env, "add", "--", ".pre-commit-config.yaml", name, capsule)
    exe = shutil.which("pre-commit", path=env["PATH"])
    assert exe, "pre-commit is in the dev extra"
    proc = subprocess.run(
        [exe, "run", f"qlcapsule-{hook}"], cwd=work, env=env, capture_output=True, text=True, timeout=120
    )
    out = proc.stdout + proc.stderr
    # pre-commit itself exits 1 on any failure; the hook's own exit code is in its report
    codes = [line.split(":")[1].strip() for line in out.splitlines() if line.startswith("- exit code:")]
    assert proc.returncode in (0, 1) and len(codes) == (proc.returncode == 1), out
    return int(codes[0]) if codes else 0, out


@pytest.mark.parametrize(("hook", "name"), _params())
def test_pre_commit_framework(
    hook: str, name: str, template: Path, env: dict[str, str], tmp_path: Path, baseline
) -> None:
    want_code, want_out = baseline(precommit, hook)
    assert want_code == 1, want_out
    assert CASES[hook][2] in want_out
    code, out = precommit(copy_of(template, tmp_path / "named", name), env, hook, name)
    assert (code, CASES[hook][2] in out) == (want_code, True), out


def test_pre_commit_args_without_the_separator_fail_closed(template: Path, env: dict[str, str], tmp_path: Path) -> None:
    """A user's ``args:`` replace the manifest's ``["--"]``; forgetting the ``--`` must stop, not guess."""
    work = copy_of(template, tmp_path / "noseparator", "--key=evil.key.pub")
    config = yaml.safe_load((work / ".pre-commit-config.yaml").read_text())
    config["repos"][0]["hooks"] = [{"id": "qlcapsule-verify", "args": ["--key", "release.key.pub"]}]
    (work / ".pre-commit-config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    code, out = precommit(work, env, "verify", "--key=evil.key.pub")
    assert code == 2 and "Failed" in out, out
    assert "put the file names after '--'" in out
    # The committer supplies the missing separator as a file named '--': it sorts before every
    # option name, so the options after it are still file names and the operator's key still rules.
    (work / "--").write_text("x\n")
    git(work, env, "add", "--", "--")
    code, out = precommit(work, env, "verify", "--key=evil.key.pub")
    assert code == 1 and CASES["verify"][2] in out, out


# -- (b) the installed git hooks -----------------------------------------------------------


def git_hooks(work: Path, env: dict[str, str], hook: str, name: str) -> tuple[int, str]:
    """seal/validate: ``git commit`` through the pre-commit hook; verify: ``git push`` through pre-push."""
    exe = Path(sys.executable).parent / "qlcapsule"
    installed = subprocess.run([str(exe), "hooks", "install"], cwd=work, env=env, capture_output=True, timeout=60)
    assert installed.returncode == 0, installed.stderr
    if hook == "verify":  # pre-push knows no trusted key: a capsule whose files changed after the seal
        git(work, env, "add", "--", name, "stale")
        git(work, env, "commit", "-q", "--no-verify", "-m", "sneaky")
        proc = git(work, env, "push", "origin", "main", check=False)
    else:
        git(work, env, "add", "--", name, CASES[hook][0])
        proc = git(work, env, "commit", "-qm", "change", check=False)
    return proc.returncode, proc.stdout + proc.stderr


GIT_HOOK_FAILURE = {"seal": CASES["seal"][2], "validate": CASES["validate"][2], "verify": "FAILED stale"}


@pytest.mark.parametrize(("hook", "name"), _params())
def test_git_hooks(hook: str, name: str, template: Path, env: dict[str, str], tmp_path: Path, baseline) -> None:
    want_code, want_out = baseline(git_hooks, hook)
    assert want_code == 1, want_out
    assert GIT_HOOK_FAILURE[hook] in want_out
    code, out = git_hooks(copy_of(template, tmp_path / "named", name), env, hook, name)
    assert (code, GIT_HOOK_FAILURE[hook] in out) == (want_code, True), out


# -- (c) the commands themselves ----------------------------------------------------------


@pytest.mark.parametrize(("hook", "name"), _params())
def test_hook_command(
    hook: str, name: str, template: Path, tmp_path: Path, qlcapsule_cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    capsule, opts, failure = CASES[hook]
    monkeypatch.delenv("PRE_COMMIT", raising=False)
    monkeypatch.delenv("QLCAPSULE_TRUST_FILE", raising=False)
    monkeypatch.delenv("QLCAPSULE_SIGNING_KEY", raising=False)
    results = []
    for label, filename in (("harmless", HARMLESS), ("named", name)):
        work = copy_of(template, tmp_path / label, filename)
        monkeypatch.chdir(work)
        # the option-named file first, as a sorted file list would put it
        results.append(qlcapsule_cli("hook", hook, *opts, "--", filename, f"{capsule}/app.py"))
    harmless, named = results
    assert harmless.exit_code == 1 and failure in harmless.output, harmless.output
    assert named.exit_code == harmless.exit_code and failure in named.output, named.output


@pytest.mark.parametrize("hook", list(CASES))
def test_files_without_the_separator_are_refused(
    hook: str, template: Path, tmp_path: Path, qlcapsule_cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence in depth: no ``--`` (or a file before it) is exit 2 and nothing is checked or written."""
    capsule, opts, _ = CASES[hook]
    work = copy_of(template, tmp_path / "w", "--help")
    monkeypatch.chdir(work)
    monkeypatch.delenv("PRE_COMMIT", raising=False)
    lock = (work / capsule / "capsule.lock").read_bytes()
    smuggled = [[*opts, n, f"{capsule}/app.py"] for n in option_names(_hook_command(hook)) if n != "--"]
    for argv in (
        *smuggled,
        [*opts, f"{capsule}/app.py"],
        [*opts, f"{capsule}/app.py", "--", HARMLESS],
        [*opts, "--all"],
        [*opts],
    ):
        result = qlcapsule_cli("hook", hook, *argv)
        assert result.exit_code == 2, (argv, result.output)
        assert result.stderr.startswith("error: qlcapsule hook ") and result.stderr.count("\n") == 1, result.stderr
        assert "'--'" in result.stderr
    assert (work / capsule / "capsule.lock").read_bytes() == lock
    # a lone --help is still help, except under pre-commit (PRE_COMMIT=1), where it is a file name
    assert qlcapsule_cli("hook", hook, "--help").exit_code == 0
    monkeypatch.setenv("PRE_COMMIT", "1")
    assert qlcapsule_cli("hook", hook, "--help").exit_code == 2


def test_every_file_list_is_preceded_by_the_separator() -> None:
    """The manifest's default args end the options; the git hooks put ``--`` before every file list."""
    manifest = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    assert manifest and all(h["args"] == ["--"] and "--" not in h["entry"].split() for h in manifest)
    for name in ("pre-commit", "pre-push"):
        calls = [line for line in (REPO / "hooks" / name).read_text().splitlines() if "qlcapsule hook " in line]
        assert calls and all(" -- " in line.split("qlcapsule hook ", 1)[1] for line in calls), calls
        assert all("xargs -0 qlcapsule hook" in line for line in calls if "xargs" in line), calls

"""keygen and sign."""

from __future__ import annotations

import sys

import click

from ..errors import UsageError
from ._common import capsule_dir, emit, json_option, main
from ._text import sign_text


@main.command()
@click.option(
    "--type",
    "key_type",
    default="ed25519",
    show_default=True,
    metavar="ed25519|hmac",
    help="Key algorithm: ed25519 (a key pair) or hmac (hmac-sha256, a 32-byte shared secret).",
)
@click.option(
    "-o",
    "--output",
    "output",
    default=None,
    metavar="PATH",
    help="Private key file (default ./qlcapsule.key); the public key goes to PATH.pub. "
    "'-' prints the private key on stdout (to pipe into a secret store).",
)
@click.option("--force", is_flag=True, help="Replace existing key files.")
@json_option
def keygen(key_type: str, output: str | None, force: bool, as_json: bool) -> None:
    """Generate a signing key and print its key id.

    The private key file is written with mode 0600 and never overwritten
    without --force. Ed25519 keys also get a public key file (PATH.pub, or
    PATH with .key replaced by .pub) to hand to verifiers.

    \b
    Examples:
      qlcapsule keygen                         # ./qlcapsule.key + ./qlcapsule.key.pub
      qlcapsule keygen --type hmac -o ci.hmac  # a shared secret for --key-env / --hmac-key-env

    Exit codes: 0 written; 2 bad usage or the file exists.
    """
    from ..signing.signatures import keygen as _keygen  # noqa: PLC0415 -- start-up: signing loads only in the commands that use it, not for --help

    if output == "-" and as_json:
        raise UsageError("--json cannot be combined with '-o -' (stdout carries the private key)")
    result = _keygen(key_type, output, force=force)
    if output == "-":
        material = result.pop("material")
        public = result.pop("public_material", None)
        sys.stdout.buffer.write(material)
        sys.stdout.flush()
        if public:
            click.echo(f"public key:\n{public.decode('ascii').strip()}", err=True)
        click.echo(f"key id: {result['keyid']}", err=True)
        return
    text = f"wrote {result['private']} (private, 0600)"
    if result["public"]:
        text += f" and {result['public']} (public)"
    emit(as_json, result, f"{text}\nkey id: {result['keyid']}")


@main.command()
@capsule_dir
# multiple=True only to refuse a repeated option (click would silently keep the last one)
@click.option("--key", "keys", metavar="FILE|-", multiple=True, help="Private key file, or '-' to read it from stdin.")
@click.option(
    "--key-env",
    "key_envs",
    metavar="NAME",
    multiple=True,
    help="Environment variable holding the key (e.g. an HMAC secret).",
)
@click.option("--dev-key", is_flag=True, help="Sign with the development key (created on first use, with a warning).")
@click.option(
    "--type",
    "key_type",
    default=None,
    metavar="ed25519|hmac",
    help="Key algorithm; default: recognised from the key (PEM/OpenSSH -> ed25519, else hmac).",
)
@click.option(
    "--expires",
    metavar="WHEN",
    help="Expiry: a duration from now (90d, 12h, 2w) or an RFC 3339 time. Omit it to co-sign an existing statement.",
)
@click.option(
    "--trust",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="Trust file of the co-signers' keys (default $QLCAPSULE_TRUST_FILE): an existing statement is "
    "co-signed only when this key or one of these signed it.",
)
@json_option
def sign(
    directory: str,
    keys: tuple[str, ...],
    key_envs: tuple[str, ...],
    dev_key: bool,
    key_type: str | None,
    expires: str | None,
    trust: str | None,
    as_json: bool,
) -> None:
    """Sign the sealed capsule DIRECTORY: write capsule.sig (a DSSE envelope).

    The capsule must be sealed and unchanged since. Signing with another key
    adds a signature (co-signing, key rotation) when the existing statement
    was signed by a trusted key: this key itself, or one in --trust FILE
    (default $QLCAPSULE_TRUST_FILE); other signatures are kept only when
    such a key verifies them, else a fresh statement is signed. Signing again
    with the same key replaces that key's signature. Keys come from --key
    FILE, --key - (stdin) or --key-env NAME, never from capsule.yaml; one key
    per run (co-sign by running sign once per key).

    Exit codes: 0 signed; 1 the capsule changed since it was sealed;
    2 bad usage, unreadable or unsuitable key.
    """
    from ..signing.signatures import ALIASES, sign_capsule  # noqa: PLC0415 -- start-up: signing loads only in the commands that use it, not for --help
    from ..signing.signatures import dev_key as _dev_key  # noqa: PLC0415 -- start-up: signing loads only in the commands that use it, not for --help

    for option, given in (("--key", keys), ("--key-env", key_envs)):
        if len(given) > 1:
            raise UsageError(
                f"{option} given {len(given)} times: sign takes one key (run sign once per key to co-sign)"
            )
    key, key_env = (keys[0] if keys else None), (key_envs[0] if key_envs else None)
    if dev_key:
        if key or key_env:
            raise UsageError("--dev-key cannot be combined with --key or --key-env")
        if key_type and ALIASES.get(key_type, key_type) != "ed25519":
            raise UsageError(f"--dev-key is an ed25519 key; --type {key_type} does not apply")
        key, key_type = str(_dev_key(create=True)), "ed25519"
    if not key and not key_env:
        raise UsageError("no signing key: pass --key FILE, --key - (stdin), --key-env NAME or --dev-key")
    result = sign_capsule(directory, key, key_env=key_env, key_type=key_type, expires=expires, trust=trust)
    data = result.to_dict()
    text = sign_text(result)
    emit(as_json, data, text)

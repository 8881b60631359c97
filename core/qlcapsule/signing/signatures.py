"""Signing and verifying capsules: keys, trust files, policy, capsule.sig.

Keys come from a file, an environment variable or stdin (``-``), never from
capsule.yaml. Trusted keys likewise come only from the operator (``--key``,
``--hmac-key-env``, ``--trust``, else ``$QLCAPSULE_TRUST_FILE``): a capsule's
``policy.trust`` is never read, its policy only narrows, and capsule.sig is never
taken on trust when co-signing. Key and trust files every account may write are
refused, and so is a development key another account owns. Signers are plugins (``hmac-sha256``, ``ed25519``) found through
the registry; this module imports no cryptography itself, so ``verify`` of an
unsigned capsule never pays for it.

Verification (:func:`verify_signatures`) runs after the integrity check and
fails closed: PAE signatures first (threshold of *distinct* trusted keys; key
ids are hints only; each key verifies only its own algorithm), then the
statement: subject name/version against capsule.yaml, subject digest against the
digest of the files on disk, expiry, and rollback (``--min-version``,
``policy.min_version`` and the newest version the version store knows). Any
unexpected exception is a failure, never a pass.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import stat
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import (
    CredentialsError,
    InputError,
    IntegrityError,
    QlcapsuleError,
    SignatureError,
    StoreError,
)
from ..format.capsule import Capsule
from ..format.lock import Lock, atomic_write, mkstemp
from ..format.names import DEFINITION_FILE, MAX_SIG_BYTES, SEMVER, semver_key
from ..format.tree import read_regular
from ..log import event, get_logger
from .envelope import PAYLOAD_TYPE, Envelope, EnvelopeSignature, Statement, VerifyKey, format_time, pae, verify_envelope

log = get_logger("signing")

ENV_HOME = "QLCAPSULE_HOME"
#: the operator's trust file: the trust root when no --key, --hmac-key-env or --trust is given
ENV_TRUST = "QLCAPSULE_TRUST_FILE"
DEFAULT_KEY = "qlcapsule.key"
ALIASES = {"hmac": "hmac-sha256"}
#: a key file is a few hundred bytes; anything larger is the wrong file (or /dev/zero)
MAX_KEY_BYTES = 64 * 1024
#: a trust file lists keys: a megabyte is thousands of them
MAX_TRUST_BYTES = 1024 * 1024

__all__ = [
    "SigningKey",
    "SignResult",
    "load_signing_key",
    "load_public_key",
    "load_hmac_env",
    "load_trust_file",
    "operator_trust_file",
    "keygen",
    "sign_capsule",
    "verify_signatures",
    "dev_key",
    "parse_expires",
    "read_sig",
    "semver_key",
]


def _signer(name: str) -> Any:
    from ..plugins import manager as plugins  # noqa: PLC0415 -- plugin: the plugin manager loads only when a signer is needed

    return plugins.instantiate("signer", ALIASES.get(name, name))


def _warn(text: str) -> None:
    sys.stderr.write(f"warning: {text}\n")
    sys.stderr.flush()


# -- keys ---------------------------------------------------------------------


@dataclass
class SigningKey:
    signer: Any
    key: Any
    keyid: str
    source: str

    @property
    def algorithm(self) -> str:
        return str(self.signer.name)

    def verify_key(self) -> VerifyKey:
        """This key as a trusted key (its public half; for HMAC the secret itself)."""
        return VerifyKey(self.signer, self.key, self.keyid, self.source)


def _too_large(where: str) -> CredentialsError:
    return CredentialsError(f"{where}: more than {MAX_KEY_BYTES // 1024} KiB; not a key file")


def _refuse_world_writable(st: os.stat_result, where: str, path: Path, risk: str = "replace the key") -> None:
    """A key or trust file anyone on the machine may rewrite is no key at all: refused, like ssh does."""
    if os.name == "posix" and st.st_mode & stat.S_IWOTH:
        raise CredentialsError(
            f"{where}: writable by every account on this machine (mode {st.st_mode & 0o777:04o}), "
            f"so anyone could {risk}: refused; run 'chmod o-w {path}'"
        )


def _read_key_file(path: str | Path, what: str, *, pipes: bool = True) -> bytes:
    """A key from a file or ``-`` (stdin), at most MAX_KEY_BYTES.

    Regular files and pipes (stdin, ``<(...)``) are read; directories, devices
    and sockets are refused before anything is read, and so is a file (or named
    pipe) every account may write. With ``pipes=False`` (a trust file's
    ``key_file``: nobody is there to write into a pipe) only a regular file is
    read, and opening never waits for a writer.
    """
    if str(path) == "-":
        data = sys.stdin.buffer.read(MAX_KEY_BYTES + 1)
        if len(data) > MAX_KEY_BYTES:
            raise _too_large(f"{what} - (stdin)")
        if not data.strip():
            raise CredentialsError(f"{what} -: nothing on stdin")
        return data
    p = Path(path)
    where = f"{what} {p}"

    def readable(mode: int) -> bool:
        return stat.S_ISREG(mode) or (pipes and stat.S_ISFIFO(mode))

    refused = (
        "is not a regular file (a device, socket or pipe)"
        if not pipes
        else "is not a regular file (a device or socket); give a key file, a pipe or -"
    )
    try:
        st = p.stat()
        if stat.S_ISDIR(st.st_mode):
            raise CredentialsError(f"{where}: is a directory")
        if not readable(st.st_mode):
            raise CredentialsError(f"{where}: {refused}")
        # without pipes, O_NONBLOCK: a FIFO swapped in after the check cannot make open() wait
        fd = os.open(p, os.O_RDONLY | (getattr(os, "O_NONBLOCK", 0) if not pipes else 0))
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())  # the file actually opened, not what the path named a moment ago
            if not readable(st.st_mode):
                raise CredentialsError(f"{where}: {refused}")
            _refuse_world_writable(st, where, p)
            data = f.read(MAX_KEY_BYTES + 1)
    except FileNotFoundError:
        raise CredentialsError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise CredentialsError(f"{where}: is a directory") from None
    except PermissionError:
        raise CredentialsError(f"{where}: permission denied") from None
    except OSError as exc:
        raise CredentialsError(f"{where}: {exc.strerror or exc}") from None
    if len(data) > MAX_KEY_BYTES:
        raise _too_large(where)
    return data


_PATHLIKE = re.compile(r"^(?:~|\.{1,2})?/[\w.~-]+(?:/[\w.~-]+)+/?$")


def _looks_like_path(value: str) -> bool:
    """A file path where a key was expected (``CAPSULE_HMAC=/run/secrets/ci.hmac``)."""
    text = value.strip()
    if not text or "\n" in text or "/" not in text:
        return False
    if _PATHLIKE.match(text):
        return True
    try:
        return os.path.isfile(os.path.expanduser(text))
    except (OSError, ValueError):
        return False


def _read_env(name: str, what: str) -> bytes:
    value = os.environ.get(name)
    if not value:
        raise CredentialsError(f"{what} {name}: the environment variable is not set or empty")
    if _looks_like_path(value):
        # the value itself is never printed: it may be the secret after all
        _warn(
            f"{what} {name}: the value looks like a file path, not a key; it is used as the key itself "
            f"(to use the key in a file, pass --key FILE)"
        )
    return value.encode("utf-8")


def _is_text(material: bytes) -> bool:
    """UTF-8 without control characters other than tab, CR and LF."""
    try:
        text = material.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not any((c < " " and c not in "\t\r\n") or c == "\x7f" for c in text)


_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")


def _sniff(material: bytes, method: str) -> list[str]:
    from ..plugins import manager as plugins  # noqa: PLC0415 -- plugin: the plugin manager loads only when a signer is needed

    reg = plugins.registry()
    found = []
    for name in reg.names("signer"):
        fn = getattr(reg.get("signer", name), method, None)
        if fn is not None and fn(material):
            found.append(name)
    return found


def _detect_private(material: bytes, source: str) -> str:
    """The signer for a private key given without --type, or a CredentialsError saying why none fits."""
    found = _sniff(material, "sniff_private")
    specific = [n for n in found if n != "hmac-sha256"]
    if specific:
        return specific[0]
    if found:  # only hmac-sha256: a shared secret is text, never binary
        if not _is_text(material):
            hint = "a DER key? convert it to PEM" if material[:1] == b"\x30" else "the wrong file?"
            raise CredentialsError(
                f"{source}: binary data, not a PEM/OpenSSH key or a text HMAC secret ({hint}); "
                f"a binary HMAC secret needs --type hmac"
            )
        return found[0]
    m = _PEM_BEGIN.search(material[:4096])
    label = m.group(1).decode("ascii") if m else ""
    if label == "ENCRYPTED PRIVATE KEY" or (label.endswith("PRIVATE KEY") and b"ENCRYPTED" in material[:4096]):
        raise CredentialsError(
            f"{source}: an encrypted private key: refused (decrypt it into a pipe: ... | qlcapsule sign --key -)"
        )
    if label.endswith(" PRIVATE KEY"):
        kind = label[: -len(" PRIVATE KEY")]
        raise CredentialsError(f"{source}: unsupported key type ({kind} private key); use an ed25519 or hmac key")
    if _sniff(material, "sniff_public"):
        raise CredentialsError(f"{source}: a public key; signing needs the private key")
    raise CredentialsError(f"{source}: not a key any signer recognises; pass --type")


def load_signing_key(
    key: str | Path | SigningKey | None = None, *, key_env: str | None = None, key_type: str | None = None
) -> SigningKey:
    """A private key from a file (``-`` = stdin) or an environment variable.

    The algorithm is ``key_type`` when given, else recognised from the material
    (PEM/OpenSSH -> ed25519, other text -> hmac-sha256; binary data is refused).
    """
    if isinstance(key, SigningKey):
        return key
    if (key is None) == (key_env is None):
        raise InputError("give exactly one signing key: --key FILE, --key - (stdin) or --key-env NAME")
    if key_env is not None:
        material, source = _read_env(key_env, "--key-env"), f"${key_env}"
    else:
        assert key is not None
        material, source = _read_key_file(key, "--key"), ("stdin" if str(key) == "-" else str(key))
    name = ALIASES.get(key_type, key_type) if key_type else _detect_private(material, source)
    signer = _signer(name)
    try:
        loaded = signer.load_signing_key(material)
    except QlcapsuleError as exc:
        public, private = (getattr(signer, f"sniff_{half}", None) for half in ("public", "private"))
        if public is not None and public(material) and not (private is not None and private(material)):
            # --type ed25519 given a .pub: say what it is, not why it is no private key
            raise CredentialsError(f"{source}: a public key; signing needs the private key") from None
        raise CredentialsError(f"{source}: {exc.message}") from None
    if key is not None and str(key) != "-":
        _check_permissions(Path(key))  # only once it proved to be a private key
    return SigningKey(signer, loaded, signer.keyid(loaded), source)


def _check_permissions(path: Path) -> None:
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        return
    if os.name == "posix" and mode & 0o077:
        _warn(f"{path}: private key is readable by others (mode {mode:04o}); run 'chmod 600 {path}'")


def _verify_key(signer: Any, material: bytes, source: str) -> VerifyKey:
    try:
        loaded = signer.load_verify_key(material)
    except QlcapsuleError as exc:
        raise CredentialsError(f"{source}: {exc.message}") from None
    return VerifyKey(signer, loaded, signer.keyid(loaded), source)


def load_public_key(path: str | Path) -> VerifyKey:
    """A public key file (``--key``); never read as an HMAC secret."""
    material = _read_key_file(path, "--key")
    found = _sniff(material, "sniff_public")
    if not found:
        raise CredentialsError(
            f"--key {path}: not a public key (expected an Ed25519 PEM 'PUBLIC KEY' or 'ssh-ed25519 ...'); "
            f"HMAC secrets are given with --hmac-key-env or a trust file entry"
        )
    return _verify_key(_signer(found[0]), material, str(path))


def load_hmac_env(name: str) -> VerifyKey:
    return _verify_key(_signer("hmac-sha256"), _read_env(name, "--hmac-key-env"), f"${name}")


def operator_trust_file() -> Path | None:
    """The trust file named by ``$QLCAPSULE_TRUST_FILE`` (the operator's, never a capsule's), if set."""
    value = os.environ.get(ENV_TRUST, "").strip()
    return Path(os.path.expanduser(value)) if value else None


def load_trust_file(path: str | Path) -> list[VerifyKey]:
    """Keys from a trust file (YAML or JSON); see docs/signing.md for the format.

    The file (and every ``key_file`` it names) must not be writable by every account.
    """
    from pydantic import BaseModel, ConfigDict, ValidationError  # noqa: PLC0415 -- start-up: pydantic loads only when a trust file is read

    from ..format.yamlsrc import load_file  # noqa: PLC0415 -- start-up: yaml loads only when a trust file is read
    from ..plugins.components import format_validation_error  # noqa: PLC0415 -- start-up: the component bases load only when a trust file is read

    class Entry(BaseModel):
        model_config = ConfigDict(extra="forbid")
        algorithm: str
        key: str | None = None
        key_file: str | None = None
        key_env: str | None = None
        keyid: str | None = None
        name: str | None = None

    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise InputError(f"{p}: trust file not found") from None
    except OSError as exc:
        raise InputError(f"{p}: trust file: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{p}: trust file is a directory")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{p}: trust file is not a regular file (a device, FIFO or socket)")
    if st.st_size > MAX_TRUST_BYTES:
        raise InputError(f"{p}: trust file is larger than {MAX_TRUST_BYTES // (1024 * 1024)} MiB")
    _refuse_world_writable(st, f"{p}: trust file", p, "add a key")
    data, _ = load_file(p)
    if isinstance(data, dict) and set(data) <= {"keys", "version"}:
        data = data.get("keys")
    if not isinstance(data, list) or not data:
        raise InputError(f"{p}: a trust file is a non-empty list of keys (or a mapping with 'keys:')")
    keys: list[VerifyKey] = []
    for i, raw in enumerate(data):
        where = f"{p}: keys[{i}]"
        try:
            entry = Entry.model_validate(raw)
        except ValidationError as exc:
            raise InputError(format_validation_error(exc, where, Entry)) from None
        given = [f for f in ("key", "key_file", "key_env") if getattr(entry, f)]
        if len(given) != 1:
            raise InputError(f"{where}: give exactly one of key, key_file, key_env")
        signer = _signer(entry.algorithm)
        if entry.key is not None and signer.name == "hmac-sha256":
            raise InputError(f"{where}: an HMAC secret cannot be written in a trust file; use key_env or key_file")
        if entry.key is not None:
            material, source = entry.key.encode("utf-8"), f"{where}"
        elif entry.key_file is not None:
            kf = (p.parent / entry.key_file) if not os.path.isabs(entry.key_file) else Path(entry.key_file)
            material, source = _read_key_file(kf, f"{where}: key_file", pipes=False), str(kf)
        else:
            material, source = _read_env(str(entry.key_env), f"{where}: key_env"), f"${entry.key_env}"
        vk = _verify_key(signer, material, entry.name or source)
        if entry.keyid and entry.keyid != vk.keyid:
            raise InputError(f"{where}: keyid {entry.keyid[:16]}... does not match the key ({vk.keyid[:16]}...)")
        keys.append(vk)
    return keys


def _temp_file(folder: Path, data: bytes, mode: int) -> str:
    """``data`` in a new file in ``folder`` (short name: the final name may be long), fsynced."""
    fd, tmp = mkstemp(".qlcapsule-keygen.", folder, ".tmp")
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def _unlink_quietly(path: str | Path | None) -> None:
    if path is None:
        return
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _install_pair(private: Path, private_data: bytes, pub: Path | None, pub_data: bytes | None, *, force: bool) -> None:
    """Put a key pair in place: both or neither.

    Both halves are written to temporary files first. Without ``force`` they are
    hard-linked into place (never clobbering; the private key first, so a concurrent
    ``dev_key`` sees a usable key), and a half that cannot be placed takes the other
    back out. With ``force`` the old public key is kept aside, the new one renamed
    in, then the private key; if that fails the old public key is put back, so the
    old pair stays a pair.
    """
    folder = private.parent
    folder.mkdir(parents=True, exist_ok=True)
    temps: list[str] = []
    target = private
    backup: str | None = None
    placed: list[Path] = []
    try:
        priv_tmp = _temp_file(folder, private_data, 0o600)
        temps.append(priv_tmp)
        pub_tmp = _temp_file(folder, pub_data, 0o644) if pub is not None and pub_data is not None else None
        if pub_tmp is not None:
            temps.append(pub_tmp)
        if not force:
            for tmp, dest in ((priv_tmp, private), (pub_tmp, pub)):
                if tmp is None or dest is None:
                    continue
                target = dest
                try:
                    os.link(tmp, dest)  # fails if the path exists: no clobbering, no race
                except FileExistsError:
                    raise InputError(f"{dest}: already exists; not overwriting (use --force)") from None
                placed.append(dest)
            placed.clear()
            return
        if pub is not None and pub_tmp is not None:
            target = pub
            if os.path.lexists(pub):
                backup = os.path.join(folder, f".qlcapsule-keygen.{os.urandom(8).hex()}.old")
                try:
                    os.link(pub, backup, follow_symlinks=False)
                except OSError:
                    backup = None
            os.replace(pub_tmp, pub)
            placed.append(pub)
        target = private
        os.replace(priv_tmp, private)
        placed.clear()
    except OSError as exc:
        raise InputError(f"{target}: {exc.strerror or exc}") from None
    finally:
        for dest in placed:  # a half that went in alone comes back out (or the old one goes back)
            try:
                if backup is not None and dest == pub:
                    os.replace(backup, dest)
                    backup = None
                else:
                    _unlink_quietly(dest)
            except OSError:
                pass
        for tmp in temps:
            _unlink_quietly(tmp)
        _unlink_quietly(backup)


def _check_key_folder(path: Path) -> None:
    """The private key's folder exists (it is not created: a typo in -o is not a new directory tree),
    and no capsule around it would seal, export and deliver the key with its files."""
    folder = path.parent
    if not folder.is_dir():
        what = "is not a directory" if folder.exists() else "no such directory"
        raise InputError(f"{path}: {folder}: {what} (keygen creates the key file, not its folder)")
    root = _enclosing_capsule(folder.resolve())
    if root is None:
        return
    rel = path.resolve().relative_to(root).as_posix()
    try:
        globs = Capsule.load(root, strict=False).globs()
        parts = rel.split("/")
        taken = not any(globs.prune_dir("/".join(parts[:i])) for i in range(1, len(parts))) and globs.wants_in_walk(rel)
    except QlcapsuleError:  # a capsule.yaml that cannot be read: assume it would take the key
        taken = True
    if taken:
        cwd = Path.cwd().resolve()
        where = os.path.relpath(root) if root == cwd or cwd in root.parents else str(root)
        raise InputError(
            f"{path}: would be inside the capsule in {where}, whose next seal and export would carry the private "
            f"key; write it outside (-o ~/.config/qlcapsule/{path.name}, say) or exclude it in "
            f"{os.path.join(where, DEFINITION_FILE)}"
        )


def _enclosing_capsule(folder: Path) -> Path | None:
    """The nearest directory from ``folder`` up that holds a capsule.yaml, or None."""
    for directory in (folder, *folder.parents):
        if (directory / DEFINITION_FILE).is_file():
            return directory
    return None


def _public_path(private: Path) -> Path:
    # like ssh-keygen: the public half is always PATH.pub
    return private.with_name(private.name + ".pub")


def keygen(key_type: str = "ed25519", out: str | Path | None = None, *, force: bool = False) -> dict[str, Any]:
    """Generate a key pair; write the private half 0600 (and ``.pub`` for asymmetric keys).

    The pair is written together: both files or neither (the old pair stays when
    ``force`` replacing fails half-way).
    """
    signer = _signer(key_type)
    if out is not None and str(out) == "":
        raise InputError("-o: an empty file name")
    path = Path(out or DEFAULT_KEY)
    if str(out) != "-" and (not path.name or path.name == ".." or path.is_dir()):
        raise InputError(
            f"{path}: is a directory; -o takes the file name of the private key (e.g. {path / DEFAULT_KEY})"
        )
    pair = signer.generate_key()
    result: dict[str, Any] = {"type": signer.name, "keyid": pair.keyid, "private": None, "public": None}
    if str(out) == "-":
        result["material"] = pair.private
        result["public_material"] = pair.public
        return result
    _check_key_folder(path)
    pub = _public_path(path) if pair.public else None
    if pub is not None and pub.is_dir():
        raise InputError(f"{pub}: is a directory; not replacing it with the public key")
    if not force:
        for p in (path, pub):
            if p is not None and os.path.lexists(p):
                raise InputError(f"{p}: already exists; not overwriting (use --force)")
    _install_pair(path, pair.private, pub, pair.public, force=force)
    result["private"] = str(path)
    result["public"] = str(pub) if pub is not None else None
    event(log, "keygen.done", type=signer.name, keyid=pair.keyid)
    return result


def qlcapsule_home() -> Path:
    return Path(os.environ.get(ENV_HOME) or Path.home() / ".config" / "qlcapsule")


def dev_key(create: bool = True) -> Path:
    """The development ed25519 key, created on first use (with a warning on stderr).

    An existing file that is not an Ed25519 private key is refused, naming it: the
    development key is never read as anything else (an HMAC secret, say).
    """
    path = qlcapsule_home() / "dev.key"
    if path.is_file():
        _check_dev_key(path)
        return path
    if not create:
        raise CredentialsError(f"{path}: no development key (run 'qlcapsule sign --dev-key' or 'ship' once)")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    _check_own(path.parent, "the folder of the development key")
    try:
        info = keygen("ed25519", path)
    except InputError:
        if path.is_file():  # another process created it first
            _check_dev_key(path)
            return path
        raise
    _warn(
        f"created a DEVELOPMENT signing key at {path} (key id {info['keyid'][:16]}); "
        f"it is not a trust anchor: use 'qlcapsule keygen' and --key for releases"
    )
    return path


def _check_own(path: Path, what: str) -> None:
    """``path`` belongs to this account and (a folder) is not open to every account.

    The development key is found, not named: another account's key or folder would let
    that account choose what this one signs with.
    """
    if not hasattr(os, "geteuid"):
        return
    me = os.geteuid()
    try:
        st = path.stat()
    except OSError as exc:
        raise CredentialsError(f"{path}: {exc.strerror or exc}") from None
    if st.st_uid != me:
        raise CredentialsError(
            f"{path}: {what} belongs to another account (uid {st.st_uid}, you are {me}): refused; "
            f"set {ENV_HOME} to a folder of your own"
        )
    if stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
        raise CredentialsError(
            f"{path}: {what} is writable by every account (mode {st.st_mode & 0o777:04o}): refused; "
            f"run 'chmod o-w {path}'"
        )


def _check_dev_key(path: Path) -> None:
    _check_own(path.parent, "the folder of the development key")
    _check_own(path, "the development key")
    material = _read_key_file(path, "development key")
    if not _signer("ed25519").sniff_private(material):
        raise CredentialsError(
            f"{path}: the development key is not an Ed25519 private key (damaged?); "
            f"move it away and a new one is created on next use"
        )


# -- signing ------------------------------------------------------------------

_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_expires(text: str, now: _dt.datetime) -> _dt.datetime:
    """``30d``, ``12h``, ``2w`` ... from ``now``, or an RFC 3339 time/date."""
    t = text.strip()
    if not t:
        raise InputError("--expires: empty; give a duration (30d, 12h, 2w) or an RFC 3339 time, or omit --expires")
    m = _DURATION.match(t.lower())
    try:
        if m:
            when = now + _dt.timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])
        else:
            try:
                when = _dt.datetime.fromisoformat(t.replace("Z", "+00:00"))
            except ValueError:
                raise InputError(
                    f"--expires: {text!r} is neither a duration (30d, 12h, 2w) nor an RFC 3339 time"
                ) from None
            if when.tzinfo is None:
                when = when.replace(tzinfo=_dt.timezone.utc)
        shown = format_time(when)  # the statement must be able to hold it
    except OverflowError:
        raise InputError(f"--expires: {text!r} is too far in the future (after the year 9999)") from None
    if when <= now:
        raise InputError(f"--expires: {shown} is not in the future")
    return when


@dataclass
class SignResult:
    capsule: str
    version: str
    digest: str
    keyid: str
    algorithm: str
    path: Path
    created: str
    expires: str | None = None
    keyids: list[str] = field(default_factory=list)
    replaced: bool = False
    dropped: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "capsule": self.capsule,
            "version": self.version,
            "digest": self.digest,
            "keyid": self.keyid,
            "algorithm": self.algorithm,
            "signature": str(self.path),
            "created": self.created,
            "expires": self.expires,
            "signatures": len(self.keyids),
            "keyids": self.keyids,
            "replaced": self.replaced,
            "dropped": self.dropped,
        }


def read_sig(path: Path) -> bytes | None:
    """capsule.sig's bytes, None when there is none; a symlink, a directory, a FIFO... is refused.

    capsule.sig is not in the lock, so nothing else checks what it is: a symlink would
    let a capsule point its signature anywhere on the verifier's disk.
    """
    return read_regular(path, name="capsule.sig", limit=MAX_SIG_BYTES, too_big=SignatureError)


def _existing(path: Path) -> Envelope | None:
    try:
        raw = read_sig(path)  # a symlink or a directory is refused (UnsafePathError), not replaced
        if raw is None:
            return None
        return Envelope.from_json(raw, str(path))
    except SignatureError as exc:
        _warn(f"{exc.message}; replacing it")
        return None


def _cosign_refusal(
    old: Envelope,
    trusted: bool,
    build: Any,
    exp: _dt.datetime | None,
    now: _dt.datetime,
    where: str,
) -> str | None:
    """Why the existing statement may not be co-signed, or None when it may."""
    if not trusted:
        return f"over a statement no trusted key signed (trusted: this signing key and --trust/{ENV_TRUST})"
    try:
        st = Statement.parse(old.payload, where)
    except SignatureError:
        return "over a statement that is not a qlcapsule statement"
    # co-sign only a statement this capsule would produce itself (same subject, digest,
    # provenance; only its time, expiry and tool version may differ)
    tool = str(st.raw.get("predicate", {}).get("tool", {}).get("version", ""))
    if old.payload != build(st.created, st.expires, tool):
        return "over a different statement (re-sign with those keys)"
    if st.expires is not None and st.expires <= now:
        return f"over a statement that expired at {format_time(st.expires)}"
    if exp is not None and st.expires != exp:
        return "over a statement with another expiry (--expires)"
    return None


def sign_capsule(
    root: str | Path,
    key: str | Path | SigningKey | None = None,
    *,
    key_env: str | None = None,
    key_type: str | None = None,
    expires: str | None = None,
    trust: str | Path | None = None,
    now: _dt.datetime | None = None,
) -> SignResult:
    """Sign a sealed, unchanged capsule; write capsule.sig atomically.

    Co-signing: the existing statement is signed again (and other keys' signatures
    kept) only when a trusted key already signed it: the signing key itself, or a
    key of the trust file ``trust`` (default ``$QLCAPSULE_TRUST_FILE``). Only the
    signatures those keys verify are kept; anything else gets a fresh statement.
    This key's earlier signature is replaced. capsule.sig is never taken on trust.
    """
    # the raw generator record of capsule.yaml (as written, validated by the model) is what we sign
    capsule = Capsule.load(root, strict=False)
    try:
        lock = capsule.verify_integrity()
    except IntegrityError as exc:
        hint = "" if "qlcapsule seal" in exc.message else " (run 'qlcapsule seal' first)"
        raise IntegrityError(f"cannot sign: {exc.message}{hint}") from None
    now = (now or _dt.datetime.now(_dt.timezone.utc)).astimezone(_dt.timezone.utc).replace(microsecond=0)
    # '' is refused, not taken as "no expiry"
    exp = parse_expires(expires, now) if expires is not None else None
    skey = load_signing_key(key, key_env=key_env, key_type=key_type)
    # --trust is bad input even with nothing to co-sign; the operator's file is read only when needed
    roots: list[VerifyKey] = load_trust_file(trust) if trust else []
    old = _existing(capsule.sig_path)
    payload: bytes | None = None
    dropped = 0
    replaced = False
    signatures: list[EnvelopeSignature] = []
    gen = capsule.setting("generator")
    generator = {k: v for k, v in gen.items() if k != "answers" and v is not None} if isinstance(gen, dict) else None

    def build(created: _dt.datetime, expires: _dt.datetime | None, tool: str) -> bytes:
        return Statement.build(
            name=capsule.name,
            version=capsule.version,
            digest=lock.digest,
            files=len(lock.files),
            created=created,
            expires=expires,
            generator=generator,
            tool_version=tool,
        )

    if old:
        # capsule.sig is content like any other: a signature counts only when a trusted key
        # verifies it over the PAE bytes (key ids are hints; a claimed key id proves nothing)
        own = skey.verify_key()
        message = old.pae()
        by_own = [s for s in old.signatures if own.check(message, s.sig)]
        replaced = bool(by_own) or any(s.keyid == skey.keyid for s in old.signatures)
        others = [s for s in old.signatures if not any(s is o for o in by_own)]
        operator = operator_trust_file() if others and not trust else None
        if operator is not None:
            roots = load_trust_file(operator)
        vouched = [s for s in others if any(k.check(message, s.sig) for k in roots)]
        if others:
            shown = str(capsule.shown / capsule.sig_path.name)
            why = _cosign_refusal(old, bool(by_own or vouched), build, exp, now, shown)
            if why is None:
                payload, signatures = old.payload, vouched
                dropped = len(others) - len(vouched)
                if dropped:
                    _warn(
                        f"{shown}: dropping {dropped} signature(s) no trusted key verifies (trusted: "
                        f"this signing key and --trust/{ENV_TRUST}; add the co-signers' keys there to keep theirs)"
                    )
            else:
                dropped = len(others)
                _warn(f"{shown}: dropping {dropped} signature(s) {why}; signing a fresh statement")
    if payload is None:
        payload = build(now, exp, __version__)
    sig = skey.signer.sign(skey.key, pae(PAYLOAD_TYPE, payload))
    signatures.append(EnvelopeSignature(skey.keyid, sig))
    envelope = Envelope(payload, PAYLOAD_TYPE, signatures)
    atomic_write(capsule.sig_path, envelope.to_json())
    final = Statement.parse(payload)
    event(log, "sign.done", capsule=capsule.ref, keyid=skey.keyid, signatures=len(signatures))
    return SignResult(
        capsule=capsule.name,
        version=capsule.version,
        digest=lock.digest,
        keyid=skey.keyid,
        algorithm=skey.algorithm,
        path=capsule.sig_path,
        created=format_time(final.created),
        expires=format_time(final.expires) if final.expires else None,
        keyids=[s.keyid for s in signatures],
        replaced=replaced,
        dropped=dropped,
    )


# -- verifying ----------------------------------------------------------------


def _store_may_exist(root: Path) -> bool:
    """Cheap pre-check, so verify outside any store never imports pygit2."""
    if os.environ.get("QLCAPSULE_STORE"):
        return True
    return any((p / ".git").exists() for p in (root, *root.parents))


def _store_latest(root: Path, name: str, trusted_by: dict[str, Any]) -> str | None:
    """The newest version the version store holds on the capsule's default branch or tags whose own
    signature verifies against ``trusted_by`` (the operator's keys, as ``merge.trusted_versions`` takes
    them): an unsigned version, or one signed by another key, is no reason to call this one a rollback."""
    if not _store_may_exist(root):
        return None
    try:
        from ..store import versions as store  # noqa: PLC0415 -- cycle: the rollback check reads the store's newest version (pyproject.toml ignore_imports)
        from ..store.merge import trusted_versions  # noqa: PLC0415 -- cycle: the rollback check reads the store's newest version (pyproject.toml ignore_imports)
    except ImportError:
        return None
    try:
        accept = trusted_versions(store.open_store(root, None, create=False), name, **trusted_by)
        found = store.latest_version(root, name, accept=accept)
    except StoreError as exc:  # no store here: nothing is known
        event(log, "verify.no_store", reason=exc.message)
        return None
    return str(found) if found else None


@dataclass
class Policy:
    """capsule.yaml's ``policy`` (see :class:`qlcapsule.format.model.PolicyConfig`)."""

    require_signature: bool = False
    threshold: int = 1
    trust: str | None = None
    min_version: str | None = None


def read_policy(capsule: Capsule) -> Policy:
    """The signature policy of capsule.yaml, as the model validated it."""
    full = capsule.definition.policy
    return Policy(full.require_signature, full.threshold, full.trust, full.min_version)


def _check_statement(
    st: Statement,
    capsule: Capsule,
    lock: Lock,
    *,
    where: str,
    now: _dt.datetime,
    min_version: str | None,
    check_store: bool,
    trusted_by: dict[str, Any],
) -> None:
    if st.subject_name != capsule.ref:
        raise SignatureError(
            f"{where}: signed for {st.subject_name} but capsule.yaml says {capsule.ref} "
            f"(a signature from another capsule or version)"
        )
    if st.name != capsule.name or st.version != capsule.version:
        raise SignatureError(
            f"{where}: the statement's predicate says name {st.name!r}, version {st.version!r} but its subject "
            f"and capsule.yaml say {capsule.ref} (an inconsistent statement)"
        )
    if st.digest != lock.digest:
        raise SignatureError(
            f"{where}: subject digest mismatch: signed sha256:{st.digest[:16]}... but the files on disk "
            f"hash to sha256:{lock.digest[:16]}... (re-sealed after signing; sign again)"
        )
    if st.expires is not None and now >= st.expires:
        raise SignatureError(f"{where}: signature expired at {format_time(st.expires)}")
    if min_version and semver_key(st.version) < semver_key(min_version):
        raise SignatureError(f"{where}: rollback: signed version {st.version} is older than the minimum {min_version}")
    if check_store:
        latest = _store_latest(capsule.root, capsule.name, trusted_by)
        if latest and SEMVER.match(latest) and semver_key(st.version) < semver_key(latest):
            raise SignatureError(
                f"{where}: rollback: signed version {st.version} is older than {latest}, "
                f"the newest version of {capsule.name} in the version store (--allow-rollback to accept)"
            )


def verify_signatures(
    capsule: Capsule,
    lock: Lock,
    *,
    keys: Sequence[str | Path] = (),
    hmac_key_envs: Sequence[str] = (),
    trust: str | Path | None = None,
    threshold: int | None = None,
    require_signature: bool = False,
    min_version: str | None = None,
    allow_rollback: bool = False,
    now: _dt.datetime | None = None,
) -> dict[str, Any]:
    """Check capsule.sig against trusted keys and the policy; raise SignatureError on failure.

    ``lock`` must be the lock the integrity check just proved equal to the disk.
    Trusted keys come only from the caller: ``keys``, ``hmac_key_envs``, ``trust``
    (these imply a signature is required), else the operator's trust file
    ``$QLCAPSULE_TRUST_FILE``. capsule.yaml's ``policy`` only narrows: threshold
    and minimum version are the stricter of the argument and the policy, and
    ``policy.require_signature`` requires one; ``policy.trust`` is never read (the
    content under test cannot name the keys that judge it). With no trusted key
    a signed capsule is reported ``unchecked``, never ``verified``.
    """
    policy = read_policy(capsule)
    explicit = bool(keys or hmac_key_envs or trust)
    operator = None if explicit else operator_trust_file()
    reasons = [
        r
        for r, on in (
            ("--require-signature", require_signature),
            ("policy.require_signature in capsule.yaml", policy.require_signature),
            ("trusted keys were given", explicit),
            # the version is only known from a verified statement: without keys it cannot be checked
            ("--min-version", min_version is not None),
            ("policy.min_version in capsule.yaml", policy.min_version is not None),
        )
        if on
    ]
    where = str(capsule.shown / capsule.sig_path.name)  # as the user named the capsule
    need = max(threshold or 1, policy.threshold)
    if min_version is not None and not SEMVER.match(min_version):
        raise InputError(f"--min-version: {min_version!r} is not a SemVer 2.0.0 version")
    floor = max((v for v in (min_version, policy.min_version) if v), key=semver_key, default=None)
    # Keys the user named are loaded first: a missing or malformed key file is bad input
    # (exit 2) and must be reported as such, whether or not the capsule is signed.
    trusted: list[VerifyKey] = [load_public_key(k) for k in keys]
    trusted += [load_hmac_env(n) for n in hmac_key_envs]
    if trust:
        trusted += load_trust_file(trust)
    if operator is not None:
        trusted += load_trust_file(operator)
    raw = read_sig(capsule.sig_path)
    if raw is None:
        if reasons:
            raise SignatureError(
                f"{where}: missing: the capsule is not signed but a signature is required ({reasons[0]})"
            )
        return {"status": "unsigned"}
    try:
        envelope = Envelope.from_json(raw, where)
        if not trusted:
            ignored = " (policy.trust in capsule.yaml is not a trust root)" if policy.trust else ""
            if reasons:
                raise SignatureError(
                    f"{where}: a signature is required ({reasons[0]}) but no trusted keys were given{ignored}: "
                    f"pass --key, --hmac-key-env or --trust, or set {ENV_TRUST}"
                )
            return {
                "status": "unchecked",
                "signatures": len(envelope.signatures),
                "reason": f"signatures were not checked against any trusted key; give --key, --hmac-key-env, "
                f"--trust or {ENV_TRUST}{ignored}",
            }
        accepted = verify_envelope(envelope, trusted, need, where)
        # only now, with the PAE bytes verified, is the payload read
        st = Statement.parse(envelope.payload, where)
        now = now or _dt.datetime.now(_dt.timezone.utc)
        trusted_by = {
            "keys": [str(k) for k in keys],
            "hmac_key_envs": list(hmac_key_envs),
            "trust": str(trust or operator) if (trust or operator) else None,
        }
        _check_statement(
            st,
            capsule,
            lock,
            where=where,
            now=now,
            min_version=floor,
            check_store=not allow_rollback,
            trusted_by=trusted_by,
        )
    except QlcapsuleError:
        raise
    except Exception as exc:  # noqa: BLE001 - fail closed: an unexpected error is never a pass
        raise SignatureError(f"{where}: verification failed: {type(exc).__name__}: {exc}") from exc
    event(log, "verify.signatures", capsule=capsule.ref, keys=",".join(k.keyid[:16] for k in accepted))
    return {
        "status": "verified",
        "threshold": need,
        "keys": [{"keyid": k.keyid, "algorithm": k.algorithm, "source": k.source} for k in accepted],
        "created": format_time(st.created),
        "expires": format_time(st.expires) if st.expires else None,
    }

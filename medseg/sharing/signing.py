"""Ed25519 keys and signatures of ``manifest.json`` (``cryptography``), offline.

The signature covers the manifest's exact bytes; the manifest holds the sha256 of every other file, so a valid
signature from a trusted key vouches for the whole package, and a changed file is named by its hash.

* ``medseg keys new --out DIR`` writes ``DIR/<name>.key`` (private, PEM, mode 0600: keep it) and
  ``DIR/<name>.pub`` (public, PEM: give it to the people who will run your models).
* ``medseg package --sign DIR/<name>.key`` writes ``manifest.sig``: JSON with the algorithm, the key id (sha256
  of the raw public key) and the base64 signature.
* ``medseg predict --require_signed --trusted_keys DIR`` accepts a package only when a ``*.pub`` in ``DIR``
  verifies its signature.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from medseg.sharing.errors import SharingError

ALGORITHM = "ed25519"


@dataclass
class KeyPair:
    private: Path
    public: Path
    key_id: str


def _raw_public(public_key) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(public_key) -> str:
    """sha256 of the raw 32-byte public key, hex (what ``manifest.sig`` names)."""
    return hashlib.sha256(_raw_public(public_key)).hexdigest()


def new_keys(out: str | Path, name: str = "medseg") -> KeyPair:
    """Write a new Ed25519 key pair ``out/<name>.key`` (0600) and ``out/<name>.pub``.

    Raises:
        SharingError: either file exists already, or ``out`` cannot be written.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

    out = Path(out)
    private, public = out / f"{name}.key", out / f"{name}.pub"
    for path in (private, public):
        if path.exists():
            raise SharingError(path, "already exists", "choose another --out or --name; never overwrite a key")
    key = Ed25519PrivateKey.generate()
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
        public.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    except OSError as exc:
        private.unlink(missing_ok=True)
        raise SharingError(out, f"cannot be written ({exc.strerror or exc})", "choose a folder you can write") from exc
    return KeyPair(private, public, key_id(key.public_key()))


def _load_private(path: Path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise SharingError(path, f"is not a private key ({exc})", "pass the .key written by 'medseg keys new'") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SharingError(path, "is not an Ed25519 key", "make one with 'medseg keys new'")
    return key


def _load_public(path: Path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(path.read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise SharingError(path, f"is not a public key ({exc})", "use the .pub written by 'medseg keys new'") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise SharingError(path, "is not an Ed25519 public key", "use the .pub written by 'medseg keys new'")
    return key


def sign_manifest(manifest_file: Path, private_key: str | Path, signature_file: Path) -> str:
    """Sign ``manifest_file``'s bytes; write ``signature_file``; return the key id."""
    key = _load_private(Path(private_key))
    signature = key.sign(manifest_file.read_bytes())
    kid = key_id(key.public_key())
    record = {"algorithm": ALGORITHM, "key_id": kid, "signature": base64.b64encode(signature).decode()}
    signature_file.write_text(json.dumps(record, indent=2) + "\n")
    return kid


def trusted_keys(folder: str | Path) -> dict[str, object]:
    """key id -> public key, for every ``*.pub`` in ``folder``.

    Raises:
        SharingError: the folder does not exist or holds no public key.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SharingError(folder, "trusted-keys folder not found", "pass the folder holding the senders' .pub files")
    keys = {}
    for path in sorted(folder.glob("*.pub")):
        key = _load_public(path)
        keys[key_id(key)] = key
    if not keys:
        raise SharingError(folder, "holds no .pub key", "copy the sender's public key (.pub) into it")
    return keys


def verify_signature(manifest_file: Path, signature_file: Path, keys: dict[str, object] | None) -> str:
    """Check ``signature_file`` over ``manifest_file`` with one of ``keys``.

    Returns:
        a description of the signer ("valid signature by key <id>"); with ``keys`` None, only that the
        signature is well-formed and which key it names (it cannot be verified without trusted keys).

    Raises:
        SharingError: malformed signature, unknown key, or a signature that does not match (the manifest changed).
    """
    from cryptography.exceptions import InvalidSignature

    name = signature_file.name
    try:
        record = json.loads(signature_file.read_text())
        signature = base64.b64decode(record["signature"], validate=True)
        kid = str(record["key_id"])
        if record.get("algorithm") != ALGORITHM:
            raise ValueError(f"algorithm {record.get('algorithm')!r}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SharingError(name, f"is not a medseg signature ({exc})", "re-sign the package") from exc
    if keys is None:
        return f"signed by key {kid[:16]}... (not verified: no --trusted_keys given)"
    if kid not in keys:
        raise SharingError(
            name, f"is signed by key {kid[:16]}..., which is not among the trusted keys", "add the sender's .pub"
        )
    try:
        keys[kid].verify(signature, manifest_file.read_bytes())
    except InvalidSignature as exc:
        raise SharingError(
            manifest_file.name,
            f"was changed after it was signed (the signature of key {kid[:16]}... does not match)",
            "ask the sender for a new copy",
        ) from exc
    return f"valid signature by trusted key {kid[:16]}..."

"""Files from the Hugging Face Hub, named `hf://OWNER/REPO/PATH/IN/REPO`, or local paths.

Shared by the model adapters (F5-TTS and XTTS weights, the Vocos vocoder). A file already in the
local Hugging Face cache is used without a network request. When the Hub cannot be reached
(offline, `HF_HUB_OFFLINE=1`, a firewall) the error says which file to fetch on a connected
machine and how to pass its local path instead.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from voicetune.errors import UsageError, VoicetuneError

log = logging.getLogger("voicetune.models.hub")

HF_PREFIX = "hf://"


@dataclass(frozen=True)
class HubFile:
    repo_id: str  # "SWivid/F5-TTS"
    filename: str  # "F5TTS_v1_Base/model_1250000.safetensors"
    revision: str | None = None

    def __str__(self) -> str:
        at = f"@{self.revision}" if self.revision else ""
        return f"{HF_PREFIX}{self.repo_id}/{self.filename}{at}"


def is_hub_spec(spec: str | os.PathLike) -> bool:
    return str(spec).startswith(HF_PREFIX)


def parse_hub_spec(spec: str, flag: str = "--pretrained") -> HubFile:
    """`hf://OWNER/REPO/PATH[@REVISION]` -> HubFile; a malformed spec is a UsageError naming `flag`."""
    body = str(spec)[len(HF_PREFIX) :]
    revision = None
    if "@" in body:
        body, revision = body.rsplit("@", 1)
    parts = [p for p in body.split("/") if p]
    if len(parts) < 3:
        raise UsageError(
            f"{flag} {spec}: write hf://OWNER/REPO/PATH/IN/REPO, e.g. "
            "hf://SWivid/F5-TTS/F5TTS_v1_Base/model_1250000.safetensors"
        )
    return HubFile("/".join(parts[:2]), "/".join(parts[2:]), revision or None)


def hub_offline() -> bool:
    """True when the user asked huggingface_hub to stay offline (read at call time, not import time)."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in {"1", "true", "yes", "on"}


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hub's endpoint opens within `timeout` seconds. Used before an
    optional download, because huggingface_hub retries an unreachable Hub for ~25 s."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        with socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout):
            return True
    except OSError:
        return False


def cached_hub_file(file: HubFile) -> Path | None:
    """The file from the local Hugging Face cache, or None; never touches the network."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(file.repo_id, file.filename, revision=file.revision)
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


def download_hub_file(file: HubFile, flag: str = "--pretrained") -> Path:
    """Download (or find in the cache) one file of a Hub repository; VoicetuneError when impossible."""
    cached = cached_hub_file(file)
    if cached is not None:
        return cached
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    fetch_hint = (
        f"on a machine with internet run `hf download {file.repo_id} {file.filename} --local-dir DIR`, "
        f"copy DIR here and pass {flag} DIR/{file.filename}"
    )
    if hub_offline():
        raise VoicetuneError(
            f"{flag} {file}: not in the local Hugging Face cache and HF_HUB_OFFLINE is set; " + fetch_hint
        )
    if not hub_reachable():  # at once, not after huggingface_hub's half minute of retries
        raise VoicetuneError(
            f"{flag} {file}: the Hugging Face Hub cannot be reached and the file is not in "
            f"the local cache; {fetch_hint}"
        )
    log.info("downloading %s", file)
    try:
        path = hf_hub_download(file.repo_id, file.filename, revision=file.revision)
    except LocalEntryNotFoundError:  # the network failed and the cache has nothing
        raise VoicetuneError(
            f"{flag} {file}: the Hugging Face Hub cannot be reached and the file is not in "
            f"the local cache; {fetch_hint}"
        ) from None
    except (RepositoryNotFoundError, EntryNotFoundError) as err:
        raise UsageError(
            f"{flag} {file}: no such file on the Hugging Face Hub ({type(err).__name__}); "
            "check the repository and path, or pass a local file"
        ) from None
    except OSError as err:  # other HTTP and disk errors
        said = " ".join(str(err).split())  # the hub's message whole, on one line
        raise VoicetuneError(f"{flag} {file}: download failed: {said}; {fetch_hint}") from None
    return Path(path)


def describe_source(spec: str | os.PathLike) -> str:
    """Where a weights file will come from, said without touching the network."""
    if is_hub_spec(spec):
        file = parse_hub_spec(str(spec))
        cached = cached_hub_file(file)
        if cached is not None:
            return f"{spec} (in the local Hugging Face cache: {cached})"
        return f"{spec} (downloaded from the Hugging Face Hub into its cache when `voicetune train` starts)"
    path = Path(spec).expanduser()
    return f"{path}" + ("" if path.is_file() else " (no such file: `voicetune train` will need it)")


def resolve_file(spec: str | os.PathLike, flag: str = "--pretrained") -> Path:
    """A local file path, or an `hf://` file downloaded to (or found in) the Hugging Face cache."""
    if is_hub_spec(spec):
        return download_hub_file(parse_hub_spec(str(spec), flag), flag)
    path = Path(spec).expanduser()
    if not path.is_file():
        what = "is a directory; name the weights file inside it" if path.is_dir() else "no such file"
        raise UsageError(f"{flag} {spec}: {what}; give a local weights file or hf://OWNER/REPO/FILE")
    return path

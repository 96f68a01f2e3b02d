"""The studio's workspace: one folder that holds everything the studio reads and writes.

WORKSPACE/
  recordings/     uploaded (and fetched) recordings, one folder per dataset
  datasets/NAME/  prepared datasets (`voicetune prepare` layout)
  runs/NAME/      training runs (`voicetune train` layout)
  exports/        exported models, as folders and as the zip files offered for download
  synth/          synthesized speech

  .studio/settings.json   what the studio keeps per workspace (the Whisper model)

Every path typed into a page goes through `Workspace.inside`, which refuses anything that leads
out of the workspace (`..`, an absolute path elsewhere, a symlink pointing out); a folder handed to
`prepare` goes through `Workspace.folder_inside`, which refuses it when any file or folder in it
leads out (a symlink inside the workspace that points elsewhere). The state a page shows is read
back from these files, so a refresh, a second tab or a restarted studio shows the same.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from voicetune import fsio
from voicetune.config import parse_size
from voicetune.errors import UsageError
from voicetune.net import is_loopback

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SETTINGS = Path(".studio") / "settings.json"
DEFAULT_WHISPER = "small"


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def open(cls, folder: Path) -> Workspace:
        """Create (if needed) and open a workspace folder."""
        root = Path(folder).expanduser().resolve()
        if root.exists() and not root.is_dir():
            raise UsageError(f"--workspace {folder}: is a file; pass a folder")
        for sub in ("recordings", "datasets", "runs", "exports", "synth"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        return cls(root)

    def inside(self, typed: str, what: str = "path") -> Path:
        """The path a user typed, resolved inside the workspace; a path that leaves it is refused.

        Relative paths are taken from the workspace folder."""
        text = (typed or "").strip()
        if not text:
            raise UsageError(f"{what}: empty; type a path inside the workspace {self.root}")
        candidate = Path(text).expanduser()
        resolved = (candidate if candidate.is_absolute() else self.root / candidate).resolve()
        if resolved != self.root and not resolved.is_relative_to(self.root):
            raise UsageError(
                f"{what} {text!r} is outside the workspace {self.root}; "
                "only paths inside the workspace can be used (copy the files into it first)"
            )
        return resolved

    def folder_inside(self, typed: str, what: str = "folder") -> Path:
        """A folder inside the workspace whose every file and subfolder stays inside it too: a
        symlink in it that leads out is refused, naming it (prepare reads every file below)."""
        folder = self.inside(typed, what)
        for parent, dirs, files in os.walk(folder, followlinks=False):
            for entry in sorted(dirs + files):
                path = Path(parent) / entry
                resolved = path.resolve()
                if path.is_symlink() and not resolved.is_relative_to(self.root):
                    raise UsageError(
                        f"{path.relative_to(self.root)} in the {what} is a symlink to {resolved}, outside the "
                        f"workspace {self.root}; copy the file into the workspace instead of linking it"
                    )
        return folder

    def whisper_model(self) -> str:
        """The Whisper model (name or folder) this workspace scores and transcribes with: the one
        last chosen on a page, else $VOICETUNE_WHISPER_MODEL, else the one its newest dataset was
        transcribed with (a dataset prepared from the command line), else "small"."""
        return (
            self._settings().get("whisper_model")
            or os.environ.get("VOICETUNE_WHISPER_MODEL")
            or self._datasets_whisper_model()
            or DEFAULT_WHISPER
        )

    def _datasets_whisper_model(self) -> str | None:
        for name in self.names("datasets"):
            try:
                used = json.loads((self.root / "datasets" / name / ".voicetune" / "settings.json").read_text("utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(used, dict) and used.get("whisper_model"):
                return str(used["whisper_model"])
        return None

    def remember_whisper_model(self, model: str) -> str:
        """Keep `model` as the workspace's Whisper model (shown on the Data and Train pages)."""
        model = (model or "").strip() or DEFAULT_WHISPER
        if model != self._settings().get("whisper_model"):
            fsio.atomic_write_json(self.root / SETTINGS, {**self._settings(), "whisper_model": model})
        return model

    def _settings(self) -> dict:
        try:
            settings = json.loads((self.root / SETTINGS).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return settings if isinstance(settings, dict) else {}

    def named(self, kind: str, name: str) -> Path:
        """datasets/NAME or runs/NAME; NAME is a plain folder name."""
        name = (name or "").strip()
        if not NAME.match(name):
            raise UsageError(f"{kind[:-1]} name {name!r}: use letters, digits, '_', '-' or '.' (no '/'), e.g. my_voice")
        return self.inside(f"{kind}/{name}", f"{kind[:-1]} name")

    def names(self, kind: str) -> list[str]:
        """The datasets or runs in the workspace, most recently changed first."""
        folder = self.root / kind
        found = [p for p in folder.iterdir() if p.is_dir() and NAME.match(p.name)] if folder.is_dir() else []
        return [p.name for p in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)]

    def take_upload(self, upload: Path, dataset: str, max_bytes: int) -> Path:
        """Copy an uploaded file into recordings/DATASET/ (refused above `max_bytes`)."""
        upload = Path(upload)
        size = upload.stat().st_size
        if size > max_bytes:
            raise UsageError(
                f"{upload.name}: {size / 1024**2:.0f} MB is more than the upload limit of "
                f"{max_bytes / 1024**2:.0f} MB; copy large files into the workspace and name the folder instead"
            )
        folder = self.named("recordings", dataset)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / Path(upload.name).name
        shutil.copyfile(upload, target)
        return target


def check_bind(host: str, auth: str | None) -> tuple[str, str] | None:
    """Refuse to listen beyond this machine without a password; returns (user, password) or None."""
    credentials = None
    if auth is not None:
        user, sep, password = auth.partition(":")
        if not sep or not user or not password:
            raise UsageError("--auth: use USER:PASSWORD, e.g. --auth me:a-long-passphrase")
        credentials = (user, password)
    if not is_loopback(host) and credentials is None:
        raise UsageError(
            f"--host {host}: the studio would be reachable from other machines without a password; "
            "add --auth USER:PASSWORD, or keep 127.0.0.1 and reach it through `ssh -L 7860:127.0.0.1:7860 HOST`"
        )
    return credentials


def check_urls(urls: list[str], reachable_from_others: bool) -> list[str]:
    """The URLs the studio may fetch. A studio reachable from other machines (bound beyond loopback,
    with --auth) refuses those that lead to this machine or its private network: a visitor with the
    password must not make the studio fetch what only it can reach."""
    from urllib.parse import urlsplit

    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"URL {url!r}: give an http:// or https:// address of a page or a file")
        if not reachable_from_others:
            continue
        try:
            addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, parts.port or 443)}
        except (socket.gaierror, UnicodeError) as err:
            raise UsageError(f"URL {url!r}: cannot resolve {parts.hostname} ({err}); check the address") from None
        for address in sorted(map(str, addresses)):
            if not ipaddress.ip_address(address.split("%")[0]).is_global:
                raise UsageError(
                    f"URL {url!r}: {parts.hostname} is {address}, an address of this machine or a private "
                    "network; a studio open to other machines (--host ... --auth) fetches public addresses "
                    "only (download the file yourself and upload it)"
                )
    return list(urls)


def upload_limit_bytes(text: str) -> int:
    """`--max-upload 2G` in bytes."""
    try:
        return parse_size(text)
    except (UsageError, ValueError):
        raise UsageError(f"--max-upload {text}: use a size such as 500M or 2G") from None

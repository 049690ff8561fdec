"""A storage root on any pyarrow filesystem: a local path, or a URI such as s3://bucket/genray
or gs://bucket/genray. Training checkpoints, the data cache and the model registry live under it,
so every node of a cluster sees the same files."""
from __future__ import annotations

import json
import os
import posixpath
from pathlib import Path

import pyarrow.fs as pafs

ENV_HOME = "GENRAY_HOME"


def default_root() -> str:
    return os.environ.get(ENV_HOME) or str(Path.home() / ".genray")


class Storage:
    def __init__(self, root: str | None = None):
        root = root or default_root()
        if "://" in root:
            self.fs, self.root = pafs.FileSystem.from_uri(root)
            self.uri = root
        else:
            self.root = str(Path(root).expanduser().resolve())
            self.fs, self.uri = pafs.LocalFileSystem(), self.root
            os.makedirs(self.root, exist_ok=True)

    def __repr__(self) -> str:
        return f"Storage({self.uri!r})"

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def exists(self, path: str) -> bool:
        return self.fs.get_file_info(path).type != pafs.FileType.NotFound

    def listdir(self, path: str) -> list[str]:
        if not self.exists(path):
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(path, recursive=False))
        return sorted(posixpath.basename(i.path) for i in infos)

    def read_bytes(self, path: str) -> bytes:
        with self.fs.open_input_stream(path) as f:
            return f.read()

    def write_bytes(self, path: str, data: bytes) -> None:
        self.fs.create_dir(posixpath.dirname(path), recursive=True)
        with self.fs.open_output_stream(path) as f:
            f.write(data)

    def read_json(self, path: str):
        return json.loads(self.read_bytes(path))

    def write_json(self, path: str, obj) -> None:
        self.write_bytes(path, json.dumps(obj, indent=2, sort_keys=True).encode())

    def delete_dir(self, path: str) -> None:
        if self.exists(path):
            self.fs.delete_dir(path)

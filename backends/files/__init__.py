"""The Files API's storage, shared by every backend: upload, list, read, download, delete, and use in messages.

One module a job:
- `store.py` — the files: bytes on disk, metadata in the shared state store, pages in both paging styles;
- `naming.py` — what an upload is called and what MIME type it has;
- `sources.py` — the files a message names, checked, and plain-text documents inlined for the backend.

Files are Understudy's own whatever the backend: the echo and scripted
backends read what `sources.py` resolved, and the proxy forwards it (a text
document's contents inline; other file references as they are, which an
upstream knows only if the file was uploaded there).
"""

from __future__ import annotations

from backends.files.sources import FileReader, resolve_file_sources
from backends.files.store import FileStore, default_files_dir, shared_files_dir, spool_prefix

__all__ = ["FileReader", "FileStore", "default_files_dir", "resolve_file_sources", "shared_files_dir", "spool_prefix"]

"""Storage of the local target: a volume is a directory on this machine (`local.directory`).

Import id: the directory's absolute path. Any directory is a volume (its content is the user's data); one that
another address's marker names is refused.
"""

from __future__ import annotations

from mlplat_plugins.local.base import OwnedDirectoryProvider


class DirectoryProvider(OwnedDirectoryProvider):
    """NAS on the local machine: a directory (mount_path is advisory: containers would mount `path` there)."""

    noun = "volume directory"

"""Where blendin-local keeps the user's files: an environment variable names the folder, else the
platform's user data directory (``platformdirs``) holds it."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "blendin-local"


def user_data_folder(name: str, env: str) -> Path:
    """``$env`` when set, else ``<user data dir>/blendin-local/<name>``."""
    given = os.environ.get(env)
    return Path(given) if given else Path(platformdirs.user_data_dir(APP)) / name

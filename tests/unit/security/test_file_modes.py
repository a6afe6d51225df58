import os
import stat
from pathlib import Path

import pytest

from tether.errors import ConfigError
from tether.security.file_modes import private_dir, private_file


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.lstat().st_mode)


def test_dirs_and_files_are_made_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        d = private_dir(tmp_path / "a" / "b")
        assert _mode(d) == 0o700
        loose = tmp_path / "loose"
        loose.mkdir(mode=0o755)
        private_dir(loose)
        assert _mode(loose) == 0o700
        f = private_file(d / "x.db", create=True)
        assert _mode(f) == 0o600
        g = d / "g"
        g.write_text("x")
        private_file(g)
        assert _mode(g) == 0o600
        private_file(d / "missing")  # nothing to do
    finally:
        os.umask(old)


def test_a_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("x")
    (tmp_path / "l").symlink_to(tmp_path / "t")
    with pytest.raises(ConfigError):
        private_file(tmp_path / "l")

"""The real git, driven with fixed identities and times, as the oracle for ids."""

import os
import subprocess
import sys
from pathlib import Path


class Git:
    def __init__(self, path: Path, bare: bool = False) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.run("init", "-q", *(["--bare"] if bare else []), "-b", "main")

    def run(self, *args: str, when: int = 0, who: tuple[str, str] = ("t", "t@x"), **kw: str) -> str:
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": who[0],
            "GIT_AUTHOR_EMAIL": who[1],
            "GIT_COMMITTER_NAME": who[0],
            "GIT_COMMITTER_EMAIL": who[1],
            "GIT_AUTHOR_DATE": f"@{when} +0000",
            "GIT_COMMITTER_DATE": f"@{when} +0000",
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(self.path),
        }
        out = subprocess.run(
            ["git", *args], cwd=self.path, env=env, check=True, capture_output=True
        )
        return out.stdout.decode()

    def write(self, path: str, content: bytes) -> None:
        target = self.path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


ROOT = Path(__file__).resolve().parent.parent


def govc_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The `govc` command (offline forms such as export and import) as a child process."""
    return subprocess.run(
        [sys.executable, "-m", "govc.cli", *args], cwd=ROOT, capture_output=True, text=True
    )


def export_checked(data_dir: str, repo: str, dest: Path) -> None:
    """`govc export` of `repo` to `dest`, which must then pass `git fsck --strict`."""
    result = govc_cli("export", repo, str(dest), "--data-dir", data_dir)
    assert result.returncode == 0, result.stderr
    fsck = subprocess.run(
        ["git", "--git-dir", str(dest), "fsck", "--strict"], capture_output=True, text=True
    )
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr

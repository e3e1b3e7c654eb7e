"""The example cloud hook in packaging/hooks, with fake ``aws`` and ``curl`` (the cloud
cannot exist here): the exact API calls it makes and the release state it hands back."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from conftest import ROOT

from agent.isolation.exec_hook import last_json

HOOK = ROOT / "packaging" / "hooks" / "aws-security-group-swap"

FAKE_AWS = """#!/bin/sh
echo "aws $*" >> "$FAKE_LOG"
case "$2" in
  describe-instances) printf 'eni-1\\tsg-a,sg-b\\neni-2\\tsg-c\\n' ;;
esac
"""
FAKE_CURL = "#!/bin/sh\necho i-0abc\n"


def _run(tmp_path: Path, action: str, **env: str) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    if not bin_dir.exists():
        bin_dir.mkdir()
        for name, text in (("aws", FAKE_AWS), ("curl", FAKE_CURL)):
            (bin_dir / name).write_text(text)
            (bin_dir / name).chmod(0o755)
    full = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_LOG": str(tmp_path / "calls"),
        "PRESERVE_AWS_ISOLATION_SG": "sg-iso",
        **env,
    }
    return subprocess.run([str(HOOK), action], capture_output=True, text=True, env=full, timeout=30)


def test_apply_swaps_groups_and_is_not_confirmed_by_default(tmp_path: Path) -> None:
    done = _run(tmp_path, "apply")
    assert done.returncode == 3, done.stderr  # tracked connections survive a swap
    reply = last_json(done.stdout)
    assert reply["release_state"] == {
        "instance": "i-0abc",
        "interfaces": [{"eni": "eni-1", "groups": "sg-a,sg-b"}, {"eni": "eni-2", "groups": "sg-c"}],
    }
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[1:] == [
        "aws ec2 modify-network-interface-attribute --network-interface-id eni-1 --groups sg-iso",
        "aws ec2 modify-network-interface-attribute --network-interface-id eni-2 --groups sg-iso",
    ]
    assert _run(tmp_path, "apply", PRESERVE_AWS_ACCEPT_TRACKED="1").returncode == 0


def test_release_restores_the_saved_groups(tmp_path: Path) -> None:
    state = {"instance": "i-0abc", "interfaces": [{"eni": "eni-1", "groups": "sg-a,sg-b"}]}
    done = _run(tmp_path, "release", PRESERVE_RELEASE_STATE=json.dumps(state))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "calls").read_text().splitlines() == [
        "aws ec2 modify-network-interface-attribute --network-interface-id eni-1 --groups sg-a sg-b"
    ]
    assert _run(tmp_path, "plan").returncode == 0
    assert _run(tmp_path, "bogus").returncode == 2

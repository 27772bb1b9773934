"""`mlplat state migrate --to URL`: the same stack continues on the new backend as if nothing happened."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import AwsAccount, run_mlplat
from test_locking import write_stack


def migrate_and_continue(tmp_path: Path, url: str, env: dict[str, str]) -> None:
    stack = write_stack(tmp_path, latency=0, volumes=4)
    run_mlplat("apply", "--yes", "-f", str(stack), cwd=tmp_path, env=env)
    before = json.loads(run_mlplat("state", "list", "--json", "-f", str(stack), cwd=tmp_path, env=env).stdout)
    moved = run_mlplat("state", "migrate", "--to", url, "-f", str(stack), cwd=tmp_path, env=env)
    assert "Copied 4 resource(s)" in moved.stdout
    after = json.loads(run_mlplat("state", "list", "--json", "-f", str(stack), "--state", url, cwd=tmp_path,
                                  env=env).stdout)
    assert after == before  # same lineage, serial and records
    preview = run_mlplat("preview", "--detailed-exitcode", "-f", str(stack), "--state", url, cwd=tmp_path,
                         env=env, check=False)
    assert preview.returncode == 0, preview.stdout + preview.stderr
    again = run_mlplat("state", "migrate", "--to", url, "-f", str(stack), cwd=tmp_path, env=env, check=False)
    assert again.returncode == 1 and "already holds resources" in again.stderr
    run_mlplat("destroy", "--yes", "-f", str(stack), "--state", url, cwd=tmp_path, env=env)
    assert list((tmp_path / "cloud" / "objects").glob("*.json")) == []


def test_migrate_from_sqlite_to_postgres(tmp_path: Path, postgres_server: Any) -> None:
    migrate_and_continue(tmp_path, postgres_server.url("migrated"), postgres_server.env())


def test_migrate_from_sqlite_to_s3(tmp_path: Path, aws_account: AwsAccount) -> None:
    url = f"s3://{aws_account.bucket}/states?region=us-east-1&endpoint_url={aws_account.server.url}"
    migrate_and_continue(tmp_path, url, aws_account.server.env())


def test_the_stack_file_chooses_the_backend(tmp_path: Path, postgres_server: Any) -> None:
    url = postgres_server.url("fromfile")
    stack = write_stack(tmp_path, latency=0, volumes=2)
    stack.write_text(stack.read_text() + f"state: {{backend: postgres, url: '{url}'}}\n")
    run_mlplat("apply", "--yes", "-f", str(stack), cwd=tmp_path, env=postgres_server.env())
    assert not (tmp_path / ".mlplat" / "locky.db").exists()
    listed = run_mlplat("state", "list", "-f", str(stack), "--state", url, cwd=tmp_path, env=postgres_server.env())
    assert len(listed.stdout.splitlines()) == 2

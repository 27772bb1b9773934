"""A lock names its holder by the login name of the process's uid: $USER and $LOGNAME are often unset (CI jobs,
cron, containers), and a holder shown as `unknown@host` tells the person waiting nothing."""

from __future__ import annotations

import os
import pwd

import pytest

from provisioner.state.base import LockInfo, host_name


@pytest.fixture
def no_login_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("USER", raising=False)
    monkeypatch.delenv("LOGNAME", raising=False)
    return monkeypatch


def test_the_holder_is_the_uids_login_name_without_user_or_logname(no_login_env: pytest.MonkeyPatch) -> None:
    name = pwd.getpwuid(os.getuid()).pw_name
    assert LockInfo("id", "apply").holder == f"{name}@{host_name()}"


def test_the_uids_login_name_wins_over_a_stale_user(no_login_env: pytest.MonkeyPatch) -> None:
    no_login_env.setenv("USER", "somebody-else")  # e.g. kept across su/sudo
    assert LockInfo("id", "apply").holder.startswith(pwd.getpwuid(os.getuid()).pw_name + "@")


def test_a_uid_without_a_passwd_entry_falls_back_to_user_logname_then_the_uid(
        no_login_env: pytest.MonkeyPatch) -> None:
    def missing(uid: int) -> pwd.struct_passwd:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    no_login_env.setattr(pwd, "getpwuid", missing)  # a container run with an arbitrary --user
    assert LockInfo("id", "apply").holder == f"uid{os.getuid()}@{host_name()}"
    no_login_env.setenv("LOGNAME", "from-logname")
    assert LockInfo("id", "apply").holder.startswith("from-logname@")
    no_login_env.setenv("USER", "from-user")
    assert LockInfo("id", "apply").holder.startswith("from-user@")

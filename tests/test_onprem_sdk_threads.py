"""The onprem target's SDK imported from many apply threads at once (a destroy's first steps, with no refresh
before them) in a fresh interpreter: the `kubernetes` package imports itself in circles, and without one import
under a lock (`sdk.load_sdk`) threads failed with "cannot import name 'DynamicClient' from partially initialized
module" (every run of this script) or "deadlock detected by _ModuleLock" (a CI destroy)."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO, require_module

require_module("kubernetes", "the onprem target's SDK (pip install 'mlplat[onprem]')")

SCRIPT = """
import threading
from mlplat_plugins.onprem import sdk

barrier = threading.Barrier(8)
errors = []

def first_use(i):
    barrier.wait(10)
    kube = sdk.Kube("/nonexistent/kubeconfig", None)
    calls = [lambda: sdk.translate(ValueError("x"), "op"), lambda: kube.api,
             lambda: kube.resource("v1", "Pod"), lambda: kube.server_version()]
    try:
        calls[i % 4]()
    except sdk.MlplatError:
        pass  # no kubeconfig: expected, after the imports
    except Exception as err:
        errors.append(f"{type(err).__name__}: {err}")

threads = [threading.Thread(target=first_use, args=(i,)) for i in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join(60)
assert not errors, errors
"""


def test_first_uses_of_the_sdk_from_many_threads_at_once_all_import_it() -> None:
    for _ in range(3):  # each a fresh interpreter: nothing imported yet
        result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, cwd=REPO)
        assert result.returncode == 0, result.stderr[-2000:]

"""The plugin contract, part two: what a target accepts and refuses is what its `capabilities()` declares. Each
test reads the target's capabilities and builds the stack from them — a shadow path, a mirror share over its limit,
an accelerator it does not offer, a model format it does not serve, an auth mode it does not support, storage
outside its sizes, more replicas or nodes than it runs, spot it lacks, a split it cannot make — and checks
the refusal's Reason code (`Stack.check_capabilities`) and that `validate` reports it at the offending key's
file:line:col. A capability the target has instead is applied (shadow), or the test says why it has nothing to
refuse (skip)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner import catalog
from provisioner.errors import SpecError
from provisioner.spec.loader import Loc, format_loc
from provisioner.target import Capabilities

from contract_targets import HARNESSES, Harness, apply, assert_converged, contract_harness, opened

#: "<test>[<target>...]" -> the plugin bug that makes it fail (a strict xfail: once the bug is fixed the test
#: fails until its entry is removed here)
KNOWN_BUGS: dict[str, str] = {}

SERVING = ("serving", 0)
EXPERIMENTAL = (*SERVING, "paths", "experimental")


@pytest.fixture(params=HARNESSES, ids=lambda h: h.target)
def harness(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    yield from contract_harness(request, tmp_path, monkeypatch, KNOWN_BUGS)


def capabilities(h: Harness) -> Capabilities:
    with opened(h) as stack:
        return stack.targets[h.target].capabilities()


def position(path: Path, needle: str) -> tuple[int, int]:
    """Line and column (1-based) of the first line of `path` holding `needle`."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return number, line.index(needle) + 1
    raise AssertionError(f"{needle!r} is not in {path}")


def assert_refused(h: Harness, path: Path, code: str, loc: Loc, needle: str) -> None:
    """The stack's only capability error is `code` at `loc`, and validate reports it at `needle`'s line:col."""
    with opened(h) as stack:
        errors = [(found, r.code) for found, _, r in stack.check_capabilities() if r.severity == "error"]
        assert errors == [(loc, code)], errors
        with pytest.raises(SpecError) as err:
            stack.validate()
    line, col = position(path, needle)
    assert f"{path}:{line}:{col}: {format_loc(loc)}: " in str(err.value), str(err.value)


def test_the_contract_stack_fits_the_target(harness: Harness) -> None:
    with opened(harness) as stack:
        assert [(loc, r.code) for loc, _, r in stack.check_capabilities()] == []
        stack.validate()


def test_shadow_is_applied_or_refused_as_the_capabilities_say(harness: Harness) -> None:
    shadow = capabilities(harness).shadow
    if shadow is None:
        path = harness.write_stack(shadow=10)
        assert_refused(harness, path, "shadow-unsupported", (*EXPERIMENTAL, "mode"), "mode: shadow")
        return
    harness.write_stack(shadow=shadow.max_mirror_percent)  # the most it mirrors is accepted
    with opened(harness) as stack:
        stack.validate()
    apply(harness, check=True)


def test_mirroring_more_than_the_target_allows_is_refused(harness: Harness) -> None:
    shadow = capabilities(harness).shadow
    if shadow is None:
        pytest.skip(f"target {harness.target} has no shadow mode at all (refused as shadow-unsupported)")
    if shadow.max_mirror_percent >= 100:
        pytest.skip(f"target {harness.target} mirrors up to 100%: no mirror_percent is over its limit")
    path = harness.write_stack(shadow=shadow.max_mirror_percent + 1)
    assert_refused(harness, path, "mirror-over-limit", (*EXPERIMENTAL, "mirror_percent"), "mirror_percent:")


@pytest.mark.parametrize("use", ["serving", "training"])
def test_an_accelerator_the_target_does_not_offer_is_refused(harness: Harness, use: str) -> None:
    caps = capabilities(harness)
    offered = caps.serving_accelerators if use == "serving" else caps.training_accelerators
    if offered is None:
        pytest.skip(f"target {harness.target} offers any catalog accelerator for {use}")
    missing = [name for name in catalog.names() if name not in offered]
    if not missing:
        pytest.skip(f"target {harness.target} offers every catalog accelerator for {use}")
    if use == "serving":
        path = harness.write_stack(accelerator=missing[0])
        loc: Loc = (*SERVING, "paths", "production", "accelerator")
    else:
        path = harness.write_stack(pool_accelerator=missing[0])
        loc = ("clusters", 0, "gpu_pools", 0, "accelerator")
    assert_refused(harness, path, "accelerator-not-offered", loc, f"accelerator: {missing[0]}")


def test_a_model_format_the_target_does_not_serve_is_refused(harness: Harness) -> None:
    formats = capabilities(harness).model_formats
    if formats is None:
        pytest.skip(f"target {harness.target} serves any model format (its serving image decides)")
    framework = next(f for f in ("onnx", "xgboost", "contract-format") if f not in formats)
    path = harness.write_stack(framework=framework)  # iris:2, which the experimental path serves
    assert_refused(harness, path, "model-format-unsupported", (*EXPERIMENTAL, "model"), 'model: "iris:2"')


def test_an_auth_mode_the_target_does_not_support_is_refused(harness: Harness,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    modes = capabilities(harness).auth_modes
    # (auth:, api_key:, the mode it needs): a key the service mints is `auth: key` without api_key
    wanted = [("none", None, "none"), ("iam", None, "iam"), ("key", None, "minted-key"),
              ("key", "${secret:CONTRACT_API_KEY}", "key")]
    unsupported = [(auth, key) for auth, key, mode in wanted if mode not in modes]
    if not unsupported:
        pytest.skip(f"target {harness.target} supports every auth mode")
    auth, key = unsupported[0]
    monkeypatch.setenv("CONTRACT_API_KEY", "a-key-for-the-contract-suite")
    path = harness.write_stack(auth=auth, api_key=key)
    if key is not None and "minted-key" in modes:  # refused: the key is minted, not given
        assert_refused(harness, path, "auth-unsupported", (*SERVING, "api_key"), "api_key:")
    else:
        assert_refused(harness, path, "auth-unsupported", (*SERVING, "auth"), f"auth: {auth}")


def test_storage_outside_the_sizes_the_target_makes_is_refused(harness: Harness) -> None:
    limits = capabilities(harness).storage.get("nas")
    assert limits is not None, "the contract stack's nas storage fits (test_the_contract_stack_fits_the_target)"
    sizes = [(limits.min_gb - 1, "storage-size-below-min")] if limits.min_gb > 1 else []
    sizes += [(limits.max_gb + 1, "storage-size-over-max")] if limits.max_gb is not None else []
    if not sizes:
        pytest.skip(f"target {harness.target} makes nas storage of any size")
    for size, code in sizes:
        path = harness.write_stack(size_gb=size)
        assert_refused(harness, path, code, ("storage", 0, "size_gb"), f"size_gb: {size}")


def test_more_replicas_than_the_target_runs_is_refused(harness: Harness) -> None:
    limit = capabilities(harness).max_replicas
    if limit is None:
        pytest.skip(f"target {harness.target} runs any number of replicas")
    path = harness.write_stack(replicas=limit + 1)
    assert_refused(harness, path, "replicas-over-limit", (*SERVING, "paths", "production", "replicas"),
                   f"replicas: {limit + 1}")


def _training_accelerator(caps: Capabilities) -> str:
    offered = caps.training_accelerators
    if offered is not None and not offered:
        pytest.skip("the target runs no training clusters (refused as accelerator-not-offered)")
    return "cpu" if offered is None or "cpu" in offered else sorted(offered)[0]


def test_a_pool_larger_than_the_target_allows_is_refused(harness: Harness) -> None:
    caps = capabilities(harness)
    if caps.max_nodes_per_pool is None:
        pytest.skip(f"target {harness.target} sets no limit on nodes per pool")
    path = harness.write_stack(pool_accelerator=_training_accelerator(caps), pool_nodes_max=caps.max_nodes_per_pool + 1)
    assert_refused(harness, path, "nodes-over-limit", ("clusters", 0, "gpu_pools", 0, "nodes", "max"),
                   f"max: {caps.max_nodes_per_pool + 1}")


def test_spot_the_target_lacks_is_refused(harness: Harness) -> None:
    caps = capabilities(harness)
    if caps.spot:
        pytest.skip(f"target {harness.target} offers spot capacity")
    path = harness.write_stack(pool_accelerator=_training_accelerator(caps), spot=True)
    assert_refused(harness, path, "spot-unsupported", ("clusters", 0, "gpu_pools", 0, "spot"), "spot: true")


def test_a_split_the_target_cannot_make_is_refused(harness: Harness) -> None:
    if capabilities(harness).traffic_split:
        pytest.skip(f"target {harness.target} splits traffic (the contract stack's 80/20 applies)")
    path = harness.write_stack()
    assert_refused(harness, path, "split-unsupported", (*EXPERIMENTAL, "weight"), "weight: 20")


def test_a_monitoring_feature_the_target_does_not_offer_is_refused(harness: Harness) -> None:
    offered = capabilities(harness).monitoring
    if "capture" not in offered:
        path = harness.write_stack(monitoring="capture: {sample_percent: 10}")
        assert_refused(harness, path, "monitoring-unsupported", (*SERVING, "monitoring", "capture"), "capture:")
    elif "alerts" not in offered:
        path = harness.write_stack(monitoring="alerts: {emails: [ops@example.com]}")
        assert_refused(harness, path, "monitoring-unsupported", (*SERVING, "monitoring", "alerts"), "alerts:")
    elif "shadow_comparison" not in offered and capabilities(harness).shadow is not None:
        mirror = min(100, capabilities(harness).shadow.max_mirror_percent)  # type: ignore[union-attr]
        path = harness.write_stack(shadow=mirror, monitoring="shadow_comparison: {min_agreement: 0.9}")
        assert_refused(harness, path, "monitoring-unsupported", (*SERVING, "monitoring", "shadow_comparison"),
                       "shadow_comparison:")
    else:
        pytest.skip(f"target {harness.target} offers every monitoring feature the contract stack can use")


def test_capture_the_target_offers_is_realized_and_converges(harness: Harness) -> None:
    if "capture" not in capabilities(harness).monitoring:
        pytest.skip(f"target {harness.target} offers no capture")
    harness.write_stack()
    with opened(harness) as stack:
        plain, _ = stack.lower()
    harness.write_stack(monitoring="capture: {sample_percent: 25}")
    with opened(harness) as stack:
        captured, _ = stack.lower()
    changed = [a for a in captured if a not in plain or captured[a].inputs != plain[a].inputs]
    assert changed, "capture changes nothing the target makes"
    assert any("25" in repr(captured[a].inputs) for a in changed), "the sample percent reaches no resource"
    apply(harness)
    assert_converged(harness)
    apply(harness, destroy=True)

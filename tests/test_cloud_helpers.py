"""The SDK-neutral helpers every cloud plugin builds on (provisioner/cloud.py): errors, the retry rule,
adopt-or-create, find-by-derived-name and waits on long operations, driven by fake describe sequences through a
real StepContext (its `wait`, `checkpoint` and timeout)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from email.utils import formatdate
from time import time
from typing import Any

import pytest

from provisioner import cloud
from provisioner.cloud import CloudApiError
from provisioner.errors import MlplatError, RetryableError
from provisioner.operations import Interrupted, StepContext, TargetCalls
from provisioner.progress import WaitTimeout

FAST = {"interval": 0.001, "max_interval": 0.001}


def ctx(*, token: str = "", exclude: Iterable[str] = (), operation: str | None = None, timeout: float | None = 5.0,
        calls: TargetCalls | None = None) -> tuple[StepContext, list[str]]:
    """A step context and the list its checkpoints land in (what the engine would journal)."""
    checkpoints: list[str] = []
    return StepContext("svc.endpoint.main", "create", token, frozenset(exclude), operation=operation,
                       timeout=timeout, calls=calls, on_checkpoint=checkpoints.append), checkpoints


def sequence(*answers: Any) -> tuple[Callable[[], Any], list[int]]:
    """A describe function answering `answers` in turn (an exception instance is raised), then the last one."""
    calls = [0]

    def describe() -> Any:
        answer = answers[min(calls[0], len(answers) - 1)]
        calls[0] += 1
        if isinstance(answer, BaseException):
            raise answer
        return answer

    return describe, calls


def missing(operation: str = "Get") -> CloudApiError:
    return CloudApiError(operation, "NotFound", "no such object", 404)


# -- errors ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("code", "status", "not_found", "exists"), [
    ("NotFound", None, True, False),
    ("NOT_FOUND", 400, True, False),
    ("Whatever", 404, True, False),
    ("ALREADY_EXISTS", None, False, True),
    ("Conflict", 409, False, True),
    ("InvalidArgument", 400, False, False),
    ("Internal", None, False, False),
])
def test_cloud_errors_say_not_found_and_already_exists_from_status_or_code(code, status, not_found, exists):
    err = CloudApiError("CreateEndpoint", code, "the cloud's words", status)
    assert (err.not_found, err.already_exists) == (not_found, exists)
    assert (err.operation, err.code, err.cloud_message, err.status) == ("CreateEndpoint", code, "the cloud's words",
                                                                         status)
    assert str(err) == f"CreateEndpoint: {code}: the cloud's words"
    assert isinstance(err, MlplatError)  # the CLI prints it without a traceback


def test_a_plugin_subclass_refines_the_rules_and_the_helpers_follow():
    class KubeError(CloudApiError):
        already_exists_codes = frozenset({"AlreadyExists"})

        @property
        def already_exists(self) -> bool:  # a resourceVersion Conflict is a 409 too, and means something else
            return self.code in self.already_exists_codes

    assert not KubeError("replace", "Conflict", "the object has been modified", 409).already_exists
    assert cloud.or_existing(lambda: (_ for _ in ()).throw(KubeError("create", "AlreadyExists", "exists", 409)),
                             lambda: "adopted") == "adopted"
    with pytest.raises(KubeError):
        cloud.or_existing(lambda: (_ for _ in ()).throw(KubeError("create", "Conflict", "modified", 409)),
                          lambda: "adopted")


def test_aws_errors_keep_their_own_rules_under_the_core_class():
    from mlplat_plugins.aws.sdk import AwsApiError

    assert issubclass(AwsApiError, CloudApiError)
    assert AwsApiError("DescribeEndpoint", "ValidationException", "Could not find endpoint x", 400).not_found
    assert not AwsApiError("CreateModel", "ValidationException", "bad role", 400).not_found
    assert AwsApiError("CreateModel", "ValidationException", "Cannot create already existing model", 400
                       ).already_exists
    in_use = AwsApiError("DeleteFileSystem", "FileSystemInUse", "has mount targets", 409)
    assert not in_use.already_exists  # a 409 on AWS is not "exists"
    assert in_use.aws_message == in_use.cloud_message == "has mount targets"
    assert cloud.unless_missing(lambda: (_ for _ in ()).throw(AwsApiError("Get", "NoSuchKey", "gone", 404))) is None


# -- the retry rule ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 599])
def test_throttling_timeouts_and_transient_server_errors_are_retryable(status):
    err = cloud.retryable(status, None, f"Get: {status}")
    assert isinstance(err, RetryableError) and str(err) == f"Get: {status}" and err.retry_after is None


@pytest.mark.parametrize("status", [None, 200, 400, 401, 403, 404, 409, 412, 501, 505])
def test_other_failures_are_not_retried(status):
    assert cloud.retryable(status, "3", "no") is None


def test_a_cloud_specific_throttling_code_on_another_status_is_retryable():
    err = cloud.retryable(400, "2.5", "CreateModel: ThrottlingException: Rate exceeded", throttled=True)
    assert isinstance(err, RetryableError) and err.retry_after == 2.5


def test_retry_after_is_read_as_seconds_or_an_http_date():
    assert cloud.retryable(429, "7", "m").retry_after == 7.0
    assert cloud.retryable(503, 3, "m").retry_after == 3.0
    assert 25 <= cloud.retryable(503, formatdate(time() + 30, usegmt=True), "m").retry_after <= 30
    assert cloud.retryable(503, formatdate(time() - 30, usegmt=True), "m").retry_after == 0.0
    assert cloud.retryable(429, "soon", "m").retry_after is None
    assert cloud.retryable(429, "", "m").retry_after is None


def test_aws_translate_uses_the_shared_rule():
    botocore = pytest.importorskip("botocore.exceptions")
    from mlplat_plugins.aws.sdk import AwsApiError, translate

    def client_error(code: str, status: int, headers: dict[str, str] | None = None) -> Exception:
        return botocore.ClientError({"Error": {"Code": code, "Message": "m"},
                                     "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers or {}}},
                                    "CreateEndpoint")

    throttled = translate(client_error("ThrottlingException", 400, {"retry-after": "4"}), "CreateEndpoint")
    assert isinstance(throttled, RetryableError) and throttled.retry_after == 4.0
    assert isinstance(translate(client_error("SomethingOdd", 502), "CreateEndpoint"), RetryableError)
    failed = translate(client_error("ValidationException", 400), "CreateEndpoint")
    assert isinstance(failed, AwsApiError) and failed.status == 400 and failed.code == "ValidationException"


# -- unless_missing / or_existing --------------------------------------------------------------------------------
def test_unless_missing_turns_only_not_found_into_none():
    assert cloud.unless_missing(lambda: {"name": "x"}) == {"name": "x"}
    assert cloud.unless_missing(lambda: (_ for _ in ()).throw(missing())) is None
    with pytest.raises(CloudApiError, match="Forbidden"):
        cloud.unless_missing(lambda: (_ for _ in ()).throw(CloudApiError("Get", "Forbidden", "no", 403)))
    with pytest.raises(RetryableError):  # the engine's to retry, not a "gone"
        cloud.unless_missing(lambda: (_ for _ in ()).throw(RetryableError("429")))


def test_or_existing_adopts_only_what_already_exists():
    looked_up: list[str] = []

    def existing() -> str:
        looked_up.append("x")
        return "the first one"

    assert cloud.or_existing(lambda: "made", existing) == "made" and not looked_up
    exists = CloudApiError("Create", "ALREADY_EXISTS", "x exists", 409)
    assert cloud.or_existing(lambda: (_ for _ in ()).throw(exists), existing) == "the first one"
    assert looked_up == ["x"]
    with pytest.raises(CloudApiError, match="QuotaExceeded"):
        cloud.or_existing(lambda: (_ for _ in ()).throw(CloudApiError("Create", "QuotaExceeded", "no", 429)),
                          existing)


# -- find_own ----------------------------------------------------------------------------------------------------
def test_find_own_returns_the_object_the_create_carrying_the_token_made():
    obj = {"name": "ep-1", "labels": {"mlplat-token": "t1"}}
    lookup, looked = sequence(obj)
    step, _ = ctx(token="t1")
    assert cloud.find_own("ep-1", step, lookup, lambda o: o["labels"].get("mlplat-token")) is obj
    assert looked == [1]


def test_find_own_refuses_another_creates_object_and_excluded_names():
    obj = {"name": "ep-1", "labels": {"mlplat-token": "old"}}
    token_of: Callable[[Any], Any] = lambda o: o["labels"].get("mlplat-token")  # noqa: E731
    lookup, looked = sequence(obj)
    assert cloud.find_own("ep-1", ctx(token="new")[0], lookup, token_of) is None  # the predecessor of a replace
    assert cloud.find_own("ep-1", ctx(token="old", exclude={"ep-1"})[0], lookup, token_of) is None
    assert looked == [1]  # an excluded name is never looked up
    assert cloud.find_own("ep-1", ctx(token="t")[0], lambda: None, token_of) is None
    assert cloud.find_own("ep-1", ctx(token="t")[0], sequence(missing())[0], token_of) is None
    untagged = {"name": "ep-1", "labels": {}}
    assert cloud.find_own("ep-1", ctx(token="t")[0], lambda: untagged, token_of) is None


def test_find_own_without_a_token_accepts_the_named_object():
    obj = {"name": "ep-1", "labels": {}}
    assert cloud.find_own("ep-1", ctx()[0], lambda: obj, lambda o: None) is obj


# -- waits -------------------------------------------------------------------------------------------------------
def status(state: str, **extra: Any) -> dict[str, Any]:
    return {"state": state, **extra}


def wait_ready(step: StepContext, describe: Callable[[], Any], **kwargs: Any) -> Any:
    options: dict[str, Any] = {"ready": "READY", "failed": ("FAILED",), "status_of": lambda o: o["state"],
                               "reason_of": lambda o: o.get("error"), **FAST, **kwargs}
    return cloud.wait_for_status(step, describe, "endpoint ep-1", "Creating", **options)


def test_wait_for_status_polls_until_ready_and_returns_the_last_description():
    describe, polls = sequence(status("CREATING"), status("CREATING"), status("READY", url="https://x"))
    assert wait_ready(ctx()[0], describe) == status("READY", url="https://x")
    assert polls == [3]


def test_wait_for_status_accepts_any_of_several_ready_states():
    describe, _ = sequence(status("PENDING"), status("SUCCEEDED"))
    assert wait_ready(ctx()[0], describe, ready=("RUNNING", "SUCCEEDED"))["state"] == "SUCCEEDED"


def test_wait_for_status_does_not_treat_a_substring_as_a_status():
    describe, polls = sequence(status("READ"), status("READY"))  # "READ" in "READY" is True for a str
    assert wait_ready(ctx()[0], describe)["state"] == "READY" and polls == [2]


def test_wait_for_status_fails_fast_with_the_clouds_reason():
    describe, polls = sequence(status("CREATING"), status("FAILED", error="quota exhausted"), status("READY"))
    with pytest.raises(MlplatError, match="endpoint ep-1 is FAILED: quota exhausted"):
        wait_ready(ctx()[0], describe)
    assert polls == [2]
    with pytest.raises(MlplatError, match="is FAILED: no reason given"):
        wait_ready(ctx()[0], sequence(status("FAILED"))[0])


@pytest.mark.parametrize("gone", [None, missing("GetEndpoint")])
def test_wait_for_status_fails_when_the_object_vanishes(gone):
    describe, _ = sequence(status("CREATING"), gone)
    with pytest.raises(MlplatError, match="endpoint ep-1 disappeared while creating"):
        wait_ready(ctx()[0], describe)


def test_a_throttled_poll_is_not_done_yet_and_other_errors_fail_the_wait():
    describe, polls = sequence(status("CREATING"), RetryableError("429"), status("READY"))
    assert wait_ready(ctx()[0], describe)["state"] == "READY" and polls == [3]
    with pytest.raises(CloudApiError, match="PermissionDenied"):
        wait_ready(ctx()[0], sequence(CloudApiError("Get", "PermissionDenied", "no", 403))[0])


def test_wait_for_status_is_bounded_by_the_steps_timeout():
    with pytest.raises(WaitTimeout, match=r"endpoint ep-1 Creating → READY: not done after .* CREATING"):
        wait_ready(ctx(timeout=0.05)[0], lambda: status("CREATING"))


def test_wait_for_status_stops_on_ctrl_c():
    stop = threading.Event()
    step, _ = ctx(calls=TargetCalls("t", concurrency=1, stop=stop), timeout=30)
    threading.Timer(0.05, stop.set).start()
    with pytest.raises(Interrupted):
        wait_ready(step, lambda: status("CREATING"), interval=0.01, max_interval=0.01)


@pytest.mark.parametrize("gone", [None, missing()])
def test_wait_gone_waits_until_describe_finds_nothing(gone):
    describe, polls = sequence(status("DELETING"), status("DELETING"), gone)
    cloud.wait_gone(ctx()[0], describe, "endpoint ep-1", **FAST)
    assert polls == [3]


def test_wait_gone_is_bounded_by_the_steps_timeout():
    with pytest.raises(WaitTimeout, match="endpoint ep-1 deleted"):
        cloud.wait_gone(ctx(timeout=0.05)[0], lambda: status("DELETING"), "endpoint ep-1", **FAST)


def test_delete_and_wait_issues_checkpoints_then_waits():
    issued: list[str] = []
    describe, polls = sequence(status("DELETING"), None)
    step, checkpoints = ctx()
    assert cloud.delete_and_wait(step, "DeleteEndpoint", "ep-1", lambda: issued.append("ep-1"), describe,
                                 "endpoint ep-1", **FAST)
    assert issued == ["ep-1"]  # an SDK delete that returns None is still a delete that was issued
    assert checkpoints == ["DeleteEndpoint ep-1"] and step.operation == "DeleteEndpoint ep-1"
    assert polls == [2]


def test_delete_and_wait_of_an_object_already_gone_issues_and_waits_for_nothing():
    describe, polls = sequence(status("READY"))
    step, checkpoints = ctx()
    assert not cloud.delete_and_wait(step, "DeleteEndpoint", "ep-1", sequence(missing("DeleteEndpoint"))[0],
                                     describe, "endpoint ep-1", **FAST)
    assert checkpoints == [] and polls == [0]


def test_delete_and_wait_resumed_after_a_crash_waits_without_deleting_again():
    issued: list[str] = []
    describe, polls = sequence(status("DELETING"), None)
    step, checkpoints = ctx(operation="DeleteEndpoint ep-1")
    assert cloud.delete_and_wait(step, "DeleteEndpoint", "ep-1", lambda: issued.append("again"), describe,
                                 "endpoint ep-1", **FAST)
    assert issued == [] and checkpoints == [] and polls == [2]


def test_delete_and_wait_after_another_kind_of_operation_deletes():
    issued: list[str] = []
    step, checkpoints = ctx(operation="CreateEndpoint ep-1")  # the checkpoint of the create, not of a delete
    cloud.delete_and_wait(step, "DeleteEndpoint", "ep-1", lambda: issued.append("ep-1"), lambda: None, "ep", **FAST)
    assert issued == ["ep-1"] and checkpoints == ["DeleteEndpoint ep-1"]


def test_delete_and_wait_raises_what_is_not_a_not_found():
    step, checkpoints = ctx()
    with pytest.raises(CloudApiError, match="FailedPrecondition"):
        cloud.delete_and_wait(step, "Delete", "x", sequence(CloudApiError("Delete", "FailedPrecondition", "in use",
                                                                          400))[0], lambda: None, "x", **FAST)
    assert checkpoints == []


# -- operation ids and content names -----------------------------------------------------------------------------
def test_an_operation_checkpoint_names_its_action_and_objects():
    op = cloud.operation_id("UpdateEndpoint", "ep-1", "cfg-2")
    assert op == "UpdateEndpoint ep-1 cfg-2"
    assert cloud.operation_of(ctx(operation=op)[0], "UpdateEndpoint") == ["ep-1", "cfg-2"]
    assert cloud.operation_of(ctx(operation=op)[0], "CreateEndpoint") is None
    assert cloud.operation_of(ctx(operation="UpdateEndpoint")[0], "UpdateEndpoint") is None
    assert cloud.operation_of(ctx()[0], "UpdateEndpoint") is None


def test_content_names_are_stable_and_change_with_the_content():
    inputs = {"base_name": "svc-main", "image": "x", "n": 1}
    name = cloud.content_name("svc-main", inputs)
    assert name == "svc-main-32b603d7"  # pinned: recorded names (SageMaker models, configs) must not move
    assert cloud.content_name("svc-main", {"n": 1, "image": "x", "base_name": "other"}) == name
    assert cloud.content_name("svc-main", {**inputs, "n": 2}) != name
    assert cloud.content_name("svc-main", {**inputs, "weight": 50}, "weight") == name


def test_the_core_helpers_import_no_cloud_sdk():
    import subprocess
    import sys

    # not `google` / `google.cloud`: google-cloud-aiplatform's *-nspkg.pth makes those empty namespace modules at
    # every interpreter start-up
    code = ("import sys, provisioner.cloud; bad = [m for m in ('boto3', 'botocore', 'google.api_core', 'google.auth', "
            "'google.cloud.aiplatform_v1', 'azure.core', 'azure.ai.ml', 'kubernetes') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_translated_client_raises_mlplat_errors_and_lets_others_through() -> None:
    from provisioner.cloud import CloudApiError, TranslatedClient

    class Sdk:
        def get(self, name: str) -> str:
            if name == "gone":
                raise KeyError(name)
            if name == "odd":
                raise ValueError(name)
            return name.upper()

    def translate(err: Exception, operation: str) -> Exception:
        return CloudApiError(operation, "NotFound", str(err), 404) if isinstance(err, KeyError) else err

    client = TranslatedClient(Sdk(), translate)
    assert client.get("x") == "X"
    with pytest.raises(CloudApiError) as err:
        client.get(name="gone")
    assert err.value.not_found and err.value.operation == "get" and err.value.__cause__ is None
    with pytest.raises(ValueError, match="odd"):
        client.get("odd")
    with pytest.raises(AttributeError):
        client._private  # noqa: B018

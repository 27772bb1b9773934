"""The registry: ECR repositories for images, S3 artifacts and a SageMaker model package group for models."""

from __future__ import annotations

import re
from typing import Any

from mlplat_plugins.aws.base import ADDRESS_TAG, TOKEN_TAG, AwsProvider, made_by
from mlplat_plugins.aws.compute import SAGEMAKER_NAME
from mlplat_plugins.aws.sdk import AwsApiError
from provisioner.cloud import or_existing, unless_missing
from provisioner.errors import MlplatError
from provisioner.operations import StepContext
from provisioner.provider import Created, Observed

#: the ids mlplat records for these kinds, so what `mlplat import` takes
ECR_NAME = re.compile(r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*")
S3_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
MODEL_PACKAGE_ARN = re.compile(r"arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:model-package/\S+")


class EcrRepository(AwsProvider):
    """Import ID: the repository name (`team/image`). An imported repository keeps its tags: mlplat tags only what
    it creates, and nothing of an update or delete reads them."""

    force_new = frozenset({"name"})

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        try:
            repo = self.aws.ecr.create_repository(
                repositoryName=inputs["name"], imageTagMutability=inputs["tag_mutability"],
                imageScanningConfiguration={"scanOnPush": inputs["scan_on_push"]}, tags=self.tags(address, ctx),
            )["repository"]
        except AwsApiError as err:
            if err.code != "RepositoryAlreadyExistsException":
                raise
            repo = self._describe(inputs["name"])
            if repo is None or not self._ours(repo, address):
                raise MlplatError(f"ECR repository {inputs['name']} already exists and was not made by mlplat for "
                                  f"{address}", hint="delete or rename it, or rename the image") from None
        return Created(repo["repositoryName"], self._outputs(repo))

    def _ours(self, repo: dict[str, Any], address: str) -> bool:
        return any(t["Key"] == ADDRESS_TAG and t["Value"] == address for t in self._tags(repo))

    def _tags(self, repo: dict[str, Any]) -> list[dict[str, str]]:
        return self.aws.ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"]).get("tags", [])

    def _describe(self, name: str) -> dict[str, Any] | None:
        return unless_missing(lambda: self.aws.ecr.describe_repositories(repositoryNames=[name])["repositories"][0])

    @staticmethod
    def _outputs(repo: dict[str, Any]) -> dict[str, Any]:
        return {"name": repo["repositoryName"], "arn": repo["repositoryArn"], "uri": repo["repositoryUri"]}

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        repo = self._describe(id)
        if repo is None:
            return None
        observed = {"name": repo["repositoryName"], "tag_mutability": repo.get("imageTagMutability", "MUTABLE"),
                    "scan_on_push": bool(repo.get("imageScanningConfiguration", {}).get("scanOnPush"))}
        return Observed(observed, self._outputs(repo))

    def import_(self, address: str, id: str, inputs: dict[str, Any]) -> Observed | None:
        return self.read(id, inputs) if 2 <= len(id) <= 256 and ECR_NAME.fullmatch(id) else None

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        if prior.get("tag_mutability") != desired["tag_mutability"]:
            self.aws.ecr.put_image_tag_mutability(repositoryName=id, imageTagMutability=desired["tag_mutability"])
        if prior.get("scan_on_push") != desired["scan_on_push"]:
            self.aws.ecr.put_image_scanning_configuration(
                repositoryName=id, imageScanningConfiguration={"scanOnPush": desired["scan_on_push"]})
        repo = self._describe(id)
        return self._outputs(repo) if repo else {}

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        repo = self._describe(inputs["name"]) if inputs["name"] not in ctx.exclude else None
        if repo is None or not (made_by(self._tags(repo), ctx) if ctx.token else self._ours(repo, address)):
            return None
        return Created(repo["repositoryName"], self._outputs(repo))

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        try:  # not force: images pushed by users are theirs to delete (as Terraform's force_delete=false)
            self.aws.ecr.delete_repository(repositoryName=id)
        except AwsApiError as err:
            if err.code == "RepositoryNotEmptyException":
                raise MlplatError(f"ECR repository {id} still holds images; mlplat does not delete pushed images",
                                  hint=f"aws ecr batch-delete-image --repository-name {id} ..., then destroy again"
                                  ) from None
            if not err.not_found:
                raise


#: S3 user metadata naming the create (or update) that wrote an artifact: the engine's token
TOKEN_METADATA = "mlplat-token"


class ModelArtifact(AwsProvider):
    """One model file in S3; the recorded sha256 (in object metadata) makes an edited artifact show as drift.

    Import ID: `bucket/key`. An object uploaded without mlplat's sha256 metadata (`aws s3 cp`) reports its sha256 as
    "unknown": the next apply uploads the stack's file over it once, with the metadata."""

    force_new = frozenset({"bucket", "key"})

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        self._put(inputs, ctx)
        return Created(f"{inputs['bucket']}/{inputs['key']}", self._outputs(inputs))

    def _put(self, inputs: dict[str, Any], ctx: StepContext) -> None:
        metadata = {"sha256": inputs["sha256"], **({TOKEN_METADATA: ctx.token} if ctx.token else {})}
        try:
            with open(inputs["source"], "rb") as body:
                self.aws.s3.put_object(Bucket=inputs["bucket"], Key=inputs["key"], Body=body, Metadata=metadata,
                                       ServerSideEncryption="AES256")
        except AwsApiError as err:
            if err.code == "NoSuchBucket":
                raise MlplatError(f"S3 bucket {inputs['bucket']} does not exist",
                                  hint="create it (aws s3 mb s3://...) or set targets.<aws>.bucket to one "
                                       "you own") from None
            raise

    @staticmethod
    def _outputs(inputs: dict[str, Any]) -> dict[str, Any]:
        return {"uri": f"s3://{inputs['bucket']}/{inputs['key']}"}

    def _head(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        return unless_missing(lambda: self.aws.s3.head_object(Bucket=inputs["bucket"], Key=inputs["key"]))

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        head = self._head(inputs)
        if head is None:
            return None
        observed = {**inputs, "sha256": head.get("Metadata", {}).get("sha256", "unknown")}
        return Observed(observed, self._outputs(inputs))

    def import_(self, address: str, id: str, inputs: dict[str, Any]) -> Observed | None:
        """The object the id names (`read` looks where the inputs say)."""
        bucket, _, key = id.partition("/")
        return self.read(id, {**inputs, "bucket": bucket, "key": key}) if S3_BUCKET.fullmatch(bucket) and key else None

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        self._put(desired, ctx)
        return self._outputs(desired)

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        id = f"{inputs['bucket']}/{inputs['key']}"
        head = self._head(inputs) if id not in ctx.exclude else None
        metadata = (head or {}).get("Metadata", {})
        if head is None or metadata.get("sha256") != inputs["sha256"]:
            return None  # re-upload: putting the same key again is idempotent
        if ctx.token and metadata.get(TOKEN_METADATA) != ctx.token:
            return None
        return Created(id, self._outputs(inputs))

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        self.aws.s3.delete_object(Bucket=inputs["bucket"], Key=inputs["key"])


class ModelPackageGroup(AwsProvider):
    """Import ID: the group's name."""

    force_new = frozenset({"name"})

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        or_existing(lambda: self.aws.sagemaker.create_model_package_group(
            ModelPackageGroupName=inputs["name"], ModelPackageGroupDescription=f"mlplat registry {address}",
            Tags=self.tags(address, ctx)), lambda: None)
        group = self._describe(inputs["name"])
        if group is None:
            raise MlplatError(f"model package group {inputs['name']} vanished right after it was created")
        return Created(inputs["name"], self._outputs(group))

    def _describe(self, name: str) -> dict[str, Any] | None:
        return unless_missing(lambda: self.aws.sagemaker.describe_model_package_group(ModelPackageGroupName=name))

    @staticmethod
    def _outputs(group: dict[str, Any]) -> dict[str, Any]:
        return {"name": group["ModelPackageGroupName"], "arn": group["ModelPackageGroupArn"]}

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        group = self._describe(id)
        if group is None or group.get("ModelPackageGroupStatus") in ("Deleting", "DeleteFailed"):
            return None
        return Observed({"name": group["ModelPackageGroupName"]}, self._outputs(group))

    import_id = SAGEMAKER_NAME

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        name = inputs["name"]
        group = self.find_named(name, ctx, lambda: self._describe(name), lambda g: g["ModelPackageGroupArn"])
        return Created(name, self._outputs(group)) if group is not None else None

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        unless_missing(lambda: self.aws.sagemaker.delete_model_package_group(ModelPackageGroupName=id))


class ModelPackage(AwsProvider):
    """A versioned package in the group; AWS numbers versions itself, so the declared name:version and the
    address are kept in CustomerMetadataProperties, which is how a retried create finds its package.

    Import ID: the versioned package's ARN (`arn:aws:sagemaker:<region>:<account>:model-package/<group>/<version>`).
    A package made without mlplat's metadata reports the stack's `model` and `framework` (nothing else knows them);
    import its group, and the artifact and ECR repository it uses, first, so the references are known."""

    force_new = frozenset({"group", "model", "framework", "model_data_url", "image"})

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        found = self.find(address, inputs, ctx)
        if found is not None:
            return found
        args: dict[str, Any] = {
            "ModelPackageGroupName": inputs["group"], "ModelPackageDescription": f"{inputs['model']} ({address})",
            "ModelApprovalStatus": "Approved", "Tags": self.tags(address, ctx),
            "CustomerMetadataProperties": {ADDRESS_TAG: address, "mlplat:model": inputs["model"],
                                           "mlplat:framework": inputs["framework"],
                                           **({TOKEN_TAG: ctx.token} if ctx.token else {})},
            "InferenceSpecification": {
                "Containers": [{"Image": image_uri(inputs["image"]), "ModelDataUrl": inputs["model_data_url"]}],
                "SupportedContentTypes": ["application/json"], "SupportedResponseMIMETypes": ["application/json"]},
        }
        if ctx.token:
            args["ClientToken"] = ctx.token  # AWS answers a retried request with the same package
        arn = self.aws.sagemaker.create_model_package(**args)["ModelPackageArn"]
        return Created(arn, self._outputs(self.aws.sagemaker.describe_model_package(ModelPackageName=arn)))

    @staticmethod
    def _outputs(package: dict[str, Any]) -> dict[str, Any]:
        return {"arn": package["ModelPackageArn"], "version": package.get("ModelPackageVersion")}

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        package = unless_missing(lambda: self.aws.sagemaker.describe_model_package(ModelPackageName=id))
        if package is None:
            return None
        meta = package.get("CustomerMetadataProperties") or {}
        containers = (package.get("InferenceSpecification") or {}).get("Containers") or [{}]
        observed = {**inputs, "group": package.get("ModelPackageGroupName", inputs["group"]),
                    "model": meta.get("mlplat:model", inputs["model"]),
                    "model_data_url": containers[0].get("ModelDataUrl", inputs["model_data_url"])}
        return Observed(observed, self._outputs(package))

    def import_(self, address: str, id: str, inputs: dict[str, Any]) -> Observed | None:
        """What `read` reports, and the container's image (`read` takes it from the record): only for a versioned
        package's ARN (SageMaker answers a group's name with its latest version)."""
        seen = self.read(id, inputs) if MODEL_PACKAGE_ARN.fullmatch(id) else None
        if seen is None or seen.outputs["arn"] != id:
            return None
        package = self.aws.sagemaker.describe_model_package(ModelPackageName=id)
        meta = package.get("CustomerMetadataProperties") or {}
        containers = (package.get("InferenceSpecification") or {}).get("Containers") or [{}]
        seen.inputs.update(framework=meta.get("mlplat:framework", inputs["framework"]),
                           image=image_like(containers[0].get("Image"), inputs["image"]))
        return seen

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        summaries = unless_missing(lambda: self.aws.sagemaker.paginate("list_model_packages", "ModelPackageSummaryList",
                                                    ModelPackageGroupName=inputs["group"]))
        if summaries is None:
            return None
        for summary in summaries:
            if summary["ModelPackageArn"] in ctx.exclude:
                continue
            package = self.aws.sagemaker.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
            meta = package.get("CustomerMetadataProperties") or {}
            if (meta.get(TOKEN_TAG) == ctx.token) if ctx.token else (meta.get(ADDRESS_TAG) == address):
                return Created(package["ModelPackageArn"], self._outputs(package))
        return None

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        unless_missing(lambda: self.aws.sagemaker.delete_model_package(ModelPackageName=id))


def image_uri(image: Any) -> str:
    """The inference image: a URI, or {repository: <ECR URI>, tag} for the registry's own repository."""
    return image if isinstance(image, str) else f"{image['repository']}:{image['tag']}"


def image_like(seen: str | None, desired: Any) -> Any:
    """An image URI a cloud object reports, in the form of the stack's: {repository, tag} where the stack names the
    registry's repository (its URI known only once that is in the state), so the two compare."""
    repository, colon, tag = (seen or "").rpartition(":")
    if isinstance(desired, dict) and colon and "/" not in tag:
        return {"repository": repository, "tag": tag}
    return seen

"""Raw kinds of the aws target (`resources:` in a stack file): their input models. Each is a kind the target's
own lowering makes, with a provider that needs nothing but these inputs (and the target's settings)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator


class _Inputs(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)  # built on first use: most commands use one target


class EcrRepositoryInputs(_Inputs):
    """`aws.ecr_repository`: an ECR repository (outputs: name, arn, uri). Destroy refuses one that holds images."""

    name: str = Field(min_length=2, max_length=256, pattern=r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+"
                      r"(?:[._-][a-z0-9]+)*$", description="Repository name, e.g. team/image; a change replaces it")
    scan_on_push: StrictBool = Field(True, description="Scan each pushed image for vulnerabilities")
    tag_mutability: Literal["MUTABLE", "IMMUTABLE"] = Field("MUTABLE", description="Whether a tag may be pushed "
                                                                                   "again")


class Subscription(_Inputs):
    protocol: Literal["email", "https", "http"] = Field(description="How SNS delivers each message")
    endpoint: str = Field(min_length=1, description="An e-mail address or an http(s) URL; it must confirm the "
                                                    "subscription from the first message")


class AlertTopicInputs(_Inputs):
    """`aws.alert_topic`: an SNS topic and its subscriptions (outputs: arn, name, pending)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,256}$", description="Topic name; a change replaces it")
    subscriptions: list[Subscription] = Field(default_factory=list, description="Who receives what is published "
                                                                                "to the topic")

    @field_validator("subscriptions")
    @classmethod
    def _in_order(cls, subscriptions: list[Subscription]) -> list[Subscription]:
        """In the order `read` reports them, so a reordered list is no change."""
        return sorted(subscriptions, key=lambda s: (s.protocol, s.endpoint))


class ModelPackageGroupInputs(_Inputs):
    """`aws.model_package_group`: a SageMaker model package group (outputs: name, arn)."""

    name: str = Field(pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$", description="Group name; a change replaces it")


RAW_KINDS: dict[str, type[BaseModel]] = {
    "aws.ecr_repository": EcrRepositoryInputs,
    "aws.alert_topic": AlertTopicInputs,
    "aws.model_package_group": ModelPackageGroupInputs,
}

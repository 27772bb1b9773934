"""AWS-owned container images mlplat names: the SageMaker prebuilt inference container per model `framework:`, and
the Model Monitor analyzer. Data only (no SDK): each image lives in an ECR registry of an AWS account that differs
per region, as the SageMaker Python SDK's `image_uris.retrieve` tables list them.

Source: github.com/aws/sagemaker-python-sdk, src/sagemaker/image_uri_config/
- sklearn.json (commit 08288184373326dab899e933d98b758fa7fa87e3), scope inference, version 1.2-1, cpu, py3
- sagemaker-tritonserver.json (commit e4e90a58b3e9f843600f72988ab8a7aaa351f5a5), version 24.05 (tag 24.05-py3)
- model-monitor.json (commit 5d36aec0687525b2dc802a598658bb2ef52c2590), the sagemaker-model-monitor-analyzer
"""

from __future__ import annotations

from dataclasses import dataclass

from provisioner.errors import MlplatError

_SKLEARN = {
    "af-south-1": "510948584623", "ap-east-1": "651117190479", "ap-northeast-1": "354813040037",
    "ap-northeast-2": "366743142698", "ap-northeast-3": "867004704886", "ap-south-1": "720646828776",
    "ap-south-2": "628508329040", "ap-southeast-1": "121021644041", "ap-southeast-2": "783357654285",
    "ap-southeast-3": "951798379941", "ap-southeast-4": "106583098589", "ca-central-1": "341280168497",
    "cn-north-1": "450853457545", "cn-northwest-1": "451049120500", "eu-central-1": "492215442770",
    "eu-central-2": "680994064768", "eu-north-1": "662702820516", "eu-west-1": "141502667606",
    "eu-west-2": "764974769150", "eu-west-3": "659782779980", "eu-south-1": "978288397137",
    "eu-south-2": "104374241257", "me-south-1": "801668240914", "me-central-1": "272398656194",
    "sa-east-1": "737474898029", "us-east-1": "683313688378", "us-east-2": "257758044811",
    "us-gov-west-1": "414596584902", "us-gov-east-1": "237065988967", "us-west-1": "746614075791",
    "us-west-2": "246618743249",
}

_TRITON = {
    "af-south-1": "626614931356", "il-central-1": "780543022126", "ap-east-1": "871362719292",
    "ap-northeast-1": "763104351884", "ap-northeast-2": "763104351884", "ap-northeast-3": "364406365360",
    "ap-south-1": "763104351884", "ap-southeast-1": "763104351884", "ap-southeast-2": "763104351884",
    "ap-southeast-3": "907027046896", "ca-central-1": "763104351884", "cn-north-1": "727897471807",
    "cn-northwest-1": "727897471807", "eu-central-1": "763104351884", "eu-north-1": "763104351884",
    "eu-west-1": "763104351884", "eu-west-2": "763104351884", "eu-west-3": "763104351884",
    "eu-south-1": "692866216735", "me-south-1": "217643126080", "sa-east-1": "763104351884",
    "us-east-1": "763104351884", "us-east-2": "763104351884", "us-west-1": "763104351884",
    "us-west-2": "763104351884", "ca-west-1": "204538143572",
}

_MODEL_MONITOR = {
    "af-south-1": "875698925577", "ap-east-1": "001633400207", "ap-northeast-1": "574779866223",
    "ap-northeast-2": "709848358524", "ap-south-1": "126357580389", "ap-southeast-1": "245545462676",
    "ap-southeast-2": "563025443158", "ca-central-1": "536280801234", "cn-north-1": "453000072557",
    "cn-northwest-1": "453252182341", "eu-central-1": "048819808253", "eu-north-1": "895015795356",
    "eu-south-1": "933208885752", "eu-west-1": "468650794304", "eu-west-2": "749857270468",
    "eu-west-3": "680080141114", "me-south-1": "607024016150", "sa-east-1": "539772159869",
    "us-east-1": "156813124566", "us-east-2": "777275614652", "us-west-1": "890145073186",
    "us-west-2": "159807026194",
}


@dataclass(frozen=True)
class Image:
    repository: str
    tag: str | None
    registries: dict[str, str]  # region -> AWS account of the ECR registry
    note: str = ""

    def uri(self, region: str) -> str:
        account = self.registries.get(region)
        if account is None:
            raise MlplatError(f"AWS publishes no {self.repository} image in {region} (the SageMaker Python SDK's "
                              f"table lists {len(self.registries)} regions)",
                              hint="use another region, or set targets.<aws>.serving_image to an image of yours")
        domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
        tag = f":{self.tag}" if self.tag else ""
        return f"{account}.dkr.ecr.{region}.{domain}/{self.repository}{tag}"


#: model `framework:` → the SageMaker prebuilt inference container serving it from `ModelDataUrl`
FRAMEWORK_IMAGES: dict[str, Image] = {
    "sklearn": Image("sagemaker-scikit-learn", "1.2-1-cpu-py3", _SKLEARN,
                     "the container loads the model through an inference script (model_fn) packed in model.tar.gz"),
    "onnx": Image("sagemaker-tritonserver", "24.05-py3", _TRITON,
                  "Triton's ONNX Runtime backend serves a model repository (<name>/1/model.onnx) packed in "
                  "model.tar.gz"),
}

#: frameworks with no AWS container: they need targets.<aws>.serving_image (mlflow: an image built with
#: `mlflow sagemaker build-and-push-container`); mlplat-linear may use the registry's own image instead
NEEDS_SERVING_IMAGE = frozenset({"mlflow"})

#: the Model Monitor analyzer that runs data-quality jobs (no tag: `latest`, as the SDK names it)
MODEL_MONITOR_ANALYZER = Image("sagemaker-model-monitor-analyzer", None, _MODEL_MONITOR)

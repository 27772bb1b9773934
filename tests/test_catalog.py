"""The accelerator catalog is validated data (DESIGN.md): spellings, GPU counts, sourced, dated prices.

The cloud rows come from plugins (the `mlplat_catalog` hook); the checks and lookups are the core's.
"""

from __future__ import annotations

import datetime
import re
import subprocess
import sys
from pathlib import Path

import pluggy
import pytest

from provisioner import catalog, plugins
from provisioner.errors import MlplatError, NotOffered, UnknownAccelerator

ROOT = Path(__file__).resolve().parent.parent
CLOUDS = ["aws", "azure", "gcp", "onprem"]  # the catalog targets the built-in plugins offer (onprem: node shapes)
ALL_OFFERINGS = [o for t in catalog.targets() for n in catalog.names() for o in catalog.offerings(t, n)]

# --- An independent record of how many GPUs each instance type carries, written from the clouds' own
# --- instance-type pages, not from the CSV files. A row whose GPU count disagrees fails the test below.
AWS_GPUS = {
    "g4dn.xlarge": 1,
    "g4dn.12xlarge": 4,
    "g4dn.metal": 8,
    "g5.xlarge": 1,
    "g5.12xlarge": 4,
    "g5.48xlarge": 8,
    "g6.xlarge": 1,
    "g6.12xlarge": 4,
    "g6.48xlarge": 8,
    "p3.2xlarge": 1,
    "p3.8xlarge": 4,
    "p3.16xlarge": 8,
    "p4d.24xlarge": 8,
    "p4de.24xlarge": 8,
    "p5.4xlarge": 1,
    "p5.48xlarge": 8,
    "p5e.48xlarge": 8,
    "p5en.48xlarge": 8,
}
AWS_FAMILY = {
    "g4dn": "t4",
    "g5": "a10g",
    "g6": "l4",
    "p3": "v100",
    "p4d": "a100-40gb",
    "p4de": "a100-80gb",
    "p5": "h100",
    "p5e": "h200",
    "p5en": "h200",
    "m5": "cpu",
}
GCP_G2_GPUS = {
    "g2-standard-4": 1,
    "g2-standard-8": 1,
    "g2-standard-12": 1,
    "g2-standard-16": 1,
    "g2-standard-24": 2,
    "g2-standard-32": 1,
    "g2-standard-48": 4,
    "g2-standard-96": 8,
}
GCP_FAMILY = {
    "a2-highgpu": "a100-40gb",
    "a2-megagpu": "a100-40gb",
    "a2-ultragpu": "a100-80gb",
    "a3-highgpu": "h100",
    "a3-ultragpu": "h200",
    "g2-standard": "l4",
    "n2-standard": "cpu",
}
# N1 machines take attached GPUs: allowed counts and the most vCPUs each count allows (GCP GPU docs).
GCP_N1_ATTACH = {"t4": {1: 48, 2: 48, 4: 96}, "v100": {1: 12, 2: 24, 4: 48, 8: 96}}
AZURE_GPUS = {
    "Standard_NC4as_T4_v3": ("t4", 1),
    "Standard_NC8as_T4_v3": ("t4", 1),
    "Standard_NC16as_T4_v3": ("t4", 1),
    "Standard_NC64as_T4_v3": ("t4", 4),
    "Standard_NC6s_v3": ("v100", 1),
    "Standard_NC12s_v3": ("v100", 2),
    "Standard_NC24s_v3": ("v100", 4),
    "Standard_ND96asr_v4": ("a100-40gb", 8),
    "Standard_NC24ads_A100_v4": ("a100-80gb", 1),
    "Standard_NC48ads_A100_v4": ("a100-80gb", 2),
    "Standard_NC96ads_A100_v4": ("a100-80gb", 4),
    "Standard_ND96amsr_A100_v4": ("a100-80gb", 8),
    "Standard_NC40ads_H100_v5": ("h100-nvl", 1),  # H100 NVL, 94 GB (Microsoft's NCads H100 v5 size docs)
    "Standard_NC80adis_H100_v5": ("h100-nvl", 2),
    "Standard_ND96isr_H100_v5": ("h100", 8),  # not 12, whatever some catalogs say
    "Standard_ND96isr_H200_v5": ("h200", 8),
}
AZURE_CPU = re.compile(r"^Standard_D(\d+s_v[345]|S\d_v2)$")


def expected_gpus(o: catalog.Offering) -> tuple[str | set[str], int]:
    """(accelerator(s) the instance type can carry, GPU count), from the tables above."""
    name = o.instance_type
    if o.target == "onprem":  # node shapes of a cluster you run, named `<accelerator>-node-x<GPUs>` (cpu-node)
        shape = re.fullmatch(r"(.+)-node-x(\d+)", name)
        return ("cpu", 0) if name == "cpu-node" else (shape.group(1), int(shape.group(2)))
    if o.target == "aws":
        family = name.split(".")[0]
        return AWS_FAMILY[family], 0 if family == "m5" else AWS_GPUS[name]
    if o.target == "gcp":
        if name.startswith("n1-"):
            return set(GCP_N1_ATTACH), o.gpus  # count checked against the attach rules instead
        family = name.rsplit("-", 1)[0]
        if family in ("a2-highgpu", "a2-megagpu", "a2-ultragpu", "a3-highgpu", "a3-ultragpu"):
            return GCP_FAMILY[family], int(re.fullmatch(r".*-(\d+)g", name).group(1))
        return GCP_FAMILY[family], GCP_G2_GPUS.get(name, 0)
    if AZURE_CPU.match(name):
        return "cpu", 0
    return AZURE_GPUS[name]


# --- spellings -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling, name",
    [
        ("H100", "h100"),
        ("h100", "h100"),
        (" H100 ", "h100"),
        ("nvidia-h100-80gb", "h100"),
        ("NVIDIA_H100_80GB", "h100"),
        ("nvidia h100 80gb", "h100"),
        ("nvidia-tesla-h100", "h100"),
        ("H100 NVL", "h100-nvl"),
        ("H100-NVL", "h100-nvl"),
        ("nvidia-h100-nvl", "h100-nvl"),
        ("NVIDIA-H100-NVL", "h100-nvl"),
        ("A100", "a100-40gb"),
        ("nvidia-tesla-a100", "a100-40gb"),
        ("a100-40g", "a100-40gb"),
        ("A100-80GB", "a100-80gb"),
        ("nvidia-a100-80gb", "a100-80gb"),
        ("T4", "t4"),
        ("nvidia-tesla-t4", "t4"),
        ("L4", "l4"),
        ("nvidia-l4", "l4"),
        ("A10G", "a10g"),
        ("nvidia-a10g", "a10g"),
        ("V100", "v100"),
        ("nvidia-tesla-v100", "v100"),
        ("H200", "h200"),
        ("nvidia-h200-141gb", "h200"),
        ("CPU", "cpu"),
    ],
)
def test_common_spellings_normalise(spelling, name):
    assert catalog.normalize(spelling) == name


def test_node_labels_are_accepted_spellings():
    for name in catalog.names():
        label = catalog.onprem_label(name)
        if label:
            assert catalog.normalize(label) == name


def test_unknown_accelerator_lists_known_ones():
    with pytest.raises(UnknownAccelerator) as err:
        catalog.normalize("tpu-v5")
    assert "unknown accelerator 'tpu-v5'" in err.value.message
    assert err.value.hint == "known accelerators: " + ", ".join(catalog.names())


def test_near_miss_suggests_the_intended_accelerator():
    with pytest.raises(UnknownAccelerator) as err:
        catalog.normalize("h1000")
    assert "did you mean 'h100'?" in err.value.message


def test_a10_is_not_mistaken_for_a10g():
    with pytest.raises(UnknownAccelerator):
        catalog.normalize("A10")


def test_names_are_the_catalog_accelerators_in_order():
    assert catalog.names() == ["cpu", "t4", "l4", "a10g", "v100", "a100-40gb", "a100-80gb", "h100", "h100-nvl", "h200"]


def test_every_spelling_belongs_to_one_accelerator():
    folded: dict[str, str] = {}
    for name in catalog.names():
        acc = catalog.accelerator(name)
        for spelling in {name, *acc.aliases, acc.onprem_label} - {""}:
            key = re.sub(r"[\s_\-]+", "-", spelling.lower())
            assert folded.setdefault(key, name) == name, f"{spelling!r} names {folded[key]} and {name}"


def test_accelerator_record_carries_memory_and_label():
    h100 = catalog.accelerator("H100")
    assert (h100.name, h100.gpu_memory_gb, h100.onprem_label) == ("h100", 80, "NVIDIA-H100-80GB-HBM3")
    assert catalog.accelerator("cpu").gpu_memory_gb == 0
    assert catalog.onprem_label("cpu") == ""
    assert catalog.onprem_label("t4") == "Tesla-T4"


# --- offerings -----------------------------------------------------------------------------------------


def test_every_offering_has_consistent_gpu_count():
    for o in ALL_OFFERINGS:
        accelerators, gpus = expected_gpus(o)
        allowed = accelerators if isinstance(accelerators, set) else {accelerators}
        assert o.accelerator in allowed, f"{o.target} {o.instance_type} cannot carry {o.accelerator}"
        assert o.gpus == gpus, f"{o.target} {o.instance_type}: catalog says {o.gpus} GPUs, expected {gpus}"
        if o.target == "gcp" and o.instance_type.startswith("n1-"):
            max_vcpus = GCP_N1_ATTACH[o.accelerator].get(o.gpus)
            assert max_vcpus is not None, f"gcp cannot attach {o.gpus} x {o.accelerator}"
            assert o.vcpus <= max_vcpus, f"{o.instance_type}: too many vCPUs for {o.gpus} x {o.accelerator}"


def test_every_accelerator_has_an_entry_or_clear_not_offered_per_cloud():
    for target in catalog.targets():
        for name in catalog.names():
            rows = catalog.offerings(target, name)
            if rows:
                for o in rows:
                    assert catalog.instance_for(target, name, o.gpus).gpus == o.gpus
                continue
            with pytest.raises(NotOffered) as err:
                catalog.instance_for(target, name, 1)
            assert f"{name} is not offered on {target}" in err.value.message
            assert "offered there:" in err.value.hint and "another target" in err.value.hint


def test_prices_have_source_and_date():
    today = datetime.date.today()
    for o in ALL_OFFERINGS:
        if o.price_usd_hour is None:
            assert o.price_source == "unknown", o
            continue
        assert o.price_usd_hour > 0, o
        assert o.price_source and o.price_source != "unknown", o
        assert datetime.date.fromisoformat(o.price_date) <= today, o
        assert o.region, o


def test_no_instance_type_maps_to_two_accelerators():
    seen: dict[tuple[str, str], str] = {}
    for o in ALL_OFFERINGS:
        owner = seen.setdefault((o.target, o.instance_type), o.accelerator)
        assert owner == o.accelerator, f"{o.target} {o.instance_type} listed for {owner} and {o.accelerator}"


def test_offerings_are_sorted_by_gpu_count():
    for target in catalog.targets():
        for name in catalog.names():
            counts = [o.gpus for o in catalog.offerings(target, name)]
            assert counts == sorted(counts)


def test_well_known_instance_types():
    assert catalog.instance_for("aws", "a10g", 4).instance_type == "g5.12xlarge"
    assert catalog.instance_for("aws", "H100", 8).instance_type == "p5.48xlarge"
    assert catalog.instance_for("gcp", "a100", 4).instance_type == "a2-highgpu-4g"
    assert catalog.instance_for("gcp", "nvidia-l4", 1).instance_type == "g2-standard-4"
    assert catalog.instance_for("azure", "a100-80gb", 8).instance_type == "Standard_ND96amsr_A100_v4"
    assert catalog.instance_for("azure", "t4", 1).instance_type == "Standard_NC4as_T4_v3"  # the cheapest


def test_priced_offering_beats_one_without_a_price():
    assert catalog.instance_for("aws", "h200", 8).instance_type == "p5en.48xlarge"


def test_unsupported_gpu_count_names_the_counts_available():
    with pytest.raises(NotOffered) as err:
        catalog.instance_for("aws", "h100", 2)
    assert "available counts: 1, 8" in err.value.message


def test_h100_nvl_is_offered_only_on_azure():
    assert catalog.accelerator("H100 NVL").gpu_memory_gb == 94
    for target in ("aws", "gcp"):
        with pytest.raises(NotOffered) as err:
            catalog.instance_for(target, "h100-nvl", 1)
        assert err.value.hint.endswith("another target: azure, onprem")
    assert catalog.instance_for("azure", "h100-nvl", 1).instance_type == "Standard_NC40ads_H100_v5"


def test_a10g_is_offered_only_on_aws():
    for target in ("gcp", "azure"):
        with pytest.raises(NotOffered) as err:
            catalog.instance_for(target, "a10g", 1)
        assert err.value.hint.endswith("another target: aws, onprem")


def test_cpu_gives_the_smallest_general_purpose_instance():
    for target in catalog.targets():
        smallest = catalog.instance_for(target, "cpu", 0)
        assert smallest.gpus == 0
        assert smallest.vcpus == min(o.vcpus for o in catalog.offerings(target, "cpu"))
    assert catalog.instance_for("aws", "cpu", 0, min_vcpus=8).instance_type == "m5.2xlarge"


def test_cpu_with_gpus_and_gpu_without_gpus_are_refused():
    with pytest.raises(NotOffered):
        catalog.instance_for("aws", "cpu", 1)
    with pytest.raises(NotOffered):
        catalog.instance_for("aws", "t4", 0)
    with pytest.raises(MlplatError):
        catalog.instance_for("aws", "t4", -1)


def test_unknown_target_is_a_user_error():
    with pytest.raises(MlplatError) as err:
        catalog.instance_for("oracle", "t4", 1)
    assert not isinstance(err.value, NotOffered)
    assert err.value.hint.endswith("aws, azure, gcp, onprem")
    with pytest.raises(MlplatError):
        catalog.offerings("oracle", "t4")


def test_sagemaker_prefix():
    offering = catalog.instance_for("aws", "a10g", 1)
    assert offering.instance_type == "g5.xlarge"
    assert catalog.sagemaker_instance_type(offering) == "ml.g5.xlarge"
    with pytest.raises(MlplatError):
        catalog.sagemaker_instance_type(catalog.instance_for("gcp", "t4", 1))


def test_importing_the_catalog_reads_no_file():
    code = (
        "import provisioner.catalog as c\n"
        "assert c._accelerators.cache_info().currsize == 0\n"
        "assert c._offerings.cache_info().currsize == 0\n"
        "assert c._files.cache_info().currsize == 0\n"
        "import sys\n"
        "assert 'provisioner.plugins' not in sys.modules, 'importing the catalog loaded the plugin system'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the rows come from plugins ---------------------------------------------------------------------------


def test_catalog_targets_are_the_ones_the_plugins_offer():
    assert catalog.targets() == CLOUDS
    files = catalog._files()
    for target in CLOUDS:
        file, plugin = files[target]
        assert plugin == target  # each built-in plugin gives its own cloud's file
        assert file == catalog.CatalogFile(target, ROOT / "plugins" / target / "catalog.csv")
    # only the accelerator kinds stay in core
    assert sorted(p.name for p in (ROOT / "provisioner" / "catalog").glob("*.csv")) == ["accelerators.csv"]


HEADER = ",".join(catalog._OFFERING_COLUMNS)
SOURCE = "test-source@0 prices.csv,2026-01-01"
GOOD_ROWS = [
    f"cpu,0,moon-cpu-4,4,16,0.2,moon-1,{SOURCE},yes,moon-1|moon-2,",
    f"t4,1,moon-t4-1,4,16,0.5,moon-1,{SOURCE},yes,moon-1,MOON_T4",
    f"t4,4,moon-t4-4,48,192,2.0,moon-1,{SOURCE},no,moon-1,MOON_T4",
    f"h100,8,moon-h100-8,192,2048,50.0,moon-1,{SOURCE},yes,moon-1,MOON_H100",
    f"h100,8,moon-h100-8-cheap,192,2048,40.0,moon-1,{SOURCE},no,moon-1,MOON_H100",
]


class FilePlugin:
    """A tiny plugin that offers catalog files, as a third-party plugin would."""

    def __init__(self, *files: catalog.CatalogFile) -> None:
        self.files = list(files)

    @plugins.hookimpl
    def mlplat_catalog(self) -> list[catalog.CatalogFile]:
        return self.files


@pytest.fixture
def use_plugins(monkeypatch):
    """Replace the installed plugins by the given ones (on a fresh pluggy manager); the caches are reset around it."""

    def install(**by_name: object) -> None:
        pm = pluggy.PluginManager(plugins.PROJECT)
        pm.add_hookspecs(plugins.Hooks)
        for name, plugin in by_name.items():
            pm.register(plugin, name=name)
        monkeypatch.setattr(plugins, "manager", lambda: pm)
        _clear()

    def _clear() -> None:
        catalog._files.cache_clear()
        catalog._offerings.cache_clear()

    yield install
    _clear()


def write_catalog(tmp_path: Path, rows: list[str], name: str = "catalog.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


def test_plugin_rows_are_read_through_the_hook(tmp_path, use_plugins):
    path = write_catalog(tmp_path, GOOD_ROWS)
    use_plugins(moonplug=FilePlugin(catalog.CatalogFile("moon", path)))

    assert catalog.targets() == ["moon"]
    assert catalog._files()["moon"][1] == "moonplug"
    t4 = catalog.instance_for("moon", "T4", 1)
    assert (t4.target, t4.instance_type, t4.serving, t4.regions, t4.cloud_accelerator) == (
        "moon", "moon-t4-1", True, ("moon-1",), "MOON_T4")
    assert catalog.instance_for("moon", "cpu", 0).regions == ("moon-1", "moon-2")
    # the built-in clouds are gone with their plugins: the list of clouds is not fixed
    with pytest.raises(MlplatError) as err:
        catalog.instance_for("aws", "t4", 1)
    assert not isinstance(err.value, NotOffered)
    assert err.value.hint.endswith("catalog targets (from the installed plugins): moon")
    with pytest.raises(NotOffered) as err:
        catalog.instance_for("moon", "a10g", 1)
    assert err.value.hint == "offered there: cpu, t4, h100; or use another target: none"


def test_a_file_without_rows_offers_no_target(tmp_path, use_plugins):
    use_plugins(empty=FilePlugin(catalog.CatalogFile("void", write_catalog(tmp_path, []))))
    assert catalog.targets() == []


@pytest.mark.parametrize(
    "row, problem",
    [
        (f"tpu-v5,1,moon-tpu,4,16,1.0,moon-1,{SOURCE},yes,moon-1,", "unknown accelerator 'tpu-v5'"),
        (f"t4,0,moon-t4-0,4,16,1.0,moon-1,{SOURCE},yes,moon-1,MOON_T4", "t4 rows need at least 1 GPUs"),
        (f"cpu,2,moon-cpu-2,4,16,1.0,moon-1,{SOURCE},yes,moon-1,", "cpu rows need 0 GPUs"),
        (f"t4,two,moon-t4-2,4,16,1.0,moon-1,{SOURCE},yes,moon-1,MOON_T4", "gpus must be a whole number"),
        (f"t4,1,moon-t4-1,4,16,1.0,moon-1,{SOURCE},yes,moon-1,MOON_T4", "repeated instance type 'moon-t4-1'"),
        (f"t4,2,moon-t4-2,4,16,1.0,moon-1,{SOURCE},maybe,moon-1,MOON_T4", "serving must be yes or no"),
        (f"t4,2,moon-t4-2,4,16,1.0,moon-1,{SOURCE},yes,,MOON_T4", "regions must be one or more"),
        (f"t4,2,moon-t4-2,4,16,1.0,moon-1,{SOURCE},yes,moon-1||moon-2,MOON_T4", "regions must be one or more"),
        (f"t4,2,moon-t4-2,4,16,1.0,moon-1,{SOURCE},yes,moon-1|moon-1,MOON_T4", "regions must be one or more"),
        (f"t4,2,moon-t4-2,4,16,1.0,moon-1,{SOURCE},yes,Moon 1,MOON_T4", "regions must be one or more"),
        (f"t4,2,moon-t4-2,4,16,1.0,moon-1,{SOURCE},yes,moon-2,MOON_T4", "must include the pricing region 'moon-1'"),
        (f"t4,2,moon-t4-2,4,16,1.0,moon-1,{SOURCE},yes,moon-1,nvidia-t4", "cloud_accelerator must match"),
        (f"t4,2,moon-t4-2,4,16,1.0,moon-1,{SOURCE},yes,moon-1,MOON_TESLA_T4", "t4 is 'MOON_T4' in an earlier row"),
        (f"cpu,0,moon-cpu-8,8,32,1.0,moon-1,{SOURCE},yes,moon-1,MOON_T4", "cpu rows have no cloud_accelerator"),
        ("t4,2,moon-t4-2,4,16,1.0,moon-1,unknown,,yes,moon-1,MOON_T4", "a price needs a price_source"),
    ],
)
def test_a_bad_row_in_a_plugin_file_is_rejected_with_file_and_line(tmp_path, use_plugins, row, problem):
    path = write_catalog(tmp_path, [GOOD_ROWS[0], GOOD_ROWS[1], row])  # the bad row is line 4
    use_plugins(moonplug=FilePlugin(catalog.CatalogFile("moon", path)))

    with pytest.raises(catalog.CatalogDataError) as err:
        catalog.offerings("moon", "t4")
    assert str(err.value).startswith(f"{path}:4: ")
    assert problem in str(err.value)


def test_a_plugin_file_with_the_old_header_is_rejected(tmp_path, use_plugins):
    path = tmp_path / "catalog.csv"
    path.write_text(",".join(catalog._OFFERING_COLUMNS[:9]) + "\n" + f"t4,1,x,4,16,1.0,moon-1,{SOURCE}\n")
    use_plugins(moonplug=FilePlugin(catalog.CatalogFile("moon", path)))
    with pytest.raises(catalog.CatalogDataError, match=r"catalog\.csv: header must be .*,serving,regions,"):
        catalog.targets()


def test_two_plugins_giving_one_target_is_an_error_naming_both(tmp_path, use_plugins):
    first = write_catalog(tmp_path, GOOD_ROWS, "first.csv")
    second = write_catalog(tmp_path, GOOD_ROWS, "second.csv")
    use_plugins(alpha=FilePlugin(catalog.CatalogFile("moon", first)),
                beta=FilePlugin(catalog.CatalogFile("moon", second)))

    with pytest.raises(MlplatError) as err:
        catalog.targets()
    message = err.value.message
    assert "two plugins give an accelerator catalog for target 'moon'" in message
    assert "alpha" in message and "beta" in message
    assert str(first) in message and str(second) in message


def test_one_plugin_giving_two_targets_is_fine(tmp_path, use_plugins):
    path = write_catalog(tmp_path, GOOD_ROWS)
    use_plugins(both=FilePlugin(catalog.CatalogFile("moon", path), catalog.CatalogFile("mars", path)))
    assert catalog.targets() == ["mars", "moon"]


@pytest.mark.parametrize(
    "offered, problem",
    [
        ("not a CatalogFile", "must return CatalogFile(target, path)"),
        (catalog.CatalogFile("Moon", Path(__file__)), "lower-case target name"),
        (catalog.CatalogFile("moon", Path("/nonexistent/catalog.csv")), "catalog file for target 'moon' not found"),
    ],
)
def test_a_broken_catalog_hook_names_its_plugin(use_plugins, offered, problem):
    use_plugins(brokenplug=FilePlugin(offered))
    with pytest.raises(plugins.PluginError) as err:
        catalog.targets()
    assert err.value.message.startswith("plugin brokenplug: ")
    assert problem in err.value.message


# --- serving --------------------------------------------------------------------------------------------


def test_serving_lookup_considers_only_serving_rows(tmp_path, use_plugins):
    use_plugins(moonplug=FilePlugin(catalog.CatalogFile("moon", write_catalog(tmp_path, GOOD_ROWS))))

    assert catalog.instance_for("moon", "h100", 8).instance_type == "moon-h100-8-cheap"  # the cheapest
    assert catalog.instance_for("moon", "h100", 8, serving=True).instance_type == "moon-h100-8"  # the servable one
    assert catalog.instance_for("moon", "t4", 4).instance_type == "moon-t4-4"
    with pytest.raises(NotOffered) as err:
        catalog.instance_for("moon", "t4", 4, serving=True)
    assert "t4 is not offered on moon for serving with 4 GPU(s) per instance" in err.value.message
    assert "available counts for serving: 1" in err.value.message
    with pytest.raises(NotOffered) as err:  # no such count at all: not a serving problem
        catalog.instance_for("moon", "t4", 2, serving=True)
    assert err.value.message.startswith("t4 is not offered on moon with 2 GPU(s) per instance")


def test_serving_lookup_on_the_shipped_catalog():
    assert catalog.instance_for("aws", "t4", 8).instance_type == "g4dn.metal"
    with pytest.raises(NotOffered) as err:  # SageMaker hosting sells no ml.g4dn.metal
        catalog.instance_for("aws", "t4", 8, serving=True)
    assert "for serving" in err.value.message
    assert catalog.instance_for("aws", "t4", 4, serving=True).instance_type == "g4dn.12xlarge"
    assert catalog.instance_for("aws", "cpu", 0, serving=True).instance_type == "m5.xlarge"
    assert catalog.instance_for("gcp", "h100", 8, serving=True).instance_type == "a3-highgpu-8g"
    assert catalog.instance_for("azure", "h100-nvl", 1, serving=True).instance_type == "Standard_NC40ads_H100_v5"
    # of the catalogued Azure CPU sizes only Standard_DS3_v2 is an online-endpoint SKU (the D*s_v3/v5 are not)
    assert catalog.instance_for("azure", "cpu", 0, serving=True).instance_type == "Standard_DS3_v2"
    assert catalog.instance_for("azure", "cpu", 0).instance_type != "Standard_DS3_v2"  # unpriced: never cheapest
    with pytest.raises(NotOffered) as err:  # Azure's only H200 size is not an online-endpoint SKU
        catalog.instance_for("azure", "h200", 8, serving=True)
    assert err.value.hint.endswith("or serve on another target: aws, onprem")


# Independent records of what each cloud's managed serving sells, written from the clouds' own lists, not from the
# CSV files: Azure ML's managed online endpoint SKU list (MicrosoftDocs/azure-ai-docs,
# articles/machine-learning/reference-managed-online-endpoints-vm-sku-list.md) and Vertex AI's acceleratorType enum.
AZURE_ONLINE_ENDPOINT_SKUS = {
    "Standard_NC4as_T4_v3", "Standard_NC8as_T4_v3", "Standard_NC16as_T4_v3", "Standard_NC64as_T4_v3",
    "Standard_NC6s_v3", "Standard_NC12s_v3", "Standard_NC24s_v3",
    "Standard_NC24ads_A100_v4", "Standard_NC48ads_A100_v4", "Standard_NC96ads_A100_v4",
    "Standard_ND96asr_v4", "Standard_ND96amsr_A100_v4",
    "Standard_NC40ads_H100_v5", "Standard_NC80adis_H100_v5", "Standard_ND96is_H100_v5", "Standard_ND96isr_H100_v5",
    "Standard_DS1_v2", "Standard_DS2_v2", "Standard_DS3_v2", "Standard_DS4_v2", "Standard_DS5_v2",
    "Standard_F2s_v2", "Standard_F4s_v2", "Standard_F8s_v2", "Standard_F16s_v2", "Standard_F32s_v2",
}
VERTEX_ACCELERATOR = {
    "t4": "NVIDIA_TESLA_T4",
    "l4": "NVIDIA_L4",
    "v100": "NVIDIA_TESLA_V100",
    "a100-40gb": "NVIDIA_TESLA_A100",
    "a100-80gb": "NVIDIA_A100_80GB",
    "h100": "NVIDIA_H100_80GB",
    "h200": "NVIDIA_H200_141GB",
}


def test_every_row_names_its_regions_and_cloud_accelerator():
    for o in ALL_OFFERINGS:
        assert o.regions, o
        if o.region:
            assert o.region in o.regions, o
        if o.target == "gcp" and o.accelerator != "cpu":
            assert o.cloud_accelerator == VERTEX_ACCELERATOR[o.accelerator], o
        else:
            assert o.cloud_accelerator == "", o  # cpu rows, and aws / azure, which have no such enum


def test_azure_serving_matches_the_online_endpoint_sku_list():
    for o in (o for o in ALL_OFFERINGS if o.target == "azure"):
        assert o.serving == (o.instance_type in AZURE_ONLINE_ENDPOINT_SKUS), o.instance_type


def test_aws_serving_matches_sagemakers_production_variant_instance_types():
    botocore_session = pytest.importorskip("botocore.session")
    model = botocore_session.get_session().get_service_model("sagemaker")
    sellable = set(model.shape_for("ProductionVariantInstanceType").enum)
    for o in (o for o in ALL_OFFERINGS if o.target == "aws"):
        assert o.serving == (catalog.sagemaker_instance_type(o) in sellable), o.instance_type


def test_gcp_serving_rows():
    not_served = {o.instance_type for o in ALL_OFFERINGS if o.target == "gcp" and not o.serving}
    # unsure whether Vertex AI prediction sells these on demand (README caveats): left out of serving
    assert not_served == {"a3-highgpu-1g", "a3-highgpu-2g", "a3-highgpu-4g", "a3-ultragpu-8g"}

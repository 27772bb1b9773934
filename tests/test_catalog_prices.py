"""Catalog prices against an independent table of list prices (tests/list_prices.csv).

The table is written from sources other than the ones the catalog rows cite (see the catalog README), one row per
(cloud, instance type, region), each with its source and the date of its data. A catalog price more than 25 % away
from the table fails here, as does one below the table's Spot price: an on-demand price under the Spot price of the
same machine is a wrong row, not a bargain.
"""

from __future__ import annotations

import csv
import datetime
import re
from pathlib import Path

import pytest

from provisioner import catalog

TABLE = Path(__file__).with_name("list_prices.csv")
COLUMNS = ["cloud", "instance_type", "region", "list_usd_hour", "spot_usd_hour", "checked", "confidence", "source"]
TOLERANCE = 0.25
REGION = {"aws": "us-east-1", "gcp": "us-central1", "azure": "eastus"}

# Rows the table must cover: those hardening item 16 found wrong or asked to be checked.
MUST_COVER = {
    ("gcp", "a2-ultragpu-1g"),
    ("gcp", "a2-ultragpu-2g"),
    ("gcp", "a2-ultragpu-4g"),
    ("gcp", "a2-ultragpu-8g"),
    ("gcp", "a3-highgpu-1g"),
    ("gcp", "a3-highgpu-2g"),
    ("gcp", "a3-highgpu-4g"),
    ("gcp", "a3-highgpu-8g"),
    ("gcp", "a2-highgpu-1g"),
    ("gcp", "g2-standard-4"),
    ("aws", "p4d.24xlarge"),
    ("aws", "p4de.24xlarge"),
    ("aws", "p5.48xlarge"),
    ("aws", "g4dn.xlarge"),
    ("aws", "g5.xlarge"),
    ("aws", "g6.xlarge"),
    ("azure", "Standard_ND96isr_H100_v5"),
    ("azure", "Standard_ND96amsr_A100_v4"),
    ("azure", "Standard_NC24ads_A100_v4"),
    ("azure", "Standard_NC4as_T4_v3"),
}


def _read_table() -> list[dict[str, str]]:
    with TABLE.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == COLUMNS, f"{TABLE.name}: header must be {','.join(COLUMNS)}"
        return [{k: (v or "").strip() for k, v in row.items()} for row in reader]


LIST_PRICES = _read_table()
OFFERINGS = {
    (o.target, o.instance_type): o
    for target in catalog.targets()
    for name in catalog.names()
    for o in catalog.offerings(target, name)
}


def _row_id(row: dict[str, str]) -> str:
    return f"{row['cloud']}:{row['instance_type']}"


def test_table_is_well_formed_and_covers_every_cloud():
    assert len(LIST_PRICES) >= 12
    # every cloud's; onprem's node shapes are hardware you own, with no list price
    assert {row["cloud"] for row in LIST_PRICES} == set(catalog.targets()) - {"onprem"}
    keys = [(row["cloud"], row["instance_type"]) for row in LIST_PRICES]
    assert len(keys) == len(set(keys)), "one table row per (cloud, instance type)"
    assert set(keys) >= MUST_COVER, f"table lacks {sorted(MUST_COVER - set(keys))}"
    today = datetime.date.today()
    for row in LIST_PRICES:
        where = _row_id(row)
        assert row["region"] == REGION[row["cloud"]], where
        assert float(row["list_usd_hour"]) > 0, where
        if row["spot_usd_hour"]:
            assert 0 < float(row["spot_usd_hour"]) < float(row["list_usd_hour"]), where
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", row["checked"]), where
        assert datetime.date.fromisoformat(row["checked"]) <= today, where
        assert row["confidence"] in ("high", "medium"), where
        assert row["source"], where


@pytest.mark.parametrize("row", LIST_PRICES, ids=_row_id)
def test_catalog_price_is_within_25_percent_of_the_list_price(row):
    offering = OFFERINGS.get((row["cloud"], row["instance_type"]))
    assert offering is not None, f"{_row_id(row)} is not in the catalog; drop it from {TABLE.name}"
    assert offering.region == row["region"], f"{_row_id(row)}: catalog prices {offering.region}, table {row['region']}"
    assert offering.price_usd_hour is not None, f"{_row_id(row)}: the catalog has no price"
    listed = float(row["list_usd_hour"])
    off = (offering.price_usd_hour - listed) / listed
    assert abs(off) <= TOLERANCE, (
        f"{_row_id(row)}: catalog {offering.price_usd_hour} is {off:+.0%} from the list price {listed} "
        f"({row['source']}, {row['checked']})"
    )


@pytest.mark.parametrize("row", [r for r in LIST_PRICES if r["spot_usd_hour"]], ids=_row_id)
def test_catalog_on_demand_price_is_not_below_the_spot_price(row):
    # The catalog records on-demand prices only (no Spot column), so the Spot price comes from the table.
    offering = OFFERINGS[(row["cloud"], row["instance_type"])]
    spot = float(row["spot_usd_hour"])
    assert offering.price_usd_hour >= spot, (
        f"{_row_id(row)}: catalog on-demand {offering.price_usd_hour} is below the Spot price {spot} ({row['source']})"
    )


# --- H100 (80 GB, SXM) is not H100 NVL (94 GB, PCIe) --------------------------------------------------------------
NVL_SIZES = re.compile(r"^Standard_NC\d+ad\w*_H100_v5$")  # NCads H100 v5: Microsoft's size docs say H100 NVL, 94 GB


def test_h100_means_the_80_gb_part_on_every_cloud():
    assert catalog.accelerator("h100").gpu_memory_gb == 80
    for target in catalog.targets():
        for o in catalog.offerings(target, "h100"):
            assert not NVL_SIZES.match(o.instance_type), f"{o.instance_type} carries H100 NVL (94 GB), not h100"


def test_azure_h100_is_nd_h100_v5_with_8_gpus():
    rows = catalog.offerings("azure", "h100")
    assert [(o.instance_type, o.gpus) for o in rows] == [("Standard_ND96isr_H100_v5", 8)]
    assert catalog.instance_for("azure", "H100", 8).instance_type == "Standard_ND96isr_H100_v5"


def test_azure_ncads_h100_v5_is_listed_as_h100_nvl():
    nvl = catalog.accelerator("h100-nvl")
    assert nvl.gpu_memory_gb == 94
    sizes = {o.instance_type: o.gpus for o in catalog.offerings("azure", "h100-nvl")}
    assert sizes == {"Standard_NC40ads_H100_v5": 1, "Standard_NC80adis_H100_v5": 2}
    assert all(NVL_SIZES.match(name) for name in sizes)

"""Node health through the simulator: a family's start task reaches the pools, a start task that fails on every node
blames the image once, and a start task that fails on a few nodes is repaired (through the real SDK clients)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.cli.test_simulate import run

GALLERY = {"resourceGroup": "images-rg", "name": "autopilotGallery", "imageDefinition": "sim", "osType": "Linux",
           "hyperVGeneration": "V2",
           "location": "westeurope"}
VERSION = "/resourceGroups/images-rg/providers/Microsoft.Compute/galleries/autopilotGallery/images/sim/versions/1.0.0"


def scenario(share: float, expect: list[dict]) -> dict:
    return {
        "name": "start-task", "seed": 5, "start": "2026-11-02T06:00:00Z", "duration": "3h",
        "capacity": [{"region": "westeurope", "dedicatedFailureRate": 0, "spotFailureRate": 0}],
        "batchAccounts": [{"name": "simweu", "dedicatedCores": 1000}],
        "galleries": [{"name": "autopilotGallery"}],
        "families": {"sim": {"gallery": GALLERY, "source": "snapshots", "snapshotResourceGroups": ["images-rg"],
                             "canaryNodes": 3,
                             "startTask": {"commandLine": "/bin/sh -c 'test -d /mnt/resource'", "waitForSuccess": True},
                             "pools": [{"account": "simweu", "vmSize": "Standard_D4ds_v5", "dedicated": 12}]}},
        "timeline": [
            {"at": "0m", "action": "setImageHealth", "image": VERSION, "startTaskFailedShare": share},
            {"at": "0m", "action": "createSnapshotSet", "family": "sim", "version": "1.0.0"},
        ],
        "expect": expect,
    }


@pytest.mark.slow
def test_a_start_task_failing_everywhere_blames_the_image_once(tmp_path: Path, azurite: str,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, report = run(tmp_path, azurite, scenario(1.0, [
        {"expect": "alerts", "type": "ImageUnhealthy", "count": 1},
        {"expect": "alerts", "type": "NodesUnhealthy", "count": 0},
        {"expect": "poolNodes", "pool": "simweu/sim-1-0-0", "dedicated": 3},
        {"expect": "usableNodes", "pool": "simweu/sim-1-0-0", "count": 0},
    ]), "--quiet", "--no-chart")
    assert code == 0, capsys.readouterr().out
    pool = next(p for p in report["pools"] if p["id"] == "sim-1-0-0")
    assert pool["unhealthyNodes"] == 3 and pool["resizeRequests"] == 0


@pytest.mark.slow
def test_a_start_task_failing_on_a_few_nodes_is_repaired(tmp_path: Path, azurite: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, report = run(tmp_path, azurite, scenario(0.15, [
        {"expect": "alerts", "type": "ImageUnhealthy", "count": 0},
        {"expect": "alerts", "type": "NodesUnhealthy", "count": 0},
        {"expect": "usableNodes", "pool": "simweu/sim-1-0-0", "count": 12},
        {"expect": "poolAtTarget", "pool": "simweu/sim-1-0-0"},
    ]), "--quiet", "--no-chart")
    assert code == 0, capsys.readouterr().out
    pool = next(p for p in report["pools"] if p["id"] == "sim-1-0-0")
    assert pool["unhealthyNodes"] == 0
    # some nodes did fail their start task and were removed (the target went down, then back up)
    shrinks = [m for e in report["timeline"] if e["kind"] == "pool"
               and (m := re.search(r"resizing to (\d+) dedicated / \d+ Spot \(from (\d+)", e["text"]))
               and int(m[1]) < int(m[2])]
    assert shrinks

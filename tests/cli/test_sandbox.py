"""``autopilot sandbox``: started as a person starts it (its own process, its own Azurite), then poked "from another
shell" with the settings it writes: status, plan, reconcile and replay reach the sandbox's subscription and app."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from autopilot.cli import main
from tests.cli.conftest import DATA, ROOT

POOL = "renderweu/gpu-1-0-0"


def read_env(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            env[name] = shlex.split(value)[0] if value else ""
    return env


@pytest.fixture
def sandbox(tmp_path: Path) -> Any:
    env_file = tmp_path / "sandbox.env"
    proc = subprocess.Popen([sys.executable, "-m", "autopilot", "sandbox", str(DATA / "replay-base.json"), "--env-file",
                             str(env_file),
                             "--speed", "60"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            output.append(line)
            if line.startswith("Ctrl-C stops the sandbox"):
                break
        else:
            pytest.fail("the sandbox stopped before it was ready:\n" + "".join(output))
        yield {"proc": proc, "env_file": env_file, "output": output}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.mark.slow
def test_status_plan_reconcile_and_replay_work_against_a_running_sandbox(sandbox: dict[str, Any],
                                                                         clean_env: pytest.MonkeyPatch,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    printed = "".join(sandbox["output"])
    env = read_env(sandbox["env_file"])
    # what it prints is what it wrote, and is everything a shell needs
    for name in ("AUTOPILOT_SUBSCRIPTION_ID", "AUTOPILOT_ARM_ENDPOINT", "AUTOPILOT_CREDENTIAL", "AUTOPILOT_CA_BUNDLE",
                 "AzureWebJobsStorage",
                 "AUTOPILOT_TABLE_PREFIX", "AUTOPILOT_FAMILIES", "AUTOPILOT_BATCH_ACCOUNTS", "AUTOPILOT_SANDBOX_URL"):
        assert name in env and f"export {name}=" in printed, name
    assert f". {sandbox['env_file']}" in printed
    for name, value in env.items():
        clean_env.setenv(name, value)

    # status: the scenario's initial state (an account, a gallery, the snapshots; no pool yet)
    assert main(["status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["target"] == "emulator" and status["pools"] == []
            and [a["name"] for a in status["accounts"]] == ["renderweu"])

    # replay: the snapshot writes go to the sandbox's own app, which builds the image and the pool
    assert main(["replay", str(DATA / "eventgrid-snapshots.json"), "--advance", "20m", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] and [a["type"] for a in result["alerts"]] == ["PoolsCreated"]
    assert any(c.endswith("/pools/gpu-1-0-0") for c in result["created"])
    main(["replay", str(DATA / "eventgrid-snapshots.json")])
    assert "against the sandbox at https://127.0.0.1:" in capsys.readouterr().out

    # status and plan now see what the sandbox's app did: the same subscription, the same tables
    # healthy: the intermediate managed image the family does not keep is no problem
    assert main(["status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert any(i["kind"] == "managedImage" and not i["exists"] for i in status["images"]) and status["problems"] == []
    pool = next(p for p in status["pools"] if f"{p['account']}/{p['id']}" == POOL)
    assert pool["managed"] and pool["desired"]["dedicated"] == 4
    assert any(a["type"] == "PoolsCreated" and a["fix"] for a in status["recentAlerts"])
    assert main(["plan", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [d["pool"] for d in plan["watch"]["decisions"]] == [POOL]
    assert main(["reconcile", "--json"]) == 0
    reconcile = json.loads(capsys.readouterr().out)
    assert reconcile["guard"]["guarded"] >= 3 and reconcile["guard"]["failed"] == {}  # the version and both snapshots

    # Ctrl-C (SIGTERM from a supervisor) stops it cleanly, Azurite included
    proc = sandbox["proc"]
    proc.send_signal(signal.SIGTERM)
    rest = proc.stdout.read()
    assert proc.wait(timeout=60) == 0 and "sandbox stopped" in rest
    # and a replay then says the sandbox is gone, instead of a traceback
    assert main(["replay", str(DATA / "eventgrid-snapshots.json")]) == 2
    err = capsys.readouterr().err
    assert "cannot reach the sandbox" in err and "autopilot sandbox" in err
    # following the advice: --local replays on a private emulator
    assert main(["replay", str(DATA / "eventgrid-snapshots.json"), "--local"]) == 0
    assert "replayed 2 event(s) against an empty subscription" in capsys.readouterr().out


def test_the_makefile_has_a_sandbox_target() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "\nsandbox: setup\n" in makefile and "-m autopilot sandbox $(SCENARIO)" in makefile

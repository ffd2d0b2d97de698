"""Routing table for Azure Batch: the management plane (``Microsoft.Batch``) and the data plane (``/batch/{account}``).

ARM actions: management-plane routes use the resource provider operations
(``Microsoft.Batch/batchAccounts/pools/write``, ``.../pools/stopResize/action``, ...). Data-plane pool calls are
authorised in Azure RBAC by the same *control-plane* pool actions (the built-in "Azure Batch Data Contributor" role
grants ``Microsoft.Batch/batchAccounts/pools/*`` as an action; Batch's dataActions cover only jobs and job schedules),
so reads map to ``.../pools/read`` and every change (resize, stop resize, update, autoscale) to ``.../pools/write``;
listing supported images maps to ``Microsoft.Batch/batchAccounts/read``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from emulator.batch import jobs
from emulator.batch.base import DATA_API_VERSION, MGMT_API_VERSION
from emulator.batch.data_responses import BatchDataResponses
from emulator.batch.mgmt_responses import BatchManagementResponses
from emulator.core import Route

if TYPE_CHECKING:
    from emulator.azure import Emulator

MGMT_API_VERSIONS = frozenset({MGMT_API_VERSION})
DATA_API_VERSIONS = frozenset({DATA_API_VERSION})

SUB = "/subscriptions/{subscriptionId}"
GROUP = SUB + "/resourceGroups/{resourceGroupName}"
ACCOUNT = GROUP + "/providers/Microsoft.Batch/batchAccounts/{accountName}"
POOL = ACCOUNT + "/pools/{poolName}"
DATA = "/batch/{accountName}"
DATA_POOL = DATA + "/pools/{poolId}"

A = "Microsoft.Batch/batchAccounts"


def routes(emulator: Emulator) -> list[Route]:
    m = BatchManagementResponses(emulator)
    d = BatchDataResponses(emulator)
    arm = {"api_versions": MGMT_API_VERSIONS}
    data = {"api_versions": DATA_API_VERSIONS, "plane": "batch"}
    return [
        # --- management plane: accounts ---
        Route("GET", SUB + "/providers/Microsoft.Batch/batchAccounts", m.list_accounts, f"{A}/read", **arm),
        Route("GET", GROUP + "/providers/Microsoft.Batch/batchAccounts", m.list_accounts_by_group, f"{A}/read", **arm),
        Route("PUT", ACCOUNT, m.put_account, f"{A}/write", **arm),
        Route("PATCH", ACCOUNT, m.patch_account, f"{A}/write", **arm),
        Route("GET", ACCOUNT, m.get_account, f"{A}/read", **arm),
        Route("DELETE", ACCOUNT, m.delete_account, f"{A}/delete", **arm),
        # --- management plane: pools ---
        Route("GET", ACCOUNT + "/pools", m.list_pools, f"{A}/pools/read", **arm),
        Route("PUT", POOL, m.put_pool, f"{A}/pools/write", **arm),
        Route("PATCH", POOL, m.patch_pool, f"{A}/pools/write", **arm),
        Route("GET", POOL, m.get_pool, f"{A}/pools/read", **arm),
        Route("DELETE", POOL, m.delete_pool, f"{A}/pools/delete", **arm),
        Route("POST", POOL + "/stopResize", m.stop_resize, f"{A}/pools/stopResize/action", **arm),
        Route("POST", POOL + "/disableAutoScale", m.disable_auto_scale, f"{A}/pools/disableAutoscale/action", **arm),
        Route("GET", ACCOUNT + "/poolOperationResults/{operationId}", m.pool_operation_result,
              f"{A}/poolOperationResults/read", **arm),
        # --- data plane ---
        Route("GET", DATA + "/pools", d.list_pools, f"{A}/pools/read", **data),
        Route("POST", DATA + "/pools", d.create_pool, f"{A}/pools/write", **data),
        Route("GET", DATA_POOL, d.get_pool, f"{A}/pools/read", **data),
        Route("HEAD", DATA_POOL, d.pool_exists, f"{A}/pools/read", **data),
        Route("PATCH", DATA_POOL, d.update_pool, f"{A}/pools/write", **data),
        Route("DELETE", DATA_POOL, d.delete_pool, f"{A}/pools/delete", **data),
        Route("POST", DATA_POOL + "/resize", d.resize_pool, f"{A}/pools/write", **data),
        Route("POST", DATA_POOL + "/stopresize", d.stop_resize, f"{A}/pools/write", **data),
        Route("POST", DATA_POOL + "/updateproperties", d.replace_pool_properties, f"{A}/pools/write", **data),
        Route("POST", DATA_POOL + "/enableautoscale", d.enable_auto_scale, f"{A}/pools/write", **data),
        Route("POST", DATA_POOL + "/disableautoscale", d.disable_auto_scale, f"{A}/pools/write", **data),
        Route("GET", DATA + "/supportedimages", d.list_supported_images, f"{A}/read", **data),
        Route("GET", DATA + "/nodecounts", d.list_pool_node_counts, f"{A}/pools/read", **data),
        # Compute Node - List / Pool - Remove Nodes (REST reference, api-version 2025-06-01)
        Route("GET", DATA_POOL + "/nodes", d.list_nodes, f"{A}/pools/read", **data),
        Route("POST", DATA_POOL + "/removenodes", d.remove_nodes, f"{A}/pools/write", **data),
        # --- data plane: jobs (emulator/batch/jobs.py; Batch's dataActions cover jobs:
        # Microsoft.Batch/batchAccounts/jobs/*) ---
        Route("POST", DATA + "/jobs", lambda r: jobs.add_job(d, r), f"{A}/jobs/write", **data),
        Route("GET", DATA + "/jobs", lambda r: jobs.list_jobs(d, r), f"{A}/jobs/read", **data),
        Route("GET", DATA + "/jobs/{jobId}", lambda r: jobs.get_job(d, r), f"{A}/jobs/read", **data),
        Route("POST", DATA + "/jobs/{jobId}/terminate", lambda r: jobs.terminate_job(d, r), f"{A}/jobs/write", **data),
    ]

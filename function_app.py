"""Batch Image Autopilot: the Function App. Wiring only - every trigger lives in handlers/.

Importing this module reads no setting, builds no client and makes no network call: the Functions
worker imports it to index the functions before any of that may happen.
"""

import azure.functions as func

from handlers import (
    image_guard_events,
    image_guard_reconcile,
    image_pipeline,
    pipeline_sweep,
    pool_watch,
    resize_stalled,
)

app = func.FunctionApp()

for module in (image_pipeline, pipeline_sweep, pool_watch, resize_stalled, image_guard_events, image_guard_reconcile):
    app.register_functions(module.bp)

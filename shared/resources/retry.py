"""The SDK retry policy, with ``Retry-After`` capped inside an invocation.

azure-core's RetryPolicy sleeps for whatever ``Retry-After`` a 429/503 carries, with no cap
(``retry_backoff_max`` bounds only its own exponential backoff). A 900 s ``Retry-After`` would hold
a Function invocation for 15 minutes. Past the cap this policy does not retry: the call fails with
the service's answer, the invocation ends, and the timer's next tick or Event Grid's redelivery picks
the work up again - later than the service asked, never sooner.
"""

from __future__ import annotations

import logging
from typing import Any

from azure.core.pipeline.policies import RetryPolicy

log = logging.getLogger("autopilot.retry")


class CappedRetryPolicy(RetryPolicy):
    def __init__(self, *, retry_after_max: float = 60.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.retry_after_max = retry_after_max

    def is_retry(self, settings: dict[str, Any], response: Any) -> bool:
        if not super().is_retry(settings, response):
            return False
        retry_after = self.get_retry_after(response)
        if retry_after is not None and retry_after > self.retry_after_max:
            log.warning("not retrying inside this invocation: the service asked to wait %.0f s (cap %.0f s, "
                        "AUTOPILOT_HTTP_RETRY_AFTER_MAX_SECONDS); the next tick or redelivery retries", retry_after,
                        self.retry_after_max)
            return False
        return True

"""The emulated Azure: every service backend, one clock, one request log, one dispatcher.

Cross-cutting ARM behaviour lives here because Azure Resource Manager applies it in front of every
resource provider: bearer-token authentication, api-version checks, management locks
(``ScopeLocked``), and the ``Microsoft.Resources.*`` system events raised for management-plane
writes. Batch data-plane calls raise no events, exactly as in Azure.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime

from emulator.batch.exceptions import InvalidQueryParameterValue, InvalidUri, MissingRequiredQueryParameter
from emulator.clock import Scheduler, VirtualClock
from emulator.core import LoggedRequest, Request, RequestLog, Response, Route, json_response
from emulator.exceptions import (
    AuthenticationFailed,
    AzureError,
    InternalServerError,
    InvalidApiVersionParameter,
    InvalidResourceType,
    MethodNotAllowed,
    MissingApiVersionParameter,
    ServiceUnavailable,
    injected_fault,
)
from emulator.faults import FaultInjector
from emulator.locks.exceptions import ScopeLocked

WRITE_METHODS = frozenset({"PUT", "PATCH", "POST", "DELETE"})
DEFAULT_TENANT = "72f988bf-0000-4000-8000-00000000e001"


class Emulator:
    """One emulated Azure tenant. Accepts any subscription id, as the standalone server promises."""

    def __init__(self, *, seed: int = 0, start: datetime | None = None, follow_wall: bool = False,
                 speed: float = 1.0, tenant_id: str = DEFAULT_TENANT) -> None:
        # Imported here so that each service package can import this module for typing.
        from emulator.batch.models import BatchBackend
        from emulator.compute.models import ComputeBackend
        from emulator.eventgrid.models import EventGridBackend
        from emulator.locks.models import LocksBackend
        from emulator.resources.models import ResourcesBackend, TagsBackend

        self.seed = seed
        self.tenant_id = tenant_id
        self.clock = VirtualClock(start, follow_wall=follow_wall, speed=speed)
        self.scheduler = Scheduler(self.clock)
        self.log = RequestLog()
        self.faults = FaultInjector(seed)
        from emulator.authorization import Authorization

        self.authorization = Authorization()  # deny rules: a missing role assignment, on demand
        self.base_url = "https://127.0.0.1"  # replaced by the server with its real address
        self.teams_messages: list[dict] = []  # what the Teams Workflows webhook stand-in received

        self.resources = ResourcesBackend(self)
        self.compute = ComputeBackend(self)
        self.batch = BatchBackend(self)
        self.locks = LocksBackend(self)
        self.eventgrid = EventGridBackend(self)
        self.tags = TagsBackend(self)

        from emulator import admin, batch, compute, eventgrid, locks, resources

        routes: list[Route] = []
        for service_routes in (resources.urls.routes, compute.urls.routes, batch.urls.routes,
                               locks.urls.routes, eventgrid.urls.routes, admin.routes):
            routes.extend(service_routes(self))
        self._routes = [(route, route.compile()) for route in routes]

    def add_routes(self, routes: list[Route]) -> None:
        """More control-surface routes (under /_emulator/, plane "admin"): not Azure; e.g. ``autopilot sandbox``'s
        replay hook."""
        for route in routes:
            if not route.template.startswith("/_emulator/") or route.plane != "admin":
                raise ValueError(f"only /_emulator/ admin routes can be added, not {route.method} {route.template}")
        self._routes.extend((route, route.compile()) for route in routes)

    # ---------------------------------------------------------------------------------------
    def now(self) -> datetime:
        return self.clock.now()

    def handle(self, request: Request) -> Response:
        """Answer one HTTP request. Never raises: every failure becomes an Azure-shaped answer."""
        self.scheduler.run_due()
        route, response, fault_label, acted = None, None, None, None
        try:
            route = self._route_for(request)
            fault = self.faults.decide(request.method, request.path, route.plane)
            if fault is not None:
                fault_label = fault.label
                if fault.kind in ("latency", "timeout"):
                    time.sleep(fault.latency_s)
                elif fault.kind == "drop":
                    response = Response(drop=True)
                elif fault.kind in ("acted_drop", "acted_error"):
                    acted = fault  # served below; the answer is lost afterwards
                else:
                    headers = {"Retry-After": str(fault.retry_after_s)} if fault.retry_after_s else {}
                    raise injected_fault(fault.status, "Injected fault: please retry.", plane=route.plane,
                                         headers=headers)
            if response is None:
                self._authenticate(route, request)
                if route.auth:  # Azure authorizes (RBAC) after authenticating and before the resource provider runs
                    self.authorization.check(self._action(route, request), request.path, request.caller, route.plane)
                self._check_api_version(route, request)
                if route.plane == "arm" and request.method in WRITE_METHODS:
                    self._enforce_locks(route, request)
                response = route.handler(request)
        except AzureError as err:
            response = json_response(err.body(), err.status, err.headers)
        except Exception as exc:  # a bug in the emulator must still answer like a server would
            bug = InternalServerError(f"emulator bug: {exc!r}", plane="arm")
            response = json_response(bug.body(), bug.status)
        served = response
        if acted is not None:
            # The service did the work, then the answer was lost: a dropped connection, or a 5xx from a front end
            # after the back end committed (Learn, "Retry guidance": a failed write may have been applied).
            if acted.kind == "acted_drop":
                response = Response(drop=True)
            else:
                # A front end failing after the back end committed: 503 or another 5xx, never a throttle.
                err_cls = ServiceUnavailable if acted.status == 503 else InternalServerError
                err = err_cls("Injected fault (after the request took effect): please retry.",
                              plane=route.plane if route is not None else "arm", status=acted.status)
                response = json_response(err.body(), err.status, err.headers)
        response.headers.setdefault("x-ms-request-id", str(uuid.uuid4()))
        if (route is not None and route.plane == "arm" and request.method == "DELETE" and 200 <= served.status < 300
            and not served.drop):
            self.locks.resource_deleted(request.path)  # Azure deletes a resource's locks with it
        # A write that took effect raises its event even when its answer was lost (acted_*): the event follows the
        # write.
        if route is not None and route.plane == "arm" and request.method in WRITE_METHODS \
                and served.emit_event and not served.drop and (fault_label is None or acted is not None):
            self.eventgrid.emit_for_request(request, route, served.status)
        self.log.add(LoggedRequest(
            time=self.now(), method=request.method, path=request.path, api_version=request.api_version,
            status=0 if response.drop else response.status, action=self._action(route, request),
            served_status=served.status if acted is not None else None,
            plane=route.plane if route else None, caller=request.caller.get("name") or request.caller.get("appid"),
            fault=fault_label,
        ))
        return response

    # ---------------------------------------------------------------------------------------
    def _route_for(self, request: Request) -> Route:
        method_mismatch = False
        for route, pattern in self._routes:
            m = pattern.match(request.path)
            if m is None:
                continue
            if route.method != request.method:
                method_mismatch = True
                continue
            request.params = m.groupdict()
            return route
        if not request.path.startswith("/_emulator/"):
            # Azure authenticates before it routes: an unknown path without a token is still a 401.
            plane = "batch" if request.path.startswith("/batch/") else "arm"
            self._authenticate(Route(request.method, request.path, lambda r: Response(), plane=plane), request)
        if method_mismatch:
            raise MethodNotAllowed(f"The requested method {request.method} is not allowed for '{request.path}'.")
        if request.path.lower().startswith("/batch/"):
            raise InvalidUri(f"The requested URI does not represent any resource on the server: {request.path}",
                             plane="batch")
        raise InvalidResourceType(f"The emulator serves no resource type at '{request.path}'. "
                                  "Check the URL, or add the surface to emulator/ if the app now needs it.")

    def _authenticate(self, route: Route, request: Request) -> None:
        if not route.auth:
            return
        auth = request.headers.get("authorization", "")
        if not auth.lower().startswith("bearer ") or not auth[7:].strip():
            raise AuthenticationFailed(plane=route.plane)

    def _check_api_version(self, route: Route, request: Request) -> None:
        if route.api_versions is None:
            return
        version = request.api_version
        supported = ", ".join(sorted(route.api_versions))
        if route.plane == "batch":
            if version not in route.api_versions:
                err_cls = InvalidQueryParameterValue if version else MissingRequiredQueryParameter
                raise err_cls("Value for one of the query parameters specified in the request URI is invalid: "
                              f"api-version={version!r}. Supported: {supported}.",
                              {"QueryParameterName": "api-version", "QueryParameterValue": version or ""},
                              plane="batch")
            return
        if not version:
            raise MissingApiVersionParameter()
        if version not in route.api_versions:
            raise InvalidApiVersionParameter(
                f"The api-version '{version}' is invalid. The supported versions are '{supported}'.")

    def _enforce_locks(self, route: Route, request: Request) -> None:
        action = self._action(route, request) or ""
        if action.lower().startswith("microsoft.authorization/locks/"):
            return  # lock operations themselves are governed by RBAC, not by locks
        target = request.path
        if request.method == "POST":
            target = target.rsplit("/", 1)[0]
        operation = "delete" if request.method == "DELETE" else "write"
        blocking = self.locks.blocking_locks(target, operation)
        if blocking:
            raise ScopeLocked(target, operation, [lock.scope for lock in blocking])

    @staticmethod
    def _action(route: Route | None, request: Request) -> str | None:
        if route is None or route.action is None:
            return None
        try:
            return route.action.format(**request.params)
        except (KeyError, IndexError):
            return route.action

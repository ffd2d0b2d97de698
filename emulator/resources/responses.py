"""HTTP <-> ResourcesBackend."""

from __future__ import annotations

from typing import TYPE_CHECKING

from emulator.core import Request, Response, json_response
from emulator.resources.exceptions import LocationRequired
from emulator.resources.models import tags_resource_json

if TYPE_CHECKING:
    from emulator.azure import Emulator


class ResourcesResponses:
    def __init__(self, emulator: Emulator) -> None:
        self.backend = emulator.resources

    def put_group(self, request: Request) -> Response:
        body = request.json()
        location = body.get("location")
        if not isinstance(location, str) or not location:
            raise LocationRequired("The 'location' property is required for a resource group.")
        group, created = self.backend.put_group(request.params["subscriptionId"], request.params["resourceGroupName"],
                                                location, body.get("tags"))
        return json_response(group.to_json(), 201 if created else 200)

    def get_group(self, request: Request) -> Response:
        return json_response(self.backend.get_group(request.params["subscriptionId"],
                                                    request.params["resourceGroupName"]).to_json())

    def delete_group(self, request: Request) -> Response:
        deleted = self.backend.delete_group(request.params["subscriptionId"], request.params["resourceGroupName"])
        return Response(200 if deleted else 204)


class TagsResponses:
    """HTTP <-> TagsBackend, raising the system event itself.

    ARM raises ``Microsoft.Resources/tags/write`` (ResourceWriteSuccess) and ``Microsoft.Resources/tags/delete``
    (ResourceDeleteSuccess) for these calls. Their exact subject is not documented; public code that handles them
    shows the subject and ``data.resourceUri`` naming the tagged resource itself, so the emulator raises that form
    (an assumption; the app also accepts the ``{scope}/providers/Microsoft.Resources/tags/default`` form).
    """

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.backend = emulator.tags

    def _event(self, request: Request, kind: str, subject: str) -> None:
        operation = "Microsoft.Resources/tags/write" if kind == "Write" else "Microsoft.Resources/tags/delete"
        http_request = None
        if request.method in ("PATCH", "DELETE"):
            http_request = {"clientRequestId": request.headers.get("x-ms-client-request-id") or "",
                            "clientIpAddress": "127.0.0.1",
                            "method": request.method,
                            "url": f"{request.base_url or self.emulator.base_url}{request.path}"}
        self.emulator.eventgrid.emit_resource_event(
            event_type=f"Resource{kind}Success", subject=subject, operation_name=operation, claims=request.caller,
            status="Succeeded",
            http_request=http_request, correlation_id=request.headers.get("x-ms-correlation-request-id"))

    def get(self, request: Request) -> Response:
        resource_id, tags = self.backend.get(request.params["scope"])
        return json_response(tags_resource_json(resource_id, tags))

    def put(self, request: Request) -> Response:
        resource_id, tags = self.backend.put(request.params["scope"], request.json())
        self._event(request, "Write", resource_id)
        response = json_response(tags_resource_json(resource_id, tags))
        response.emit_event = False  # raised above, about the tagged resource
        return response

    def patch(self, request: Request) -> Response:
        resource_id, tags = self.backend.patch(request.params["scope"], request.json())
        self._event(request, "Write", resource_id)
        response = json_response(tags_resource_json(resource_id, tags))
        response.emit_event = False
        return response

    def delete(self, request: Request) -> Response:
        resource_id = self.backend.delete(request.params["scope"])
        self._event(request, "Delete", resource_id)
        response = Response(200)
        response.emit_event = False
        return response

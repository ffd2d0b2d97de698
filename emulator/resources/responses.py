"""HTTP <-> ResourcesBackend."""

from __future__ import annotations

from typing import TYPE_CHECKING

from emulator.core import Request, Response, bad_request, json_response

if TYPE_CHECKING:
    from emulator.azure import Emulator


class ResourcesResponses:
    def __init__(self, emulator: Emulator) -> None:
        self.backend = emulator.resources

    def put_group(self, request: Request) -> Response:
        body = request.json()
        location = body.get("location")
        if not isinstance(location, str) or not location:
            raise bad_request("The 'location' property is required for a resource group.", "LocationRequired")
        group, created = self.backend.put_group(request.params["subscriptionId"], request.params["resourceGroupName"],
                                                location, body.get("tags"))
        return json_response(group.to_json(), 201 if created else 200)

    def get_group(self, request: Request) -> Response:
        return json_response(self.backend.get_group(request.params["subscriptionId"], request.params["resourceGroupName"]).to_json())

    def delete_group(self, request: Request) -> Response:
        deleted = self.backend.delete_group(request.params["subscriptionId"], request.params["resourceGroupName"])
        return Response(200 if deleted else 204)

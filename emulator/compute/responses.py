"""HTTP <-> ComputeBackend: request bodies in, the JSON and headers Azure answers out.

Long-running operations (images, gallery image versions, and anything else whose operation is still
running when the PUT returns) answer with ``Azure-AsyncOperation`` (the operation-status resource),
``Location`` (the same resource with ``monitor=true``: 202 while running, then the final answer) and
``Retry-After``, as ARM's asynchronous-operation contract describes. Their Event Grid event is raised
by the model when the operation ends, so those answers carry ``emit_event=False``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from emulator.core import Request, Response, json_response

if TYPE_CHECKING:
    from emulator.azure import Emulator
    from emulator.compute.models import Operation


def _listing(records: list[Any]) -> Response:
    return json_response({"value": [r.to_json() for r in records]})


class ComputeResponses:
    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.backend = emulator.compute

    # ---------------------------------------------------------------------------------------
    @staticmethod
    def _scope(request: Request) -> tuple[str, str]:
        return request.params["subscriptionId"], request.params["resourceGroupName"]

    def _operation_url(self, request: Request, op: Operation) -> str:
        base = request.base_url or self.emulator.base_url
        api_version = request.api_version or op.api_version or ""
        return (f"{base}/subscriptions/{op.subscription_id}/providers/Microsoft.Compute/locations/{op.location}"
                f"/operations/{op.name}?api-version={api_version}")

    def _lro_headers(self, request: Request, op: Operation) -> dict[str, str]:
        url = self._operation_url(request, op)
        return {"Azure-AsyncOperation": url, "Location": f"{url}&monitor=true",
                "Retry-After": str(self.backend.retry_after_seconds)}

    def _accepted_write(self, request: Request, body: dict[str, Any], created: bool, op: Operation) -> Response:
        """201 (new) or 200 (update); with LRO headers while the operation runs."""
        if op.done:
            return json_response(body, 201 if created else 200)
        response = json_response(body, 201 if created else 200, self._lro_headers(request, op))
        response.emit_event = False  # the model raises ResourceWriteSuccess/Failure when the operation ends
        return response

    def _accepted_delete(self, request: Request, op: Operation | None) -> Response:
        if op is None:
            return Response(204)
        return Response(202, headers=self._lro_headers(request, op))

    # ---------------------------------------------------------------------------------------
    # Operation status
    def get_operation(self, request: Request) -> Response:
        p = request.params
        op = self.backend.get_operation(p["subscriptionId"], p["location"], p["operationId"])
        if request.query.get("monitor", "").lower() != "true":
            # While running, say when to ask again (pollers otherwise fall back to their own, often 30 s, interval).
            return json_response(op.to_json(),
                                 headers=None if op.done else {"Retry-After": str(self.backend.retry_after_seconds)})
        # Location-header semantics: 202 while running, then the operation's final answer.
        if not op.done:
            url = self._operation_url(request, op)
            return Response(202, headers={"Location": f"{url}&monitor=true",
                                          "Retry-After": str(self.backend.retry_after_seconds)})
        if op.error is not None:
            return json_response(op.error.body(), op.error.status)
        if op.status != "Succeeded":
            return json_response(
                {"error": {"code": "OperationCanceled", "message": f"The operation '{op.name}' was canceled."}}, 409)
        if op.method == "DELETE":
            return Response(204)
        record = self.backend.find(op.resource_id)
        return json_response(record.to_json()) if record is not None else Response(204)

    # ---------------------------------------------------------------------------------------
    # Disks
    def put_disk(self, request: Request) -> Response:
        sub, rg = self._scope(request)
        disk, _created = self.backend.put_disk(sub, rg, request.params["diskName"], request.json())
        return json_response(disk.to_json(), 200)  # DisksOperations accepts 200/202 only

    def get_disk(self, request: Request) -> Response:
        sub, rg = self._scope(request)
        return json_response(self.backend.get_disk(sub, rg, request.params["diskName"]).to_json())

    def delete_disk(self, request: Request) -> Response:
        sub, rg = self._scope(request)
        return Response(200 if self.backend.delete_disk(sub, rg, request.params["diskName"]) else 204)

    def list_disks(self, request: Request) -> Response:
        return _listing(self.backend.list_disks(request.params["subscriptionId"],
                                                request.params.get("resourceGroupName")))

    # ---------------------------------------------------------------------------------------
    # Snapshots
    def put_snapshot(self, request: Request) -> Response:
        sub, rg = self._scope(request)
        snap, _created = self.backend.put_snapshot(sub, rg, request.params["snapshotName"], request.json())
        return json_response(snap.to_json(), 200)  # SnapshotsOperations accepts 200/202 only

    def get_snapshot(self, request: Request) -> Response:
        sub, rg = self._scope(request)
        return json_response(self.backend.get_snapshot(sub, rg, request.params["snapshotName"]).to_json())

    def patch_snapshot(self, request: Request) -> Response:
        sub, rg = self._scope(request)
        return json_response(
            self.backend.update_snapshot(sub, rg, request.params["snapshotName"], request.json()).to_json())

    def delete_snapshot(self, request: Request) -> Response:
        sub, rg = self._scope(request)
        return Response(200 if self.backend.delete_snapshot(sub, rg, request.params["snapshotName"]) else 204)

    def list_snapshots(self, request: Request) -> Response:
        return _listing(self.backend.list_snapshots(request.params["subscriptionId"],
                                                    request.params.get("resourceGroupName")))

    # ---------------------------------------------------------------------------------------
    # Images
    def put_image(self, request: Request) -> Response:
        sub, rg = self._scope(request)
        image, created, op = self.backend.put_image(sub, rg, request.params["imageName"], request.json(),
                                                    api_version=request.api_version, caller=request.caller)
        return self._accepted_write(request, image.to_json(), created, op)

    def get_image(self, request: Request) -> Response:
        sub, rg = self._scope(request)
        return json_response(self.backend.get_image(sub, rg, request.params["imageName"]).to_json())

    def patch_image(self, request: Request) -> Response:
        sub, rg = self._scope(request)
        return json_response(
            self.backend.update_image_tags(sub, rg, request.params["imageName"], request.json()).to_json())

    def delete_image(self, request: Request) -> Response:
        sub, rg = self._scope(request)
        return self._accepted_delete(request, self.backend.delete_image(sub, rg, request.params["imageName"],
                                                                        api_version=request.api_version))

    def list_images(self, request: Request) -> Response:
        return _listing(self.backend.list_images(request.params["subscriptionId"],
                                                 request.params.get("resourceGroupName")))

    # ---------------------------------------------------------------------------------------
    # Galleries
    def put_gallery(self, request: Request) -> Response:
        sub, rg = self._scope(request)
        gallery, created, op = self.backend.put_gallery(sub, rg, request.params["galleryName"], request.json(),
                                                        api_version=request.api_version, caller=request.caller)
        return self._accepted_write(request, gallery.to_json(), created, op)

    def get_gallery(self, request: Request) -> Response:
        sub, rg = self._scope(request)
        return json_response(self.backend.get_gallery(sub, rg, request.params["galleryName"]).to_json())

    def delete_gallery(self, request: Request) -> Response:
        sub, rg = self._scope(request)
        return Response(200 if self.backend.delete_gallery(sub, rg, request.params["galleryName"]) else 204)

    def list_galleries(self, request: Request) -> Response:
        return _listing(self.backend.list_galleries(request.params["subscriptionId"],
                                                    request.params.get("resourceGroupName")))

    # ---------------------------------------------------------------------------------------
    # Gallery image definitions
    def put_gallery_image(self, request: Request) -> Response:
        sub, rg = self._scope(request)
        p = request.params
        definition, created, op = self.backend.put_gallery_image(sub, rg, p["galleryName"], p["galleryImageName"],
                                                                 request.json(),
                                                                 api_version=request.api_version, caller=request.caller)
        return self._accepted_write(request, definition.to_json(), created, op)

    def get_gallery_image(self, request: Request) -> Response:
        sub, rg = self._scope(request)
        p = request.params
        return json_response(self.backend.get_gallery_image(sub, rg, p["galleryName"], p["galleryImageName"]).to_json())

    def delete_gallery_image(self, request: Request) -> Response:
        sub, rg = self._scope(request)
        p = request.params
        return Response(
            200 if self.backend.delete_gallery_image(sub, rg, p["galleryName"], p["galleryImageName"]) else 204)

    def list_gallery_images(self, request: Request) -> Response:
        sub, rg = self._scope(request)
        return _listing(self.backend.list_gallery_images(sub, rg, request.params["galleryName"]))

    # ---------------------------------------------------------------------------------------
    # Gallery image versions
    def put_gallery_image_version(self, request: Request) -> Response:
        sub, rg = self._scope(request)
        p = request.params
        version, created, op = self.backend.put_gallery_image_version(
            sub, rg, p["galleryName"], p["galleryImageName"], p["galleryImageVersionName"], request.json(),
            api_version=request.api_version, caller=request.caller)
        return self._accepted_write(request, version.to_json(self.emulator.now()), created, op)

    def get_gallery_image_version(self, request: Request) -> Response:
        sub, rg = self._scope(request)
        p = request.params
        version = self.backend.get_gallery_image_version(sub, rg, p["galleryName"], p["galleryImageName"],
                                                         p["galleryImageVersionName"])
        expand = request.query.get("$expand", "").lower() == "replicationstatus"
        return json_response(version.to_json(self.emulator.now(), expand_replication=expand))

    def patch_gallery_image_version(self, request: Request) -> Response:
        sub, rg = self._scope(request)
        p = request.params
        version, op = self.backend.update_gallery_image_version(
            sub, rg, p["galleryName"], p["galleryImageName"], p["galleryImageVersionName"], request.json(),
            api_version=request.api_version, caller=request.caller)
        body = version.to_json(self.emulator.now())
        if op is None or op.done:
            return json_response(body, 200)
        # GalleryImageVersions update accepts 200 only
        response = json_response(body, 200, self._lro_headers(request, op))
        response.emit_event = False
        return response

    def delete_gallery_image_version(self, request: Request) -> Response:
        sub, rg = self._scope(request)
        p = request.params
        op = self.backend.delete_gallery_image_version(sub, rg, p["galleryName"], p["galleryImageName"],
                                                       p["galleryImageVersionName"],
                                                       api_version=request.api_version)
        return self._accepted_delete(request, op)

    def list_gallery_image_versions(self, request: Request) -> Response:
        sub, rg = self._scope(request)
        p = request.params
        now = self.emulator.now()
        versions = self.backend.list_gallery_image_versions(sub, rg, p["galleryName"], p["galleryImageName"])
        return json_response({"value": [v.to_json(now) for v in versions]})

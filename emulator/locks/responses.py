"""HTTP <-> LocksBackend.

Every lock call, whatever SDK method made it, arrives as
``/{scope}/providers/Microsoft.Authorization/locks[/{lockName}]``: ``*_at_resource_level`` keeps the slashes of the
parent path (and an empty parent gives ``//``), ``*_by_scope`` percent-encodes them, and
:meth:`emulator.core.Request.from_raw` decodes both into the same path.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from emulator.core import Request, Response, json_response
from emulator.locks.exceptions import InvalidFilter, InvalidRequestContent

if TYPE_CHECKING:
    from emulator.azure import Emulator

_AT_SCOPE = re.compile(r"^atscope\(\)$", re.IGNORECASE)
_NAME_EQ = re.compile(r"^name\s+eq\s+'([^']*)'$", re.IGNORECASE)


class LocksResponses:
    def __init__(self, emulator: Emulator) -> None:
        self.backend = emulator.locks

    def put_lock(self, request: Request) -> Response:
        body = request.json()
        properties = body.get("properties")
        if not isinstance(properties, dict):
            raise InvalidRequestContent("The request content was invalid: a lock needs a 'properties' object, e.g. "
                                        "{\"properties\": {\"level\": \"CanNotDelete\", \"notes\": \"...\"}}.")
        if "level" not in properties:
            raise InvalidRequestContent("The lock property 'properties.level' is required (CanNotDelete or ReadOnly).")
        record, created = self.backend.put_lock(request.params["scope"], request.params["lockName"],
                                                properties.get("level"),
                                                properties.get("notes"), properties.get("owners"))
        return json_response(record.to_json(), 201 if created else 200)

    def get_lock(self, request: Request) -> Response:
        return json_response(self.backend.get_lock(request.params["scope"], request.params["lockName"]).to_json())

    def delete_lock(self, request: Request) -> Response:
        deleted = self.backend.delete_lock(request.params["scope"], request.params["lockName"])
        return Response(200 if deleted else 204)

    def list_locks(self, request: Request) -> Response:
        at_scope, name = _parse_filter(request.query.get("$filter"))
        records = self.backend.list_locks(request.params["scope"], at_scope=at_scope, name=name)
        return json_response({"value": [r.to_json() for r in records]})


def _parse_filter(value: str | None) -> tuple[bool, Any]:
    """``$filter``: ``atScope()``, ``name eq 'x'``, or both joined by ``and``. Anything else is a 400, so
    that a filter the emulator does not understand is never silently ignored."""
    at_scope, name = False, None
    if not value or not value.strip():
        return at_scope, name
    for clause in re.split(r"\s+and\s+", value.strip(), flags=re.IGNORECASE):
        clause = clause.strip()
        if _AT_SCOPE.match(clause):
            at_scope = True
        elif m := _NAME_EQ.match(clause):
            name = m.group(1)
        else:
            raise InvalidFilter(f"The $filter '{value}' is not supported. Use atScope(), name eq '<lock name>', "
                                "or both joined by 'and'.")
    return at_scope, name

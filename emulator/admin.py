"""The emulator's own control surface (not Azure): virtual time, faults and the request log.

Used by people and scripts driving the standalone server; in-process tests call the objects directly.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta
from typing import TYPE_CHECKING

from emulator.core import Request, Response, Route, json_response
from emulator.exceptions import InvalidRequestContent
from emulator.faults import FaultRule

if TYPE_CHECKING:
    from emulator.azure import Emulator


def routes(emulator: Emulator) -> list[Route]:
    def advance(request: Request) -> Response:
        body = request.json()
        minutes = body.get("minutes")
        if not isinstance(minutes, int | float) or minutes < 0:
            raise InvalidRequestContent("Send {\"minutes\": N} with N >= 0 to move the virtual clock forward.")
        now = emulator.clock.advance(timedelta(minutes=minutes))
        return json_response({"now": now.isoformat()})

    def clock(request: Request) -> Response:
        return json_response({"now": emulator.now().isoformat()})

    def requests(request: Request) -> Response:
        entries = emulator.log.entries(action=request.query.get("action"))
        return json_response({"value": [{**asdict(e), "time": e.time.isoformat()} for e in entries],
                              "countByAction": emulator.log.count_by_action()})

    def add_fault(request: Request) -> Response:
        body = request.json()
        try:
            rule = FaultRule(kind=body["kind"], rate=float(body.get("rate", 1.0)),
                             path_pattern=body.get("pathPattern", ".*"),
                             status=int(body.get("status", 503)), retry_after_s=int(body.get("retryAfterSeconds", 1)),
                             latency_s=float(body.get("latencySeconds", 0)), plane=body.get("plane"))
        except (KeyError, ValueError, TypeError) as exc:
            raise InvalidRequestContent(f"Invalid fault rule: {exc}. Example: {{\"kind\": \"throttle\", "
                                        f"\"rate\": 0.2, \"pathPattern\": \"/pools\"}}") from None
        emulator.faults.add(rule)
        return json_response({"rules": len(emulator.faults.rules)}, 201)

    def clear_faults(request: Request) -> Response:
        emulator.faults.clear()
        return Response(204)

    def add_denial(request: Request) -> Response:
        body = request.json()
        action, scope, principal = body.get("action", "*"), body.get("scope", ""), body.get("principal")
        if (not isinstance(action, str) or not isinstance(scope, str)
            or not (principal is None or isinstance(principal, str))):
            raise InvalidRequestContent("Send {\"action\": \"Microsoft.Authorization/locks/*\", \"scope\": "
                                        "\"/subscriptions/...\", \"principal\": \"<appid>\"} (all optional strings) "
                                        "to refuse an identity an action.")
        emulator.authorization.deny(action, scope, principal)
        return json_response({"rules": len(emulator.authorization.rules)}, 201)

    def clear_denials(request: Request) -> Response:
        emulator.authorization.clear()
        return Response(204)

    def teams_webhook(request: Request) -> Response:
        # A stand-in for a Teams Workflows "When a Teams webhook request is received" trigger:
        # it accepts the message envelope with Adaptive Card attachments and answers 202.
        body = request.json()
        attachments = body.get("attachments")
        if body.get("type") != "message" or not isinstance(attachments, list) or not attachments:
            raise InvalidRequestContent(
                "A Teams Workflows webhook expects {\"type\": \"message\", \"attachments\": [...]}.")
        emulator.teams_messages.append({"channel": request.params["channel"], "time": emulator.now().isoformat(),
                                        "body": body})
        return Response(202)

    def teams_messages(request: Request) -> Response:
        return json_response({"value": emulator.teams_messages})

    admin = dict(plane="admin", auth=False)
    return [
        Route("POST", "/_emulator/clock/advance", advance, **admin),
        Route("GET", "/_emulator/clock", clock, **admin),
        Route("GET", "/_emulator/requests", requests, **admin),
        Route("POST", "/_emulator/faults", add_fault, **admin),
        Route("DELETE", "/_emulator/faults", clear_faults, **admin),
        Route("POST", "/_emulator/denials", add_denial, **admin),
        Route("DELETE", "/_emulator/denials", clear_denials, **admin),
        Route("POST", "/_emulator/teams/{channel}", teams_webhook, **admin),
        Route("GET", "/_emulator/teams", teams_messages, **admin),
    ]

"""Missing role assignments, emulated as deny rules: refuse an identity an action on a scope, as Azure does.

Azure RBAC is allow-only; an identity without a role granting an action is refused. The emulator grants
everything by default, and a test (or a person, through ``POST /_emulator/denials``) takes an action away
from an identity on a scope to see how the app copes with a missing role.
"""

from __future__ import annotations

import fnmatch
import threading
from dataclasses import dataclass, field

from emulator.batch.exceptions import AuthorizationFailure
from emulator.exceptions import AuthorizationFailed


@dataclass
class DenyRule:
    action: str = "*"  # ARM action, fnmatch pattern, case-insensitive: "Microsoft.Authorization/locks/*"
    scope: str = ""  # path prefix, case-insensitive: "/subscriptions/<sub>/resourceGroups/images-rg"; "" = anywhere
    principal: str | None = None  # the caller's appid, object id or name; None = every caller
    denied: int = field(default=0, init=False)

    def matches(self, action: str | None, path: str, claims: dict[str, str]) -> bool:
        if not fnmatch.fnmatch((action or "").lower(), self.action.lower()):
            return False
        if self.scope and not path.lower().startswith(self.scope.lower().rstrip("/")):
            return False
        if self.principal is None:
            return True
        who = {claims.get(k, "").lower()
               for k in ("appid", "name", "oid", "http://schemas.microsoft.com/identity/claims/objectidentifier")}
        return self.principal.lower() in who


class Authorization:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rules: list[DenyRule] = []

    def deny(self, action: str = "*", scope: str = "", principal: str | None = None) -> DenyRule:
        rule = DenyRule(action, scope, principal)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def check(self, action: str | None, path: str, claims: dict[str, str], plane: str) -> None:
        with self._lock:
            rule = next((r for r in self.rules if r.matches(action, path, claims)), None)
            if rule is None:
                return
            rule.denied += 1
        oid = (claims.get("oid") or claims.get("http://schemas.microsoft.com/identity/claims/objectidentifier")
               or claims.get("appid", ""))
        if plane == "batch":
            # Batch data plane: 403 with BatchError code AuthorizationFailure (BatchErrorCodeStrings in the Batch .NET
            # SDK docs).
            raise AuthorizationFailure(plane="batch")
        # ARM's answer for a missing role assignment (Learn: "Troubleshoot Azure RBAC", AuthorizationFailed).
        raise AuthorizationFailed(f"The client '{claims.get('appid', '')}' with object id '{oid}' does not have "
                                  f"authorization to perform action '{action}' over scope '{path}' or the scope is "
                                  "invalid. If access was recently granted, please refresh your credentials.")

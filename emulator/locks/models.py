"""Management locks (Microsoft.Authorization/locks, api-version 2020-05-01): state and enforcement.

A lock lives at a *scope*: a subscription, a resource group or a resource (nested resources such as
``galleries/g/images/d/versions/1.0.0`` included). ARM applies locks in front of every resource
provider, so the dispatcher asks :meth:`LocksBackend.blocking_locks` before each management-plane
write and answers 409 ``ScopeLocked`` when it returns anything.

Semantics (Azure docs "Lock your resources to protect your infrastructure", product brief):

* locks are inherited by child scopes: a lock on a group applies to every resource in it;
* ``CanNotDelete`` blocks deletes, ``ReadOnly`` blocks deletes and writes;
* deleting a scope deletes everything under it and ARM never deletes partially, so a lock *below*
  the target (a locked image in a group) blocks deleting the target (the group) too.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from emulator.ids import is_within, key, resource_group_id
from emulator.locks.exceptions import InvalidLockName, InvalidRequestContent, InvalidScope, LockNotFound

if TYPE_CHECKING:
    from emulator.azure import Emulator

LOCK_TYPE = "Microsoft.Authorization/locks"
# NotSpecified is in the spec's enum but is not a lock anyone can apply: the emulator refuses it.
LOCK_LEVELS = ("CanNotDelete", "ReadOnly")
MAX_NOTES = 512  # "Notes about the lock. Maximum of 512 characters." (locks.json 2020-05-01)
MAX_NAME = 260
_FORBIDDEN_NAME_CHARS = set('<>%&:\\?/')


@dataclass
class LockRecord:
    scope: str  # the locked scope as an ARM id, in the casing of the request that created the lock
    name: str
    level: str
    notes: str | None = None
    owners: list[dict[str, str]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.scope}/providers/{LOCK_TYPE}/{self.name}"

    def to_json(self) -> dict[str, Any]:
        properties: dict[str, Any] = {"level": self.level}
        if self.notes is not None:
            properties["notes"] = self.notes
        if self.owners:
            properties["owners"] = [dict(o) for o in self.owners]
        return {"properties": properties, "id": self.id, "type": LOCK_TYPE, "name": self.name}


def canonical_scope(scope: str) -> str:
    """``scope`` as an ARM id: one leading slash, no trailing slash, ARM's casing for the two fixed
    container segments (``subscriptions``, ``resourceGroups``); every other segment keeps its case."""
    segments = [s for s in scope.strip().split("/") if s]
    if segments and segments[0].lower() == "subscriptions":
        segments[0] = "subscriptions"
        if len(segments) > 2 and segments[2].lower() == "resourcegroups":
            segments[2] = "resourceGroups"
    return "/" + "/".join(segments)


class LocksBackend:
    """Every management lock of the emulated tenant, keyed by (lower-cased scope, lower-cased name)."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self._lock = threading.RLock()
        self._locks: dict[tuple[str, str], LockRecord] = {}
        emulator.resources.group_delete_hooks.append(self._group_deleted)

    # ------------------------------------------------------------------------------------------
    # CRUD
    # ------------------------------------------------------------------------------------------
    def validate_scope(self, scope: str) -> str:
        """The canonical scope, or 400 for a scope locks cannot live at, or 404 for a missing group."""
        canonical = canonical_scope(scope)
        segments = canonical.strip("/").split("/")
        if len(segments) < 2 or segments[0] != "subscriptions" or not segments[1]:
            raise InvalidScope(f"The scope '{canonical}' is not valid for a management lock: "
                               "use a subscription, a resource group or a resource id (/subscriptions/{id}/...).")
        rest = segments[2:]
        if rest and rest[0] == "resourceGroups":
            if len(rest) < 2:
                raise InvalidScope(f"The scope '{canonical}' names no resource group.")
            # Raises 404 ResourceGroupNotFound, as ARM does for anything inside a missing group.
            self.emulator.resources.require_group(segments[1], rest[1])
            rest = rest[2:]
        if rest and (rest[0].lower() != "providers" or len(rest) < 4 or len(rest[2:]) % 2 != 0):
            raise InvalidScope(f"The scope '{canonical}' is not a valid resource id: expected "
                               ".../providers/{namespace}/{type}/{name}[/{type}/{name}...].")
        return canonical

    def put_lock(self, scope: str, name: str, level: str, notes: str | None = None,
                 owners: list[dict[str, str]] | None = None) -> tuple[LockRecord, bool]:
        """Create or replace a lock. Returns (lock, created)."""
        scope = self.validate_scope(scope)
        self._validate(name, level, notes, owners)
        with self._lock:
            k = (key(scope), name.lower())
            existing = self._locks.get(k)
            if existing is not None:
                existing.level, existing.notes, existing.owners = level, notes, [dict(o) for o in owners or []]
                return existing, False
            record = LockRecord(scope, name, level, notes, [dict(o) for o in owners or []])
            self._locks[k] = record
            return record, True

    def get_lock(self, scope: str, name: str) -> LockRecord:
        scope = self.validate_scope(scope)
        with self._lock:
            record = self._locks.get((key(scope), name.lower()))
        if record is None:
            raise LockNotFound(f"The lock '{name}' could not be found at scope '{scope}'.")
        return record

    def delete_lock(self, scope: str, name: str) -> bool:
        """True when a lock was deleted, False when there was none (ARM answers 204 then)."""
        scope = self.validate_scope(scope)
        with self._lock:
            return self._locks.pop((key(scope), name.lower()), None) is not None

    def list_locks(self, scope: str, *, at_scope: bool = False, name: str | None = None) -> list[LockRecord]:
        """Locks that apply to ``scope``.

        Without a filter ARM lists the locks at, above or below the scope; ``$filter=atScope()`` keeps
        the ones at or above it (Get-AzResourceLock -AtScope documents both).
        """
        scope = self.validate_scope(scope)
        with self._lock:
            records = list(self._locks.values())
        out = [r for r in records if is_within(scope, r.scope) or (not at_scope and is_within(r.scope, scope))]
        if name is not None:
            out = [r for r in out if r.name.lower() == name.lower()]
        return out

    def all_locks(self) -> list[LockRecord]:
        with self._lock:
            return list(self._locks.values())

    @staticmethod
    def _validate(name: str, level: Any, notes: Any, owners: Any) -> None:
        if not name or len(name) > MAX_NAME or any(c in _FORBIDDEN_NAME_CHARS for c in name):
            raise InvalidLockName(f"The lock name '{name}' is invalid: use 1-{MAX_NAME} characters, none of < > % "
                                  "& : \\ ? /.")
        if level not in LOCK_LEVELS:
            raise InvalidRequestContent(
                f"The lock level '{level}' is invalid. Allowed values: {', '.join(LOCK_LEVELS)}.")
        if notes is not None:
            if not isinstance(notes, str):
                raise InvalidRequestContent("The lock property 'notes' must be a string.")
            if len(notes) > MAX_NOTES:
                raise InvalidRequestContent(
                    f"The lock notes are {len(notes)} characters long; the maximum is {MAX_NOTES}.")
        if owners is not None and (not isinstance(owners, list)
                                   or not all(isinstance(o, dict) and isinstance(o.get("applicationId"), str)
                                              for o in owners)):
            raise InvalidRequestContent(
                "The lock property 'owners' must be a list of objects with a string 'applicationId'.")

    # ------------------------------------------------------------------------------------------
    # Enforcement (called by the dispatcher) and clean-up
    # ------------------------------------------------------------------------------------------
    def blocking_locks(self, target_id: str, operation: str) -> list[LockRecord]:
        """The locks that stop ``operation`` ("delete" or "write") on ``target_id``.

        delete: every lock (CanNotDelete or ReadOnly) at or above the target (inherited) or below it
        (deleting a scope deletes its children, and ARM never deletes partially).
        write: ReadOnly locks at or above the target.
        """
        if operation not in ("delete", "write"):
            raise ValueError(f"operation must be 'delete' or 'write', not {operation!r}")
        with self._lock:
            records = list(self._locks.values())
        if operation == "delete":
            return [r for r in records if is_within(target_id, r.scope) or is_within(r.scope, target_id)]
        # CanNotDelete lets authorized users read and modify (PUT/PATCH) a resource, only ReadOnly blocks writes (Learn,
        # "Lock your resources to protect your infrastructure", azure-resource-manager/management/lock-resources).
        return [r for r in records if r.level == "ReadOnly" and is_within(target_id, r.scope)]

    def resource_deleted(self, resource_id: str) -> int:
        """Drop the locks at or under a deleted scope (Azure deletes a resource's locks with it).

        Returns how many were dropped. Through the dispatcher this finds nothing, since any such lock
        would have blocked the delete; it matters when a backend deletes resources on its own.
        """
        with self._lock:
            doomed = [k for k, r in self._locks.items() if is_within(r.scope, resource_id)]
            for k in doomed:
                del self._locks[k]
        return len(doomed)

    def _group_deleted(self, subscription_id: str, resource_group: str) -> None:
        self.resource_deleted(resource_group_id(subscription_id, resource_group))

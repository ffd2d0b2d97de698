"""Microsoft.Compute: constants and the request-validation helpers every Compute resource shares.

Errors are answered the way the Compute resource providers answer them (see ``emulator/compute/models.py``).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from emulator.compute.exceptions import InvalidParameter, InvalidResourceName, InvalidTag, LocationRequired
from emulator.ids import resource_group_id

PROVIDER = "Microsoft.Compute"

OS_TYPES = ("Windows", "Linux")
OS_STATES = ("Generalized", "Specialized")
HYPERV_GENERATIONS = ("V1", "V2")
CACHING_TYPES = ("None", "ReadOnly", "ReadWrite")
DISK_SKUS = ("Standard_LRS", "Premium_LRS", "StandardSSD_LRS", "UltraSSD_LRS", "Premium_ZRS", "StandardSSD_ZRS",
             "PremiumV2_LRS")
SNAPSHOT_SKUS = ("Standard_LRS", "Premium_LRS", "Standard_ZRS")
GALLERY_STORAGE_TYPES = ("Standard_LRS", "Standard_ZRS", "Premium_LRS", "PremiumV2_LRS")
ARCHITECTURES = ("x64", "Arm64")

# From GalleryRP api-version 2026-03-03 a version blocks early deletion unless told otherwise, with
# an end of life six months out (product brief, "What has changed since that article").
SAFETY_DEFAULT_API_VERSION = "2026-03-03"
DEFAULT_END_OF_LIFE_MONTHS = 6

_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?$")
_GALLERY_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.]{0,78}[A-Za-z0-9])?$")
_GALLERY_IMAGE_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,78}[A-Za-z0-9])?$")
_VERSION_NAME = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
_INT32_MAX = 2**31 - 1


def normalize_region(name: str) -> str:
    """ARM's short region name: "West Europe" -> "westeurope"."""
    return "".join(str(name).split()).lower()


def iso(when: datetime) -> str:
    """Compute's timestamp format: ``2016-12-28T04:41:35.079872+00:00``."""
    return when.isoformat(timespec="microseconds")


def add_months(when: datetime, months: int) -> datetime:
    month0 = when.month - 1 + months
    year, month = when.year + month0 // 12, month0 % 12 + 1
    return when.replace(year=year, month=month, day=min(when.day, calendar.monthrange(year, month)[1]))


def _parse_time(value: Any, path: str) -> datetime:
    if not isinstance(value, str):
        raise InvalidParameter(f"The value of parameter '{path}' is invalid: expected an ISO 8601 date-time.")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidParameter(f"The value '{value}' of parameter '{path}' is not a valid ISO 8601 "
                               "date-time.") from None
    if parsed.tzinfo is None:
        raise InvalidParameter(f"The value '{value}' of parameter '{path}' must carry a time zone (e.g. 'Z').")
    return parsed


def _enum(value: Any, allowed: Iterable[str], path: str, *, required: bool = False,
          default: str | None = None) -> str | None:
    """Azure enums are case-insensitive on input and answered in their canonical casing."""
    if value is None:
        if required:
            raise InvalidParameter.missing(path)
        return default
    for option in allowed:
        if isinstance(value, str) and value.lower() == option.lower():
            return option
    allowed_text = ", ".join(f"'{a}'" for a in allowed)
    raise InvalidParameter(f"The value '{value}' of parameter '{path}' is not allowed. Allowed values are "
                           f"{allowed_text}.")


def _bool(value: Any, path: str, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidParameter(f"The value '{value}' of parameter '{path}' is not a boolean.")
    return value


def _int(value: Any, path: str, *, required: bool = False, default: int | None = None,
         minimum: int | None = None) -> int | None:
    if value is None:
        if required:
            raise InvalidParameter.missing(path)
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameter(f"The value '{value}' of parameter '{path}' is not an integer.")
    if minimum is not None and value < minimum:
        raise InvalidParameter(f"The value {value} of parameter '{path}' must be at least {minimum}.")
    return value


def _obj(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidParameter(f"The value of parameter '{path}' must be a JSON object.")
    return value


def _ref_id(value: Any, path: str) -> str | None:
    """A SubResource ``{"id": "..."}``; returns the id (as given) or None."""
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("id"), str) or not value["id"].strip():
        raise InvalidParameter(f"The value of parameter '{path}.id' must be a resource id.")
    return value["id"]


def _tags(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InvalidTag("The value of parameter 'tags' must be an object of string values.")
    if len(value) > 50:
        raise InvalidTag("A resource can have at most 50 tags.")
    return dict(value)


def _location(body: dict[str, Any]) -> str:
    location = body.get("location")
    if not isinstance(location, str) or not location.strip():
        raise LocationRequired("The 'location' property is required for this resource.")
    return normalize_region(location)


def _check_name(name: str, pattern: re.Pattern[str], kind: str, rule: str) -> None:
    if not pattern.match(name):
        raise InvalidResourceName(f"The {kind} name '{name}' is invalid. {rule}")


def _sku_tier(sku: str) -> str:
    return ("Premium" if sku.lower().startswith("premium") else "Ultra" if sku.lower().startswith("ultra")
            else "Standard")


def _arm_id(subscription_id: str, resource_group: str, *segments: str) -> str:
    return f"{resource_group_id(subscription_id, resource_group)}/providers/{PROVIDER}/" + "/".join(segments)


"""Untrusted text stays bounded and inert: Table keys within the service's limits, Teams cards without live markdown."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from shared.core.alerts import CARD_FACT_CHARS, CARD_TEXT_CHARS, Alert, adaptive_card, card_text
from shared.core.state import MAX_KEY_CHARS, safe_key


def test_long_keys_are_hashed_within_the_limit_and_stay_distinct() -> None:
    short = "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Compute/snapshots/s"
    assert safe_key(short) == short.lower().replace("/", "%2F")  # unchanged below the limit: reversible
    a, b = "tags|" + "x" * 256 * 4, "tags|" + "x" * 256 * 4 + "y"
    assert len(safe_key(a)) <= MAX_KEY_CHARS and len(safe_key(b)) <= MAX_KEY_CHARS
    assert safe_key(a) != safe_key(b)
    escaped = "/" * 600  # triples when escaped
    assert len(safe_key(escaped)) <= MAX_KEY_CHARS
    assert len(safe_key("é" * 2000).encode("utf-8")) < 1024


def test_markdown_links_and_line_breaks_do_not_render() -> None:
    text = card_text("[click here](https://evil.example/x) **urgent** _now_ `code`\n- item\n# head", 500)
    assert not re.search(r"(?<!\\)\[", text) and not re.search(r"(?<!\\)\*", text)
    assert "https://" not in text and "\n" not in text


def test_every_card_field_is_cut_short() -> None:
    hostile = "[a](https://b.c)" * 1000
    alert = Alert("ImageRefused", "warning", hostile, hostile, hostile, hostile, "k", datetime(2026, 1, 1, tzinfo=UTC),
                  {"codes": [hostile]})
    card = adaptive_card(alert)["attachments"][0]["content"]
    texts = [b["text"] for b in card["body"] if b["type"] == "TextBlock"]
    facts = [f["value"] for f in card["body"][1]["facts"]]
    assert all(len(t) <= 2 * CARD_TEXT_CHARS + 30 for t in texts)
    assert all(len(v) <= 2 * CARD_FACT_CHARS for v in facts)
    assert all("](http" not in t for t in [*texts, *facts])

"""The core every feature shares: context, clock, state, alerts, permissions, ids, events, ownership."""

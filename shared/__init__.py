"""The app's core, by feature: ``core`` (context, clock, state, alerts, events, ids, ownership), ``config`` (settings
and image families), ``resources`` (the doors to Azure), ``pipeline``, ``watch``, ``guard`` and ``lifecycle``.
See docs/architecture.md."""

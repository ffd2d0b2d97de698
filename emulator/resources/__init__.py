from emulator.resources import urls  # noqa: F401  (the routing table the dispatcher loads)

"""Microsoft.Compute in the emulator: disks, snapshots, managed images, Azure Compute Gallery."""

from emulator.compute import urls  # noqa: F401  (the routing table the dispatcher loads)

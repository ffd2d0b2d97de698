"""A local emulator of the Azure REST surface Batch Image Autopilot uses (see docs/emulator.md)."""

"""Snapshot set -> managed image -> gallery image version -> pools: the image pipeline and its rules."""

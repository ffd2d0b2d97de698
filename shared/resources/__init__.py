"""Adapters: one module per Azure resource type the app reads or writes. I/O only, no decisions.

Each function takes the client factory (``shared.resources.clients.AzureClients``) and plain values, and
returns plain values or dataclasses, so the policies in ``shared/`` never see an SDK object.
"""

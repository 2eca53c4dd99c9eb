"""No split: each request goes, unchanged, to one of N independent instances (the fair baseline)."""

from __future__ import annotations

from proxy.connectors.base import Connector


class PassthroughConnector(Connector):
    name = "passthrough"
    splits = False

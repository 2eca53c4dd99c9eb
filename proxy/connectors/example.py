"""vLLM's ExampleConnector (shared-storage directory, works on CPU): a plain split.

The KV cache is saved and looked up by a hash of the prompt tokens, so neither leg needs a special id or
field: prefill the prompt with one output token, then send the unchanged request to decode.
"""

from __future__ import annotations

from proxy.connectors.base import Connector


class ExampleConnector(Connector):
    name = "example"

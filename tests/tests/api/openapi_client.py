"""Calls the running test server through the client generated from its OpenAPI document.

Run by tests/tests/api/openapi.rs with the generated package `syncledger_client` on
PYTHONPATH and SYNCLEDGER_BASE_URL, SYNCLEDGER_TOKEN set. Prints one JSON line for the
Rust test to check. Any status the document does not declare raises (UnexpectedStatus).
"""

import json
import os

import httpx
from syncledger_client import AuthenticatedClient
from syncledger_client.api.integrations import get_integration, list_integrations
from syncledger_client.models import ErrorBody

client = AuthenticatedClient(
    base_url=os.environ["SYNCLEDGER_BASE_URL"],
    token=os.environ["SYNCLEDGER_TOKEN"],
    raise_on_unexpected_status=True,
    timeout=httpx.Timeout(30.0),
)

listed = list_integrations.sync_detailed(client=client)
missing = get_integration.sync_detailed("no-such-integration", client=client)
assert isinstance(missing.parsed, ErrorBody), f"404 parsed as {type(missing.parsed)}"

print(
    json.dumps(
        {
            "list_status": int(listed.status_code),
            "names": [i.name for i in listed.parsed.data],
            "missing_status": int(missing.status_code),
            "missing_code": missing.parsed.error.code,
        }
    )
)

"""GET /setup: the launcher's setup file plus the proxy's live view of connector and instances."""

from __future__ import annotations

from pathlib import Path

import orjson

from tests.conftest import free_port
from tests.proxy.harness import completion_body, proxy_with, run

LAUNCHER_PLAN = {
    "setup_kind": "xpyd",
    "connector": {"name": "example", "options": {"shared_storage_path": "/tmp/kv"}},
    "instances": [
        {"role": "prefill", "gpu": 0, "vllm_version": "0.26.0", "serve_args": {"max_num_seqs": 128}},
        {"role": "decode", "gpu": 1, "vllm_version": "0.26.0", "serve_args": {"max_num_seqs": 256}},
    ],
}


def test_setup_serves_the_file_and_the_live_view(tmp_path: Path) -> None:
    path = tmp_path / "setup.json"
    path.write_bytes(orjson.dumps(LAUNCHER_PLAN))
    dead = f"http://127.0.0.1:{free_port()}"

    async def scenario() -> None:
        async with proxy_with(
            "example", decode=[dead], setup_file=path, decode_select="least_outstanding"
        ) as h:
            status, doc = await h.get_json("/setup")
            assert status == 200
            assert doc["launcher"] == LAUNCHER_PLAN and doc["setup_file"] == str(path)
            view = doc["proxy"]
            assert view["connector"] == "example" and view["splits"] is True
            assert view["listen_url"] == h.url
            assert view["selection"] == {"prefill": "round_robin", "decode": "least_outstanding"}
            assert [i["url"] for i in view["instances"]["prefill"]] == [h.prefill[0].url]
            assert [(i["url"], i["in_rotation"]) for i in view["instances"]["decode"]] == [(dead, True)]
            assert view["passive_health"] == {"eject_s": 5.0, "probe_interval_s": 1.0}
            assert view["retries"] == 1
            assert view["timeouts_s"]["request_read"] == 30.0

            await h.post("/v1/completions", completion_body())  # the dead decode instance leaves rotation
            path.write_bytes(orjson.dumps({**LAUNCHER_PLAN, "note": "written later"}))
            _, doc = await h.get_json("/setup")
            (decode,) = doc["proxy"]["instances"]["decode"]
            assert decode["in_rotation"] is False and decode["out_cause"] == "unreachable"
            assert doc["launcher"]["note"] == "written later"  # read again on every request

            path.write_bytes(b"{broken")
            status, doc = await h.get_json("/setup")
            assert status == 200 and doc["launcher"] is None
            assert doc["launcher_error"].startswith(f"--setup-file {path}: not valid JSON")
            assert doc["proxy"]["connector"] == "example"

    run(scenario())


def test_setup_without_a_file_is_the_proxy_view_alone() -> None:
    async def scenario() -> None:
        async with proxy_with("passthrough", prefill=[], eject_s=0) as h:
            status, doc = await h.get_json("/setup")
            assert status == 200
            assert doc["launcher"] is None and doc["setup_file"] is None and "launcher_error" not in doc
            view = doc["proxy"]
            assert view["connector"] == "passthrough" and view["splits"] is False
            assert list(view["instances"]) == ["backend"] and view["selection"] == {"backend": "round_robin"}
            assert view["passive_health"] is None and view["discovery"] is None

    run(scenario())

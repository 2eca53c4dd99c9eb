"""Fake `vllm.entrypoints.openai.api_server`: answers GET /health with 200 on --host/--port until SIGINT."""

from __future__ import annotations

import argparse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    args, _ = p.parse_known_args()  # every vLLM flag the launcher passes is accepted and ignored
    server = ThreadingHTTPServer((args.host, args.port), Health)
    print(f"fake vllm serving on {args.host}:{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("fake vllm stopped by SIGINT", flush=True)


if __name__ == "__main__":
    main()

"""Inference entry point of the purchase-propensity model, following the SageMaker Batch Transform contract that
Clean Rooms ML runs ("Clean Rooms ML makes your model artifacts from inference available for use by your
inference code via the /opt/ml/model directory", "splits input by line, uses a MultiRecord batch strategy, and
adds a newline character at the end of every transformed record", User Guide, inference-model-guidelines).

An HTTP server on port 8080 answers GET /ping and POST /invocations: CSV rows with a header line in, one
probability per row out, newline-terminated. ``transform`` is the whole of the work and runs without a server.
"""

from __future__ import annotations

import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

from train import features, rows_of

MODEL_DIR = Path(os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))


def load(model_dir: Path = MODEL_DIR):
    import joblib

    return joblib.load(model_dir / "model.joblib")


def transform(model, body: bytes) -> bytes:
    records = rows_of(body)
    if not records:
        return b""
    scores = model.predict_proba(features(records))[:, 1]
    return "".join(f"{s:.6f}\n" for s in scores).encode()


class Handler(BaseHTTPRequestHandler):
    model = None

    def do_GET(self):  # noqa: N802 (the http.server API)
        self._reply(200 if self.path == "/ping" else 404, b"")

    def do_POST(self):  # noqa: N802
        if self.path != "/invocations":
            return self._reply(404, b"")
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            self._reply(200, transform(Handler.model, body))
        except ValueError as exc:
            self._reply(400, str(exc).encode())

    def _reply(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "text/csv")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> int:
    Handler.model = load()
    HTTPServer(("", 8080), Handler).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Serve exports over HTTP/JSON: python tools/serve.py --export [NAME=]DIR [...] [--host 127.0.0.1] [--port 8080]

Loads folders written by tools/export.py (each checked against its manifest; a half-written or
foreign folder, or one whose model config differs from an ``--expect-config``, stops the start
with one line) and answers:

    GET  /health     {"status": "ok", "models": [...]}
    GET  /schema     per model: the features each graph takes (kind, dtype, shape, vocabulary),
                     its outputs, catalog size, epoch, model-config digest
    POST /rank       {"model"?: name, "rows": [{feature: value}, ...]} -> {"scores": {output: [...]}}
    POST /recall     {"model"?: name, "user": {feature: value}, "k": 10, "exclude"?: [item ids]}
                     -> {"items": [...], "scores": [...], "raw_items"?: [...]}
    POST /recommend  {"recall_model"?, "rank_model"?, "user": {...}, "k": 10, "candidates": 100,
                     "exclude"?: [...]} -> {"items": [{item, raw_item, score, recall_score}, ...]}:
                     recall ``candidates`` items, rank them with the ranker's features, return k

``model`` may be left out when one loaded export can answer. A bad request gets a 4xx whose
message names the field (models/common/serving.py checks every value against the manifest) and
the service goes on. Each request runs on its own thread; each graph's predictor serves one
request at a time (``--threads``: the math library threads per predictor).
"""
import argparse
import http.client
import json
import os
import subprocess
import sys
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tools.utils  # noqa: E402

tools.utils.prepare_process()  # before paddle is imported: see tools/utils/__init__.py

from models.common.serving import ExportError, RequestError, load_exports, recommend  # noqa: E402
from tools.utils.runtime import USER_ERRORS, load_model  # noqa: E402

MAX_BODY = 16 << 20


class Service:
    """The loaded exports and the answer to each route (no HTTP here)."""

    def __init__(self, exports):
        self.exports = exports

    def pick(self, body, key, graph):
        """The export named ``body[key]``, or the only one with ``graph``."""
        name = body.get(key)
        if name is not None:
            if name not in self.exports:
                raise RequestError(f"{key}: no model {name!r} (loaded: {', '.join(self.exports)})", 404)
            return self.exports[name]
        able = [e for e in self.exports.values() if graph in e.graphs]
        if len(able) != 1:
            raise RequestError(f"{key}: name one of {', '.join(e.name for e in able)}" if able
                               else f"no loaded model serves {graph}", 422 if able else 404)
        return able[0]

    def get(self, path):
        if path == "/health":
            return {"status": "ok", "models": list(self.exports)}
        if path == "/schema":
            return {name: e.schema() for name, e in self.exports.items()}
        raise RequestError(f"{path}: no such route (GET /health, /schema)", 404)

    def post(self, path, body):
        if not isinstance(body, dict):
            raise RequestError("the body must be a JSON object", 400)
        if path == "/rank":
            return {"scores": self.pick(body, "model", "rank").rank(body.get("rows"))}
        if path == "/recall":
            export = self.pick(body, "model", "user_tower")
            ids, scores = export.recall(body.get("user"), body.get("k", 10), body.get("exclude", []))
            answer = {"items": ids.tolist(), "scores": scores.tolist()}
            raw = export.raw_item_ids(ids)
            if raw is not None:
                answer["raw_items"] = raw.tolist()
            return answer
        if path == "/recommend":
            user = body.get("user")
            if not isinstance(user, dict):
                raise RequestError("user: expected an object {feature: value}")
            return {"items": recommend(self.pick(body, "recall_model", "user_tower"),
                                       self.pick(body, "rank_model", "rank"), user, body.get("k", 10),
                                       body.get("candidates", 100), body.get("exclude", []))}
        raise RequestError(f"{path}: no such route (POST /rank, /recall, /recommend)", 404)


def handler_for(service, quiet=True):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: a client reuses its connection
        disable_nagle_algorithm = True  # else each answer waits ~40 ms for the client's delayed ACK

        def _answer(self, status, payload):
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _serve(self, work):
            try:
                self._answer(200, work())
            except RequestError as error:
                self._answer(error.status, {"error": str(error)})
            except Exception:  # a bug, not the client's: say so, keep serving
                traceback.print_exc()
                self._answer(500, {"error": "internal error (see the service's log)"})

        def do_GET(self):
            self._serve(lambda: service.get(self.path))

        def do_POST(self):
            def work():
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    raise RequestError(f"body of {length} bytes is over {MAX_BODY}", 413)
                try:
                    body = json.loads(self.rfile.read(length) or b"null")
                except ValueError as error:
                    raise RequestError(f"the body is not JSON ({error})", 400) from None
                return service.post(self.path, body)
            self._serve(work)

        def log_message(self, fmt, *args):
            if not quiet:
                super().log_message(fmt, *args)

    return Handler


def expect_config(exports, config, dygraph_model):
    """The loaded exports of ``dygraph_model``'s model must have been made with ``config`` (its
    model sections' digest, as training recorded it); else an ExportError naming the folder."""
    from models.common.artifacts import fingerprint
    from tools.utils.checkpoint import model_config

    digest, name = fingerprint(model_config(config)), dygraph_model.model_name()
    mine = [e for e in exports.values() if e.serving["model"] == name]
    if not mine:
        raise ExportError(f"{config.path}: no loaded export of {name}")
    for e in mine:
        if e.manifest.get("model_config_digest") != digest:
            raise ExportError(f"{config.path}: {e.folder} was exported from another {name} config "
                              f"(digest {e.manifest.get('model_config_digest')}, this config {digest})")


class ServiceProcess:
    """tools/serve.py started in a subprocess on a free loopback port, and a keep-alive JSON client
    of it (the two-stage example, the load benchmark, the tests)."""

    def __init__(self, *args):
        self.process = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--host", "127.0.0.1", "--port", "0",
                                         *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if not line.startswith("serving "):
            self.process.wait(timeout=60)
            raise ExportError((line + self.process.stderr.read()).strip().splitlines()[-1])
        self.port = int(line.rsplit(":", 1)[1])
        self.connection = self.connect()

    def connect(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)

    def call(self, method, path, body=None, connection=None):
        """-> (HTTP status, decoded JSON answer); ``body``: an object, or bytes sent as they are."""
        connection = connection or self.connection
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        connection.request(method, path, body=data, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())

    def stop(self):
        self.connection.close()
        self.process.kill()
        self.process.wait(timeout=60)
        self.process.stdout.close()
        self.process.stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", nargs="+", required=True, metavar="[NAME=]DIR", help="export folders to serve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0: any free port (printed)")
    parser.add_argument("--threads", type=int, default=1, help="math library threads per predictor")
    parser.add_argument("--expect-config", nargs="*", default=[], metavar="CONFIG",
                        help="refuse to start unless the export of each config's model was made with that config")
    parser.add_argument("--log-requests", action="store_true")
    args = parser.parse_args(argv)
    try:
        exports = load_exports(args.export, args.threads)
        for path in args.expect_config:
            expect_config(exports, *load_model(path))
    except (ExportError, *USER_ERRORS) as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)
    ThreadingHTTPServer.request_queue_size = 128  # connections waiting to be accepted (default 5)
    server = ThreadingHTTPServer((args.host, args.port), handler_for(Service(exports), not args.log_requests))
    server.daemon_threads = True
    host, port = server.server_address[:2]
    print(f"serving {', '.join(f'{n} ({e.folder})' for n, e in exports.items())} on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()

"""A program Watt runs as `kind: "command"`: any language would do; this one is Python's
standard library only. It serves HTTP on $PORT (Watt picks the port) and knows nothing
of Watt."""

import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path != "/time":
            self.send_error(404)
            return
        body = json.dumps({"epoch": int(time.time()), "pid": os.getpid()}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    port = int(os.environ["PORT"])
    print(f"clock listening on 127.0.0.1:{port}", flush=True)
    ThreadingHTTPServer((os.environ["HOST"], port), Handler).serve_forever()

"""A program for the `command` capability: standard library only, serves HTTP on $PORT.

/hello answers with its pid (and prints a line on stdout), /echo echoes a POST body
(Content-Length or chunked), /headers answers the request headers as JSON, /crash
answers and then exits with 1.
"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the proxy's pool is exercised

    def _reply(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/hello":
            print(f"hello served by pid {os.getpid()} tag={query.get('tag', '-')}", flush=True)
            self._reply(200, json.dumps({"pid": os.getpid()}).encode(), "application/json")
        elif url.path == "/headers":
            self._reply(200, json.dumps(dict(self.headers.items())).encode(),
                        "application/json")
        elif url.path == "/crash":
            self._reply(200, b"bye\n")
            print("crashing on purpose", file=sys.stderr, flush=True)
            os._exit(1)
        else:
            self._reply(404, b"not found\n")

    def _read_chunked(self) -> bytes:
        parts = []
        while True:
            size = int(self.rfile.readline().split(b";")[0], 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline()  # the CRLF after each chunk

    def do_POST(self) -> None:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            body = self._read_chunked()
        else:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if urlsplit(self.path).path == "/echo":
            self._reply(200, body, self.headers.get("content-type", "application/octet-stream"))
        else:
            self._reply(404, b"not found\n")


def main() -> None:
    port = int(os.environ["PORT"])
    server = ThreadingHTTPServer((os.environ.get("HOST", "127.0.0.1"), port), Handler)
    server.daemon_threads = True
    print(f"command-app listening on {port} pid {os.getpid()}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

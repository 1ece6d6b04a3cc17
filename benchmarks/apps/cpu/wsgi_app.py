"""WSGI app of the CPU scaling scenario: the same work.crunch(), on WSGI threads.

Run by Watt's WSGI bridge in one worker with ``threads`` 1 or 2: threads of one
interpreter share its GIL, so a second thread should add (almost) nothing.
"""

from work import crunch


def app(environ, start_response):
    body = str(crunch()).encode("ascii")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]

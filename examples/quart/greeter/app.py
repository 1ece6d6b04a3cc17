"""A Quart service, reached only at http://greeter.plt.local."""

from quart import Quart, request

app = Quart(__name__)


@app.get("/hello")
async def hello():
    return {"greeting": f"Hello, {request.args.get('name', 'world')}!", "from": "greeter"}

"""A small web app: `/` greets, `/healthz` answers health probes.

In the image, gunicorn serves it (`gunicorn app:app`, bound to 0.0.0.0:$PORT, access log on
stdout); `python app.py` serves it with Flask's development server on the same port.
"""

import logging
import os
import platform
import sys

from flask import Flask, jsonify

logging.basicConfig(
    stream=sys.stdout,
    level=os.environ.get("LOG_LEVEL", "INFO"),
    format="%(asctime)s %(levelname)s %(name)s: %(message)s",
)
log = logging.getLogger("app")

app = Flask(__name__)


@app.get("/")
def index():
    log.info("greeting a visitor")
    return jsonify(
        message="Hello from a kiln-built image",
        python=platform.python_version(),
    )


@app.get("/healthz")
def healthz():
    return jsonify(status="ok")


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=int(os.environ.get("PORT", "8080")))

"""LightGBM's own predict behind the least an ASGI endpoint can do: the same V2 body as
the other servers, no validation, no metrics. Run with `uvicorn lightgbm_app:app --loop
uvloop --http httptools` and LIGHTGBM_MODEL=model.txt (LightGBM's text format)."""

import os

import lightgbm as lgb
import numpy as np
import orjson

booster = lgb.Booster(model_file=os.environ["LIGHTGBM_MODEL"])  # one thread: predict(num_threads=1)


async def app(scope, receive, send):
    if scope["type"] != "http":
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    tensor = orjson.loads(body)["inputs"][0]
    x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
    positive = booster.predict(x, num_threads=1)  # binary: P(class 1) per row
    proba = np.column_stack([1.0 - positive, positive])
    payload = orjson.dumps(
        {
            "outputs": [
                {"name": "label", "data": proba.argmax(axis=1).tolist()},
                {"name": "probabilities", "data": proba.reshape(-1).tolist()},
            ]
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": payload})

"""The bare baseline: the least an ASGI endpoint can do to answer a V2 request with
onnxruntime (no validation, no metrics, no tracing). Run with
`uvicorn baseline_app:app --loop uvloop --http httptools` and BASELINE_ONNX=model.onnx."""

import os

import numpy as np
import onnxruntime as ort
import orjson

opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
opts.inter_op_num_threads = 1
session = ort.InferenceSession(
    os.environ["BASELINE_ONNX"], opts, providers=["CPUExecutionProvider"]
)
input_name = session.get_inputs()[0].name
output_names = [o.name for o in session.get_outputs()]


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
    if scope["method"] == "GET":
        payload = b'{"ready":true}'
    else:
        tensor = orjson.loads(body)["inputs"][0]
        x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        label, proba = session.run(output_names, {input_name: x})
        payload = orjson.dumps(
            {
                "outputs": [
                    {"name": "label", "data": label.tolist()},
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

import grpc, time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from shipml.serving.server import ServeSpec, build_app
from tests.serving.hostile import serve
from tests.serving.test_grpc import _request, INFER

def test_many(penguins_package, penguins_data, tmp_path):
    X, _ = penguins_data
    spec = ServeSpec(str(penguins_package.path), "penguins", grpc_port=0, max_wait_ms=float(__import__("os").environ.get("W","0")),
        audit_path=str(tmp_path/"a.db"), signing_key=str(tmp_path/"k.pem"))
    app = build_app(spec)
    drop = __import__("os").environ.get("DROP")
    if drop:
        app.service.options = [o for o in app.service.options if o[0] not in drop.split(",")]
        print(app.service.options)
    body = _request(X.iloc[:1]).SerializeToString()
    with serve(app):
        a = f"127.0.0.1:{app.service.port}"
        chans = [grpc.insecure_channel(a) for _ in range(12)]
        def one(i):
            try:
                chans[i % 12].unary_unary(INFER)(body, timeout=60, metadata=(("x-shipml-variant", "b"),)); return "OK"
            except grpc.RpcError as e: return e.code().name + ":" + (e.details() or "")
        if __import__("os").environ.get("WARM"):
            for c in chans: c.unary_unary(INFER)(body, timeout=60)
        t = time.time()
        with ThreadPoolExecutor(300) as ex:
            res = Counter(ex.map(one, range(1200)))
        print(res, time.time() - t, app.bodies.held)
        print(one(0))
    from shipml.audit import AuditLog
    log = AuditLog(tmp_path/"a.db", writer=False)
    recs = list(log.records()) if hasattr(log, "records") else []
    print(len(recs), Counter(r.get("variant") for r in recs), len({r["request_id"] for r in recs}))

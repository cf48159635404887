"""Winograd F(2x2, 3x3) written as OpenVINO ops (slices, adds, one batched MatMul), against the direct
convolution, on the MTCNN nets' 3x3 layer shapes; one thread. Run capped to AVX2:
    ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python docs/results/cpu/intel-f6-m167/ninth_machine/winograd_graph.py
"""
import os, sys, time
import numpy as np
import openvino as ov
from openvino import opset13 as ops

BT = np.array([[1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]], np.float32)
G = np.array([[1,0,0],[.5,.5,.5],[.5,-.5,.5],[0,0,1]], np.float32)

def direct(x, w, b):
    n,c,h,wd = x.shape; co = w.shape[0]
    out = np.zeros((n,co,h-2,wd-2), np.float64)
    for dy in range(3):
        for dx in range(3):
            out += np.einsum('nchw,oc->nohw', x[:,:,dy:dy+h-2,dx:dx+wd-2].astype(np.float64), w[:,:,dy,dx].astype(np.float64))
    return out + b[None,:,None,None]

def conv_graph(c, co, w, b):
    x = ops.parameter(ov.PartialShape([-1, c, -1, -1]), ov.Type.f32, name="x")
    y = ops.convolution(x, ops.constant(w), [1,1], [0,0], [0,0], [1,1])
    y = ops.add(y, ops.constant(b.reshape(1,-1,1,1)))
    return ov.Model([y], [x], "direct")

def sl(t, axis, start, stop, step=1):
    return ops.slice(t, ops.constant(np.array([start], np.int64)), ops.constant(np.array([stop], np.int64)),
                     ops.constant(np.array([step], np.int64)), ops.constant(np.array([axis], np.int64)))

def rows4(t, axis, n):
    # t has 2n+2 along axis; returns the 4 row-transformed tensors, each n along axis
    e0 = sl(t, axis, 0, 2*n, 2); e1 = sl(t, axis, 2, 2*n+2, 2)   # d0, d2
    o0 = sl(t, axis, 1, 2*n+1, 2); o1 = sl(t, axis, 3, 2*n+3, 2) # d1, d3
    return [ops.subtract(e0, e1), ops.add(o0, e1), ops.subtract(e1, o0), ops.subtract(o0, o1)]

def wino_graph(c, co, w, b, h, wd):
    # static spatial size for the experiment
    ho, wo = h-2, wd-2; th, tw = (ho+1)//2, (wo+1)//2
    x = ops.parameter(ov.PartialShape([-1, c, h, wd]), ov.Type.f32, name="x")
    t = ops.transpose(x, ops.constant(np.array([0,2,3,1], np.int64)))  # NHWC
    hp, wp = 2*th+2, 2*tw+2
    if hp > h or wp > wd:
        t = ops.pad(t, ops.constant(np.array([0,0,0,0], np.int64)), ops.constant(np.array([0,hp-h,wp-wd,0], np.int64)), "constant")
    parts = []
    for r in rows4(t, 1, th):
        parts += rows4(r, 2, tw)
    v = ops.concat([ops.unsqueeze(p, ops.constant(np.array([0], np.int64))) for p in parts], 0)  # 16,N,th,tw,C
    v = ops.reshape(v, ops.constant(np.array([16, -1, c], np.int64)), False)
    U = np.einsum('ij,ocjk,lk->ilco', G, w, G).reshape(16, c, co).astype(np.float32)  # (4,4,c,co)
    m = ops.matmul(v, ops.constant(U), False, False)  # 16, N*th*tw, co
    m = ops.reshape(m, ops.constant(np.array([4, 4, -1, th, tw, co], np.int64)), False)
    def at(t, axis):
        a = [sl(t, axis, k, k+1) for k in range(4)]
        return ops.add(ops.add(a[0], a[1]), a[2]), ops.subtract(ops.subtract(a[1], a[2]), a[3])
    ys = []
    for r in at(m, 0):
        ys.append(at(r, 1))
    y = ops.concat([ops.concat([ys[0][0], ys[0][1]], 1), ops.concat([ys[1][0], ys[1][1]], 1)], 0)  # 2,2,N,th,tw,co
    y = ops.reshape(y, ops.constant(np.array([2, 2, -1, th, tw, co], np.int64)), False)
    y = ops.transpose(y, ops.constant(np.array([2, 5, 3, 0, 4, 1], np.int64)))  # N,co,th,2,tw,2
    y = ops.reshape(y, ops.constant(np.array([-1, co, 2*th, 2*tw], np.int64)), False)
    if 2*th > ho or 2*tw > wo:
        y = sl(sl(y, 2, 0, ho), 3, 0, wo)
    y = ops.add(y, ops.constant(b.reshape(1,-1,1,1)))
    return ov.Model([y], [x], "wino")

def bench(model, x, reps=30):
    core = ov.Core()
    cm = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
        "ENABLE_CPU_PINNING": False, "INFERENCE_PRECISION_HINT": ov.Type.f32})
    req = cm.create_infer_request()
    out = req.infer({0: x})[0].copy()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter(); req.infer({0: x}); ts.append(time.perf_counter() - t0)
    return out, min(ts) * 1e3

rng = np.random.default_rng(0)
for (n, c, co, h) in [(64, 32, 64, 23), (64, 64, 64, 10), (64, 28, 48, 11), (1, 10, 16, 107), (1, 16, 32, 105)]:
    wd = h if n > 1 else 190
    w = rng.standard_normal((co, c, 3, 3)).astype(np.float32) * 0.1
    b = rng.standard_normal(co).astype(np.float32)
    x = rng.standard_normal((n, c, h, wd)).astype(np.float32)
    ref = direct(x, w, b)
    d, td = bench(conv_graph(c, co, w, b), x)
    g, tg = bench(wino_graph(c, co, w, b, h, wd), x)
    print(f"n{n} c{c}->{co} {h}x{wd}: direct {td:.3f} ms (err {np.abs(d-ref).max():.2e}), winograd {tg:.3f} ms (err {np.abs(g-ref).max():.2e}) ratio {td/tg:.2f}")

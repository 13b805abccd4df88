#!/usr/bin/env python3
"""The Python side of `benches/compare.sh`: benchmark inputs, the peers, and the report.

    peers.py prepare --work DIR --data DATA_DIR [--quick]
        Writes the benchmark images as raw little-endian f32 grayscale planes (and the
        ground-truth labels of full-size images as u32) with DIR/manifest.tsv.
    peers.py peers --work DIR --weights PTH --fp32 ONNX [--int8 ONNX] --threads T [--quick]
        Times the peers on the same inputs: the reference `CellposeModel.eval` (cellpose
        3.1.1.3, CPU) end to end, the reference `dynamics.compute_masks` on the flows our
        pipeline dumped, onnxruntime fp32/int8 and torch on the network alone.
        Appends JSON lines to DIR/peers.jsonl.
    peers.py report --work DIR --out FILE.md
        Merges DIR/ours*.jsonl and DIR/peers.jsonl into one markdown table (stdout and FILE),
        ending with the summary line of issue 5.

Every timing is wall-clock (`time.perf_counter`), median over repeats after one warm-up run.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# Gray value of a colour image: mean of its first three channels (as examples/evaluate.rs).


def gray(img):
    img = np.asarray(img)
    if img.ndim == 3:
        img = img[..., :3].astype(np.float32).mean(-1)
    return img.astype(np.float32)


def emit(path, **rec):
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")


def median_time(fn, repeats, warmup=1):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), ts


# ---------------------------------------------------------------- prepare

def prepare(args):
    from cellpose import io
    work = Path(args.work)
    (work / "img").mkdir(parents=True, exist_ok=True)
    data = Path(args.data)
    names = sorted(p.name[: -len("_img.png")] for p in data.glob("*_img.png"))
    imgs = {n: gray(io.imread(str(data / f"{n}_img.png"))) for n in names}
    rows = []

    def put(name, kind, img, masks=None):
        img = np.ascontiguousarray(img, dtype=np.float32)
        h, w = img.shape
        ip = work / "img" / f"{name}.f32"
        img.astype("<f4").tofile(ip)
        mp = "-"
        if masks is not None:
            mp = work / "img" / f"{name}_masks.u32"
            np.ascontiguousarray(masks, dtype="<u4").tofile(mp)
        rows.append((name, kind, w, h, str(ip), str(mp)))

    # Full-size images: every distinct size of the test split, several images of each in the
    # full run, one of each in --quick.
    per_size = 1 if args.quick else 4
    by_size = {}
    for n in names:
        by_size.setdefault(imgs[n].shape, []).append(n)
    for shape in sorted(by_size):
        for n in by_size[shape][:per_size]:
            m = io.imread(str(data / f"{n}_masks.png")).astype(np.uint32)
            put(n, "full", imgs[n], m)
    # 512×512 crops (top-left) of the images that are at least that large.
    big = [n for n in names if min(imgs[n].shape) >= 512]
    for n in big[: (2 if args.quick else 8)]:
        put(f"{n}_crop512", "crop512", imgs[n][:512, :512])
    # 2048×2048 mosaic: test images row by row, each block rescaled to [0, 1] by its own
    # maximum so that bright and dim modalities sit side by side.
    side = 2048
    mosaic = np.zeros((side, side), np.float32)
    y = x = row_h = 0
    for n in names:
        im = imgs[n]
        im = im / max(float(im.max()), 1.0)
        h, w = im.shape
        if x + w > side:
            y, x, row_h = y + row_h, 0, 0
        if y >= side:
            break
        hh, ww = min(h, side - y), min(w, side - x)
        mosaic[y:y + hh, x:x + ww] = im[:hh, :ww]
        x += w
        row_h = max(row_h, h)
    mosaic *= 255.0
    put("mosaic2048", "mosaic", mosaic)
    # Scaling by side: top-left crops of the mosaic.
    for s in (256, 512, 1024) + (() if args.quick else (2048,)):
        put(f"side{s}", "side", mosaic[:s, :s])
    with open(work / "manifest.tsv", "w") as f:
        f.write("name\tkind\twidth\theight\timage\tmasks\n")
        for r in rows:
            f.write("\t".join(str(v) for v in r) + "\n")
    print(f"prepared {len(rows)} images in {work}", file=sys.stderr)


def manifest(work):
    rows = []
    with open(Path(work) / "manifest.tsv") as f:
        next(f)
        for line in f:
            n, k, w, h, ip, mp = line.rstrip("\n").split("\t")
            rows.append(dict(name=n, kind=k, w=int(w), h=int(h), image=ip, masks=mp))
    return rows


def load(row):
    return np.fromfile(row["image"], "<f4").reshape(row["h"], row["w"])


# ---------------------------------------------------------------- peers

def conv_flops(onnx_path, side=224):
    """Multiply-adds × 2 of every Conv and Gemm for one side×side tile."""
    import onnx
    from onnx import shape_inference
    m = onnx.load(onnx_path)
    inp = m.graph.input[0]
    dims = inp.type.tensor_type.shape.dim
    for d, v in zip(dims, (1, 2, side, side)):
        d.ClearField("dim_param")
        d.dim_value = v
    m = shape_inference.infer_shapes(m)
    shapes = {}
    for vi in list(m.graph.value_info) + list(m.graph.output) + list(m.graph.input):
        shapes[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    inits = {i.name: list(i.dims) for i in m.graph.initializer}
    flops = 0
    for n in m.graph.node:
        if n.op_type == "Conv":
            w = inits.get(n.input[1])
            out = shapes.get(n.output[0])
            if w is None or not out:
                return None
            flops += 2 * int(np.prod(w)) * out[2] * out[3]
        elif n.op_type == "Gemm":
            w = inits.get(n.input[1])
            if w is not None:
                flops += 2 * int(np.prod(w))
    return flops


def peers(args):
    import cv2
    import onnxruntime as ort
    import torch
    import cellpose
    from cellpose import dynamics, metrics
    sys.path.insert(0, str(ROOT))  # the checkout's root, where the package `models` is
    from models.reference import reference_model

    T = args.threads
    torch.set_num_threads(T)
    torch.set_num_interop_threads(1)
    cv2.setNumThreads(T)
    out = Path(args.work) / "peers.jsonl"
    rows = manifest(args.work)
    reps = 1 if args.quick else 3
    emit(out, kind="versions", python=platform.python_version(), cellpose=cellpose.version,
         torch=torch.__version__, onnxruntime=ort.__version__, numpy=np.__version__,
         threads=T)

    # Network alone: same N×2×224×224 inputs (same pattern as cellpose::network::time_plan).
    flops = conv_flops(args.fp32)
    emit(out, kind="flops", side=224, flops=flops)
    ref = reference_model(args.weights)
    net = ref.net.net
    for batch in (1, 8):
        n = batch * 2 * 224 * 224
        x = (((np.arange(n) * 7919) % 1000) / 1000.0).astype(np.float32).reshape(batch, 2, 224, 224)
        r = max(3, (10 if batch == 1 else 4) if not args.quick else 3)
        for label, path in (("fp32", args.fp32), ("int8", args.int8)):
            if not path:
                continue
            so = ort.SessionOptions()
            so.intra_op_num_threads = T
            so.inter_op_num_threads = 1
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            name = sess.get_inputs()[0].name
            med, _ = median_time(lambda: sess.run(None, {name: x}), r, warmup=2)
            emit(out, kind="network", engine="onnxruntime", precision=label, batch=batch,
                 side=224, threads=T, seconds=med)
        xt = torch.from_numpy(x)
        with torch.no_grad():
            med, _ = median_time(lambda: net(xt), r, warmup=2)
            if batch == 1:
                # The ONNX file and the weights must be the same network for the comparison
                # to mean anything.
                so = ort.SessionOptions()
                so.intra_op_num_threads = T
                sess = ort.InferenceSession(args.fp32, so, providers=["CPUExecutionProvider"])
                y_ort = sess.run(None, {sess.get_inputs()[0].name: x})[0]
                diff = float(np.abs(net(xt)[0].numpy() - y_ort).max())
                emit(out, kind="consistency", onnx=args.fp32, weights=args.weights,
                     max_abs_diff=diff)
        emit(out, kind="network", engine="torch", precision="fp32", batch=batch, side=224,
             threads=T, seconds=med)
    print("peers: network done", file=sys.stderr, flush=True)

    # Reference end to end: CellposeModel.eval with diameter=None (the model's diam_labels,
    # as our Diameter::ModelDefault), grayscale channels.
    e2e_kinds = {"full", "crop512", "mosaic"} | ({"side"} if not args.quick else set())
    for row in rows:
        if row["kind"] not in e2e_kinds:
            continue
        if args.quick and row["kind"] == "mosaic":
            continue
        img = load(row)
        res = {}

        def run():
            res["m"] = ref.eval(img, channels=[0, 0], diameter=None)[0]
        med, _ = median_time(run, 1 if row["kind"] in ("mosaic", "side") else reps)
        rec = dict(kind="e2e", engine="reference", name=row["name"], set=row["kind"],
                   w=row["w"], h=row["h"], threads=T, seconds=med, n_objects=int(res["m"].max()))
        if row["masks"] != "-":
            truth = np.fromfile(row["masks"], "<u4").reshape(row["h"], row["w"]).astype(np.int32)
            ap = metrics.average_precision([truth], [res["m"].astype(np.int32)],
                                           threshold=[0.5, 0.75, 0.9])[0][0]
            rec["ap50"] = float(ap[0])
        emit(out, **rec)
        print(f"peers: reference e2e {row['name']} {med:.3f}s", file=sys.stderr, flush=True)

    # Dynamics + masks alone on the flows our pipeline produced (DIR/flows/NAME.f32:
    # dY, dX, cell probability at image size; NAME.json: niter).
    fdir = Path(args.work) / "flows"
    for fp in sorted(fdir.glob("*.f32")):
        meta = json.loads(fp.with_suffix(".json").read_text())
        h, w = meta["h"], meta["w"]
        a = np.fromfile(fp, "<f4").reshape(3, h, w)
        dP, cp = a[:2].copy(), a[2].copy()
        res = {}

        def run():
            res["m"] = dynamics.compute_masks(dP, cp, niter=meta["niter"], cellprob_threshold=0.0,
                                              flow_threshold=0.4, interp=True, min_size=15,
                                              max_size_fraction=0.4)
        med, _ = median_time(run, reps)
        ours = np.fromfile(fp.with_suffix(".labels.u32"), "<u4").reshape(h, w)
        same = bool((ours.astype(np.int64) == res["m"].astype(np.int64)).all())
        emit(out, kind="dynamics", engine="reference", name=meta["name"], w=w, h=h,
             niter=meta["niter"], threads=T, seconds=med, n_objects=int(res["m"].max()),
             identical_labels=same)
    print("peers: dynamics done", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- report

def read_jsonl(paths):
    recs = []
    for p in paths:
        with open(p) as f:
            recs += [json.loads(line) for line in f if line.strip()]
    return recs


def machine():
    info = {}
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            k, _, v = line.partition(":")
            info[k.strip()] = v.strip()
    except OSError:
        pass
    flags = info.get("Flags", "").split()
    return dict(model=info.get("Model name", platform.processor()), cpus=info.get("CPU(s)", "?"),
                mhz=info.get("CPU max MHz") or info.get("BogoMIPS"),
                bogomips=info.get("BogoMIPS"), avx512="avx512f" in flags,
                vnni=any(f in flags for f in ("avx512_vnni", "avx_vnni")), fma="fma" in flags,
                avx2="avx2" in flags)


def peak_estimate(m):
    """fp32 peak of the machine: cores × clock × FLOP per cycle. lscpu under KVM gives no clock,
    so BogoMIPS / 2 stands for it; FLOP per cycle assumes two FMA pipes of the widest vector."""
    cores = int(m["cpus"]) if str(m["cpus"]).isdigit() else 1
    ghz = float(m["bogomips"]) / 2e3 if m.get("bogomips") else 2.0
    lanes = 16 if m["avx512"] else 8 if m["avx2"] else 4
    per_cycle = 2 * lanes * (2 if m["fma"] else 1)
    return cores * ghz * per_cycle, (f"{cores} cores × {ghz:.2f} GHz (BogoMIPS/2) × {per_cycle} FLOP/cycle: "
                                     f"2 FMA pipes × {lanes} f32 lanes × 2")


def fmt_ms(s):
    return "—" if s is None else f"{s * 1e3:.1f}"


def ratio(a, b):
    return "—" if not a or not b else f"{a / b:.2f}×"


def report(args):
    work = Path(args.work)
    ours = read_jsonl(sorted(work.glob("ours*.jsonl")))
    peer = read_jsonl([work / "peers.jsonl"]) if (work / "peers.jsonl").exists() else []
    recs = ours + peer
    meta = json.loads((work / "meta.json").read_text())
    m = machine()
    L = []
    L.append(f"# cellpose-rs benchmark vs peers ({meta['date']}, {meta['mode']} run)\n")
    L.append(f"- Machine: {m['model']}, {m['cpus']} CPUs, AVX2 {m['avx2']}, FMA {m['fma']}, "
             f"AVX-512 {m['avx512']}, VNNI {m['vnni']}, BogoMIPS {m['bogomips']}")
    L.append(f"- Load average before the run: {meta['load_before']}; after: "
             f"{open('/proc/loadavg').read().split()[:3]}")
    L.append(f"- Other processes busy during the run: {meta.get('busy', '?')}")
    vers = next((r for r in peer if r["kind"] == "versions"), {})
    L.append(f"- Versions: cellpose-rs {meta['crate']}, tract {meta['tract']}, rustc "
             f"{meta['rustc']}; Python {vers.get('python')}, cellpose {vers.get('cellpose')}, "
             f"torch {vers.get('torch')}, onnxruntime {vers.get('onnxruntime')}, numpy {vers.get('numpy')}")
    L.append(f"- Threads: {meta['threads']} everywhere (Segmenter::with_threads, "
             f"torch.set_num_threads + cv2.setNumThreads, ORT intra_op_num_threads; ORT/torch "
             f"inter-op 1)")
    L.append(f"- Models: fp32 `{meta['fp32']}` (sha256 {meta['fp32_sha'][:12]}), int8 "
             f"`{meta['int8']}` (sha256 {meta['int8_sha'][:12]}, form {meta['int8_form']}); "
             f"reference weights `{meta['weights']}` (sha256 {meta['weights_sha'][:12]})")
    cons = next((r for r in peer if r["kind"] == "consistency"), None)
    if cons:
        ok = "same network" if cons["max_abs_diff"] < 1e-3 else "DIFFERENT NETWORKS: re-export the ONNX from these weights"
        L.append(f"- fp32 ONNX vs PyTorch weights on one 224×224 input: max abs output difference "
                 f"{cons['max_abs_diff']:.2e} ({ok})")
    L.append("- Times: wall clock, median over repeats after a warm-up run, in ms.\n")

    # 1. End to end
    def e2e(engine, name):
        return next((r for r in recs if r["kind"] == "e2e" and r["engine"] == engine
                     and r["name"] == name), None)
    names = []
    for r in recs:
        if r["kind"] == "e2e" and r["engine"] == "ours-fp32" and r["set"] != "side":
            names.append((r["set"], r["name"], r["w"], r["h"]))
    L.append("## 1. End to end per frame (diameter = model default, ms)\n")
    L.append("| set | image | size | reference | ours fp32 | ours int8 | speed-up fp32 | speed-up int8 | objects ref/fp32/int8 |")
    L.append("|---|---|---|---:|---:|---:|---:|---:|---|")
    sums = {}
    for s, n, w, h in names:
        ref, f, q = e2e("reference", n), e2e("ours-fp32", n), e2e("ours-int8", n)
        rs, fs, qs = (x["seconds"] if x else None for x in (ref, f, q))
        L.append(f"| {s} | {n} | {w}×{h} | {fmt_ms(rs)} | {fmt_ms(fs)} | {fmt_ms(qs)} | "
                 f"{ratio(rs, fs)} | {ratio(rs, qs)} | "
                 f"{'/'.join(str(x['n_objects']) if x else '—' for x in (ref, f, q))} |")
        if rs and fs:
            a = sums.setdefault(s, [0, 0, 0, 0])
            a[0] += rs
            a[1] += fs
            a[2] += qs or 0
            a[3] += 1
    L.append("")
    L.append("| set | images | reference total | ours fp32 total | ours int8 total | speed-up fp32 | speed-up int8 |")
    L.append("|---|---:|---:|---:|---:|---:|---:|")
    for s, (rs, fs, qs, k) in sums.items():
        L.append(f"| {s} | {k} | {fmt_ms(rs)} | {fmt_ms(fs)} | {fmt_ms(qs or None)} | {ratio(rs, fs)} | {ratio(rs, qs)} |")
    aps = {}
    for r in recs:
        if r["kind"] == "e2e" and "ap50" in r:
            aps.setdefault(r["engine"], []).append(r["ap50"])
    if aps:
        L.append("\nAccuracy on the full-size images above (mean AP at IoU 0.5, ground truth of dsb2018 test): "
                 + ", ".join(f"{k} {np.mean(v):.4f} (n={len(v)})" for k, v in sorted(aps.items())))
    L.append("")

    # 2. Network alone
    flops = next((r["flops"] for r in recs if r["kind"] == "flops"), None)
    peak, peak_note = peak_estimate(m)
    L.append("## 2. Network alone, N×2×224×224 input (ms per call)\n")
    L.append(f"FLOPs per 224×224 tile (2 × multiply-adds of Conv and Gemm): "
             f"{flops / 1e9:.3f} G. Peak estimate: {peak:.0f} GFLOP/s fp32 "
             f"({peak_note}).\n" if flops else "")
    L.append("| engine | precision | batch | threads | ms / call | ms / tile | GFLOP/s | % of peak | vs onnxruntime |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    nets = [r for r in recs if r["kind"] == "network"]
    for r in sorted(nets, key=lambda r: (r["batch"], r["threads"], r["precision"], r["engine"])):
        ortr = next((o for o in nets if o["engine"] == "onnxruntime" and o["precision"] == r["precision"]
                     and o["batch"] == r["batch"] and o["threads"] == r["threads"]), None)
        per_tile = r["seconds"] / r["batch"]
        gf = flops / per_tile / 1e9 if flops else None
        L.append(f"| {r['engine']} | {r['precision']} | {r['batch']} | {r['threads']} | "
                 f"{fmt_ms(r['seconds'])} | {fmt_ms(per_tile)} | {gf:.1f} | {100 * gf / peak:.1f} | "
                 f"{ratio(r['seconds'], ortr['seconds'] if ortr else None)} |")
    L.append("")
    L.append("Engines: `ours` is the pipeline's network, tract with our convolution "
             "(`src/network/conv.rs`: direct, or Winograd F(2×2, 3×3) for f32 3×3 layers from 32 channels "
             "where the CPU has AVX-512; int8 computes in int8 where the CPU has AVX-512 VNNI); "
             "`tract-conv` is tract's own convolution on the same file, for comparison.\n")

    def net(engine, precision, threads):
        return next((r["seconds"] for r in nets if r["engine"] == engine and r["precision"] == precision
                     and r["batch"] == 1 and r["threads"] == threads), None)
    t = meta["threads"]
    of, oq, rf = net("ours", "fp32", t), net("ours", "int8", t), net("onnxruntime", "fp32", t)
    if of and oq and rf:
        L.append(f"Batch 1, {t} threads: ours fp32 / onnxruntime fp32 = {of / rf:.2f}; "
                 f"ours int8 / ours fp32 = {oq / of:.2f}.\n")

    convs = [r for r in recs if r["kind"] == "conv"]
    if convs:
        cpus = int(m["cpus"]) if str(m["cpus"]).isdigit() else 1
        L.append("Our 3×3 convolution alone (`cargo bench --bench compare -- conv`), the U-Net's layer "
                 "shapes (C → C channels at side × side), ReLU input stage and padding included, each form "
                 "(f32 direct, f32 Winograd, int8; the pipeline uses Winograd from 32 channels on). "
                 "GFLOP/s are effective: the direct convolution's operations over the time for every form "
                 "(so Winograd, with 2.25× fewer multiplies, can pass 100 % of peak); int8 counts a "
                 "multiply-add as 2 operations; % of the fp32 peak of the threads used:\n")
        L.append("| channels | side | threads | precision | kernel | ms | GFLOP/s | % of fp32 peak |")
        L.append("|---:|---:|---:|---|---|---:|---:|---:|")
        for r in sorted(convs, key=lambda r: (r["threads"], r["side"] * -1, r["precision"], r["kernel"])):
            p = peak * r["threads"] / cpus
            L.append(f"| {r['channels']} | {r['side']} | {r['threads']} | {r['precision']} | {r['kernel']} | "
                     f"{fmt_ms(r['seconds'])} | {r['gflops']:.0f} | {100 * r['gflops'] / p:.0f} |")
        L.append("")

    # 3. Dynamics
    L.append("## 3. Dynamics + masks alone, same flows (ms)\n")
    L.append("Flows: our fp32 network's outputs at image size; both run dynamics (niter as the pipeline), "
             "flow-error QC, hole filling and min-size removal.\n")
    L.append("| image | size | niter | reference `compute_masks` | ours `MaskFormation::labels` | speed-up | identical labels |")
    L.append("|---|---|---:|---:|---:|---:|---|")
    dyn_r = {r["name"]: r for r in recs if r["kind"] == "dynamics" and r["engine"] == "reference"}
    dyn_o = {r["name"]: r for r in recs if r["kind"] == "dynamics" and r["engine"] == "ours"}
    for n, o in dyn_o.items():
        r = dyn_r.get(n)
        L.append(f"| {n} | {o['w']}×{o['h']} | {o['niter']} | {fmt_ms(r['seconds'] if r else None)} | "
                 f"{fmt_ms(o['seconds'])} | {ratio(r['seconds'] if r else None, o['seconds'])} | "
                 f"{r['identical_labels'] if r else '—'} |")
    L.append("")
    L.append("Share of our frame time (fp32 end to end) spent in dynamics + masks:\n")
    L.append("| image | size | end to end | dynamics + masks | share |")
    L.append("|---|---|---:|---:|---:|")
    shares = []
    for n, o in dyn_o.items():
        f = e2e("ours-fp32", n)
        if f:
            shares.append(o["seconds"] / f["seconds"])
            L.append(f"| {n} | {o['w']}×{o['h']} | {fmt_ms(f['seconds'])} | {fmt_ms(o['seconds'])} | {100 * shares[-1]:.1f} % |")
    L.append("")

    # 4. Frame loop
    L.append("## 4. Frame loop through one session\n")
    L.append("| model | image | frames | threads | median ms | p99 ms | p99 / median | max ms | heap allocations / frame (after warm-up) | of which outside tract | bytes allocated / frame | peak RSS MiB |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    loops = [r for r in recs if r["kind"] == "loop"]
    for r in loops:
        L.append(f"| {r['model']} | {r['name']} {r['w']}×{r['h']} | {r['frames']} | {r['threads']} | "
                 f"{fmt_ms(r['median'])} | {fmt_ms(r['p99'])} | {r['p99'] / r['median']:.2f} | "
                 f"{fmt_ms(r['max'])} | {r['allocs_per_frame']:.1f} | {r.get('library_allocs_per_frame', float('nan')):.1f} | {r['bytes_per_frame']:.0f} | "
                 f"{r['peak_rss_kib'] / 1024:.0f} |")
    L.append("")

    # 5. Scaling
    L.append("## 5. Scaling: end to end vs side and threads (mosaic crops, ms)\n")
    L.append("| side | ours fp32 1 thread | ours fp32 2 threads | 2-thread speed-up | ours int8 2 threads | reference |")
    L.append("|---:|---:|---:|---:|---:|---:|")
    sc = [r for r in recs if r["kind"] == "scale"]
    for side in sorted({r["side"] for r in sc}):
        def g(model, t):
            x = next((r for r in sc if r["side"] == side and r["model"] == model and r["threads"] == t), None)
            return x["seconds"] if x else None
        ref = e2e("reference", f"side{side}")
        a, b = g("fp32", 1), g("fp32", 2)
        L.append(f"| {side} | {fmt_ms(a)} | {fmt_ms(b)} | {ratio(a, b)} | {fmt_ms(g('int8', 2))} | "
                 f"{fmt_ms(ref['seconds'] if ref else None)} |")
    L.append("")

    # Summary line (issue 5)
    tot_ref = sum(v[0] for v in sums.values())
    tot_ours = sum(v[1] for v in sums.values() if True)
    shipped = meta["shipped"]
    key = "ours-int8" if shipped == "int8" else "ours-fp32"
    tot_ref_s = tot_ship = 0.0
    for s, n, w, h in names:
        r, o = e2e("reference", n), e2e(key, n)
        if r and o:
            tot_ref_s += r["seconds"]
            tot_ship += o["seconds"]
    x = tot_ref_s / tot_ship if tot_ship else float("nan")
    # Per 224×224 tile: tract at batch 1 (what the pipeline runs: its batches are slower per
    # tile) against onnxruntime at its faster batch size, same precision and threads.
    def per_tile(engine, batches):
        rs = [r["seconds"] / r["batch"] for r in nets if r["engine"] == engine and r["precision"] == shipped
              and r["batch"] in batches and r["threads"] == meta["threads"]]
        return min(rs) if rs else None
    tr, orr = per_tile("ours", (1,)), per_tile("onnxruntime", (1, 8))
    y = tr / orr if tr and orr else float("nan")
    z = float(np.median(shares)) if shares else float("nan")
    lp = next((r for r in loops if r["model"] == shipped), loops[0] if loops else None)
    nal = lp["allocs_per_frame"] if lp else float("nan")
    L.append("## Summary\n")
    L.append(f"Shipped model for the summary: {shipped}. X = Σ reference / Σ ours end to end over the "
             f"table-1 images ({tot_ref_s:.2f} s / {tot_ship:.2f} s); Y = ours per tile at batch 1 "
             f"(the pipeline's) / onnxruntime per tile at its faster batch (1 or 8), 224×224, {meta['threads']} threads; Z = median share over the dynamics images; N from the "
             f"frame loop.\n")
    summary = (f"end_to_end_speedup={x:.2f} network_vs_ort={y:.2f} dynamics_share={z:.3f} "
               f"allocs_per_frame={nal:.0f}")
    text = "\n".join(L) + "\n```\n" + summary + "\n```\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print("\n".join(L))
    print(f"table written to {args.out}")
    print(summary)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--work", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--quick", action="store_true")
    p = sub.add_parser("peers")
    p.add_argument("--work", required=True)
    p.add_argument("--weights", required=True)
    p.add_argument("--fp32", required=True)
    p.add_argument("--int8")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true")
    p = sub.add_parser("report")
    p.add_argument("--work", required=True)
    p.add_argument("--out", required=True)
    args = ap.parse_args()
    {"prepare": prepare, "peers": peers, "report": report}[args.cmd](args)


if __name__ == "__main__":
    main()

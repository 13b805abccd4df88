"""Offline Python tooling of cellpose-rs: training, size model, ONNX export and int8
quantization of the shipped models, the reference pipeline (cellpose==3.1.1.3) on this
project's weights, evaluation and data-preparation helpers. Never a run-time dependency of
the library; needs torch, onnx and cellpose==3.1.1.3 (models/README.md).

Each tool is a module run from the checkout's root, its options unchanged:

    python -m models.train --out models/run_light --epochs 40
    python -m models.quantize --model models/nuclei_light.onnx --out /tmp/int8.onnx --mode weights
    python -m models.retrain --data FOLDER --name my_cells --init cyto
    python -m models.<tool> --help

Modules: train, train_size, export, quantize, retrain, half_weights, average_weights, flops,
tune_thresholds, eval_reference, baseline_classical, held_out_split, pack_data (tools);
folders (training folders, checked; `data_root()`), reference (the reference pipeline).

Data: where a tool's data argument is left out, the data sets are looked for under
`$CELLPOSE_DATA` (default `../shared/data` beside the checkout), as `folders.data_root()`
resolves it; explicit arguments (`--data`, `--dir`, ...) win.
"""

#!/usr/bin/env python3
"""The edited seed models kept in `tests/data/fuzz/` as regression tests of panics the
`model_from_bytes` target found inside tract (offline tooling; needs only `onnx`).

Each fault was found on a mutated file; the test input is made clean from a seed with the
one edit that reaches the same panic, so that it reads as what it exercises:

- `model_output_names_no_tensor.onnx`: the fp32 tiny CPnet seed (`tiny.onnx`) with its first graph output
  renamed to a tensor no node makes (tract-onnx's graph building, `no entry found for key`);
- `model_conv_pads_too_few.onnx`: the minimal seed with `pads` = [1, 1, 1], three values for
  two spatial axes (tract's padding arithmetic indexes past the list);
- `model_string_tensor_as_raw_bytes.onnx`: the minimal seed with its bias retyped as STRING
  and given 12 zero bytes of raw data (tract-onnx's `unimplemented!` for raw strings).

    python fuzz/make_regression_models.py tests/data/fuzz
"""
import sys
from pathlib import Path

import onnx

SEEDS = Path(__file__).resolve().parent / "corpus" / "model_from_bytes"


def output_names_no_tensor(model):
    model.graph.output[0].name = "no_such_tensor"


def conv_pads_too_few(model):
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    pads = next(a for a in conv.attribute if a.name == "pads")
    del pads.ints[:]
    pads.ints.extend([1, 1, 1])


def string_tensor_as_raw_bytes(model):
    bias = next(t for t in model.graph.initializer if t.name == "bias")
    bias.data_type = onnx.TensorProto.STRING
    bias.raw_data = bytes(12)


EDITS = {
    "model_output_names_no_tensor.onnx": ("tiny.onnx", output_names_no_tensor),
    "model_conv_pads_too_few.onnx": ("minimal_int8.onnx", conv_pads_too_few),
    "model_string_tensor_as_raw_bytes.onnx": ("minimal_int8.onnx", string_tensor_as_raw_bytes),
}


def main():
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} OUT_DIR   (tests/data/fuzz for the committed files)")
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for name, (seed, edit) in EDITS.items():
        model = onnx.load(str(SEEDS / seed))
        edit(model)
        # Not `onnx.checker`: these files are invalid on purpose.
        onnx.save(model, str(out / name))
        print(f"{name}: {(out / name).stat().st_size} bytes, from {seed}")


if __name__ == "__main__":
    main()

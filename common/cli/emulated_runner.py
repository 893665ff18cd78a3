"""Top-1 predictions of an int8 ONNX file on one runtime: the process common/portability.py starts under QEMU.

    qemu-x86_64 -cpu Haswell python3 common/cli/emulated_runner.py MODEL.onnx ort|openvino IMAGES.npy OUT.npy

Imports only numpy and the runtime (no torch, no project code): every instruction runs emulated, so
the process must stay small. One thread, batches of 16, static shapes for OpenVINO.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

BATCH = 16


def _ort(model: str):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def _openvino(model: str):
    import openvino as ov

    core = ov.Core()
    read = core.read_model(model)
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1}
    compiled: dict[tuple[int, ...], object] = {}

    def run(x: np.ndarray) -> np.ndarray:
        if x.shape not in compiled:
            shaped = read.clone()
            shaped.reshape({shaped.inputs[0].get_any_name(): list(x.shape)})
            compiled[x.shape] = core.compile_model(shaped, "CPU", config)
        return np.array(compiled[x.shape].create_infer_request().infer({0: x})[0])

    return run


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="int8 QDQ ONNX file")
    parser.add_argument("runtime", choices=("ort", "openvino"))
    parser.add_argument("images", help=".npy of normalised NCHW float images")
    parser.add_argument("out", help=".npy to write the top-1 class of each image to")
    args = parser.parse_args(argv)
    run = {"ort": _ort, "openvino": _openvino}[args.runtime](args.model)
    x = np.load(args.images).astype(np.float32)
    top1 = [np.argmax(run(np.ascontiguousarray(x[i:i + BATCH])), axis=1) for i in range(0, len(x), BATCH)]
    np.save(args.out, np.concatenate(top1).astype(np.int64))


if __name__ == "__main__":
    main()

"""Block formats: random Q5_0, Q5_1 and K-quant blocks (random bytes, with fp16 scales set to
moderate values so that no block is inf or NaN), dequantized by the PyPI `gguf` package's numpy
code (an implementation independent of ggml's C and of ours). Writes quant_<TYPE>.bin (the raw
blocks) and quant_<TYPE>.f32 (the floats) for test_parity_quant.

For the K-quants also llama.cpp's own dot products, called in llama-cpp-python's libggml-cpu
(the build scripts/setup.sh makes): random activations quantized by its quantize_row_q8_K
(quant_<TYPE>.q8k) and each block's ggml_vec_dot_<type>_q8_K against them (quant_<TYPE>.dot),
so the test can hold our summation order to llama.cpp's bit for bit."""
import ctypes
import glob
import os

import numpy as np
import gguf
from gguf import quants

# type -> byte offsets of its fp16 scale fields inside a block
SCALE_FIELDS = {
    "Q5_0": [0],
    "Q5_1": [0, 2],
    "Q2_K": [80, 82],
    "Q3_K": [108],
    "Q4_K": [0, 2],
    "Q5_K": [0, 2],
    "Q6_K": [208],
}
BLOCKS = 48


def run(args):
    rng = np.random.default_rng(1234)
    out = args.out
    for name, fields in SCALE_FIELDS.items():
        qtype = getattr(gguf.GGMLQuantizationType, name)
        elems, size = gguf.GGML_QUANT_SIZES[qtype]
        raw = rng.integers(0, 256, size=(BLOCKS, size), dtype=np.uint8)
        for off in fields:
            scales = rng.uniform(-0.05, 0.05, size=BLOCKS).astype(np.float16)
            raw[:, off:off + 2] = scales.view(np.uint8).reshape(BLOCKS, 2)
        values = quants.dequantize(raw.reshape(-1), qtype).astype(np.float32)
        assert values.size == BLOCKS * elems, (name, values.size)
        raw.tofile(os.path.join(out, f"quant_{name}.bin"))
        values.tofile(os.path.join(out, f"quant_{name}.f32"))
        print(f"  {name}: {BLOCKS} blocks of {elems}, |x| <= {np.abs(values).max():.3f}")
        if name.endswith("_K"):
            ggml_dots(raw, size, name, rng, out)


def libggml_cpu():
    import llama_cpp
    found = glob.glob(os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libggml-cpu.so"))
    if not found:
        raise SystemExit("oracle: llama-cpp-python has no lib/libggml-cpu.so (scripts/setup.sh --tests builds it)")
    lib = ctypes.CDLL(found[0])
    lib.ggml_cpu_init()  # fills the fp16 tables the dot products read
    lib.quantize_row_q8_K.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    return lib


def ggml_dots(raw, size, name, rng, out):
    """Each 256-element block against activations, as llama.cpp's CPU backend computes it."""
    lib = libggml_cpu()
    x = rng.standard_normal(256).astype(np.float32)
    q8k = np.zeros(292, dtype=np.uint8)  # block_q8_K: float d, 256 int8, 16 int16 sums
    lib.quantize_row_q8_K(x.ctypes.data, q8k.ctypes.data, 256)
    dot = getattr(lib, f"ggml_vec_dot_{name[:2].lower()}_K_q8_K")
    dot.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t,
                    ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    res = np.zeros(raw.shape[0], dtype=np.float32)
    s = ctypes.c_float()
    blocks = np.ascontiguousarray(raw)
    for b in range(raw.shape[0]):
        dot(256, ctypes.byref(s), 0, blocks[b].ctypes.data, 0, q8k.ctypes.data, 0, 1)
        res[b] = s.value
    q8k.tofile(os.path.join(out, f"quant_{name}.q8k"))
    res.tofile(os.path.join(out, f"quant_{name}.dot"))

"""Block formats: random Q5_0, Q5_1 and K-quant blocks (random bytes, with fp16 scales set to
moderate values so that no block is inf or NaN), dequantized by the PyPI `gguf` package's numpy
code (an implementation independent of ggml's C and of ours). Writes quant_<TYPE>.bin (the raw
blocks) and quant_<TYPE>.f32 (the floats) for test_parity_quant."""
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

#!/usr/bin/python3
"""Fixtures for tests/test_convert.cpp: random-weight checkpoints in the two layouts `microlm convert`
reads, and reference logits from this script's own float64 PyTorch forward pass of the HF/Swen model.
Not a converter and not a tokenizer: the real Swen tokenizer files are only copied next to the weights.

Run with Debian's system Python (python3-torch); `safetensors` is not needed: the file is written by hand.

  out/swen/swen_tiny.pth      torch.save({"model": OrderedDict}) of a tied Swen-shaped model (F32, F16, BF16)
  out/swen/swen_extra.pth     the same weights plus optimizer state, numbers and strings around them
  out/swen/noncontig.pth      a transposed (non-contiguous) tensor: must be refused
  out/swen/offset.pth         views with storage offsets into one shared storage; offset.json has their values
  out/swen/compressed.pth     offset.pth re-zipped with deflate: must be refused
  out/hf/                     config.json, model.safetensors (F32/F16/BF16, untied, vocab padded to 12352),
                              tokenizer.json, tokenizer_config.json
  out/{swen,hf}_logits.f32    (len(tokens), n_vocab) float32 little-endian logits of the reference forward
  out/reference.json          the shapes, tokens and file names above
"""
import argparse
import collections
import json
import math
import os
import shutil
import struct
import zipfile

import torch

TOKENS = [1, 87, 345, 1020, 5000, 12000, 2, 7, 42, 999, 11111, 3, 256, 4095]


class RMSNorm(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.weight = torch.nn.Parameter(1.0 + 0.1 * torch.randn(dim))


class Attention(torch.nn.Module):
    def __init__(self, dim, n_heads, n_kv_heads):
        super().__init__()
        hd = dim // n_heads
        self.q_proj = torch.nn.Linear(dim, n_heads * hd, bias=False)
        self.k_proj = torch.nn.Linear(dim, n_kv_heads * hd, bias=False)
        self.v_proj = torch.nn.Linear(dim, n_kv_heads * hd, bias=False)
        self.o_proj = torch.nn.Linear(n_heads * hd, dim, bias=False)


class Mlp(torch.nn.Module):
    def __init__(self, dim, ffn):
        super().__init__()
        self.gate_proj = torch.nn.Linear(dim, ffn, bias=False)
        self.up_proj = torch.nn.Linear(dim, ffn, bias=False)
        self.down_proj = torch.nn.Linear(ffn, dim, bias=False)


class Block(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self_attn = Attention(c["dim"], c["n_heads"], c["n_kv_heads"])
        self.input_layernorm = RMSNorm(c["dim"])
        self.post_attention_layernorm = RMSNorm(c["dim"])
        self.mlp = Mlp(c["dim"], c["ffn"])


class Inner(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = torch.nn.Embedding(c["vocab"], c["dim"])
        # N(0, 1) entries would make logits of order sqrt(dim) with a tied head: keep them O(1).
        with torch.no_grad():
            self.embed_tokens.weight.normal_(0.0, 2.0 / math.sqrt(c["dim"]))
        self.layers = torch.nn.ModuleList([Block(c) for _ in range(c["layers"])])
        self.norm = RMSNorm(c["dim"])


class CausalLM(torch.nn.Module):
    """Module tree whose state_dict() has the minimind/HF names; the forward pass is `reference_logits`."""

    def __init__(self, c):
        super().__init__()
        self.model = Inner(c)
        self.lm_head = torch.nn.Linear(c["dim"], c["vocab"], bias=False)
        if c["tied"]:
            self.lm_head.weight = self.model.embed_tokens.weight


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def reference_logits(sd, c, tokens):
    """HF Llama forward in float64: rotate_half RoPE, GQA by repeating K/V heads, SwiGLU, RMSNorm."""
    w = {k: v.to(torch.float64) for k, v in sd.items()}
    dim, nh, nkv = c["dim"], c["n_heads"], c["n_kv_heads"]
    hd, eps, T = dim // nh, c["eps"], len(tokens)
    x = w["model.embed_tokens.weight"][torch.tensor(tokens)]  # (T, dim)
    inv = 1.0 / (c["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]  # (T, hd/2)
    cos, sin = torch.cat([ang.cos(), ang.cos()], -1)[:, None, :], torch.cat([ang.sin(), ang.sin()], -1)[:, None, :]
    mask = torch.triu(torch.full((T, T), float("-inf"), dtype=torch.float64), diagonal=1)
    for l in range(c["layers"]):
        p = f"model.layers.{l}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = (h @ w[p + "self_attn.q_proj.weight"].T).view(T, nh, hd)
        k = (h @ w[p + "self_attn.k_proj.weight"].T).view(T, nkv, hd)
        v = (h @ w[p + "self_attn.v_proj.weight"].T).view(T, nkv, hd)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = k.repeat_interleave(nh // nkv, dim=1), v.repeat_interleave(nh // nkv, dim=1)  # (T, nh, hd)
        att = torch.einsum("thd,shd->hts", q, k) / math.sqrt(hd) + mask  # (nh, T, T)
        o = torch.einsum("hts,shd->thd", att.softmax(-1), v).reshape(T, nh * hd)
        x = x + o @ w[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        g = h @ w[p + "mlp.gate_proj.weight"].T
        x = x + (torch.nn.functional.silu(g) * (h @ w[p + "mlp.up_proj.weight"].T)) @ w[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w["lm_head.weight"] if "lm_head.weight" in w else w["model.embed_tokens.weight"]
    return (x @ head.T).to(torch.float32)


def write_logits(path, logits):
    with open(path, "wb") as f:
        f.write(logits.contiguous().numpy().astype("<f4").tobytes())


def as_stored(t, dtype):
    """What the file will hold, read back as float32: the reference must use the rounded values."""
    return t.to(dtype).to(torch.float32)


def swen_fixture(out, c):
    torch.manual_seed(1)
    m = CausalLM(c)
    sd = m.state_dict()
    assert sd["lm_head.weight"].data_ptr() == sd["model.embed_tokens.weight"].data_ptr()
    # Half and bfloat16 storages next to float32 ones; the tied pair stays one float32 storage.
    sd["model.layers.0.self_attn.q_proj.weight"] = sd["model.layers.0.self_attn.q_proj.weight"].to(torch.float16)
    sd["model.layers.1.mlp.up_proj.weight"] = sd["model.layers.1.mlp.up_proj.weight"].to(torch.bfloat16)
    sd["model.layers.1.input_layernorm.weight"] = sd["model.layers.1.input_layernorm.weight"].to(torch.bfloat16)
    assert isinstance(sd, collections.OrderedDict)
    torch.save({"model": sd}, os.path.join(out, "swen_tiny.pth"))

    # The same state dict among what training scripts also save: optimizer state, numbers, text.
    with torch.enable_grad():
        params = [torch.nn.Parameter(v.float().clone()) for k, v in sd.items() if k.endswith("layernorm.weight")]
        opt = torch.optim.AdamW(params, lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1)
        sum(p.sum() for p in params).backward()
        opt.step()
    torch.save({"model": sd, "optimizer": opt.state_dict(), "step": 1234, "lr": 2.5e-4, "best": None,
                "args": {"tag": "fixture", "big": 2**40, "neg": -5, "flags": [True, False], "pair": (1, 2.5)}},
               os.path.join(out, "swen_extra.pth"))

    return {k: v.to(torch.float32) for k, v in sd.items()}


def small_fixtures(out):
    big = torch.arange(24, dtype=torch.float32) * 0.5
    views = collections.OrderedDict([("b", big[6:18].view(3, 4)), ("a", big[:5]), ("c", big[20:])])
    torch.save(views, os.path.join(out, "offset.pth"))  # a bare state dict, no {"model": ...}
    with open(os.path.join(out, "offset.json"), "w") as f:
        json.dump({k: {"shape": list(v.shape), "data": v.reshape(-1).tolist()} for k, v in views.items()}, f)
    torch.save({"model": {"w": torch.randn(4, 6).t()}}, os.path.join(out, "noncontig.pth"))
    # The same archive with deflated entries, which the reader must refuse by name.
    with zipfile.ZipFile(os.path.join(out, "offset.pth")) as src, \
            zipfile.ZipFile(os.path.join(out, "compressed.pth"), "w", zipfile.ZIP_DEFLATED) as dst:
        for name in src.namelist():
            dst.writestr(name, src.read(name))


def write_safetensors(path, tensors):
    """tensors: name -> (dtype name, torch tensor already in that dtype)."""
    header, blobs, offset = {}, [], 0
    for name, (dtype, t) in tensors.items():
        raw = (t.view(torch.int16) if dtype == "BF16" else t).contiguous().numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def hf_fixture(out, c, tokenizer_dir):
    torch.manual_seed(2)
    sd = CausalLM(c).state_dict()
    kinds = {"model.layers.0.mlp.down_proj.weight": ("F16", torch.float16),
             "model.layers.1.self_attn.k_proj.weight": ("BF16", torch.bfloat16),
             "model.layers.2.post_attention_layernorm.weight": ("BF16", torch.bfloat16),
             "lm_head.weight": ("F16", torch.float16)}
    tensors = collections.OrderedDict()
    for name, t in sd.items():
        dtype, torch_dtype = kinds.get(name, ("F32", torch.float32))
        tensors[name] = (dtype, t.to(torch_dtype))
    write_safetensors(os.path.join(out, "model.safetensors"), tensors)
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
        "hidden_size": c["dim"], "intermediate_size": c["ffn"], "num_hidden_layers": c["layers"],
        "num_attention_heads": c["n_heads"], "num_key_value_heads": c["n_kv_heads"], "vocab_size": c["vocab"],
        "max_position_embeddings": c["n_ctx"], "rope_theta": c["rope_theta"], "rms_norm_eps": c["eps"],
        "tie_word_embeddings": c["tied"], "rope_scaling": None, "attention_bias": False,
        "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32",
    }
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(os.path.join(tokenizer_dir, name), os.path.join(out, name))
    return {k: as_stored(t, kinds.get(k, (None, torch.float32))[1]) for k, t in sd.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", required=True, help="the Swen tokenizer folder (tokenizer.json, tokenizer_config.json)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    swen_dir, hf_dir = os.path.join(a.out, "swen"), os.path.join(a.out, "hf")
    os.makedirs(swen_dir, exist_ok=True)
    os.makedirs(hf_dir, exist_ok=True)

    swen = dict(vocab=12288, dim=128, layers=2, n_heads=8, n_kv_heads=2, ffn=352, n_ctx=32768,
                rope_theta=1e6, eps=1e-5, tied=True)
    hf = dict(vocab=12352, dim=96, layers=3, n_heads=6, n_kv_heads=2, ffn=256, n_ctx=1024,
              rope_theta=10000.0, eps=1e-6, tied=False)
    with torch.no_grad():
        swen_sd = swen_fixture(swen_dir, swen)
        hf_sd = hf_fixture(hf_dir, hf, a.tokenizer)
        small_fixtures(swen_dir)
        write_logits(os.path.join(a.out, "swen_logits.f32"), reference_logits(swen_sd, swen, TOKENS))
        write_logits(os.path.join(a.out, "hf_logits.f32"), reference_logits(hf_sd, hf, TOKENS))
    with open(os.path.join(a.out, "reference.json"), "w") as f:
        json.dump({"tokens": TOKENS, "torch": torch.__version__,
                   "swen": {**swen, "checkpoint": "swen/swen_tiny.pth", "logits": "swen_logits.f32"},
                   "hf": {**hf, "dir": "hf", "logits": "hf_logits.f32"}}, f, indent=2)
    print(f"wrote convert fixtures to {a.out} (torch {torch.__version__})")


if __name__ == "__main__":
    main()

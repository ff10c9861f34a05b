#!/usr/bin/python3
"""PyTorch eager peer of Troupe's training benchmark.

Trains a Hugging Face layout LLaMA checkpoint for a few optimizer steps on
deterministic synthetic batches with plain eager PyTorch (written for the
Debian python3-torch 1.13 package: no scaled_dot_product_attention, no
safetensors package, no peft, no bitsandbytes) and prints one JSON line with
the measured throughput, peak RSS and losses.

Usage:
  /usr/bin/python3 bench/pytorch_peer.py --model DIR --mode MODE [--seq 256]
      [--batch 4] [--steps 8] [--warmup 2] [--threads N] [--seed 0]
      [--lora-r 16] [--lora-alpha 32]
  /usr/bin/python3 bench/pytorch_peer.py --check-quant [--seed 0]

MODE is one of full-fp32, lora-fp32, lora-bf16, lora-fp16, lora-int8,
lora-int4 (see bench/README.md). The only text on stdout is the JSON line;
progress goes to stderr. A user error (missing folder, unknown mode,
unsupported model) is one line on stderr and exit status 2.

The model code follows the eager path of transformers' LlamaForCausalLM (the
numerics reference of the project is tests/src/test/python/hf_llama_reference.py):
RMSNorm in float32, rotate_half rotary embeddings, grouped-query attention by
repeating k/v heads, softmax(q k^T / sqrt(d) + additive causal mask) in float32,
MLP down(silu(gate(x)) * up(x)), final norm, lm_head (or tied embeddings).
LoRA follows PEFT: y = W x + scaling * B (A x), A kaiming_uniform_(a=sqrt(5)),
B zeros, scaling = alpha / r, dropout 0.
"""

import argparse
import json
import math
import os
import re
import resource
import statistics
import struct
import sys
import time

MODES = ("full-fp32", "lora-fp32", "lora-bf16", "lora-fp16", "lora-int8", "lora-int4")


class PeerError(Exception):
    """A user-facing error: reported as one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        sys.stderr.write("pytorch_peer: error: %s\n" % message)
        sys.exit(2)


def build_parser():
    ap = _Parser(description="PyTorch eager peer of Troupe's training benchmark")
    ap.add_argument("--model", help="Hugging Face layout LLaMA folder")
    ap.add_argument("--mode", help="one of " + ", ".join(MODES))
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch.set_num_threads (default: os.cpu_count())")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--lora-alpha", type=float, default=32.0)
    ap.add_argument("--check-quant", action="store_true",
                    help="only print the int8 / NF4 round-trip errors of a random 256x256 matrix")
    return ap


def _early_environment(argv):
    """Run before torch is imported: the BLAS and OpenMP runtimes read these at load time.

    Debian's torch links OpenBLAS (pthreads build), whose thread count
    torch.set_num_threads does not change, so it follows --threads through
    OPENBLAS_NUM_THREADS. Where OMP_WAIT_POLICY is unset, the OpenMP threads spin 30000 times
    before they sleep (ACTIVE, GOMP_SPINCOUNT=30000), as bin/troupe sets it for Troupe."""
    args, _ = build_parser().parse_known_args(argv)
    n = args.threads if args.threads and args.threads > 0 else (os.cpu_count() or 1)
    os.environ["OPENBLAS_NUM_THREADS"] = str(n)
    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    if not os.environ.get("OMP_WAIT_POLICY"):
        os.environ["OMP_WAIT_POLICY"] = "ACTIVE"
        os.environ.setdefault("GOMP_SPINCOUNT", "30000")


if __name__ == "__main__":
    _early_environment(sys.argv[1:])

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def allocator():
    """The native allocator, as Troupe's bench-run reports it: a preloaded tcmalloc, jemalloc or
    mimalloc among the mapped libraries (the bench starts this script with Troupe's LD_PRELOAD),
    else "glibc"; "unknown" where /proc/self/maps is unreadable."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                name = line.rstrip("\n").rsplit("/", 1)[-1]
                if "/" in line and name.startswith(("libtcmalloc", "libjemalloc", "libmimalloc")):
                    return name
        return "glibc"
    except OSError:
        return "unknown"


def openblas_thread_timeout():
    """The exponent of the cycles OpenBLAS's idle workers spin before they sleep, as OpenBLAS
    reads it from its environment at load (OPENBLAS_THREAD_TIMEOUT, else GOTO_THREAD_TIMEOUT;
    atoi, negative as 0); 0 where none is set (OpenBLAS's default, 28). Troupe's bench-run reports
    the same field."""
    for name in ("OPENBLAS_THREAD_TIMEOUT", "GOTO_THREAD_TIMEOUT"):
        value = os.environ.get(name)
        if value is not None:
            m = re.match(r"\s*([+-]?\d+)", value)
            return max(0, int(m.group(1))) if m else 0
    return 0


def blas():
    """The file that holds the sgemm_ this process resolves first (torch's BLAS), as Troupe's
    bench-run reports it; where sgemm_ is not in the global scope (torch loads its BLAS locally),
    the BLAS libraries mapped (libblas*, libopenblas*, libmkl*), comma-separated; "unknown" where
    none is found."""
    try:
        with open("/proc/self/maps") as f:
            maps = [line.split(None, 5) for line in f]
    except OSError:
        return "unknown"
    maps = [m for m in maps if len(m) == 6]
    try:
        import ctypes
        address = ctypes.cast(ctypes.CDLL(None).sgemm_, ctypes.c_void_p).value
        for m in maps:
            lo, hi = (int(x, 16) for x in m[0].split("-"))
            if lo <= address < hi:
                return m[5].strip()
    except (OSError, AttributeError, ValueError):
        pass
    names = []
    for m in maps:
        path = m[5].strip()
        if path.rsplit("/", 1)[-1].startswith(("libblas", "libopenblas", "libmkl")) \
                and path not in names:
            names.append(path)
    return ", ".join(names) or "unknown"


def log(msg):
    sys.stderr.write("pytorch_peer: %s\n" % msg)
    sys.stderr.flush()


# --------------------------------------------------------------------------
# safetensors reading (after tests/src/test/python/hf_llama_reference.py)
# --------------------------------------------------------------------------

_ELEM_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}


def read_safetensors_header(path):
    """Returns (header dict without __metadata__, absolute data start)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                raise PeerError("%s: not a safetensors file (too short)" % path)
            (n,) = struct.unpack("<Q", raw)
            size = os.fstat(f.fileno()).st_size
            if n > size - 8:
                raise PeerError("%s: bad safetensors header length %d" % (path, n))
            hdr_bytes = f.read(n)
    except OSError as e:
        raise PeerError("cannot read %s: %s" % (path, e.strerror or e))
    try:
        header = json.loads(hdr_bytes.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise PeerError("%s: bad safetensors header JSON: %s" % (path, e))
    if not isinstance(header, dict):
        raise PeerError("%s: safetensors header is not a JSON object" % path)
    header.pop("__metadata__", None)
    data_start = 8 + n
    data_len = size - data_start
    for name, info in header.items():
        try:
            dtype, shape, (s, e) = info["dtype"], info["shape"], info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise PeerError("%s: malformed header entry for %s" % (path, name))
        numel = 1
        for d in shape:
            numel *= int(d)
        if dtype not in _ELEM_SIZE:
            continue  # only an error if the tensor is actually needed
        if e - s != numel * _ELEM_SIZE[dtype]:
            raise PeerError("%s: tensor %s: byte size %d does not match %s %s"
                            % (path, name, e - s, dtype, shape))
        if not (0 <= s <= e <= data_len):
            raise PeerError("%s: tensor %s: data offsets out of range" % (path, name))
    return header, data_start


def _decode(raw, dtype, shape, what):
    """bytearray (little-endian) -> float32 tensor of the given shape."""
    shape = [int(d) for d in shape]
    numel = 1
    for d in shape:
        numel *= d
    if numel == 0:
        return torch.zeros(shape, dtype=torch.float32)
    if dtype == "F32":
        t = torch.frombuffer(raw, dtype=torch.float32)
    elif dtype == "F64":
        t = torch.frombuffer(raw, dtype=torch.float64).float()
    elif dtype == "F16":
        t = torch.frombuffer(raw, dtype=torch.float16).float()
    elif dtype == "BF16":
        # bfloat16 is the high half of a float32: place each 16-bit pattern in
        # the high int16 of an int32 (little-endian host), reinterpret.
        bits = torch.frombuffer(raw, dtype=torch.int16)
        wide = torch.zeros(numel, 2, dtype=torch.int16)
        wide[:, 1] = bits
        t = wide.view(-1).view(torch.float32)
    else:
        raise PeerError("%s: unsupported safetensors dtype %s (need F32, F16 or BF16)"
                        % (what, dtype))
    return t.reshape(shape)


def iter_safetensors(path, names):
    """Yields (name, float32 tensor) for the given names, one tensor at a time."""
    header, data_start = read_safetensors_header(path)
    try:
        with open(path, "rb") as f:
            for name in names:
                if name not in header:
                    raise PeerError("%s: tensor %s not found" % (path, name))
                info = header[name]
                s, e = info["data_offsets"]
                f.seek(data_start + s)
                buf = bytearray(e - s)  # owned by the tensor made from it
                if f.readinto(buf) != e - s:
                    raise PeerError("%s: truncated data for %s" % (path, name))
                yield name, _decode(buf, info["dtype"], info["shape"], "%s: %s" % (path, name))
    except OSError as e:
        raise PeerError("cannot read %s: %s" % (path, e.strerror or e))


# --------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------

def _load_json(path):
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise PeerError("cannot read %s: %s" % (path, e.strerror or e))
    except ValueError as e:
        raise PeerError("%s: bad JSON: %s" % (path, e))


def parse_config(raw):
    """config.json dict -> the fields the model uses (LLaMA only)."""
    if not isinstance(raw, dict):
        raise PeerError("config.json is not a JSON object")
    mt = raw.get("model_type")
    archs = raw.get("architectures") or []
    if mt is None and "LlamaForCausalLM" in archs:
        mt = "llama"
    if mt != "llama":
        raise PeerError("unsupported model_type %r (architectures %r); only llama" % (mt, archs))
    for a in archs:
        if a != "LlamaForCausalLM":
            raise PeerError("unsupported architecture %r (only LlamaForCausalLM)" % a)

    def req(key):
        if key not in raw or raw[key] is None:
            raise PeerError("config.json lacks %s" % key)
        return raw[key]

    hidden = int(req("hidden_size"))
    heads = int(req("num_attention_heads"))
    kv = raw.get("num_key_value_heads")
    kv = heads if kv is None else int(kv)
    hd = raw.get("head_dim")
    hd = hidden // heads if hd is None else int(hd)
    if heads <= 0 or kv <= 0 or heads % kv != 0:
        raise PeerError("num_attention_heads %d is not a multiple of num_key_value_heads %d"
                        % (heads, kv))
    if hd <= 0 or hd % 2 != 0:
        raise PeerError("head_dim %d must be even and positive" % hd)
    act = raw.get("hidden_act", "silu")
    if act not in ("silu", "swish"):
        raise PeerError("unsupported hidden_act %r (only silu)" % act)
    if raw.get("rope_scaling") is not None:
        raise PeerError("unsupported rope_scaling %r" % (raw.get("rope_scaling"),))
    ab = bool(raw.get("attention_bias", False))
    cfg = {
        "hidden_size": hidden,
        "intermediate_size": int(req("intermediate_size")),
        "num_hidden_layers": int(req("num_hidden_layers")),
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "head_dim": hd,
        "rms_norm_eps": float(raw.get("rms_norm_eps", 1e-6)),
        "rope_theta": float(raw.get("rope_theta", 10000.0)),
        "tie_word_embeddings": bool(raw.get("tie_word_embeddings", False)),
        "vocab_size": int(req("vocab_size")),
        "max_position_embeddings": raw.get("max_position_embeddings"),
        "qkv_bias": ab,
        "o_bias": ab,
        "mlp_bias": bool(raw.get("mlp_bias", False)),
    }
    if cfg["vocab_size"] <= 3:
        raise PeerError("vocab_size %d too small (synthetic tokens are drawn from [3, vocab))"
                        % cfg["vocab_size"])
    return cfg


def expected_weights(cfg):
    """name -> expected shape (lm_head only when untied)."""
    H, I, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd, nh, nkv = cfg["head_dim"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    exp = {"model.embed_tokens.weight": (V, H), "model.norm.weight": (H,)}
    if not cfg["tie_word_embeddings"]:
        exp["lm_head.weight"] = (V, H)
    for i in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % i
        exp[p + "input_layernorm.weight"] = (H,)
        exp[p + "post_attention_layernorm.weight"] = (H,)
        exp[p + "self_attn.q_proj.weight"] = (nh * hd, H)
        exp[p + "self_attn.k_proj.weight"] = (nkv * hd, H)
        exp[p + "self_attn.v_proj.weight"] = (nkv * hd, H)
        exp[p + "self_attn.o_proj.weight"] = (H, nh * hd)
        if cfg["qkv_bias"]:
            exp[p + "self_attn.q_proj.bias"] = (nh * hd,)
            exp[p + "self_attn.k_proj.bias"] = (nkv * hd,)
            exp[p + "self_attn.v_proj.bias"] = (nkv * hd,)
        if cfg["o_bias"]:
            exp[p + "self_attn.o_proj.bias"] = (H,)
        exp[p + "mlp.gate_proj.weight"] = (I, H)
        exp[p + "mlp.up_proj.weight"] = (I, H)
        exp[p + "mlp.down_proj.weight"] = (H, I)
        if cfg["mlp_bias"]:
            exp[p + "mlp.gate_proj.bias"] = (I,)
            exp[p + "mlp.up_proj.bias"] = (I,)
            exp[p + "mlp.down_proj.bias"] = (H,)
    return exp


def load_checkpoint(model_dir, convert):
    """Returns (cfg, weights): weights[name] = convert(name, float32 tensor),
    converted one tensor at a time so that at most one float32 copy is alive."""
    if not os.path.isdir(model_dir):
        raise PeerError("model folder %s does not exist" % model_dir)
    cfg = parse_config(_load_json(os.path.join(model_dir, "config.json")))
    exp = expected_weights(cfg)
    single = os.path.join(model_dir, "model.safetensors")
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.isfile(single):
        header, _ = read_safetensors_header(single)
        where = {n: single for n in header}
    elif os.path.isfile(index):
        wm = _load_json(index).get("weight_map")
        if not isinstance(wm, dict):
            raise PeerError("%s has no weight_map" % index)
        where = {n: os.path.join(model_dir, f) for n, f in wm.items()}
    else:
        raise PeerError("%s has neither model.safetensors nor model.safetensors.index.json"
                        % model_dir)
    missing = [n for n in exp if n not in where]
    if missing:
        raise PeerError("weights missing from checkpoint: %s%s"
                        % (", ".join(missing[:5]), " ..." if len(missing) > 5 else ""))
    by_file = {}
    for n in exp:
        by_file.setdefault(where[n], []).append(n)
    weights = {}
    for path, names in by_file.items():
        if not os.path.isfile(path):
            raise PeerError("shard %s does not exist" % path)
        for name, t in iter_safetensors(path, names):
            if tuple(t.shape) != tuple(exp[name]):
                raise PeerError("weight %s has shape %s, expected %s"
                                % (name, list(t.shape), list(exp[name])))
            weights[name] = convert(name, t)
            del t
    return cfg, weights


# --------------------------------------------------------------------------
# float16 on CPU: torch 1.13 has no CPU Half kernels for matmul (addmm) or
# silu. Where they are missing, those ops run on float32 copies of the
# float16 operands and round the result back to float16 (what an fp16 GEMM
# with fp32 accumulation computes); storage, elementwise ops and the saved
# activations of everything else stay float16.
# --------------------------------------------------------------------------

def _probe(fn):
    try:
        fn()
        return True
    except RuntimeError:
        return False


_HALF_MM = None
_HALF_SILU = None


def _half_support():
    global _HALF_MM, _HALF_SILU
    if _HALF_MM is None:
        a = torch.ones(2, 2, dtype=torch.float16)
        _HALF_MM = _probe(lambda: torch.mm(a, a))
        _HALF_SILU = _probe(lambda: F.silu(a))
    return _HALF_MM, _HALF_SILU


def linear(x, w, b=None):
    if x.dtype == torch.float16 and not _half_support()[0]:
        return F.linear(x.float(), w.float(), None if b is None else b.float()).to(torch.float16)
    return F.linear(x, w, b)


def matmul(a, b):
    if a.dtype == torch.float16 and not _half_support()[0]:
        return torch.matmul(a.float(), b.float()).to(torch.float16)
    return torch.matmul(a, b)


def silu(x):
    if x.dtype == torch.float16 and not _half_support()[1]:
        return F.silu(x.float()).to(torch.float16)
    return F.silu(x)


# --------------------------------------------------------------------------
# weight quantization: int8 per output row absmax, NF4 (QLoRA) per 64-block
# --------------------------------------------------------------------------

NF4_CODE = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
            -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
            0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
            0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0]
NF4_BLOCK = 64
_NF4_TABLE = torch.tensor(NF4_CODE, dtype=torch.float32)
_NF4_MIDS = (_NF4_TABLE[:-1] + _NF4_TABLE[1:]) / 2


def quantize_int8(w):
    """w [out, in] float -> (int8 [out, in], float32 scale [out]), scale = absmax / 127
    rounded up to a bf16 value (as Troupe's), so that bf16 products can scale after."""
    w = w.float()
    scale = w.abs().amax(dim=1) / 127.0
    scale = ((scale.view(torch.int32) + 0xFFFF) & -65536).view(torch.float32)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round(w / safe[:, None]).clamp_(-127, 127).to(torch.int8)
    return q, scale


def dequantize_int8(q, scale, in_features, dtype):
    return (q.to(torch.float32) * scale[:, None]).to(dtype)


def quantize_nf4(w, block=NF4_BLOCK):
    """w [out, in] float -> (uint8 [out, ceil(in/block)*block/2] two codes per byte,
    low nibble = even column; float32 absmax [out, ceil(in/block)]).
    Rows whose length is not a multiple of block are padded with zeros."""
    w = w.float()
    out, n = w.shape
    pad = (-n) % block
    if pad:
        w = F.pad(w, (0, pad))
    g = w.reshape(out, -1, block)
    absmax = g.abs().amax(dim=-1)
    safe = torch.where(absmax > 0, absmax, torch.ones_like(absmax))
    codes = torch.bucketize(g / safe[..., None], _NF4_MIDS)  # nearest code, int64 0..15
    codes = codes.reshape(out, -1).to(torch.uint8)
    packed = codes[:, 0::2] | (codes[:, 1::2] << 4)
    return packed.contiguous(), absmax


def dequantize_nf4(packed, absmax, in_features, dtype):
    out = packed.shape[0]
    codes = torch.stack((packed & 0x0F, packed >> 4), dim=-1).reshape(out, -1).long()
    w = _NF4_TABLE[codes].view(out, -1, NF4_BLOCK) * absmax[..., None]
    return w.reshape(out, -1)[:, :in_features].to(dtype)


_DEQUANT = {"int8": dequantize_int8, "nf4": dequantize_nf4}
_QUANT = {"int8": quantize_int8, "nf4": quantize_nf4}


def _scales_after(fmt, dtype):
    """int8 in bf16 multiplies by the cast codes and scales the output channels,
    as gpt-fast's and torchao's weight-only int8 linears do (and Troupe)."""
    return fmt == "int8" and dtype == torch.bfloat16


class QuantLinearFn(torch.autograd.Function):
    """y = x W^T with W dequantized from (qweight, absmax) into x's dtype
    (or, see _scales_after, y = (x q^T) * s).

    Saves only the quantized weight and its scales; backward dequantizes again
    to compute grad_input. The weight gets no gradient (it is frozen)."""

    @staticmethod
    def forward(ctx, x, qweight, absmax, fmt, in_features):
        ctx.save_for_backward(qweight, absmax)
        ctx.fmt = fmt
        ctx.in_features = in_features
        if _scales_after(fmt, x.dtype):
            return linear(x, qweight.to(x.dtype)).mul_(absmax.to(x.dtype))
        w = _DEQUANT[fmt](qweight, absmax, in_features, x.dtype)
        return linear(x, w)

    @staticmethod
    def backward(ctx, grad_out):
        grad_in = None
        if ctx.needs_input_grad[0]:
            qweight, absmax = ctx.saved_tensors
            if _scales_after(ctx.fmt, grad_out.dtype):
                s = absmax.to(grad_out.dtype)
                return matmul(grad_out * s, qweight.to(grad_out.dtype)), None, None, None, None
            w = _DEQUANT[ctx.fmt](qweight, absmax, ctx.in_features, grad_out.dtype)
            grad_in = matmul(grad_out, w)
        return grad_in, None, None, None, None


def check_quant(seed):
    """Relative Frobenius error of the quantize -> dequantize round trip."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(256, 256, generator=g)
    res = {"check": "quant-roundtrip", "shape": [256, 256], "seed": seed}
    for fmt in ("int8", "nf4"):
        q, s = _QUANT[fmt](w)
        back = _DEQUANT[fmt](q, s, w.shape[1], torch.float32)
        res[fmt + "_rel_fro_err"] = float(torch.linalg.norm(back - w) / torch.linalg.norm(w))
        # as stored for the bench (dequantized into bf16)
        back16 = _DEQUANT[fmt](q, s, w.shape[1], torch.bfloat16).float()
        res[fmt + "_bf16_rel_fro_err"] = float(torch.linalg.norm(back16 - w) / torch.linalg.norm(w))
    return res


# --------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------

class DenseLinear(nn.Module):
    def __init__(self, weight, bias, trainable):
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=trainable)
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=trainable)

    def forward(self, x):
        return linear(x, self.weight, self.bias)


class QuantLinear(nn.Module):
    def __init__(self, packed, bias):
        super().__init__()
        fmt, q, absmax, in_features = packed
        self.fmt = fmt
        self.in_features = in_features
        self.register_buffer("qweight", q)
        self.register_buffer("absmax", absmax)
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)

    def forward(self, x):
        y = QuantLinearFn.apply(x, self.qweight, self.absmax, self.fmt, self.in_features)
        return y if self.bias is None else y + self.bias


class LoraLinear(nn.Module):
    """PEFT LoRA around a frozen base: base(x) + scaling * B(A(x)).
    FP32 master A/B, cast to the activation dtype in every forward."""

    def __init__(self, base, in_features, out_features, r, alpha):
        super().__init__()
        self.base = base
        self.lora_A = nn.Parameter(torch.empty(r, in_features, dtype=torch.float32))
        self.lora_B = nn.Parameter(torch.zeros(out_features, r, dtype=torch.float32))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.scaling = alpha / r

    def forward(self, x):
        y = self.base(x)
        a = self.lora_A.to(x.dtype)
        b = self.lora_B.to(x.dtype)
        return y + linear(linear(x, a), b) * self.scaling


class RMSNorm(nn.Module):
    def __init__(self, weight, eps, trainable):
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=trainable)
        self.eps = eps

    def forward(self, x):
        dt = x.dtype
        h = x.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(dt)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg, q, k, v, o):
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = q, k, v, o
        self.nh = cfg["num_attention_heads"]
        self.nkv = cfg["num_key_value_heads"]
        self.hd = cfg["head_dim"]

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.nh, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.nkv, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.nkv, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        n_rep = self.nh // self.nkv
        if n_rep > 1:
            k = k.repeat_interleave(n_rep, dim=1)
            v = v.repeat_interleave(n_rep, dim=1)
        scores = matmul(q, k.transpose(2, 3)) / math.sqrt(self.hd) + mask
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        o = matmul(probs, v).transpose(1, 2).contiguous().reshape(B, T, self.nh * self.hd)
        return self.o_proj(o)


class MLP(nn.Module):
    def __init__(self, gate, up, down):
        super().__init__()
        self.gate_proj, self.up_proj, self.down_proj = gate, up, down

    def forward(self, x):
        return self.down_proj(silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, attn, mlp, ln1, ln2):
        super().__init__()
        self.self_attn, self.mlp = attn, mlp
        self.input_layernorm, self.post_attention_layernorm = ln1, ln2

    def forward(self, h, cos, sin, mask):
        h = h + self.self_attn(self.input_layernorm(h), cos, sin, mask)
        return h + self.mlp(self.post_attention_layernorm(h))


class LlamaForCausalLM(nn.Module):
    def __init__(self, cfg, embed, layers, norm, lm_head, act):
        super().__init__()
        self.cfg = cfg
        self.act = act
        self.embed_tokens = embed          # Parameter [V, H]
        self.layers = nn.ModuleList(layers)
        self.norm = norm
        self.lm_head = lm_head             # Parameter [V, H], or None when tied

    def rope_and_mask(self, T):
        hd, theta, act = self.cfg["head_dim"], self.cfg["rope_theta"], self.act
        inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
        freqs = torch.arange(T, dtype=torch.float32)[:, None] * inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos().to(act)[None, None], emb.sin().to(act)[None, None]
        mask = torch.full((T, T), torch.finfo(act).min, dtype=act).triu_(1)[None, None]
        return cos, sin, mask

    def forward(self, ids):
        T = ids.shape[1]
        cos, sin, mask = self.rope_and_mask(T)
        h = F.embedding(ids, self.embed_tokens)
        for layer in self.layers:
            h = layer(h, cos, sin, mask)
        h = self.norm(h)
        head = self.embed_tokens if self.lm_head is None else self.lm_head
        return linear(h, head)


_DECODER_LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                    "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


def mode_settings(mode):
    """-> (activation dtype, full fine-tune?, quant format or None)."""
    return {
        "full-fp32": (torch.float32, True, None),
        "lora-fp32": (torch.float32, False, None),
        "lora-bf16": (torch.bfloat16, False, None),
        "lora-fp16": (torch.float16, False, None),
        "lora-int8": (torch.bfloat16, False, "int8"),
        "lora-int4": (torch.bfloat16, False, "nf4"),
    }[mode]


def build_model(model_dir, mode, r, alpha, seed):
    act, full, qfmt = mode_settings(mode)

    def is_quantized(name):
        return (qfmt is not None and name.startswith("model.layers.")
                and name.endswith(".weight") and any(("." + m + ".") in name for m in _DECODER_LINEARS))

    def convert(name, t):
        if is_quantized(name):
            q, s = _QUANT[qfmt](t)
            return (qfmt, q, s, t.shape[1])
        return t.to(act)

    cfg, w = load_checkpoint(model_dir, convert)
    torch.manual_seed(seed)  # LoRA A init

    def lin(prefix, has_bias, lora):
        weight = w.pop(prefix + ".weight")
        bias = w.pop(prefix + ".bias") if has_bias else None
        if isinstance(weight, tuple):
            base = QuantLinear(weight, bias)
            out_f, in_f = weight[1].shape[0], weight[3]
        else:
            base = DenseLinear(weight, bias, full)
            out_f, in_f = weight.shape
        return LoraLinear(base, in_f, out_f, r, alpha) if lora else base

    eps = cfg["rms_norm_eps"]
    layers = []
    for i in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % i
        attn = Attention(cfg,
                         lin(p + "self_attn.q_proj", cfg["qkv_bias"], not full),
                         lin(p + "self_attn.k_proj", cfg["qkv_bias"], False),
                         lin(p + "self_attn.v_proj", cfg["qkv_bias"], not full),
                         lin(p + "self_attn.o_proj", cfg["o_bias"], False))
        mlp = MLP(lin(p + "mlp.gate_proj", cfg["mlp_bias"], False),
                  lin(p + "mlp.up_proj", cfg["mlp_bias"], False),
                  lin(p + "mlp.down_proj", cfg["mlp_bias"], False))
        layers.append(DecoderLayer(attn, mlp,
                                   RMSNorm(w.pop(p + "input_layernorm.weight"), eps, full),
                                   RMSNorm(w.pop(p + "post_attention_layernorm.weight"), eps, full)))
    embed = nn.Parameter(w.pop("model.embed_tokens.weight"), requires_grad=full)
    head = None
    if not cfg["tie_word_embeddings"]:
        head = nn.Parameter(w.pop("lm_head.weight"), requires_grad=full)
    norm = RMSNorm(w.pop("model.norm.weight"), eps, full)
    return cfg, LlamaForCausalLM(cfg, embed, layers, norm, head, act)


# --------------------------------------------------------------------------
# data, loss scaling, training
# --------------------------------------------------------------------------

PHRASE = 16


def make_batch(seed, batch, seq, vocab):
    """[batch, seq + 1] int64: per row a random phrase of 16 ids in [3, vocab), repeated."""
    g = torch.Generator().manual_seed(seed)
    phrase = torch.randint(3, vocab, (batch, PHRASE), generator=g, dtype=torch.int64)
    reps = -(-(seq + 1) // PHRASE)
    return phrase.repeat(1, reps)[:, :seq + 1].contiguous()


def lm_loss(model, ids):
    """Mean next-token cross entropy. Forwarding ids[:, :-1] and scoring against
    ids[:, 1:] equals HF's logits[:, :-1] vs labels[:, 1:] on the full row
    (causal: the last position's logits are never used)."""
    logits = model(ids[:, :-1]).float()
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


class LossScaler:
    """torch.cuda.amp.GradScaler's dynamic loss scaling, by hand (for CPU)."""

    def __init__(self, init_scale=65536.0, growth_factor=2.0, backoff_factor=0.5,
                 growth_interval=2000):
        self.scale = init_scale
        self.growth_factor = growth_factor
        self.backoff_factor = backoff_factor
        self.growth_interval = growth_interval
        self.growth_tracker = 0
        self.skipped = 0

    def unscale_(self, params):
        """Divides the gradients by the scale; returns True when all are finite."""
        inv = 1.0 / self.scale
        finite = True
        for p in params:
            if p.grad is not None:
                p.grad.mul_(inv)
                if finite and not bool(torch.isfinite(p.grad).all()):
                    finite = False
        return finite

    def update(self, finite):
        if finite:
            self.growth_tracker += 1
            if self.growth_tracker == self.growth_interval:
                self.scale *= self.growth_factor
                self.growth_tracker = 0
        else:
            self.scale *= self.backoff_factor
            self.growth_tracker = 0
            self.skipped += 1


def train_step(model, opt, params, ids, scaler):
    loss = lm_loss(model, ids)
    if scaler is None:
        loss.backward()
        finite = True
    else:
        (loss * scaler.scale).backward()
        finite = scaler.unscale_(params)
    if finite:
        torch.nn.utils.clip_grad_norm_(params, max_norm=1.0)
        opt.step()
    if scaler is not None:
        scaler.update(finite)
    opt.zero_grad(set_to_none=True)
    return float(loss.detach())


def run(args):
    if not args.model:
        raise PeerError("--model DIR is required")
    if not args.mode:
        raise PeerError("--mode is required (one of %s)" % ", ".join(MODES))
    if args.mode not in MODES:
        raise PeerError("unknown mode %r (one of %s)" % (args.mode, ", ".join(MODES)))
    for name in ("seq", "batch", "steps", "lora_r"):
        if getattr(args, name) < 1:
            raise PeerError("--%s must be at least 1" % name.replace("_", "-"))
    if args.warmup < 0:
        raise PeerError("--warmup must not be negative")
    if args.threads is not None and args.threads < 1:
        raise PeerError("--threads must be at least 1")
    if not os.path.isdir(args.model):
        raise PeerError("model folder %s does not exist" % args.model)

    threads = args.threads or (os.cpu_count() or 1)
    torch.set_num_threads(threads)

    t0 = time.perf_counter()
    cfg, model = build_model(args.model, args.mode, args.lora_r, args.lora_alpha, args.seed)
    mpe = cfg["max_position_embeddings"]
    if mpe is not None and args.seq > int(mpe):
        log("warning: --seq %d exceeds max_position_embeddings %s" % (args.seq, mpe))
    params = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in params)
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    scaler = LossScaler() if args.mode == "lora-fp16" else None
    act = mode_settings(args.mode)[0]
    compute = str(act).replace("torch.", "")
    if act == torch.float16:
        mm, sl = _half_support()
        if not (mm and sl):
            compute += " (no CPU Half %s in torch %s: run on float32 copies, rounded to float16)" % (
                " / ".join(n for n, ok in (("matmul", mm), ("silu", sl)) if not ok), torch.__version__)
    log("loaded %s in %.1fs: mode %s, compute %s, %d trainable parameters, %d threads"
        % (args.model, time.perf_counter() - t0, args.mode, compute, n_trainable, threads))

    V = cfg["vocab_size"]
    losses, times = [], []
    model.train()
    for step in range(args.warmup + args.steps):
        ids = make_batch(args.seed + step, args.batch, args.seq, V)
        t = time.perf_counter()
        loss = train_step(model, opt, params, ids, scaler)
        dt = time.perf_counter() - t
        losses.append(loss)
        timed = step >= args.warmup
        if timed:
            times.append(dt)
        log("step %d%s loss %.6f %.3fs" % (step, "" if timed else " (warmup)", loss, dt))

    model.eval()
    with torch.no_grad():
        eval_loss = float(lm_loss(model, make_batch(args.seed + 10_000, args.batch, args.seq, V)))
    med = statistics.median(times)
    out = {
        "impl": "pytorch",
        "mode": args.mode,
        "seq": args.seq,
        "batch": args.batch,
        "threads": threads,
        "steps": args.steps,
        "tokens_per_s": args.batch * args.seq / med,
        "median_step_s": med,
        "step_s": times,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "allocator": allocator(),
        "openblas_thread_timeout": openblas_thread_timeout(),
        "blas": blas(),
        # eager FP32 linear/matmul on the CPU call the BLAS (oneDNN serves bf16 only)
        "fp32_products": "blas",
        "omp_wait": "%s/%s" % (os.environ.get("OMP_WAIT_POLICY") or "-",
                               os.environ.get("GOMP_SPINCOUNT") or "-"),
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "eval_loss": eval_loss,
        "torch": torch.__version__,
        "params_trainable": n_trainable,
        "warmup": args.warmup,
        "compute": compute,
        "skipped_steps": 0 if scaler is None else scaler.skipped,
        "loss_scale": None if scaler is None else scaler.scale,
    }
    return out


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if args.check_quant:
            out = check_quant(args.seed)
        else:
            out = run(args)
    except PeerError as e:
        sys.stderr.write("pytorch_peer: error: %s\n" % e)
        return 2
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""Independent numerical reference of the Hugging Face transformers forward pass
of LLaMA-family causal LMs (LlamaForCausalLM, MistralForCausalLM,
Qwen2ForCausalLM), optionally with a PEFT LoRA adapter.

It re-implements, with plain PyTorch (tested with 1.13) and without transformers,
safetensors or peft, the eager ("attn_implementation='eager'") path of
transformers ~4.4x:

  * RMSNorm in float32: x * rsqrt(mean(x^2, -1) + eps), cast back to the
    activation dtype, then times weight;
  * rotary embeddings, "rotate_half" (non-interleaved) layout,
    inv_freq = 1 / theta ** (arange(0, head_dim, 2) / head_dim);
  * grouped-query attention by repeating kv heads (kv head h serves query heads
    h*n_rep .. h*n_rep+n_rep-1), softmax(q k^T / sqrt(head_dim) + mask) v with
    an additive causal mask filled with finfo(dtype).min and softmax in float32;
  * MLP down(silu(gate(x)) * up(x)); final norm; lm_head (or tied embeddings).
  * LoRA: y = W x + b + scaling * B (A x), scaling = alpha / r
    (or alpha / sqrt(r) with use_rslora).

Usage:
  /usr/bin/python3 hf_llama_reference.py --model DIR [--adapter DIR] \
      --ids "1,5,9;3,4,5" --out FILE.safetensors [--dtype fp32|bf16]

Writes a safetensors file holding one F32 tensor "logits" of shape
[num_sequences, tokens, vocab]. On error prints one line to stderr and exits 2.
"""

import argparse
import json
import math
import os
import re
import struct
import sys

import torch
import torch.nn.functional as F


class RefError(Exception):
    """A user-facing error: reported as one line on stderr, exit status 2."""


# --------------------------------------------------------------------------
# safetensors reading / writing (little-endian host assumed, checked below)
# --------------------------------------------------------------------------

_ELEM_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}


def _check_host():
    if sys.byteorder != "little":
        raise RefError("big-endian hosts are not supported")


def read_safetensors_header(path):
    """Returns (header dict without __metadata__, metadata, absolute data start)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                raise RefError("%s: not a safetensors file (too short)" % path)
            (n,) = struct.unpack("<Q", raw)
            size = os.fstat(f.fileno()).st_size
            if n > size - 8:
                raise RefError("%s: bad safetensors header length %d" % (path, n))
            hdr_bytes = f.read(n)
    except OSError as e:
        raise RefError("cannot read %s: %s" % (path, e.strerror or e))
    try:
        header = json.loads(hdr_bytes.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise RefError("%s: bad safetensors header JSON: %s" % (path, e))
    if not isinstance(header, dict):
        raise RefError("%s: safetensors header is not a JSON object" % path)
    meta = header.pop("__metadata__", None)
    data_start = 8 + n
    data_len = size - data_start
    for name, info in header.items():
        try:
            dtype, shape, (s, e) = info["dtype"], info["shape"], info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise RefError("%s: malformed header entry for %s" % (path, name))
        numel = 1
        for d in shape:
            numel *= int(d)
        if dtype in _ELEM_SIZE and e - s != numel * _ELEM_SIZE[dtype]:
            raise RefError("%s: tensor %s: byte size %d does not match %s %s"
                           % (path, name, e - s, dtype, shape))
        if not (0 <= s <= e <= data_len):
            raise RefError("%s: tensor %s: data offsets out of range" % (path, name))
    return header, meta, data_start


def _decode(raw, dtype, shape, what):
    """bytes (bytearray, little-endian) -> float32 tensor of the given shape."""
    shape = [int(d) for d in shape]
    numel = 1
    for d in shape:
        numel *= d
    if numel == 0:
        return torch.zeros(shape, dtype=torch.float32)
    if dtype == "F32":
        t = torch.frombuffer(raw, dtype=torch.float32).clone()
    elif dtype == "F64":
        t = torch.frombuffer(raw, dtype=torch.float64).float()
    elif dtype == "F16":
        t = torch.frombuffer(raw, dtype=torch.float16).float()
    elif dtype == "BF16":
        # bfloat16 is the top half of a float32. Widen each 16-bit pattern to
        # 32 bits with the pattern in the high half (the equivalent of
        # "int32 << 16", done by byte placement so that no signed shift can
        # overflow): on a little-endian host the high half of a float32 is
        # its second int16.
        bits = torch.frombuffer(raw, dtype=torch.int16)
        wide = torch.zeros(numel, 2, dtype=torch.int16)
        wide[:, 1] = bits
        t = wide.view(-1).view(torch.float32)
    else:
        raise RefError("%s: unsupported safetensors dtype %s (need F32, F16 or BF16)"
                       % (what, dtype))
    return t.reshape(shape)


def read_safetensors(path, names=None):
    """Reads tensors (all, or the given names) from a safetensors file as float32."""
    _check_host()
    header, _, data_start = read_safetensors_header(path)
    wanted = list(header.keys()) if names is None else list(names)
    out = {}
    with open(path, "rb") as f:
        for name in wanted:
            if name not in header:
                raise RefError("%s: tensor %s not found" % (path, name))
            info = header[name]
            s, e = info["data_offsets"]
            f.seek(data_start + s)
            buf = bytearray(e - s)
            if f.readinto(buf) != e - s:
                raise RefError("%s: truncated data for %s" % (path, name))
            out[name] = _decode(buf, info["dtype"], info["shape"],
                                "%s: %s" % (path, name))
    return out


def _tensor_bytes(t, dtype):
    t = t.detach().contiguous()
    if dtype == "F32":
        return t.to(torch.float32).numpy().tobytes()
    if dtype == "F16":
        return t.to(torch.float16).numpy().tobytes()
    if dtype == "BF16":
        return t.to(torch.bfloat16).view(torch.int16).numpy().tobytes()
    if dtype == "F64":
        return t.to(torch.float64).numpy().tobytes()
    raise RefError("cannot write dtype %s" % dtype)


def write_safetensors(path, tensors, dtype="F32", metadata=None):
    """Writes a dict name -> tensor. dtype: one of F32/F16/BF16/F64, or a dict
    name -> dtype. Tensors are stored in sorted name order, 8-byte-aligned header."""
    _check_host()
    names = sorted(tensors.keys())
    header = {}
    blobs = []
    off = 0
    for name in names:
        dt = dtype[name] if isinstance(dtype, dict) else dtype
        b = _tensor_bytes(tensors[name], dt)
        header[name] = {"dtype": dt, "shape": list(tensors[name].shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    hdr = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hdr += b" " * ((8 - len(hdr) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hdr)))
        f.write(hdr)
        for b in blobs:
            f.write(b)


# --------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------

_ARCH_TO_TYPE = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen2ForCausalLM": "qwen2",
}


def _load_json(path):
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise RefError("cannot read %s: %s" % (path, e.strerror or e))
    except ValueError as e:
        raise RefError("%s: bad JSON: %s" % (path, e))


def parse_config(raw):
    """Normalises a config.json dict into the fields the forward pass uses."""
    mt = raw.get("model_type")
    archs = raw.get("architectures") or []
    if mt is None:
        for a in archs:
            if a in _ARCH_TO_TYPE:
                mt = _ARCH_TO_TYPE[a]
                break
    if mt not in ("llama", "mistral", "qwen2"):
        raise RefError("unsupported model_type %r (architectures %r); need llama, mistral or qwen2"
                       % (mt, archs))
    for a in archs:
        if a not in _ARCH_TO_TYPE:
            raise RefError("unsupported architecture %r" % a)

    def req(key):
        if key not in raw or raw[key] is None:
            raise RefError("config.json lacks %s" % key)
        return raw[key]

    hidden = int(req("hidden_size"))
    heads = int(req("num_attention_heads"))
    kv = raw.get("num_key_value_heads")
    kv = heads if kv is None else int(kv)
    hd = raw.get("head_dim")
    hd = hidden // heads if hd is None else int(hd)
    if heads <= 0 or kv <= 0 or heads % kv != 0:
        raise RefError("num_attention_heads %d is not a multiple of num_key_value_heads %d"
                       % (heads, kv))
    if hd <= 0 or hd % 2 != 0:
        raise RefError("head_dim %d must be even and positive" % hd)
    act = raw.get("hidden_act", "silu")
    if act not in ("silu", "swish"):
        raise RefError("unsupported hidden_act %r (only silu)" % act)
    if raw.get("rope_scaling") is not None:
        raise RefError("unsupported rope_scaling %r" % (raw.get("rope_scaling"),))

    if mt == "llama":
        ab = bool(raw.get("attention_bias", False))
        qkv_bias, o_bias = ab, ab
        mlp_bias = bool(raw.get("mlp_bias", False))
    elif mt == "qwen2":
        qkv_bias, o_bias, mlp_bias = True, False, False
    else:
        qkv_bias, o_bias, mlp_bias = False, False, False

    layers = int(req("num_hidden_layers"))
    # Per-layer sliding window (None = full causal attention).
    if mt == "mistral":
        # MistralConfig's default sliding_window is 4096 when the key is absent.
        sw = raw.get("sliding_window", 4096)
        windows = [int(sw) if sw is not None else None] * layers
    elif mt == "qwen2" and raw.get("use_sliding_window", False):
        sw = raw.get("sliding_window", 4096)
        mwl = int(raw.get("max_window_layers", 28))
        windows = [int(sw) if (sw is not None and i >= mwl) else None for i in range(layers)]
    else:
        windows = [None] * layers
    for w in windows:
        if w is not None and w <= 0:
            raise RefError("sliding_window must be positive")

    return {
        "model_type": mt,
        "hidden_size": hidden,
        "intermediate_size": int(req("intermediate_size")),
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "head_dim": hd,
        "rms_norm_eps": float(raw.get("rms_norm_eps", 1e-6)),
        "rope_theta": float(raw.get("rope_theta", 10000.0)),
        "tie_word_embeddings": bool(raw.get("tie_word_embeddings", False)),
        "vocab_size": int(req("vocab_size")),
        "max_position_embeddings": raw.get("max_position_embeddings"),
        "qkv_bias": qkv_bias,
        "o_bias": o_bias,
        "mlp_bias": mlp_bias,
        "sliding_windows": windows,
    }


def _expected_weights(cfg):
    """name -> expected shape (lm_head included only when untied)."""
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


def load_model(model_dir):
    """Returns (cfg, weights) with all weights as float32 tensors."""
    if not os.path.isdir(model_dir):
        raise RefError("model folder %s does not exist" % model_dir)
    cfg = parse_config(_load_json(os.path.join(model_dir, "config.json")))
    exp = _expected_weights(cfg)

    single = os.path.join(model_dir, "model.safetensors")
    index = os.path.join(model_dir, "model.safetensors.index.json")
    # name -> file that holds it
    if os.path.isfile(single):
        header, _, _ = read_safetensors_header(single)
        where = {n: single for n in header}
    elif os.path.isfile(index):
        wm = _load_json(index).get("weight_map")
        if not isinstance(wm, dict):
            raise RefError("%s has no weight_map" % index)
        where = {n: os.path.join(model_dir, f) for n, f in wm.items()}
    else:
        raise RefError("%s has neither model.safetensors nor model.safetensors.index.json"
                       % model_dir)

    missing = [n for n in exp if n not in where]
    if missing:
        raise RefError("weights missing from checkpoint: %s%s"
                       % (", ".join(missing[:5]), " ..." if len(missing) > 5 else ""))
    by_file = {}
    for n in exp:
        by_file.setdefault(where[n], []).append(n)
    weights = {}
    for path, names in by_file.items():
        if not os.path.isfile(path):
            raise RefError("shard %s does not exist" % path)
        weights.update(read_safetensors(path, names))
    for n, shape in exp.items():
        if tuple(weights[n].shape) != tuple(shape):
            raise RefError("weight %s has shape %s, expected %s"
                           % (n, list(weights[n].shape), list(shape)))
    return cfg, weights


# --------------------------------------------------------------------------
# PEFT LoRA adapter
# --------------------------------------------------------------------------

_LORA_MODULES = {
    "q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
    "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp",
}

_LORA_KEY = re.compile(r"^(?:base_model\.model\.)?(.*)\.(lora_A|lora_B)(?:\.default)?\.weight$")


def _in_out(cfg, module):
    H, I = cfg["hidden_size"], cfg["intermediate_size"]
    q = cfg["num_attention_heads"] * cfg["head_dim"]
    kv = cfg["num_key_value_heads"] * cfg["head_dim"]
    return {"q_proj": (H, q), "k_proj": (H, kv), "v_proj": (H, kv), "o_proj": (q, H),
            "gate_proj": (H, I), "up_proj": (H, I), "down_proj": (I, H)}[module]


def load_adapter(adapter_dir, cfg):
    """Returns dict module path (e.g. 'model.layers.0.self_attn.q_proj') ->
    (A [r, in], B [out, r], scaling), float32."""
    if not os.path.isdir(adapter_dir):
        raise RefError("adapter folder %s does not exist" % adapter_dir)
    ac = _load_json(os.path.join(adapter_dir, "adapter_config.json"))
    pt = ac.get("peft_type", "LORA")
    if pt != "LORA":
        raise RefError("unsupported peft_type %r (only LORA)" % pt)
    if ac.get("rank_pattern") or ac.get("alpha_pattern"):
        raise RefError("rank_pattern/alpha_pattern not supported")
    if ac.get("fan_in_fan_out", False):
        raise RefError("fan_in_fan_out=true not supported")
    if ac.get("bias", "none") != "none":
        raise RefError("adapter bias=%r not supported (only none)" % ac.get("bias"))
    if ac.get("use_dora", False):
        raise RefError("use_dora not supported")
    if ac.get("modules_to_save"):
        raise RefError("modules_to_save not supported")
    if "r" not in ac or "lora_alpha" not in ac:
        raise RefError("adapter_config.json lacks r or lora_alpha")
    r = int(ac["r"])
    if r <= 0:
        raise RefError("adapter r must be positive")
    alpha = float(ac["lora_alpha"])
    scaling = alpha / math.sqrt(r) if ac.get("use_rslora", False) else alpha / r

    # Which (layer, module) pairs PEFT would wrap.
    targets = ac.get("target_modules")
    if not targets:
        raise RefError("adapter_config.json has no target_modules")
    ltt = ac.get("layers_to_transform")
    if isinstance(ltt, int):
        ltt = [ltt]
    all_paths = []
    for i in range(cfg["num_hidden_layers"]):
        all_paths.append("model.layers.%d.self_attn" % i)
        all_paths.append("model.layers.%d.mlp" % i)
    candidates = ["model.embed_tokens", "lm_head"]
    for i in range(cfg["num_hidden_layers"]):
        for m, parent in _LORA_MODULES.items():
            candidates.append("model.layers.%d.%s.%s" % (i, parent, m))

    def matches(path):
        if isinstance(targets, str):
            return re.fullmatch(targets, path) is not None
        return any(path == t or path.endswith("." + t) for t in targets)

    targeted = set()
    for path in candidates:
        if not matches(path):
            continue
        if path in ("model.embed_tokens", "lm_head"):
            raise RefError("LoRA on %s not supported" % path)
        layer = int(path.split(".")[2])
        if ltt is not None and layer not in ltt:
            continue
        targeted.add(path)
    if not targeted:
        raise RefError("target_modules %r match no supported module" % (targets,))

    st = os.path.join(adapter_dir, "adapter_model.safetensors")
    if not os.path.isfile(st):
        raise RefError("%s does not exist" % st)
    tensors = read_safetensors(st)
    parts = {}
    for key, t in tensors.items():
        m = _LORA_KEY.match(key)
        if not m:
            raise RefError("unsupported adapter tensor %s" % key)
        path, which = m.group(1), m.group(2)
        if path not in targeted:
            raise RefError("adapter tensor %s is for a module not in target_modules" % key)
        if which in parts.setdefault(path, {}):
            raise RefError("duplicate adapter tensor for %s.%s" % (path, which))
        parts[path][which] = t
    lora = {}
    for path in sorted(targeted):
        p = parts.get(path, {})
        if "lora_A" not in p or "lora_B" not in p:
            raise RefError("adapter_model.safetensors lacks lora_A/lora_B for %s" % path)
        fan_in, fan_out = _in_out(cfg, path.rsplit(".", 1)[1])
        A, B = p["lora_A"], p["lora_B"]
        if tuple(A.shape) != (r, fan_in) or tuple(B.shape) != (fan_out, r):
            raise RefError("%s: lora_A %s / lora_B %s, expected [%d, %d] / [%d, %d]"
                           % (path, list(A.shape), list(B.shape), r, fan_in, fan_out, r))
        lora[path] = (A, B, scaling)
    return lora


# --------------------------------------------------------------------------
# forward pass
# --------------------------------------------------------------------------

def _rms_norm(x, weight, eps):
    # LlamaRMSNorm / MistralRMSNorm / Qwen2RMSNorm
    input_dtype = x.dtype
    h = x.to(torch.float64 if input_dtype == torch.float64 else torch.float32)
    variance = h.pow(2).mean(-1, keepdim=True)
    h = h * torch.rsqrt(variance + eps)
    return weight * h.to(input_dtype)


def _rotate_half(x):
    half = x.shape[-1] // 2
    x1 = x[..., :half]
    x2 = x[..., half:]
    return torch.cat((-x2, x1), dim=-1)


def _rope_cos_sin(T, head_dim, theta, dtype):
    # HF computes inv_freq and the angles in float32 (float64 only in the
    # test-only "fp64" mode), then casts cos/sin to the activation dtype.
    f = torch.float64 if dtype == torch.float64 else torch.float32
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).to(f) / head_dim))
    pos = torch.arange(T, dtype=f)
    freqs = pos[:, None] * inv_freq[None, :]          # [T, hd/2]
    emb = torch.cat((freqs, freqs), dim=-1)            # [T, hd]
    return emb.cos().to(dtype), emb.sin().to(dtype)


def _causal_mask(T, window, dtype):
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    visible = j <= i
    if window is not None:
        visible = visible & (j > i - window)
    mask = torch.zeros(T, T, dtype=dtype)
    mask.masked_fill_(~visible, torch.finfo(dtype).min)
    return mask[None, None]                           # [1, 1, T, T]


def _linear(x, weights, name, lora, bias=False):
    W = weights[name + ".weight"]
    b = weights[name + ".bias"] if bias else None
    y = F.linear(x, W, b)
    if lora is not None and name in lora:
        A, Bm, s = lora[name]
        # PEFT: result + lora_B(lora_A(dropout(x))) * scaling, adapter in fp32
        # with the input cast to the adapter dtype, result cast back.
        xa = x.to(A.dtype)
        y = (y + F.linear(F.linear(xa, A), Bm) * s).to(x.dtype)
    return y


def forward(cfg, weights, ids, lora=None, dtype="fp32"):
    """ids: LongTensor [B, T]. Returns float32 logits [B, T, vocab]
    (float64 in the test-only "fp64" mode)."""
    # "fp64" is not offered on the command line: the self-tests use it to check
    # the formulas against an independent float64 formulation to ~1e-12.
    if dtype == "fp32":
        act = torch.float32
    elif dtype == "bf16":
        act = torch.bfloat16
    elif dtype == "fp64":
        act = torch.float64
    else:
        raise RefError("unsupported --dtype %s (fp32 or bf16)" % dtype)
    ids = torch.as_tensor(ids, dtype=torch.int64)
    if ids.dim() != 2 or ids.shape[1] == 0 or ids.shape[0] == 0:
        raise RefError("ids must be a non-empty [sequences, tokens] array")
    V = cfg["vocab_size"]
    if int(ids.min()) < 0 or int(ids.max()) >= V:
        raise RefError("token id out of range [0, %d)" % V)

    w = {k: v.to(act) for k, v in weights.items()}
    # softmax and LoRA run in float32 (PEFT upcasts bf16/fp16 adapter weights)
    sm = torch.float64 if act == torch.float64 else torch.float32
    lo = None
    if lora:
        lo = {k: (A.to(sm), Bm.to(sm), s) for k, (A, Bm, s) in lora.items()}

    Bsz, T = ids.shape
    nh, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    n_rep = nh // nkv
    eps = cfg["rms_norm_eps"]

    with torch.no_grad():
        cos, sin = _rope_cos_sin(T, hd, cfg["rope_theta"], act)   # [T, hd]
        cos, sin = cos[None, None], sin[None, None]
        masks = {}
        h = F.embedding(ids, w["model.embed_tokens.weight"])    # [B, T, H]
        for li in range(cfg["num_hidden_layers"]):
            p = "model.layers.%d." % li
            window = cfg["sliding_windows"][li]
            if window not in masks:
                masks[window] = _causal_mask(T, window, act)
            mask = masks[window]

            residual = h
            x = _rms_norm(h, w[p + "input_layernorm.weight"], eps)
            q = _linear(x, w, p + "self_attn.q_proj", lo, cfg["qkv_bias"])
            k = _linear(x, w, p + "self_attn.k_proj", lo, cfg["qkv_bias"])
            v = _linear(x, w, p + "self_attn.v_proj", lo, cfg["qkv_bias"])
            q = q.view(Bsz, T, nh, hd).transpose(1, 2)
            k = k.view(Bsz, T, nkv, hd).transpose(1, 2)
            v = v.view(Bsz, T, nkv, hd).transpose(1, 2)
            q = (q * cos) + (_rotate_half(q) * sin)
            k = (k * cos) + (_rotate_half(k) * sin)
            # repeat_kv: [B, nkv, T, hd] -> [B, nkv*n_rep, T, hd]
            k = k.repeat_interleave(n_rep, dim=1)
            v = v.repeat_interleave(n_rep, dim=1)
            attn = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(hd)
            attn = attn + mask
            attn = torch.softmax(attn, dim=-1, dtype=sm).to(act)
            o = torch.matmul(attn, v)                                # [B, nh, T, hd]
            o = o.transpose(1, 2).contiguous().reshape(Bsz, T, nh * hd)
            o = _linear(o, w, p + "self_attn.o_proj", lo, cfg["o_bias"])
            h = residual + o

            residual = h
            x = _rms_norm(h, w[p + "post_attention_layernorm.weight"], eps)
            g = _linear(x, w, p + "mlp.gate_proj", lo, cfg["mlp_bias"])
            u = _linear(x, w, p + "mlp.up_proj", lo, cfg["mlp_bias"])
            m = _linear(F.silu(g) * u, w, p + "mlp.down_proj", lo, cfg["mlp_bias"])
            h = residual + m

        h = _rms_norm(h, w["model.norm.weight"], eps)
        head = w["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else w["lm_head.weight"]
        logits = F.linear(h, head)
    return logits if act == torch.float64 else logits.float()


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

def parse_ids(text):
    seqs = []
    for part in text.split(";"):
        part = part.strip()
        if not part:
            raise RefError("empty sequence in --ids")
        try:
            seqs.append([int(t) for t in part.split(",")])
        except ValueError:
            raise RefError("bad token id in --ids %r" % part)
    if len({len(s) for s in seqs}) != 1:
        raise RefError("all sequences in --ids must have the same length")
    return torch.tensor(seqs, dtype=torch.int64)


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        sys.stderr.write("error: %s\n" % message)
        sys.exit(2)


def main(argv=None):
    ap = _Parser(description="HF LLaMA/Mistral/Qwen2 (+LoRA) reference logits")
    ap.add_argument("--model", required=True)
    ap.add_argument("--adapter")
    ap.add_argument("--ids", required=True, help='e.g. "1,5,9;3,4,5"')
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    args = ap.parse_args(argv)
    try:
        ids = parse_ids(args.ids)
        cfg, weights = load_model(args.model)
        lora = load_adapter(args.adapter, cfg) if args.adapter else None
        logits = forward(cfg, weights, ids, lora, args.dtype)
        write_safetensors(args.out, {"logits": logits}, "F32")
    except RefError as e:
        sys.stderr.write("error: %s\n" % e)
        return 2
    except OSError as e:
        sys.stderr.write("error: %s\n" % e)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

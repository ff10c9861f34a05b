"""Self-tests of hf_llama_reference.py.

Run from this folder:  /usr/bin/python3 -m unittest -v

The forward pass is checked against a deliberately different formulation
written here: Meta's original LLaMA layout (q/k weights permuted to the
interleaved-pair layout, rotary embedding as complex multiplication via
view_as_complex/polar), float64, one query position at a time against a
growing KV cache (no mask matrix), one head at a time.
"""

import contextlib
import io
import json
import math
import os
import subprocess
import sys
import tempfile
import unittest

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import hf_llama_reference as ref  # noqa: E402

PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


# --------------------------------------------------------------------------
# helpers: random models
# --------------------------------------------------------------------------

def base_config(**over):
    cfg = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 64,
        "intermediate_size": 96,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "vocab_size": 128,
        "max_position_embeddings": 64,
        "hidden_act": "silu",
        "rope_scaling": None,
    }
    cfg.update(over)
    return cfg


def random_weights(raw_cfg, seed=0):
    """Random float32 weights with O(1) activations so differences are meaningful."""
    g = torch.Generator().manual_seed(seed)
    cfg = ref.parse_config(raw_cfg)
    out = {}
    for name, shape in ref._expected_weights(cfg).items():
        if name.endswith("norm.weight"):
            t = 1.0 + 0.2 * torch.randn(shape, generator=g)
        elif name == "model.embed_tokens.weight":
            # small enough that tied-embedding logits stay O(1) as well
            t = 0.2 * torch.randn(shape, generator=g)
        elif name.endswith(".bias"):
            t = 0.2 * torch.randn(shape, generator=g)
        else:
            t = torch.randn(shape, generator=g) / math.sqrt(shape[1])
            if "q_proj" in name or "k_proj" in name:
                t = t * 2.0  # sharper attention patterns
        out[name] = t.float()
    return out


def write_model(folder, raw_cfg, weights, dtype="F32", shards=None):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(raw_cfg, f)
    if shards is None:
        ref.write_safetensors(os.path.join(folder, "model.safetensors"), weights, dtype)
        return
    names = sorted(weights)
    weight_map = {}
    for s in range(shards):
        fname = "model-%05d-of-%05d.safetensors" % (s + 1, shards)
        part = {n: weights[n] for n in names[s::shards]}
        ref.write_safetensors(os.path.join(folder, fname), part, dtype)
        weight_map.update({n: fname for n in part})
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f)


def write_adapter(folder, lora_cfg, tensors):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "adapter_config.json"), "w") as f:
        json.dump(lora_cfg, f)
    ref.write_safetensors(os.path.join(folder, "adapter_model.safetensors"), tensors)


def random_ids(vocab, B=2, T=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (B, T), generator=g)


# --------------------------------------------------------------------------
# the independent formulation (Meta-style, float64, one query at a time)
# --------------------------------------------------------------------------

def meta_permute(w, n_heads):
    """HF (rotate_half) row layout -> Meta (interleaved pairs) row layout.
    Inverse of transformers' convert_llama_weights_to_hf.permute."""
    if w.dim() == 1:
        return meta_permute(w[:, None], n_heads)[:, 0]
    dim1, dim2 = w.shape
    return w.view(n_heads, 2, dim1 // n_heads // 2, dim2).transpose(1, 2).reshape(dim1, dim2)


def alt_forward(raw, weights, ids):
    mt = raw["model_type"]
    H = raw["hidden_size"]
    nh = raw["num_attention_heads"]
    nkv = raw.get("num_key_value_heads", nh)
    hd = raw.get("head_dim") or H // nh
    eps = raw["rms_norm_eps"]
    theta = raw.get("rope_theta", 10000.0)
    L = raw["num_hidden_layers"]
    W = {k: v.double() for k, v in weights.items()}

    def get(name):
        return W.get(name)

    def lin(x, name):
        y = x @ W[name + ".weight"].t()
        b = get(name + ".bias")
        return y if b is None else y + b

    def norm(x, w):
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w

    def window_of(layer):
        if mt == "mistral":
            return raw.get("sliding_window", 4096)
        if mt == "qwen2" and raw.get("use_sliding_window"):
            return raw["sliding_window"] if layer >= raw.get("max_window_layers", 28) else None
        return None

    freqs = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float64)[: hd // 2] / hd))
    B, T = ids.shape
    t = torch.arange(T, dtype=torch.float64)
    freqs_cis = torch.polar(torch.ones(T, hd // 2, dtype=torch.float64), torch.outer(t, freqs))

    def rope(x, pos):  # x [B, heads, hd], Meta layout
        xc = torch.view_as_complex(x.reshape(*x.shape[:-1], hd // 2, 2).contiguous())
        return torch.view_as_real(xc * freqs_cis[pos]).reshape(x.shape)

    head = W["model.embed_tokens.weight"] if raw.get("tie_word_embeddings") else W["lm_head.weight"]
    out = torch.zeros(B, T, raw["vocab_size"], dtype=torch.float64)
    for b in range(B):
        h = W["model.embed_tokens.weight"][ids[b]]      # [T, H]
        for li in range(L):
            p = "model.layers.%d." % li
            wq = meta_permute(W[p + "self_attn.q_proj.weight"], nh)
            wk = meta_permute(W[p + "self_attn.k_proj.weight"], nkv)
            bq = get(p + "self_attn.q_proj.bias")
            bk = get(p + "self_attn.k_proj.bias")
            bq = None if bq is None else meta_permute(bq, nh)
            bk = None if bk is None else meta_permute(bk, nkv)
            x = norm(h, W[p + "input_layernorm.weight"])
            win = window_of(li)
            k_cache, v_cache = [], []
            attn_out = torch.zeros(T, nh * hd, dtype=torch.float64)
            for pos in range(T):
                xq = x[pos] @ wq.t() + (0 if bq is None else bq)
                xk = x[pos] @ wk.t() + (0 if bk is None else bk)
                xv = lin(x[pos], p + "self_attn.v_proj")
                xq = rope(xq.view(1, nh, hd), pos)[0]
                xk = rope(xk.view(1, nkv, hd), pos)[0]
                k_cache.append(xk)
                v_cache.append(xv.view(nkv, hd))
                first = 0 if win is None else max(0, pos - win + 1)
                for hh in range(nh):
                    kvh = hh // (nh // nkv)
                    keys = torch.stack([k_cache[j][kvh] for j in range(first, pos + 1)])
                    vals = torch.stack([v_cache[j][kvh] for j in range(first, pos + 1)])
                    s = keys @ xq[hh] / math.sqrt(hd)
                    s = torch.exp(s - s.max())
                    s = s / s.sum()
                    attn_out[pos, hh * hd:(hh + 1) * hd] = s @ vals
            h = h + lin(attn_out, p + "self_attn.o_proj")
            x = norm(h, W[p + "post_attention_layernorm.weight"])
            g = lin(x, p + "mlp.gate_proj")
            u = lin(x, p + "mlp.up_proj")
            h = h + lin(g * torch.sigmoid(g) * u, p + "mlp.down_proj")
        h = norm(h, W["model.norm.weight"])
        out[b] = h @ head.t()
    return out


CONFIGS = {
    "llama": base_config(),
    "llama_bias_headdim_tied": base_config(attention_bias=True, mlp_bias=True, head_dim=32,
                                           tie_word_embeddings=True, rope_theta=500000.0),
    "qwen2": base_config(architectures=["Qwen2ForCausalLM"], model_type="qwen2",
                         num_key_value_heads=1, tie_word_embeddings=True, rms_norm_eps=1e-6,
                         rope_theta=1000000.0, sliding_window=3, use_sliding_window=False),
    "qwen2_sliding": base_config(architectures=["Qwen2ForCausalLM"], model_type="qwen2",
                                 sliding_window=3, use_sliding_window=True, max_window_layers=1),
    "mistral_sliding": base_config(architectures=["MistralForCausalLM"], model_type="mistral",
                                   sliding_window=3),
    "mistral_mha": base_config(architectures=["MistralForCausalLM"], model_type="mistral",
                               num_key_value_heads=4, sliding_window=None),
}


class TmpDirCase(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.tmp = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()


# --------------------------------------------------------------------------
# (a) forward vs the independent formulation
# --------------------------------------------------------------------------

class ForwardTest(TmpDirCase):
    def test_against_meta_style_loop(self):
        for i, (label, raw) in enumerate(CONFIGS.items()):
            with self.subTest(config=label):
                weights = random_weights(raw, seed=10 + i)
                folder = os.path.join(self.tmp, label)
                write_model(folder, raw, weights)
                cfg, loaded = ref.load_model(folder)
                ids = random_ids(raw["vocab_size"], seed=20 + i)
                got = ref.forward(cfg, loaded, ids)
                want = alt_forward(raw, weights, ids)
                self.assertEqual(got.dtype, torch.float32)
                self.assertEqual(tuple(got.shape), (2, 8, raw["vocab_size"]))
                self.assertGreater(want.abs().max().item(), 0.5)  # not trivially small
                diff = (got.double() - want).abs().max().item()
                self.assertLess(diff, 1e-5, "%s: max abs diff %g" % (label, diff))
                # the same formulas evaluated in float64 agree to rounding noise
                got64 = ref.forward(cfg, loaded, ids, dtype="fp64")
                diff64 = (got64 - want).abs().max().item()
                self.assertLess(diff64, 1e-10, "%s: fp64 max abs diff %g" % (label, diff64))

    def test_sliding_window_matters(self):
        raw = CONFIGS["mistral_sliding"]
        weights = random_weights(raw)
        cfg = ref.parse_config(raw)
        cfg_full = ref.parse_config(dict(raw, sliding_window=None))
        ids = random_ids(raw["vocab_size"])
        a = ref.forward(cfg, weights, ids)
        b = ref.forward(cfg_full, weights, ids)
        # identical up to position sliding_window-1, different afterwards
        self.assertTrue(torch.equal(a[:, :3], b[:, :3]))
        self.assertGreater((a[:, 3:] - b[:, 3:]).abs().max().item(), 1e-3)
        # qwen2 ignores sliding_window unless use_sliding_window
        q = ref.parse_config(CONFIGS["qwen2"])
        self.assertEqual(q["sliding_windows"], [None, None])
        self.assertEqual(ref.parse_config(CONFIGS["qwen2_sliding"])["sliding_windows"], [None, 3])

    def test_causality(self):
        raw = CONFIGS["llama"]
        weights = random_weights(raw)
        cfg = ref.parse_config(raw)
        ids = random_ids(raw["vocab_size"])
        full = ref.forward(cfg, weights, ids)
        prefix = ref.forward(cfg, weights, ids[:, :5])
        self.assertLess((full[:, :5] - prefix).abs().max().item(), 1e-5)
        # batch rows are independent
        row = ref.forward(cfg, weights, ids[1:2])
        self.assertLess((full[1:2] - row).abs().max().item(), 1e-5)

    def test_bf16_mode(self):
        raw = CONFIGS["llama"]
        weights = random_weights(raw)
        cfg = ref.parse_config(raw)
        ids = random_ids(raw["vocab_size"])
        f32 = ref.forward(cfg, weights, ids)
        bf = ref.forward(cfg, weights, ids, dtype="bf16")
        self.assertEqual(bf.dtype, torch.float32)
        scale = f32.abs().max().item()
        err = (bf - f32).abs().max().item()
        self.assertLess(err, 0.1 * scale)
        self.assertGreater(err, 0.0)  # really computed in reduced precision


# --------------------------------------------------------------------------
# (b) LoRA
# --------------------------------------------------------------------------

LORA_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def random_lora(cfg, r, modules, zero_b=False, seed=5, default_infix=False):
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for i in range(cfg["num_hidden_layers"]):
        for m in modules:
            parent = ref._LORA_MODULES[m]
            fan_in, fan_out = ref._in_out(cfg, m)
            path = "base_model.model.model.layers.%d.%s.%s" % (i, parent, m)
            inf = ".default" if default_infix else ""
            tensors[path + ".lora_A%s.weight" % inf] = torch.randn(r, fan_in, generator=g) / math.sqrt(fan_in)
            b = torch.zeros(fan_out, r) if zero_b else 0.1 * torch.randn(fan_out, r, generator=g) / math.sqrt(r)
            tensors[path + ".lora_B%s.weight" % inf] = b
    return tensors


def merge(weights, cfg, tensors, scaling):
    merged = dict(weights)
    for key, A in tensors.items():
        if ".lora_A" not in key:
            continue
        path = key.split(".lora_A")[0][len("base_model.model."):]
        Bm = tensors[key.replace("lora_A", "lora_B")]
        merged[path + ".weight"] = weights[path + ".weight"] + scaling * (Bm @ A)
    return merged


class LoraTest(TmpDirCase):
    def setUp(self):
        super().setUp()
        self.raw = CONFIGS["llama_bias_headdim_tied"]
        self.weights = random_weights(self.raw, seed=3)
        self.model = os.path.join(self.tmp, "model")
        write_model(self.model, self.raw, self.weights)
        self.cfg, self.loaded = ref.load_model(self.model)
        self.ids = random_ids(self.raw["vocab_size"])

    def lora_cfg(self, **over):
        c = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": LORA_MODULES,
             "lora_dropout": 0.05, "fan_in_fan_out": False, "bias": "none",
             "use_rslora": False, "rank_pattern": {}, "alpha_pattern": {},
             "task_type": "CAUSAL_LM"}
        c.update(over)
        return c

    def test_zero_b_is_identity(self):
        t = random_lora(self.cfg, 4, LORA_MODULES, zero_b=True)
        folder = os.path.join(self.tmp, "zero")
        write_adapter(folder, self.lora_cfg(), t)
        lora = ref.load_adapter(folder, self.cfg)
        self.assertEqual(len(lora), 7 * self.cfg["num_hidden_layers"])
        base = ref.forward(self.cfg, self.loaded, self.ids)
        with_lora = ref.forward(self.cfg, self.loaded, self.ids, lora)
        self.assertTrue(torch.equal(base, with_lora))

    def test_nonzero_equals_merged(self):
        cases = [
            ("plain", self.lora_cfg(), LORA_MODULES, False, 8 / 4),
            ("rslora_default_keys", self.lora_cfg(use_rslora=True, lora_alpha=16),
             LORA_MODULES, True, 16 / math.sqrt(4)),
            ("qv_only", self.lora_cfg(target_modules=["q_proj", "v_proj"]),
             ["q_proj", "v_proj"], False, 2.0),
        ]
        base = ref.forward(self.cfg, self.loaded, self.ids)
        for label, lcfg, modules, infix, scaling in cases:
            with self.subTest(case=label):
                t = random_lora(self.cfg, 4, modules, default_infix=infix)
                folder = os.path.join(self.tmp, label)
                write_adapter(folder, lcfg, t)
                lora = ref.load_adapter(folder, self.cfg)
                for (_, _, s) in lora.values():
                    self.assertAlmostEqual(s, scaling, places=12)
                got = ref.forward(self.cfg, self.loaded, self.ids, lora)
                plain_t = {k.replace(".default", ""): v for k, v in t.items()}
                merged = merge(self.loaded, self.cfg, plain_t, scaling)
                want = ref.forward(self.cfg, merged, self.ids)
                diff = (got - want).abs().max().item()
                self.assertLess(diff, 1e-5, "%s: %g" % (label, diff))
                got64 = ref.forward(self.cfg, self.loaded, self.ids, lora, dtype="fp64")
                merged64 = merge({k: v.double() for k, v in self.loaded.items()}, self.cfg,
                                 {k: v.double() for k, v in plain_t.items()}, scaling)
                want64 = ref.forward(self.cfg, merged64, self.ids, dtype="fp64")
                self.assertLess((got64 - want64).abs().max().item(), 1e-10)
                self.assertGreater((got - base).abs().max().item(), 1e-2)
                # and the merged model agrees with the independent formulation
                alt = alt_forward(self.raw, merged, self.ids)
                self.assertLess((got.double() - alt).abs().max().item(), 1e-5)

    def test_adapter_errors(self):
        t = random_lora(self.cfg, 4, LORA_MODULES)
        bad = [
            (self.lora_cfg(rank_pattern={"q_proj": 8}), "rank_pattern/alpha_pattern not supported"),
            (self.lora_cfg(alpha_pattern={"q_proj": 8}), "rank_pattern/alpha_pattern not supported"),
            (self.lora_cfg(fan_in_fan_out=True), "fan_in_fan_out"),
            (self.lora_cfg(bias="all"), "bias"),
            (self.lora_cfg(target_modules=["q_proj"]), "not in target_modules"),
            (self.lora_cfg(r=8), "lora_A"),
        ]
        for i, (lcfg, msg) in enumerate(bad):
            with self.subTest(msg=msg):
                folder = os.path.join(self.tmp, "bad%d" % i)
                write_adapter(folder, lcfg, t)
                with self.assertRaises(ref.RefError) as cm:
                    ref.load_adapter(folder, self.cfg)
                self.assertIn(msg, str(cm.exception))


# --------------------------------------------------------------------------
# (c) sharded loading, (d) BF16 / F16 storage
# --------------------------------------------------------------------------

class LoadingTest(TmpDirCase):
    def test_sharded_equals_single(self):
        raw = CONFIGS["qwen2"]
        weights = random_weights(raw, seed=7)
        single = os.path.join(self.tmp, "single")
        sharded = os.path.join(self.tmp, "sharded")
        write_model(single, raw, weights)
        write_model(sharded, raw, weights, shards=3)
        self.assertFalse(os.path.exists(os.path.join(sharded, "model.safetensors")))
        cfg1, w1 = ref.load_model(single)
        cfg2, w2 = ref.load_model(sharded)
        self.assertEqual(sorted(w1), sorted(w2))
        for n in w1:
            self.assertTrue(torch.equal(w1[n], w2[n]), n)
        ids = random_ids(raw["vocab_size"])
        self.assertTrue(torch.equal(ref.forward(cfg1, w1, ids), ref.forward(cfg2, w2, ids)))

    def test_bf16_values(self):
        g = torch.Generator().manual_seed(11)
        x = torch.cat([torch.randn(1000, generator=g) * 10.0,
                       torch.tensor([0.0, -0.0, 1.0, -1.0, 3.0e38, -3.0e38, 1e-40, -1e-40,
                                     float("inf"), float("-inf"), 65504.0, 1.00390625])])
        path = os.path.join(self.tmp, "bf.safetensors")
        ref.write_safetensors(path, {"x": x.view(4, -1) if x.numel() % 4 == 0 else x,
                                     "nan": torch.tensor([float("nan")])}, "BF16")
        hdr, _, _ = ref.read_safetensors_header(path)
        self.assertEqual(hdr["x"]["dtype"], "BF16")
        got = ref.read_safetensors(path)
        want = x.to(torch.bfloat16).float()
        self.assertEqual(got["x"].dtype, torch.float32)
        self.assertTrue(torch.equal(got["x"].reshape(-1), want))
        # sign of zero preserved
        self.assertEqual(torch.signbit(got["x"].reshape(-1)[1001]).item(), True)
        self.assertTrue(torch.isnan(got["nan"]).all())

    def test_bf16_and_f16_models(self):
        raw = CONFIGS["llama"]
        weights = random_weights(raw, seed=9)
        ids = random_ids(raw["vocab_size"])
        for st, tdt in (("BF16", torch.bfloat16), ("F16", torch.float16)):
            with self.subTest(dtype=st):
                folder = os.path.join(self.tmp, st)
                write_model(folder, raw, weights, dtype=st)
                cfg, w = ref.load_model(folder)
                rounded = {k: v.to(tdt).float() for k, v in weights.items()}
                for n in rounded:
                    self.assertTrue(torch.equal(w[n], rounded[n]), n)
                self.assertTrue(torch.equal(ref.forward(cfg, w, ids),
                                            ref.forward(cfg, rounded, ids)))

    def test_safetensors_layout(self):
        path = os.path.join(self.tmp, "x.safetensors")
        ref.write_safetensors(path, {"b": torch.arange(6.0).view(2, 3), "a": torch.ones(0)},
                              metadata={"format": "pt"})
        with open(path, "rb") as f:
            data = f.read()
        n = int.from_bytes(data[:8], "little")
        self.assertEqual((8 + n) % 8, 0)
        hdr = json.loads(data[8:8 + n])
        self.assertEqual(hdr["__metadata__"], {"format": "pt"})
        self.assertEqual(hdr["b"], {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]})
        self.assertEqual(len(data), 8 + n + 24)
        got = ref.read_safetensors(path)
        self.assertTrue(torch.equal(got["b"], torch.arange(6.0).view(2, 3)))
        self.assertEqual(tuple(got["a"].shape), (0,))


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

class CliTest(TmpDirCase):
    def setUp(self):
        super().setUp()
        self.raw = CONFIGS["mistral_sliding"]
        self.weights = random_weights(self.raw, seed=4)
        self.model = os.path.join(self.tmp, "model")
        write_model(self.model, self.raw, self.weights)
        self.out = os.path.join(self.tmp, "out.safetensors")

    def run_main(self, *args):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = ref.main(list(args))
        return rc, err.getvalue()

    def test_subprocess_end_to_end(self):
        cfg = ref.parse_config(self.raw)
        t = random_lora(cfg, 2, ["q_proj", "down_proj"])
        adapter = os.path.join(self.tmp, "adapter")
        write_adapter(adapter, {"r": 2, "lora_alpha": 4, "target_modules": ["q_proj", "down_proj"]}, t)
        script = os.path.join(HERE, "hf_llama_reference.py")
        p = subprocess.run([PY, script, "--model", self.model, "--adapter", adapter,
                            "--ids", "1,5,9,2,7;3,4,5,127,0", "--out", self.out],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        hdr, _, _ = ref.read_safetensors_header(self.out)
        self.assertEqual(list(hdr), ["logits"])
        self.assertEqual(hdr["logits"]["dtype"], "F32")
        self.assertEqual(hdr["logits"]["shape"], [2, 5, 128])
        got = ref.read_safetensors(self.out)["logits"]
        _, w = ref.load_model(self.model)
        want = ref.forward(cfg, w, torch.tensor([[1, 5, 9, 2, 7], [3, 4, 5, 127, 0]]),
                           ref.load_adapter(adapter, cfg))
        self.assertTrue(torch.equal(got, want))

        p = subprocess.run([PY, script, "--model", self.model, "--ids", "1,128", "--out", self.out],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 2)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        self.assertIn("out of range", p.stderr)

    def test_in_process_cli_and_errors(self):
        rc, err = self.run_main("--model", self.model, "--ids", "1,2,3", "--out", self.out,
                                "--dtype", "bf16")
        self.assertEqual((rc, err), (0, ""))
        self.assertEqual(ref.read_safetensors_header(self.out)[0]["logits"]["shape"], [1, 3, 128])

        bad_rope = os.path.join(self.tmp, "rope")
        write_model(bad_rope, dict(self.raw, rope_scaling={"type": "linear", "factor": 2.0}),
                    self.weights)
        missing = os.path.join(self.tmp, "missing")
        w2 = dict(self.weights)
        del w2["lm_head.weight"]
        write_model(missing, self.raw, w2)
        gelu = os.path.join(self.tmp, "gelu")
        write_model(gelu, dict(self.raw, hidden_act="gelu"), self.weights)
        cases = [
            (("--model", self.model, "--ids", "1,2;3", "--out", self.out), "same length"),
            (("--model", self.model, "--ids", "1,-1", "--out", self.out), "out of range"),
            (("--model", self.model, "--ids", "1,x", "--out", self.out), "bad token id"),
            (("--model", bad_rope, "--ids", "1", "--out", self.out), "unsupported rope_scaling"),
            (("--model", missing, "--ids", "1", "--out", self.out), "lm_head.weight"),
            (("--model", gelu, "--ids", "1", "--out", self.out), "hidden_act"),
            (("--model", os.path.join(self.tmp, "nope"), "--ids", "1", "--out", self.out),
             "does not exist"),
            (("--model", self.model, "--ids", "1", "--out", self.out, "--dtype", "fp8"), "fp8"),
        ]
        for args, msg in cases:
            with self.subTest(msg=msg):
                try:
                    rc, err = self.run_main(*args)
                except SystemExit as e:  # argparse errors
                    rc, err = e.code, msg
                self.assertEqual(rc, 2)
                self.assertIn(msg, err)


if __name__ == "__main__":
    unittest.main()

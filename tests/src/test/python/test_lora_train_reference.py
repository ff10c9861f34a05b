"""Self-tests of lora_train_reference.py.

Run from this folder:  /usr/bin/python3 -m unittest -v test_lora_train_reference

The naive trainer below is written independently of the reference: its own
LLaMA forward (one unpadded example at a time, one head at a time, rotary
embedding as explicit pair rotation, -inf masking), its own loss (one
backward of the whole global batch), its own clipping, its own schedule
formulas and AdamW written out from the formulas.
"""

import json
import math
import os
import subprocess
import sys
import tempfile
import unittest

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import hf_llama_reference as hf  # noqa: E402
import lora_train_reference as lt  # noqa: E402

PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
SCRIPT = os.path.join(HERE, "lora_train_reference.py")
MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------

def tiny_config(**over):
    cfg = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 32,
        "intermediate_size": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "vocab_size": 97,
        "max_position_embeddings": 64,
        "hidden_act": "silu",
    }
    cfg.update(over)
    return cfg


def tiny_weights(raw, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in hf._expected_weights(hf.parse_config(raw)).items():
        if name.endswith("norm.weight"):
            t = 1.0 + 0.2 * torch.randn(shape, generator=g)
        elif name == "model.embed_tokens.weight":
            t = 0.5 * torch.randn(shape, generator=g)
        else:
            t = torch.randn(shape, generator=g) / math.sqrt(shape[1])
        out[name] = t.float()
    return out


def lora_config(r=4, alpha=8, targets=None, **over):
    c = {"peft_type": "LORA", "r": r, "lora_alpha": alpha, "lora_dropout": 0.0,
         "target_modules": list(targets or MODULES), "bias": "none",
         "task_type": "CAUSAL_LM", "base_model_name_or_path": "tiny"}
    c.update(over)
    return c


def random_adapter(raw, lcfg, seed=3):
    """PEFT tensors with nonzero A and B."""
    cfg = hf.parse_config(raw)
    g = torch.Generator().manual_seed(seed)
    r = lcfg["r"]
    out = {}
    for i in range(cfg["num_hidden_layers"]):
        for m in lcfg["target_modules"]:
            parent = "self_attn" if m.endswith(("q_proj", "k_proj", "v_proj", "o_proj")) else "mlp"
            fi, fo = hf._in_out(cfg, m)
            key = "base_model.model.model.layers.%d.%s.%s" % (i, parent, m)
            out[key + ".lora_A.weight"] = torch.randn(r, fi, generator=g) / math.sqrt(fi)
            out[key + ".lora_B.weight"] = 0.3 * torch.randn(fo, r, generator=g) / math.sqrt(r)
    return out


def write_model(folder, raw, weights):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(raw, f)
    hf.write_safetensors(os.path.join(folder, "model.safetensors"), weights)


def write_adapter(folder, lcfg, tensors):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "adapter_config.json"), "w") as f:
        json.dump(lcfg, f, indent=2)
    hf.write_safetensors(os.path.join(folder, "adapter_model.safetensors"), tensors)


def example_lines(vocab=97, seed=5):
    """Examples of different lengths, some with masked prompts, one without
    labels, some longer than the sequence length used in the tests (10)."""
    g = torch.Generator().manual_seed(seed)
    lines = []
    for n, prompt in [(7, 3), (12, 0), (4, 2), (9, 6), (14, 5)]:
        ids = torch.randint(1, vocab, (n,), generator=g).tolist()
        if n == 12:
            lines.append(json.dumps({"input_ids": ids}))
        else:
            labels = [-100] * prompt + ids[prompt:]
            lines.append(json.dumps({"input_ids": ids, "labels": labels}))
    return lines


def write_data(path, lines):
    with open(path, "w") as f:
        # a blank line in the middle and at the end must be ignored
        f.write("\n".join(lines[:2] + ["  "] + lines[2:]) + "\n\n")


class Setup(object):
    """Model, init adapter and examples, in memory and on disk."""

    def __init__(self, tmp, lcfg=None, raw=None):
        self.raw = raw or tiny_config()
        self.lcfg = lcfg or lora_config()
        self.model_dir = os.path.join(tmp, "model")
        self.adapter_dir = os.path.join(tmp, "adapter0")
        self.data = os.path.join(tmp, "train.jsonl")
        write_model(self.model_dir, self.raw, tiny_weights(self.raw))
        write_adapter(self.adapter_dir, self.lcfg, random_adapter(self.raw, self.lcfg))
        write_data(self.data, example_lines())
        self.cfg, self.weights = hf.load_model(self.model_dir)
        self.examples = lt.load_examples(self.data, self.cfg["vocab_size"])

    def params(self):
        return lt.load_trainable_adapter(self.adapter_dir, self.cfg)


# --------------------------------------------------------------------------
# the naive trainer
# --------------------------------------------------------------------------

def naive_logits(raw, W, lora, scaling, ids):
    """One unpadded example (list of ids) -> logits [T, V], float32."""
    H = raw["hidden_size"]
    nh, nkv = raw["num_attention_heads"], raw["num_key_value_heads"]
    hd = H // nh
    half = hd // 2
    eps = raw["rms_norm_eps"]
    theta = raw["rope_theta"]
    T = len(ids)
    inv = torch.tensor([1.0 / theta ** (2.0 * i / hd) for i in range(half)], dtype=torch.float32)
    ang = torch.arange(T, dtype=torch.float32)[:, None] * inv[None, :]
    cos, sin = ang.cos()[:, None, :], ang.sin()[:, None, :]

    def rope(v):  # [T, heads, hd]: rotate the pairs (i, i + hd/2)
        a, b = v[..., :half], v[..., half:]
        return torch.cat([a * cos - b * sin, b * cos + a * sin], -1)

    def lin(h, name):
        y = h @ W[name + ".weight"].t()
        if name in lora:
            A, B = lora[name]
            y = y + scaling * ((h @ A.t()) @ B.t())
        return y

    def rms(h, w):
        return h / torch.sqrt(h.pow(2).mean(-1, keepdim=True) + eps) * w

    allowed = torch.ones(T, T).tril().bool()
    x = W["model.embed_tokens.weight"][torch.tensor(ids)]
    for li in range(raw["num_hidden_layers"]):
        p = "model.layers.%d." % li
        a = rms(x, W[p + "input_layernorm.weight"])
        q = rope(lin(a, p + "self_attn.q_proj").view(T, nh, hd))
        k = rope(lin(a, p + "self_attn.k_proj").view(T, nkv, hd))
        v = lin(a, p + "self_attn.v_proj").view(T, nkv, hd)
        heads = []
        for hh in range(nh):
            kh = hh // (nh // nkv)
            sc = (q[:, hh] @ k[:, kh].t()) / math.sqrt(hd)
            sc = sc.masked_fill(~allowed, float("-inf"))
            heads.append(torch.softmax(sc, -1) @ v[:, kh])
        x = x + lin(torch.cat(heads, -1), p + "self_attn.o_proj")
        a = rms(x, W[p + "post_attention_layernorm.weight"])
        g = lin(a, p + "mlp.gate_proj")
        x = x + lin(g * torch.sigmoid(g) * lin(a, p + "mlp.up_proj"), p + "mlp.down_proj")
    x = rms(x, W["model.norm.weight"])
    return x @ W["lm_head.weight"].t()


def naive_multiplier(kind, s, N, Wu):
    if s < Wu:
        return s / max(1, Wu)
    if kind == "constant":
        return 1.0
    if kind == "linear":
        return max(0.0, (N - s) / max(1, N - Wu))
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * (s - Wu) / max(1, N - Wu))))


def naive_train(raw, W, lora0, scaling, examples, steps, G, L, lr, b1, b2, eps, wd,
                max_norm, kind, warmup):
    lora = {k: (A.clone().requires_grad_(True), B.clone().requires_grad_(True))
            for k, (A, B) in lora0.items()}
    flat = [t for k in sorted(lora) for t in lora[k]]
    m = [torch.zeros_like(t) for t in flat]
    v = [torch.zeros_like(t) for t in flat]
    records = []
    for s in range(steps):
        total = None
        count = 0
        for j in range(G):
            ids, labels = examples[(s * G + j) % len(examples)]
            ids, labels = ids[:L], labels[:L]
            logits = naive_logits(raw, W, lora, scaling, ids)
            logp = torch.log_softmax(logits[:-1], -1)
            for t, y in enumerate(labels[1:]):
                if y != -100:
                    term = -logp[t, y]
                    total = term if total is None else total + term
                    count += 1
        loss = total / count
        grads = torch.autograd.grad(loss, flat)
        norm = math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads))
        if max_norm > 0:
            coef = min(1.0, max_norm / (norm + 1e-6))
            grads = [g * coef for g in grads]
        lr_s = lr * naive_multiplier(kind, s, steps, warmup)
        t = s + 1
        with torch.no_grad():
            for i, p in enumerate(flat):
                g = grads[i]
                p -= lr_s * wd * p
                m[i] = b1 * m[i] + (1 - b1) * g
                v[i] = b2 * v[i] + (1 - b2) * g * g
                mhat = m[i] / (1 - b1 ** t)
                vhat = v[i] / (1 - b2 ** t)
                p -= lr_s * mhat / (torch.sqrt(vhat) + eps)
        records.append({"loss": float(loss), "grad_norm": norm, "lr": lr_s, "tokens": count})
    return {k: (A.detach(), B.detach()) for k, (A, B) in lora.items()}, records


# --------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------

def max_param_diff(pa, pb):
    d = 0.0
    for k in pa:
        for x, y in zip(pa[k][:2], pb[k][:2]):
            d = max(d, float((x.detach() - y.detach()).abs().max()))
    return d


class TmpCase(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.tmp = self._tmp.name
        self.S = Setup(self.tmp)

    def tearDown(self):
        self._tmp.cleanup()


class TestGradientAccumulation(TmpCase):
    """(a) accumulation over microbatches == the whole global batch at once."""

    def test_accumulated_loss_and_grads_equal_whole_batch(self):
        S = self.S
        G, L = 4, 10
        batch = lt.step_examples(S.examples, 1, G)      # examples 4, 0, 1, 2 (wraps)
        # whole global batch in one forward, mean over all label tokens
        _, params, flat = S.params()
        ids, lab = lt.pad_batch(batch, L)
        n = lt.count_label_tokens(lab)
        whole = lt.ce_sum(S.cfg, S.weights, params, ids, lab) / n
        g_whole = torch.autograd.grad(whole, flat)
        for micro in (1, 2, 4):
            _, params, flat = S.params()
            loss, n2 = lt.accumulate_step_gradients(S.cfg, S.weights, params, flat, batch, micro, L)
            self.assertEqual(n2, n)
            self.assertAlmostEqual(loss, float(whole), delta=1e-6 * abs(float(whole)))
            for a, b in zip(g_whole, flat):
                self.assertLess(float((a - b.grad).abs().max()), 1e-6, "micro=%d" % micro)
        # the data makes a mean of microbatch means measurably different
        means = []
        for i in range(G):
            i_ids, i_lab = lt.pad_batch(batch[i:i + 1], L)
            with torch.no_grad():
                means.append(float(lt.ce_sum(S.cfg, S.weights, params, i_ids, i_lab))
                             / lt.count_label_tokens(i_lab))
        self.assertGreater(abs(sum(means) / G - float(whole)), 1e-3)

    def micro_runs(self, lr, eps):
        S = self.S
        results = {}
        for micro in (4, 2, 1):
            _, params, flat = S.params()
            recs = lt.train(S.cfg, S.weights, params, flat, S.examples, 3, 4, micro, 10, lr,
                            eps=eps, weight_decay=0.1, max_grad_norm=0.5, schedule="cosine")
            results[micro] = (params, recs)
        return results

    def test_result_independent_of_micro(self):
        # eps >= lr keeps AdamW's update Lipschitz in the gradient (constant
        # lr/eps), so float32 rounding of the gradients stays ~1e-7 in the params.
        results = self.micro_runs(1e-2, 1e-2)
        p4, r4 = results[4]
        for micro in (2, 1):
            p, r = results[micro]
            self.assertLess(max_param_diff(p4, p), 1e-6, "micro=%d" % micro)
            for a, b in zip(r4, r):
                self.assertAlmostEqual(a["loss"], b["loss"], delta=1e-6 * a["loss"])
                self.assertAlmostEqual(a["grad_norm"], b["grad_norm"], delta=1e-6 * a["grad_norm"])
                self.assertEqual(a["tokens"], b["tokens"])
                self.assertEqual(a["lr"], b["lr"])
        # and the parameters did move
        _, p0, _ = self.S.params()
        self.assertGreater(max_param_diff(p0, p4), 1e-2)

    def test_result_independent_of_micro_default_eps(self):
        # With eps = 1e-8 AdamW normalises every gradient entry, and entries whose
        # gradient is near float32 rounding noise can move differently by a
        # fraction of lr: the losses still agree tightly, the params only to ~lr.
        results = self.micro_runs(1e-3, 1e-8)
        p4, r4 = results[4]
        for micro in (2, 1):
            p, r = results[micro]
            self.assertLess(max_param_diff(p4, p), 1e-3 * 0.5, "micro=%d" % micro)
            for a, b in zip(r4, r):
                self.assertAlmostEqual(a["loss"], b["loss"], delta=1e-5 * a["loss"])
                self.assertAlmostEqual(a["grad_norm"], b["grad_norm"], delta=1e-5 * a["grad_norm"])


class TestAgainstNaive(TmpCase):
    """(b) an independent naive trainer agrees within 1e-6."""

    def check(self, steps, G, micro, L, lr, betas, eps, wd, max_norm, kind, warmup,
              expect_clip, param_tol=1e-6, rel_tol=1e-6):
        S = self.S
        _, params, flat = S.params()
        recs = lt.train(S.cfg, S.weights, params, flat, S.examples, steps, G, micro, L, lr,
                        betas, eps, wd, max_norm, kind, warmup)
        scaling = S.lcfg["lora_alpha"] / S.lcfg["r"]
        lora0 = {k: (A.detach(), B.detach()) for k, (A, B, _) in S.params()[1].items()}
        W = {k: v for k, v in S.weights.items()}
        nparams, nrecs = naive_train(S.raw, W, lora0, scaling, S.examples, steps, G, L, lr,
                                     betas[0], betas[1], eps, wd, max_norm, kind, warmup)
        self.assertEqual(len(recs), steps)
        for i, (a, b) in enumerate(zip(recs, nrecs)):
            self.assertEqual(a["step"], i + 1)
            self.assertEqual(a["tokens"], b["tokens"])
            self.assertAlmostEqual(a["lr"], b["lr"], delta=1e-15)
            self.assertAlmostEqual(a["loss"], b["loss"], delta=rel_tol * b["loss"])
            self.assertAlmostEqual(a["grad_norm"], b["grad_norm"], delta=rel_tol * b["grad_norm"])
        if expect_clip:
            self.assertTrue(any(r["grad_norm"] > max_norm for r in recs))
        self.assertLess(max_param_diff(params, nparams), param_tol)
        _, p0, _ = S.params()
        self.assertGreater(max_param_diff(p0, params), 0.5 * lr)
        return recs

    # eps >= lr: see TestGradientAccumulation.test_result_independent_of_micro
    def test_clipped_weight_decay_linear_warmup(self):
        recs = self.check(4, 4, 2, 10, 1e-2, (0.9, 0.999), 1e-2, 0.1, 0.3, "linear", 1, True)
        self.assertEqual(recs[0]["lr"], 0.0)

    def test_unclipped_constant(self):
        self.check(3, 3, 1, 10, 5e-3, (0.8, 0.99), 5e-3, 0.0, 0.0, "constant", 0, False)

    def test_cosine_large_clip(self):
        self.check(3, 2, 2, 8, 2e-2, (0.9, 0.95), 2e-2, 0.01, 100.0, "cosine", 0, False)

    def test_default_eps(self):
        # default eps: params agree to a fraction of lr only (see above)
        self.check(3, 4, 4, 10, 1e-3, (0.9, 0.999), 1e-8, 0.0, 1.0, "constant", 0, True,
                   param_tol=5e-4, rel_tol=1e-5)


class TestSchedules(unittest.TestCase):
    """(c) multipliers against hand-computed values."""

    def test_values(self):
        cases = [
            ("constant", 0, 10, 0, 1.0), ("constant", 9, 10, 0, 1.0),
            ("constant", 0, 10, 4, 0.0), ("constant", 2, 10, 4, 0.5),
            ("constant", 3, 10, 4, 0.75), ("constant", 4, 10, 4, 1.0),
            ("linear", 0, 10, 0, 1.0), ("linear", 5, 10, 0, 0.5), ("linear", 9, 10, 0, 0.1),
            ("linear", 0, 10, 2, 0.0), ("linear", 1, 10, 2, 0.5), ("linear", 2, 10, 2, 1.0),
            ("linear", 6, 10, 2, 0.5), ("linear", 9, 10, 2, 0.125), ("linear", 12, 10, 2, 0.0),
            ("cosine", 0, 10, 0, 1.0), ("cosine", 5, 10, 0, 0.5),
            ("cosine", 0, 10, 2, 0.0), ("cosine", 1, 10, 2, 0.5), ("cosine", 2, 10, 2, 1.0),
            ("cosine", 4, 10, 2, 0.5 * (1 + math.sqrt(0.5))), ("cosine", 6, 10, 2, 0.5),
            ("cosine", 8, 10, 2, 0.5 * (1 - math.sqrt(0.5))), ("cosine", 10, 10, 2, 0.0),
            ("constant", 0, 1, 1, 0.0), ("linear", 0, 1, 1, 0.0),
        ]
        for kind, s, N, W, want in cases:
            got = lt.schedule_multiplier(kind, s, N, W)
            self.assertAlmostEqual(got, want, delta=1e-12, msg=(kind, s, N, W))

    def test_recorded_lr_follows_schedule(self):
        with tempfile.TemporaryDirectory() as tmp:
            S = Setup(tmp)
            for kind in ("constant", "linear", "cosine"):
                _, params, flat = S.params()
                recs = lt.train(S.cfg, S.weights, params, flat, S.examples, 5, 1, 1, 10, 0.5,
                                schedule=kind, warmup_steps=2)
                want = [0.5 * lt.schedule_multiplier(kind, s, 5, 2) for s in range(5)]
                self.assertEqual([r["lr"] for r in recs], want)
                self.assertEqual(recs[0]["lr"], 0.0)
                self.assertEqual(recs[2]["lr"], 0.5)


class TestData(unittest.TestCase):

    def test_order_wrap_truncation_tokens(self):
        ex = lt.parse_examples(["", json.dumps({"input_ids": [1, 2, 3, 4, 5]}),
                                json.dumps({"input_ids": [6, 7, 8], "labels": [-100, 7, 8]}),
                                "   ",
                                json.dumps({"input_ids": [9, 10], "labels": [9, -100]})], 97)
        self.assertEqual(len(ex), 3)
        # step 1 of G=2: examples 2, 0 (wrap-around)
        b = lt.step_examples(ex, 1, 2)
        self.assertEqual([x for x, _ in b], [[9, 10], [1, 2, 3, 4, 5]])
        ids, lab = lt.pad_batch(b, 4)
        self.assertEqual(ids.tolist(), [[9, 10, 0, 0], [1, 2, 3, 4]])
        self.assertEqual(lab.tolist(), [[9, -100, -100, -100], [1, 2, 3, 4]])
        self.assertEqual(lt.count_label_tokens(lab), 3)
        # N < G wraps more than once
        self.assertEqual(len(lt.step_examples(ex, 0, 7)), 7)
        self.assertEqual(lt.step_examples(ex, 2, 7)[0], ex[14 % 3])

    def test_bad_data(self):
        bad = [
            ['{"input_ids": [1, 2'],
            ['[1, 2]'],
            ['{"labels": [1, 2]}'],
            ['{"input_ids": []}'],
            ['{"input_ids": [1, 2.5]}'],
            ['{"input_ids": [1, 97]}'],
            ['{"input_ids": [1, 2], "labels": [1]}'],
            ['{"input_ids": [1, 2], "labels": [1, -1]}'],
            ['', '  '],
        ]
        for lines in bad:
            with self.assertRaises(hf.RefError, msg=lines):
                lt.parse_examples(lines, 97)


class TestCliAndAdapter(TmpCase):
    """(d) the written adapter reloads and reproduces the trained params' logits."""

    def run_cli(self, *extra, adapter=None, data=None):
        S = self.S
        out_l = os.path.join(self.tmp, "losses.json")
        out_a = os.path.join(self.tmp, "trained")
        args = [PY, SCRIPT, "--model", S.model_dir, "--adapter-init", adapter or S.adapter_dir,
                "--data", data or S.data, "--out-losses", out_l, "--out-adapter", out_a]
        args += [str(x) for x in extra]
        p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True)
        return p, out_l, out_a

    def test_cli_end_to_end(self):
        S = self.S
        opts = dict(steps=3, global_batch=4, micro=2, seq_len=10, lr=1e-2, betas=(0.9, 0.99),
                    eps=1e-7, weight_decay=0.05, max_grad_norm=0.5, schedule="linear",
                    warmup_steps=1)
        p, out_l, out_a = self.run_cli(
            "--steps", 3, "--global-batch", 4, "--micro", 2, "--seq-len", 10, "--lr", 1e-2,
            "--betas", "0.9,0.99", "--eps", 1e-7, "--weight-decay", 0.05,
            "--max-grad-norm", 0.5, "--schedule", "linear", "--warmup-steps", 1)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stderr, "")
        with open(out_l) as f:
            losses = json.load(f)
        # in-process run with the same options
        paths, params, flat = S.params()
        recs = lt.train(S.cfg, S.weights, params, flat, S.examples, **opts)
        self.assertEqual([r["step"] for r in losses["steps"]], [1, 2, 3])
        for a, b in zip(losses["steps"], recs):
            self.assertEqual(set(a), {"step", "loss", "grad_norm", "lr", "tokens"})
            self.assertEqual(a["tokens"], b["tokens"])
            self.assertEqual(a["lr"], b["lr"])
            self.assertAlmostEqual(a["loss"], b["loss"], delta=1e-6 * b["loss"])
            self.assertAlmostEqual(a["grad_norm"], b["grad_norm"], delta=1e-6 * b["grad_norm"])
        self.assertEqual([r["lr"] for r in recs], [0.0, 1e-2, 5e-3])
        # files of the adapter folder
        with open(os.path.join(S.adapter_dir, "adapter_config.json"), "rb") as f1, \
                open(os.path.join(out_a, "adapter_config.json"), "rb") as f2:
            self.assertEqual(f1.read(), f2.read())
        st = os.path.join(out_a, "adapter_model.safetensors")
        header, _, _ = hf.read_safetensors_header(st)
        want_keys = set()
        for i in range(2):
            for m in MODULES:
                parent = "mlp" if m in ("gate_proj", "up_proj", "down_proj") else "self_attn"
                for ab in ("A", "B"):
                    want_keys.add("base_model.model.model.layers.%d.%s.%s.lora_%s.weight"
                                  % (i, parent, m, ab))
        self.assertEqual(set(header), want_keys)
        self.assertTrue(all(h["dtype"] == "F32" for h in header.values()))
        # reload through hf_llama_reference and compare logits
        loaded = hf.load_adapter(out_a, S.cfg)
        self.assertLess(max_param_diff(loaded, params), 1e-6)
        ids, _ = lt.pad_batch(S.examples[:3], 10)
        from_file = hf.forward(S.cfg, S.weights, ids, loaded)
        with torch.no_grad():
            in_memory = lt.forward_with_grad(S.cfg, S.weights, ids, params)
        self.assertLess(float((from_file - in_memory).abs().max()), 1e-5)
        init = hf.forward(S.cfg, S.weights, ids, hf.load_adapter(S.adapter_dir, S.cfg))
        self.assertGreater(float((from_file - init).abs().max()), 1e-3)
        # the training forward is hf_llama_reference.forward: identical with the same params
        fixed = {k: (A.detach(), B.detach(), s) for k, (A, B, s) in params.items()}
        with torch.no_grad():
            self.assertTrue(torch.equal(hf.forward(S.cfg, S.weights, ids, fixed),
                                        lt.forward_with_grad(S.cfg, S.weights, ids, fixed)))

    def test_subset_targets_rslora(self):
        lcfg = lora_config(r=2, alpha=3, targets=["q_proj", "v_proj", "down_proj"],
                           use_rslora=True)
        adir = os.path.join(self.tmp, "rs")
        write_adapter(adir, lcfg, random_adapter(self.S.raw, lcfg))
        p, out_l, out_a = self.run_cli("--steps", 2, "--global-batch", 2, "--micro", 1,
                                       "--seq-len", 8, "--lr", 1e-2, "--max-grad-norm", 0,
                                       adapter=adir)
        self.assertEqual(p.returncode, 0, p.stderr)
        paths, params, flat = lt.load_trainable_adapter(adir, self.S.cfg)
        self.assertEqual(paths, ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj",
                                 "model.layers.0.mlp.down_proj", "model.layers.1.self_attn.q_proj",
                                 "model.layers.1.self_attn.v_proj", "model.layers.1.mlp.down_proj"])
        self.assertAlmostEqual(params[paths[0]][2], 3 / math.sqrt(2))
        lt.train(self.S.cfg, self.S.weights, params, flat, self.S.examples, 2, 2, 1, 8, 1e-2,
                 max_grad_norm=0)
        self.assertLess(max_param_diff(hf.load_adapter(out_a, self.S.cfg), params), 1e-6)
        header, _, _ = hf.read_safetensors_header(os.path.join(out_a, "adapter_model.safetensors"))
        self.assertEqual(len(header), 12)

    def test_errors_exit_2_one_line(self):
        drop = os.path.join(self.tmp, "drop")
        write_adapter(drop, lora_config(lora_dropout=0.05),
                      random_adapter(self.S.raw, lora_config()))
        bad_data = os.path.join(self.tmp, "bad.jsonl")
        with open(bad_data, "w") as f:
            f.write('{"input_ids": [1, 2, 3]}\n{"input_ids": "x"}\n')
        masked = os.path.join(self.tmp, "masked.jsonl")
        with open(masked, "w") as f:
            f.write('{"input_ids": [1, 2, 3], "labels": [1, -100, -100]}\n')
        base = ["--steps", 1, "--global-batch", 2, "--micro", 1, "--seq-len", 8, "--lr", 1e-3]
        cases = [
            (dict(adapter=drop), base),
            (dict(data=bad_data), base),
            (dict(data=masked), base),
            ({}, ["--steps", 1, "--global-batch", 3, "--micro", 2, "--seq-len", 8, "--lr", 1e-3]),
            ({}, base + ["--schedule", "step"]),
            ({}, base + ["--betas", "0.9"]),
            ({}, ["--steps", 1]),
            (dict(adapter=os.path.join(self.tmp, "nope")), base),
        ]
        for kw, args in cases:
            p, _, _ = self.run_cli(*args, **kw)
            self.assertEqual(p.returncode, 2, (kw, args, p.stderr))
            self.assertEqual(p.stderr.count("\n"), 1, p.stderr)
            self.assertTrue(p.stderr.startswith("error: "), p.stderr)


if __name__ == "__main__":
    unittest.main()

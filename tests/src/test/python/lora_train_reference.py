#!/usr/bin/python3
"""Independent PyTorch reference of LoRA fine-tuning of a LLaMA-family causal
LM (LLaMA / Mistral / Qwen2), used to check that Troupe's own training computes
the same per-step losses and the same final adapter.

The model forward, safetensors I/O and PEFT adapter loading are those of
hf_llama_reference.py (imported, not copied); that module runs its forward
under torch.no_grad(), so this file calls it through a small wrapper that
lets autograd record the graph (see _forward_with_grad).

Usage:
  /usr/bin/python3 lora_train_reference.py --model DIR --adapter-init DIR \
      --data train.jsonl --steps N --global-batch G --micro M --seq-len L \
      --lr LR [--betas 0.9,0.999] [--eps 1e-8] [--weight-decay 0.0] \
      [--max-grad-norm 1.0] [--schedule constant|linear|cosine] \
      [--warmup-steps 0] --out-losses losses.json --out-adapter DIR

On error: one line on stderr ("error: ..."), exit status 2.

CONTRACT (what the Java side implements)
========================================

Model
  All base weights are float32 (bf16/f16 checkpoints are widened exactly) and
  frozen. The forward is hf_llama_reference.forward in fp32 (eager HF
  attention, causal additive mask, no attention mask / no padding mask).

LoRA parameters
  For every module the init adapter (--adapter-init, a PEFT folder) targets,
  A [r, in] and B [out, r] are float32 trainable parameters initialised from
  its adapter_model.safetensors. adapter_config.json gives r, lora_alpha,
  target_modules (and optionally layers_to_transform, use_rslora);
  scaling = lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora.
  lora_dropout must be 0 (absent counts as 0); anything else is an error.
  Targeted module output: y = W x + b + scaling * B (A x).
  Parameter order (matters only for the summation order of the grad norm):
  layers ascending; within a layer q_proj, k_proj, v_proj, o_proj, gate_proj,
  up_proj, down_proj; A before B.

Data (the "tokens" JSONL format)
  One JSON object per line: {"input_ids": [int, ...], "labels": [int, ...]}.
  "labels" is optional (absent or null: a copy of input_ids); when given it
  must have the same length as input_ids. Other keys are ignored. Blank
  (whitespace-only) lines are ignored. input_ids must be non-empty ints in
  [0, vocab); labels are ints in [0, vocab) or -100. Each example is
  truncated to its first L tokens (input_ids and labels alike).
  No shuffling: optimizer step s (0-based) uses the examples with file
  indices (s*G + j) mod N, j = 0..G-1, in that order (N = number of examples;
  it wraps around, and N < G is allowed).

Microbatches
  The G examples of a step are split into G/M consecutive microbatches of M
  examples (G must be a multiple of M). Every example is right-padded to
  exactly L (input id 0, label -100), so every microbatch is [M, L].
  (Right padding cannot change the logits of real positions: the mask is
  causal.)

Loss (HF causal-LM convention)
  logits[b, t] predict labels[b, t+1] for t = 0..L-2; label -100 is ignored,
  so the label at position 0 is never used. The step's token count
  n = number of positions t in 1..L-1 of the G (truncated, padded) examples
  whose label != -100. A step with n = 0 is an error.
  For each microbatch, ce = F.cross_entropy(logits[:, :-1].reshape(-1, V),
  labels[:, 1:].reshape(-1), ignore_index=-100, reduction="sum") (float32),
  and backward of (ce / n) is accumulated into the LoRA grads (grads are
  cleared before the step's first microbatch). Microbatches without label
  tokens are skipped (they contribute 0).
  The reported step loss = (sum over microbatches of float(ce), in double)
  / n, i.e. the sum of token cross-entropies over the global batch divided by
  the global token count -- NOT a mean of microbatch means.

Clipping
  grad_norm = the pre-clip global L2 norm as torch.nn.utils.clip_grad_norm_
  computes it: norm(stack([norm(g_i) for g_i in grads])) in float32.
  If max_grad_norm > 0: clip_grad_norm_(params, max_grad_norm), i.e.
  coef = min(max_grad_norm / (grad_norm + 1e-6), 1.0) in float32 and every
  grad is multiplied by coef (also when coef = 1). max_grad_norm = 0: no
  clipping (grad_norm is still reported).

Optimizer
  torch.optim.AdamW(params, lr, betas=(b1, b2), eps, weight_decay,
  amsgrad=False, maximize=False, foreach=False), i.e. per parameter, with
  t = 1-based step count and lr_t the scheduled lr of this step:
     p   *= 1 - lr_t * wd                   (decoupled weight decay)
     m    = b1 * m + (1 - b1) * g
     v    = b2 * v + (1 - b2) * g * g
     bc1  = 1 - b1 ** t ;  bc2 = 1 - b2 ** t
     p   -= (lr_t / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)
  Scalars (1 - lr_t*wd, lr_t/bc1, sqrt(bc2), ...) are computed in double and
  applied to float32 tensors (PyTorch rounds them to float32); m, v start at 0.

Schedule (Hugging Face transformers' lr lambdas, via LambdaLR stepped after
each optimizer step; lr_t = lr * mult(s) for 0-based step s, total steps N =
--steps, warmup W = --warmup-steps):
  constant (get_constant_schedule_with_warmup; = get_constant_schedule when
            W = 0):
      mult(s) = s / max(1, W)                       if s < W
              = 1                                   otherwise
  linear  (get_linear_schedule_with_warmup):
      mult(s) = s / max(1, W)                       if s < W
              = max(0, (N - s) / max(1, N - W))     otherwise
  cosine  (get_cosine_schedule_with_warmup, num_cycles = 0.5):
      mult(s) = s / max(1, W)                       if s < W
              = max(0, 0.5 * (1 + cos(pi * progress))),
                progress = (s - W) / max(1, N - W)  otherwise
  Note that with W > 0 the first step has lr 0 (AdamW still updates m and v).
  The lr used at each step is recorded.

Outputs
  --out-losses: {"steps": [{"step": s+1, "loss": float, "grad_norm": float,
                 "lr": float, "tokens": n}, ...]}
  --out-adapter (created if needed): adapter_config.json copied byte for byte
  from the init adapter, and adapter_model.safetensors holding the final
  A and B as F32 under the PEFT keys
  base_model.model.model.layers.{i}.{self_attn|mlp}.{module}.lora_{A|B}.weight

Numerical note for comparisons
  Two correct float32 implementations differ in their gradients by rounding
  (~1e-7 here). AdamW's update m / (sqrt(v) + eps) then differs by about
  (lr / eps) * |dg| per entry when eps dominates, but with a tiny eps (1e-8)
  entries whose gradient is itself near rounding noise are normalised to
  ~ +-lr and can differ by a sizable fraction of lr. Losses and grad norms
  agree to ~1e-7 relative regardless; to compare final adapters tightly
  (~1e-6) use eps >= lr, otherwise allow a tolerance of order lr.
"""

import argparse
import contextlib
import json
import math
import os
import shutil
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import hf_llama_reference as hf  # noqa: E402
from hf_llama_reference import RefError  # noqa: E402

PAD_ID = 0
IGNORE = -100
SCHEDULES = ("constant", "linear", "cosine")
MODULE_ORDER = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


# --------------------------------------------------------------------------
# forward with autograd through hf_llama_reference.forward
# --------------------------------------------------------------------------

class _TorchWithGrad(object):
    """Stands in for the `torch` module inside hf_llama_reference while a
    training forward runs: everything is torch's, except that no_grad()
    becomes enable_grad(), so the graph is recorded."""

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def no_grad():
        return torch.enable_grad()


@contextlib.contextmanager
def _grad_enabled_hf():
    saved = hf.torch
    hf.torch = _TorchWithGrad()
    try:
        yield
    finally:
        hf.torch = saved


def forward_with_grad(cfg, weights, ids, lora):
    """hf_llama_reference.forward (fp32) with gradients flowing into the LoRA
    tensors of `lora` (path -> (A, B, scaling))."""
    with _grad_enabled_hf():
        return hf.forward(cfg, weights, ids, lora, "fp32")


# --------------------------------------------------------------------------
# adapter
# --------------------------------------------------------------------------

def _module_sort_key(path):
    # model.layers.{i}.{self_attn|mlp}.{module}
    parts = path.split(".")
    return (int(parts[2]), MODULE_ORDER.index(parts[4]))


def load_trainable_adapter(adapter_dir, cfg):
    """Returns (ordered list of paths, dict path -> (A, B, scaling)) with A, B
    float32 leaf tensors requiring grad, and the flat ordered parameter list."""
    ac = hf._load_json(os.path.join(adapter_dir, "adapter_config.json"))
    if not isinstance(ac, dict):
        raise RefError("adapter_config.json is not a JSON object")
    drop = ac.get("lora_dropout", 0.0)
    if drop is None:
        drop = 0.0
    if isinstance(drop, bool) or not isinstance(drop, (int, float)):
        raise RefError("adapter lora_dropout %r is not a number" % (drop,))
    if float(drop) != 0.0:
        raise RefError("adapter lora_dropout is %r; this reference needs 0" % (drop,))
    lora = hf.load_adapter(adapter_dir, cfg)
    paths = sorted(lora.keys(), key=_module_sort_key)
    params = {}
    flat = []
    for p in paths:
        A, B, s = lora[p]
        A = A.detach().clone().float().requires_grad_(True)
        B = B.detach().clone().float().requires_grad_(True)
        params[p] = (A, B, s)
        flat.extend([A, B])
    return paths, params, flat


def peft_state_dict(paths, params):
    out = {}
    for p in paths:
        A, B, _ = params[p]
        out["base_model.model.%s.lora_A.weight" % p] = A.detach().clone()
        out["base_model.model.%s.lora_B.weight" % p] = B.detach().clone()
    return out


def write_adapter(out_dir, init_dir, paths, params):
    os.makedirs(out_dir, exist_ok=True)
    shutil.copyfile(os.path.join(init_dir, "adapter_config.json"),
                    os.path.join(out_dir, "adapter_config.json"))
    hf.write_safetensors(os.path.join(out_dir, "adapter_model.safetensors"),
                         peft_state_dict(paths, params), "F32", {"format": "pt"})


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------

def _int_list(v, what):
    if not isinstance(v, list) or any(isinstance(x, bool) or not isinstance(x, int) for x in v):
        raise RefError("%s must be a list of integers" % what)
    return list(v)


def parse_examples(lines, vocab, where="data"):
    """lines: iterable of str. Returns list of (input_ids, labels) lists."""
    out = []
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise RefError("%s line %d: bad JSON: %s" % (where, no, e))
        if not isinstance(obj, dict):
            raise RefError("%s line %d: not a JSON object" % (where, no))
        if "input_ids" not in obj:
            raise RefError("%s line %d: no input_ids" % (where, no))
        ids = _int_list(obj["input_ids"], "%s line %d: input_ids" % (where, no))
        if not ids:
            raise RefError("%s line %d: empty input_ids" % (where, no))
        labels = obj.get("labels")
        if labels is None:
            labels = list(ids)
        else:
            labels = _int_list(labels, "%s line %d: labels" % (where, no))
            if len(labels) != len(ids):
                raise RefError("%s line %d: %d labels for %d input_ids"
                               % (where, no, len(labels), len(ids)))
        for t in ids:
            if not 0 <= t < vocab:
                raise RefError("%s line %d: input id %d out of range [0, %d)"
                               % (where, no, t, vocab))
        for t in labels:
            if t != IGNORE and not 0 <= t < vocab:
                raise RefError("%s line %d: label %d out of range [0, %d) and not -100"
                               % (where, no, t, vocab))
        out.append((ids, labels))
    if not out:
        raise RefError("%s holds no examples" % where)
    return out


def load_examples(path, vocab):
    try:
        with open(path, "r", encoding="utf-8") as f:
            lines = f.read().split("\n")
    except OSError as e:
        raise RefError("cannot read %s: %s" % (path, e.strerror or e))
    except UnicodeDecodeError as e:
        raise RefError("%s: not UTF-8: %s" % (path, e))
    return parse_examples(lines, vocab, path)


def pad_batch(examples, seq_len):
    """Truncate each example to seq_len and right-pad to exactly seq_len.
    Returns (ids [M, L], labels [M, L]) int64."""
    M = len(examples)
    ids = torch.full((M, seq_len), PAD_ID, dtype=torch.int64)
    labels = torch.full((M, seq_len), IGNORE, dtype=torch.int64)
    for b, (x, y) in enumerate(examples):
        x, y = x[:seq_len], y[:seq_len]
        ids[b, :len(x)] = torch.tensor(x, dtype=torch.int64)
        labels[b, :len(y)] = torch.tensor(y, dtype=torch.int64)
    return ids, labels


def count_label_tokens(labels):
    """labels [M, L]: the number of labels that some logit predicts."""
    return int((labels[:, 1:] != IGNORE).sum())


def step_examples(examples, step, global_batch):
    n = len(examples)
    return [examples[(step * global_batch + j) % n] for j in range(global_batch)]


# --------------------------------------------------------------------------
# loss, gradients, schedule
# --------------------------------------------------------------------------

def ce_sum(cfg, weights, params, ids, labels):
    """Sum of token cross-entropies (HF shift) of one padded batch, float32,
    differentiable w.r.t. the LoRA tensors."""
    logits = forward_with_grad(cfg, weights, ids, params)
    V = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1, :].reshape(-1, V).float(),
                           labels[:, 1:].reshape(-1), ignore_index=IGNORE,
                           reduction="sum")


def accumulate_step_gradients(cfg, weights, params, flat, batch, micro, seq_len):
    """Clears the grads of `flat`, then accumulates backward(ce_mb / n) over
    the microbatches of `batch`. Returns (loss as float, n)."""
    for p in flat:
        p.grad = None
    padded = [pad_batch(batch[i:i + micro], seq_len) for i in range(0, len(batch), micro)]
    n = sum(count_label_tokens(lab) for _, lab in padded)
    if n == 0:
        raise RefError("a step has no label tokens")
    total = 0.0
    for ids, lab in padded:
        if count_label_tokens(lab) == 0:
            continue
        ce = ce_sum(cfg, weights, params, ids, lab)
        (ce / n).backward()
        total += float(ce)
    for p in flat:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    return total / n, n


def grad_global_norm(flat):
    grads = [p.grad for p in flat if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    return torch.norm(torch.stack([torch.norm(g.detach(), 2.0) for g in grads]), 2.0)


def schedule_multiplier(kind, step, total_steps, warmup_steps):
    """Hugging Face transformers' lr lambdas (0-based step)."""
    s, N, W = step, total_steps, warmup_steps
    if kind not in SCHEDULES:
        raise RefError("unknown schedule %r" % (kind,))
    if s < W:
        return float(s) / float(max(1, W))
    if kind == "constant":
        return 1.0
    if kind == "linear":
        return max(0.0, float(N - s) / float(max(1, N - W)))
    progress = float(s - W) / float(max(1, N - W))
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * float(0.5) * 2.0 * progress)))


def _check_opts(steps, global_batch, micro, seq_len, lr, betas, eps, weight_decay,
                max_grad_norm, schedule, warmup_steps):
    if steps < 1:
        raise RefError("--steps must be >= 1")
    if global_batch < 1 or micro < 1:
        raise RefError("--global-batch and --micro must be >= 1")
    if global_batch % micro != 0:
        raise RefError("--global-batch %d is not a multiple of --micro %d" % (global_batch, micro))
    if seq_len < 2:
        raise RefError("--seq-len must be >= 2")
    for name, v in (("--lr", lr), ("--eps", eps), ("--weight-decay", weight_decay),
                    ("--max-grad-norm", max_grad_norm)):
        if not math.isfinite(v) or v < 0:
            raise RefError("%s must be finite and >= 0" % name)
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise RefError("--betas must be two numbers in [0, 1)")
    if schedule not in SCHEDULES:
        raise RefError("--schedule must be one of %s" % ", ".join(SCHEDULES))
    if warmup_steps < 0:
        raise RefError("--warmup-steps must be >= 0")


def train(cfg, weights, params, flat, examples, steps, global_batch, micro, seq_len, lr,
          betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, max_grad_norm=1.0,
          schedule="constant", warmup_steps=0):
    """Trains `params` in place (flat = the ordered list of A/B tensors).
    Returns the list of per-step records."""
    _check_opts(steps, global_batch, micro, seq_len, lr, betas, eps, weight_decay,
                max_grad_norm, schedule, warmup_steps)
    opt = torch.optim.AdamW(flat, lr=lr, betas=tuple(betas), eps=eps,
                            weight_decay=weight_decay, amsgrad=False,
                            maximize=False, foreach=False)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: schedule_multiplier(schedule, s, steps, warmup_steps))
    records = []
    for s in range(steps):
        batch = step_examples(examples, s, global_batch)
        loss, n = accumulate_step_gradients(cfg, weights, params, flat, batch, micro, seq_len)
        if max_grad_norm > 0:
            norm = torch.nn.utils.clip_grad_norm_(flat, max_grad_norm)
        else:
            norm = grad_global_norm(flat)
        step_lr = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
        records.append({"step": s + 1, "loss": float(loss), "grad_norm": float(norm),
                        "lr": float(step_lr), "tokens": int(n)})
    for p in flat:
        p.grad = None
    return records


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    def error(self, message):
        sys.stderr.write("error: %s\n" % message.replace("\n", " "))
        sys.exit(2)


def _betas(text):
    try:
        parts = [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("bad --betas %r (want b1,b2)" % text)
    if len(parts) != 2:
        raise argparse.ArgumentTypeError("bad --betas %r (want b1,b2)" % text)
    return tuple(parts)


def main(argv=None):
    ap = _Parser(description="LoRA fine-tuning reference (losses + final adapter)")
    ap.add_argument("--model", required=True)
    ap.add_argument("--adapter-init", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--global-batch", type=int, required=True)
    ap.add_argument("--micro", type=int, required=True)
    ap.add_argument("--seq-len", type=int, required=True)
    ap.add_argument("--lr", type=float, required=True)
    ap.add_argument("--betas", type=_betas, default=(0.9, 0.999))
    ap.add_argument("--eps", type=float, default=1e-8)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--max-grad-norm", type=float, default=1.0)
    ap.add_argument("--schedule", default="constant", choices=list(SCHEDULES))
    ap.add_argument("--warmup-steps", type=int, default=0)
    ap.add_argument("--out-losses", required=True)
    ap.add_argument("--out-adapter", required=True)
    args = ap.parse_args(argv)
    try:
        _check_opts(args.steps, args.global_batch, args.micro, args.seq_len, args.lr,
                    args.betas, args.eps, args.weight_decay, args.max_grad_norm,
                    args.schedule, args.warmup_steps)
        cfg, weights = hf.load_model(args.model)
        paths, params, flat = load_trainable_adapter(args.adapter_init, cfg)
        examples = load_examples(args.data, cfg["vocab_size"])
        records = train(cfg, weights, params, flat, examples, args.steps,
                        args.global_batch, args.micro, args.seq_len, args.lr,
                        args.betas, args.eps, args.weight_decay, args.max_grad_norm,
                        args.schedule, args.warmup_steps)
        for r in records:
            if not (math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"])):
                raise RefError("step %d: non-finite loss or grad norm" % r["step"])
        write_adapter(args.out_adapter, args.adapter_init, paths, params)
        with open(args.out_losses, "w", encoding="utf-8") as f:
            json.dump({"steps": records}, f, indent=1)
            f.write("\n")
    except (RefError, OSError, ValueError, RuntimeError) as e:
        sys.stderr.write("error: %s\n" % str(e).replace("\n", " "))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

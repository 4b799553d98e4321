#!/usr/bin/env python3
"""PyTorch reference for the Peft for .NET training-step ratios.

Plain-torch re-implementations of what Hugging Face PEFT computes in its layer forwards (LoRA, DoRA, IA3, LoKr, LoHa),
timed on a stack of Linear layers against the frozen base and full fine-tuning. PEFT itself is not needed (and not
installable here); each adapter below follows the PEFT source it names, operation for operation.

    /usr/bin/python3 benchmarks/python/peft_reference.py --repeat 3 [--openblas-coretype Haswell]

Prints one JSON object on stdout (progress goes to stderr). See README.md in this folder for the exact definitions.
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import json
import math
import os
import platform
import statistics
import sys
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=4, help="number of stacked Linear(dim, dim) layers (default 4)")
    p.add_argument("--dim", type=int, default=1024, help="hidden size: every layer is Linear(dim, dim) (default 1024)")
    p.add_argument("--rows", type=int, default=1024, help="rows of the input batch, x is rows x dim (default 1024)")
    p.add_argument("--rank", type=int, default=8, help="LoRA / DoRA / LoKr rank r (default 8)")
    p.add_argument("--alpha", type=float, default=16.0, help="LoRA / DoRA alpha; scaling = alpha / r (default 16)")
    p.add_argument("--loha-alpha", type=float, default=8.0,
                   help="LoHa alpha; scaling = alpha / r (default 8, PEFT's LoHaConfig default and the C# methods table's LoHa r=8)")
    p.add_argument("--lokr-alpha", type=float, default=8.0,
                   help="LoKr alpha; scaling = alpha / r (default 8, PEFT's LoKrConfig default)")
    p.add_argument("--activation", choices=["gelu", "none"], default="gelu",
                   help="activation between layers (not after the last); gelu matches benchmarks/Peft.Benchmarks")
    p.add_argument("--prenorm", action="store_true",
                   help="a LayerNorm(dim) before each Linear, as the C# methods table's AdaptableStack (block 6); adds the "
                        "lntuning variant (PEFT's LN tuning: a trainable copy of each norm)")
    p.add_argument("--no-input-grad", action="store_true",
                   help="adapter/full steps use an input without requires_grad (default: every training step, "
                        "frozen-base included, uses an input that requires grad, as the C# benchmark does)")
    p.add_argument("--dora-recompute-base", action="store_true",
                   help="DoRA as older PEFT releases did: recompute F.linear(x, W) instead of reusing base_result")
    p.add_argument("--warmup", type=int, default=3, help="warm-up steps per variant, not timed (default 3)")
    p.add_argument("--steps", type=int, default=15, help="timed steps per variant, at least 10 (default 15)")
    p.add_argument("--inference-steps", type=int, default=None, help="timed inference calls per variant "
                   "(default 2 x --steps)")
    p.add_argument("--repeat", type=int, default=1, help="repeat the whole measurement K times (default 1)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads: OpenMP threads of torch's own "
                   "kernels (default 2)")
    p.add_argument("--blas-threads", type=int, default=None,
                   help="OpenBLAS threads (openblas_set_num_threads; default: same as --threads)")
    p.add_argument("--openblas-coretype", default=None,
                   help="set OPENBLAS_CORETYPE (e.g. Haswell, SkylakeX) before torch/OpenBLAS load; "
                        "default: leave the environment as it is")
    p.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                   help="before each repeat, wait (at most SECONDS) until the rest of the machine has used less than "
                        "0.1 CPU over 5 s; for shared machines (default 0: do not wait)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=None, help="also write the JSON object to this file")
    args = p.parse_args(argv)
    if args.steps < 10:
        p.error("--steps must be at least 10")
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    if args.blas_threads is None:
        args.blas_threads = args.threads
    if args.inference_steps is None:
        args.inference_steps = 2 * args.steps
    return args


ARGS = parse_args()
if ARGS.openblas_coretype:
    # OpenBLAS (DYNAMIC_ARCH) reads this once, when the library loads: it must be set before torch is imported.
    os.environ["OPENBLAS_CORETYPE"] = ARGS.openblas_coretype

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------------------
# Environment: which BLAS kernel actually runs.
# ---------------------------------------------------------------------------------------------------------------------

def openblas_info():
    """Finds the OpenBLAS that torch loaded (from /proc/self/maps) and asks it for its core name and config."""
    a = torch.randn(64, 64)
    _ = a @ a  # make sure the BLAS is loaded and initialised
    paths = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                parts = line.split()
                if len(parts) >= 6 and ("blas" in parts[-1].lower()) and parts[-1] not in paths:
                    paths.append(parts[-1])
    except OSError:
        pass
    info = {"loaded_blas_libraries": paths}
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
            corename = lib.openblas_get_corename
            corename.restype = ctypes.c_char_p
            config = lib.openblas_get_config
            config.restype = ctypes.c_char_p
        except (OSError, AttributeError):
            continue
        info.update({
            "library": path,
            "corename": corename().decode(),
            "config": config().decode(),
            "num_threads_default": lib.openblas_get_num_threads(),
            "parallel": {0: "sequential", 1: "pthreads", 2: "openmp"}.get(lib.openblas_get_parallel(), "unknown"),
        })
        info["_lib"] = lib
        break
    return info


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment(blas):
    env_keys = sorted(k for k in os.environ
                      if any(s in k.upper() for s in ("BLAS", "OMP_", "MKL", "NVPL", "GOTO", "KMP_")))
    return {
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "torch_version": torch.__version__,
        "torch_config": torch.__config__.show(),
        "torch_parallel_info": torch.__config__.parallel_info(),
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "mkl_available": torch.backends.mkl.is_available(),
        "mkldnn_available": torch.backends.mkldnn.is_available(),
        "openblas": {k: v for k, v in blas.items() if not k.startswith("_")},
        "env": {k: os.environ[k] for k in env_keys},
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "cpu": cpu_model(),
        "nproc": os.cpu_count(),
        "platform": platform.platform(),
    }


# ---------------------------------------------------------------------------------------------------------------------
# Adapters, written as PEFT computes them.
# ---------------------------------------------------------------------------------------------------------------------

class DoraLinearLayer(nn.Module):
    """peft/tuners/lora/dora.py, DoraLinearLayer (fan_in_fan_out=False)."""

    def __init__(self, recompute_base=False):
        super().__init__()
        self.recompute_base = recompute_base
        self.weight = None  # the magnitude vector m, set by update_layer

    @staticmethod
    def get_weight_norm(weight, lora_weight, scaling):
        weight = weight + scaling * lora_weight
        return torch.linalg.norm(weight, dim=1).to(weight.dtype)

    def update_layer(self, *, base_layer, lora_A, lora_B, scaling):
        with torch.no_grad():
            lora_weight = lora_B @ lora_A
            weight_norm = self.get_weight_norm(base_layer.weight, lora_weight, scaling)
        self.weight = nn.Parameter(weight_norm.clone(), requires_grad=True)

    def forward(self, x, *, lora_A, lora_B, scaling, base_layer, base_result=None):
        # PEFT: lora_weight from the forward of the adapter on an identity (not B.weight @ A.weight, for FSDP).
        x_eye = torch.eye(lora_A.weight.shape[1], device=lora_A.weight.device, dtype=x.dtype)
        lora_weight = lora_B(lora_A(x_eye)).T
        magnitude = self.weight
        weight = base_layer.weight.to(x.dtype)
        weight_norm = self.get_weight_norm(weight, lora_weight.detach(), scaling)
        weight_norm = weight_norm.detach()  # DoRA paper section 4.3: the norm is treated as a constant
        mag_norm_scale = (magnitude / weight_norm).view(1, -1)
        lora_result = lora_B(lora_A(x))
        if base_result is not None and not self.recompute_base:
            bias = base_layer.bias
            if bias is not None:
                base_result = base_result - bias
        else:
            base_result = F.linear(x, weight)
        return (mag_norm_scale - 1) * base_result + mag_norm_scale * lora_result * scaling


class LoraLinear(nn.Module):
    """peft/tuners/lora/layer.py, Linear.forward (one active adapter, not merged); use_dora selects DoRA."""

    def __init__(self, base_layer: nn.Linear, r, alpha, use_dora=False, dora_recompute_base=False):
        super().__init__()
        self.base_layer = base_layer
        self.lora_A = nn.Linear(base_layer.in_features, r, bias=False)
        self.lora_B = nn.Linear(r, base_layer.out_features, bias=False)
        self.lora_dropout = nn.Identity()  # lora_dropout = 0.0
        self.scaling = alpha / r
        self.use_dora = use_dora
        # PEFT init_lora_weights=True: A kaiming-uniform(a=sqrt(5)), B zeros.
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.lora_magnitude_vector = DoraLinearLayer(dora_recompute_base) if use_dora else None

    def randomize_for_timing(self, generator):
        with torch.no_grad():
            self.lora_B.weight.copy_(torch.randn(self.lora_B.weight.shape, generator=generator) * 0.02)
        if self.use_dora:
            self.lora_magnitude_vector.update_layer(base_layer=self.base_layer, lora_A=self.lora_A.weight,
                                                    lora_B=self.lora_B.weight, scaling=self.scaling)

    def init_dora(self):
        self.lora_magnitude_vector.update_layer(base_layer=self.base_layer, lora_A=self.lora_A.weight,
                                                lora_B=self.lora_B.weight, scaling=self.scaling)

    def delta_weight(self):
        return (self.lora_B.weight @ self.lora_A.weight) * self.scaling

    def forward(self, x):
        result = self.base_layer(x)
        torch_result_dtype = result.dtype
        lora_A, lora_B, dropout, scaling = self.lora_A, self.lora_B, self.lora_dropout, self.scaling
        x = x.to(lora_A.weight.dtype)
        if not self.use_dora:
            result = result + lora_B(lora_A(dropout(x))) * scaling
        else:
            if isinstance(dropout, nn.Identity) or not self.training:
                base_result = result
            else:
                x = dropout(x)
                base_result = None
            result = result + self.lora_magnitude_vector(x, lora_A=lora_A, lora_B=lora_B, scaling=scaling,
                                                         base_layer=self.base_layer, base_result=base_result)
        return result.to(torch_result_dtype)

    def trainable(self):
        ps = [self.lora_A.weight, self.lora_B.weight]
        if self.use_dora:
            ps.append(self.lora_magnitude_vector.weight)
        return ps


class IA3Linear(nn.Module):
    """peft/tuners/ia3/layer.py, Linear.forward with is_feedforward=False: the output is scaled by l (init ones)."""

    def __init__(self, base_layer: nn.Linear):
        super().__init__()
        self.base_layer = base_layer
        self.ia3_l = nn.Parameter(torch.ones(base_layer.out_features, 1))

    def forward(self, x):
        dtype = previous_dtype = x.dtype
        ia3_scaling = 1
        dtype = self.ia3_l.dtype
        ia3_scaling *= self.ia3_l.flatten()
        result = self.base_layer(x)
        result = result.to(dtype) * ia3_scaling
        return result.to(previous_dtype)

    def trainable(self):
        return [self.ia3_l]


def factorization(dimension, factor=-1):
    """LyCORIS/PEFT factorization rule: the split m * n = dimension with m <= n that is closest to square (with
    factor > 0 dividing dimension, the split (factor, dimension / factor) ordered; factor < 0: no bound on m)."""
    if factor > 0 and dimension % factor == 0:
        m, n = factor, dimension // factor
        return (n, m) if m > n else (m, n)
    bound = dimension if factor < 0 else factor
    best = (1, dimension)
    for m in range(2, int(math.isqrt(dimension)) + 1):
        if dimension % m == 0 and m <= bound:
            best = (m, dimension // m)
    return best


class LoKrLinear(nn.Module):
    """peft/tuners/lokr/layer.py, Linear: delta = kron(w1, w2) * scale, formed as the full out x in matrix every
    forward (get_delta_weight), then result = base(x) + F.linear(x, delta)."""

    def __init__(self, base_layer: nn.Linear, r, alpha, decompose_both=False, decompose_factor=-1):
        super().__init__()
        self.base_layer = base_layer
        in_dim, out_dim = base_layer.in_features, base_layer.out_features
        in_m, in_n = factorization(in_dim, decompose_factor)
        out_l, out_k = factorization(out_dim, decompose_factor)
        shape = ((out_l, out_k), (in_m, in_n))
        self.shape = shape
        self.use_w1 = not (decompose_both and r < max(shape[0][0], shape[1][0]) / 2)
        self.use_w2 = not (r < max(shape[0][1], shape[1][1]) / 2)
        self.scaling = alpha / r
        self.module_dropout = 0.0
        self.rank_dropout = 0.0
        if self.use_w1:
            self.lokr_w1 = nn.Parameter(torch.empty(shape[0][0], shape[1][0]))
        else:
            self.lokr_w1_a = nn.Parameter(torch.empty(shape[0][0], r))
            self.lokr_w1_b = nn.Parameter(torch.empty(r, shape[1][0]))
        if self.use_w2:
            self.lokr_w2 = nn.Parameter(torch.empty(shape[0][1], shape[1][1]))
        else:
            self.lokr_w2_a = nn.Parameter(torch.empty(shape[0][1], r))
            self.lokr_w2_b = nn.Parameter(torch.empty(r, shape[1][1]))
        # PEFT reset_adapter_parameters (init_weights=True): w1 (or w1_a) zeros, the w2 factors kaiming-uniform.
        for name, p in self.named_parameters(recurse=False):
            if name in ("lokr_w1", "lokr_w1_a"):
                nn.init.zeros_(p)
            else:
                nn.init.kaiming_uniform_(p, a=math.sqrt(5))

    def randomize_for_timing(self, generator):
        with torch.no_grad():
            w = self.lokr_w1 if self.use_w1 else self.lokr_w1_a
            w.copy_(torch.randn(w.shape, generator=generator) * 0.02)

    def get_delta_weight(self):
        w1 = self.lokr_w1 if self.use_w1 else self.lokr_w1_a @ self.lokr_w1_b
        w2 = self.lokr_w2 if self.use_w2 else self.lokr_w2_a @ self.lokr_w2_b
        weight = torch.kron(w1, w2.contiguous()) * self.scaling  # make_kron
        weight = weight.reshape(self.base_layer.weight.shape)
        if self.training and self.rank_dropout:
            raise NotImplementedError("rank_dropout is 0 in this benchmark")
        return weight

    def forward(self, x):
        previous_dtype = x.dtype
        result = self.base_layer(x)
        if (not self.training) or (self.training and torch.rand(1) > self.module_dropout):
            delta_weight = self.get_delta_weight()
            result = result + F.linear(x.to(delta_weight.dtype), delta_weight)
        return result.to(previous_dtype)

    def trainable(self):
        return [p for _, p in self.named_parameters(recurse=False)]


class LoHaLinear(nn.Module):
    """peft/tuners/loha/layer.py, Linear: delta = (w1_a w1_b) * (w2_a w2_b) * scale (HadaWeight, whose backward is the
    gradient of that dense product), formed as the full out x in matrix every forward, then
    result = base(x) + F.linear(x, delta). Init (init_weights=True): w1_a, w1_b, w2_a kaiming-uniform (a = sqrt 5), w2_b zeros."""

    def __init__(self, base_layer: nn.Linear, r, alpha):
        super().__init__()
        self.base_layer = base_layer
        in_dim, out_dim = base_layer.in_features, base_layer.out_features
        self.scaling = alpha / r
        self.module_dropout = 0.0
        self.hada_w1_a = nn.Parameter(torch.empty(out_dim, r))
        self.hada_w1_b = nn.Parameter(torch.empty(r, in_dim))
        self.hada_w2_a = nn.Parameter(torch.empty(out_dim, r))
        self.hada_w2_b = nn.Parameter(torch.empty(r, in_dim))
        for p in (self.hada_w1_a, self.hada_w1_b, self.hada_w2_a):
            nn.init.kaiming_uniform_(p, a=math.sqrt(5))
        nn.init.zeros_(self.hada_w2_b)

    def randomize_for_timing(self, generator):
        with torch.no_grad():
            self.hada_w2_b.copy_(torch.randn(self.hada_w2_b.shape, generator=generator) * 0.02)

    def get_delta_weight(self):
        return (self.hada_w1_a @ self.hada_w1_b) * (self.hada_w2_a @ self.hada_w2_b) * self.scaling

    def forward(self, x):
        result = self.base_layer(x)
        if (not self.training) or (self.training and torch.rand(1) > self.module_dropout):
            result = result + F.linear(x, self.get_delta_weight())
        return result

    def trainable(self):
        return [self.hada_w1_a, self.hada_w1_b, self.hada_w2_a, self.hada_w2_b]


class Stack(nn.Module):
    """layers x Linear(dim, dim) (each possibly wrapped by an adapter), activation between them, none after the last:
    the layout of LoRAStack / PlainStack in benchmarks/Peft.Benchmarks/Models.cs."""

    def __init__(self, layers, activation, norms=None):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.norms = nn.ModuleList(norms) if norms is not None else None
        self.activation = activation

    def forward(self, x):
        h = x
        for i, layer in enumerate(self.layers):
            if self.norms is not None:
                h = self.norms[i](h)
            h = layer(h)
            if self.activation == "gelu" and i < len(self.layers) - 1:
                h = F.gelu(h)
        return h


# ---------------------------------------------------------------------------------------------------------------------
# Building the variants.
# ---------------------------------------------------------------------------------------------------------------------

def base_weights(args):
    g = torch.Generator().manual_seed(args.seed)
    ws = []
    for _ in range(args.layers):
        lin = nn.Linear(args.dim, args.dim)  # default init; the values do not matter for timing
        with torch.no_grad():
            lin.weight.copy_((torch.rand(lin.weight.shape, generator=g) * 2 - 1) / math.sqrt(args.dim))
            lin.bias.copy_((torch.rand(lin.bias.shape, generator=g) * 2 - 1) / math.sqrt(args.dim))
        ws.append((lin.weight.detach().clone(), lin.bias.detach().clone()))
    return ws


def frozen_linears(weights, trainable=False):
    out = []
    for w, b in weights:
        lin = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(w)
            lin.bias.copy_(b)
        lin.weight.requires_grad_(trainable)
        lin.bias.requires_grad_(trainable)
        out.append(lin)
    return out


class LNTuningNorm(nn.Module):
    """peft/tuners/ln_tuning/layer.py: the frozen norm plus a trainable deep copy that runs instead of it."""

    def __init__(self, base_layer: nn.LayerNorm):
        super().__init__()
        self.base_layer = base_layer
        self.ln_tuning_layers = nn.ModuleDict({"default": copy.deepcopy(base_layer)})
        for p in self.ln_tuning_layers.parameters():
            p.requires_grad_(True)

    def forward(self, x):
        return self.ln_tuning_layers["default"](x)

    def trainable(self):
        return list(self.ln_tuning_layers.parameters())


def frozen_norms(args):
    """Frozen LayerNorm(dim) before each Linear with --prenorm (the weights do not matter for timing), else None."""
    if not args.prenorm:
        return None
    norms = [nn.LayerNorm(args.dim) for _ in range(args.layers)]
    for n in norms:
        n.requires_grad_(False)
    return norms


def build(args, weights):
    torch.manual_seed(args.seed + 1)
    g = torch.Generator().manual_seed(args.seed + 2)
    models = {}
    norms = lambda: frozen_norms(args)  # noqa: E731 - fresh norms per variant

    models["frozen"] = (Stack(frozen_linears(weights), args.activation, norms()), [])

    full = Stack(frozen_linears(weights, trainable=True), args.activation, norms())
    models["full"] = (full, [p for p in full.parameters() if p.requires_grad])  # the Linear layers (norms stay frozen)

    lora_layers = [LoraLinear(l, args.rank, args.alpha) for l in frozen_linears(weights)]
    for l in lora_layers:
        l.randomize_for_timing(g)
    models["lora"] = (Stack(lora_layers, args.activation, norms()), [p for l in lora_layers for p in l.trainable()])

    dora_layers = [LoraLinear(l, args.rank, args.alpha, use_dora=True, dora_recompute_base=args.dora_recompute_base)
                   for l in frozen_linears(weights)]
    for l in dora_layers:
        l.randomize_for_timing(g)
    models["dora"] = (Stack(dora_layers, args.activation, norms()), [p for l in dora_layers for p in l.trainable()])

    ia3_layers = [IA3Linear(l) for l in frozen_linears(weights)]
    models["ia3"] = (Stack(ia3_layers, args.activation, norms()), [p for l in ia3_layers for p in l.trainable()])

    lokr_layers = [LoKrLinear(l, args.rank, args.lokr_alpha) for l in frozen_linears(weights)]
    for l in lokr_layers:
        l.randomize_for_timing(g)
    models["lokr"] = (Stack(lokr_layers, args.activation, norms()), [p for l in lokr_layers for p in l.trainable()])

    loha_layers = [LoHaLinear(l, args.rank, args.loha_alpha) for l in frozen_linears(weights)]
    for l in loha_layers:
        l.randomize_for_timing(g)
    models["loha"] = (Stack(loha_layers, args.activation, norms()), [p for l in loha_layers for p in l.trainable()])

    if args.prenorm:
        ln_norms = [LNTuningNorm(n) for n in frozen_norms(args)]
        models["lntuning"] = (Stack(frozen_linears(weights), args.activation, ln_norms), [p for n in ln_norms for p in n.trainable()])

    for name, (model, params) in models.items():
        model.train()
        trainable = [p for p in model.parameters() if p.requires_grad]
        assert {id(p) for p in trainable} == {id(p) for p in params}, name
    return models


def build_inference(args, weights, lora_model):
    plain = Stack(frozen_linears(weights), args.activation).eval()
    merged_weights = []
    with torch.no_grad():
        for (w, b), layer in zip(weights, lora_model.layers):
            merged_weights.append((w + layer.delta_weight(), b))  # PEFT merge: W += B @ A * scaling
    merged = Stack(frozen_linears(merged_weights), args.activation).eval()
    lora_model.eval()
    return {"plain": plain, "merged": merged, "unmerged_lora": lora_model}


# ---------------------------------------------------------------------------------------------------------------------
# Checks (cheap, untimed): the PEFT formulas give what they should.
# ---------------------------------------------------------------------------------------------------------------------

def checks(args):
    out = {}
    torch.manual_seed(123)
    d, rows = 64, 16
    x = torch.randn(rows, d)
    w = [(torch.randn(d, d) / 8, torch.randn(d) / 8)]
    base = frozen_linears(w)[0]
    # At PEFT's init (B = 0, w1 = 0, l = 1) every adapter is the identity on the base output.
    lora = LoraLinear(frozen_linears(w)[0], 4, 8)
    dora = LoraLinear(frozen_linears(w)[0], 4, 8, use_dora=True)
    dora.init_dora()
    ia3 = IA3Linear(frozen_linears(w)[0])
    lokr = LoKrLinear(frozen_linears(w)[0], 2, 2)
    with torch.no_grad():
        y = base(x)
        for name, m in (("lora", lora), ("dora", dora), ("ia3", ia3), ("lokr", lokr)):
            out[f"{name}_at_init_equals_base_maxabs"] = float((m(x) - y).abs().max())
        # DoRA with B != 0: equals the merged DoRA weight m * (W + s BA) / ||W + s BA||_row, applied with bias.
        dora.lora_B.weight.normal_(0, 0.1)
        dora.lora_magnitude_vector.weight.mul_(1.5)
        wp = dora.base_layer.weight + dora.scaling * dora.lora_B.weight @ dora.lora_A.weight
        wd = dora.lora_magnitude_vector.weight.view(-1, 1) * wp / torch.linalg.norm(wp, dim=1, keepdim=True)
        out["dora_equals_merged_formula_maxabs"] = float((dora(x) - F.linear(x, wd, dora.base_layer.bias)).abs().max())
        # LoKr: kron(w1, w2) * scale against an explicit block construction.
        lokr.lokr_w1.normal_()
        w2 = lokr.lokr_w2_a @ lokr.lokr_w2_b if not lokr.use_w2 else lokr.lokr_w2
        blocks = torch.cat([torch.cat([lokr.lokr_w1[i, j] * w2 for j in range(lokr.lokr_w1.shape[1])], 1)
                            for i in range(lokr.lokr_w1.shape[0])], 0) * lokr.scaling
        out["lokr_kron_maxabs"] = float((lokr.get_delta_weight() - blocks).abs().max())
    out["lokr_factorization_dim"] = {str(args.dim): list(factorization(args.dim))}
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Timing.
# ---------------------------------------------------------------------------------------------------------------------

def make_train_step(model, params, x, input_grad):
    opt = torch.optim.AdamW(params, lr=1e-4) if params else None

    def step():
        if opt is not None:
            opt.zero_grad(set_to_none=True)
        inp = x.detach().requires_grad_(input_grad)
        loss = model(inp).pow(2).mean()
        loss.backward()
        if opt is not None:
            opt.step()

    return step, opt


def make_infer(model, x):
    def run():
        with torch.no_grad():
            model(x)

    return run


def interleaved(variants, warmup, steps):
    """Each round runs every variant once, in an order rotated by one each round (as Timing.Interleaved in the C#
    benchmark); warmup rounds are not timed. Returns name -> list of ms."""
    names = list(variants)
    times = {n: [] for n in names}
    for rnd in range(-warmup, steps):
        k0 = max(rnd, 0)
        for k in range(len(names)):
            name = names[(k + k0) % len(names)]
            t0 = time.perf_counter()
            variants[name]()
            t1 = time.perf_counter()
            if rnd >= 0:
                times[name].append((t1 - t0) * 1e3)
    return times


RATIOS = {
    # name: (numerator, denominator)
    "lora/frozen": ("lora", "frozen"),
    "dora/lora": ("dora", "lora"),
    "ia3/frozen": ("ia3", "frozen"),
    "lokr/lora": ("lokr", "lora"),
    "loha/lora": ("loha", "lora"),
    "full/frozen": ("full", "frozen"),
    "unmerged_lora_inference/plain_inference": ("infer_unmerged_lora", "infer_plain"),
    "merged_lora_inference/plain_inference": ("infer_merged", "infer_plain"),
}
EXTRA_RATIOS = {
    "dora/frozen": ("dora", "frozen"),
    "lokr/frozen": ("lokr", "frozen"),
    "loha/frozen": ("loha", "frozen"),
    "ia3/lora": ("ia3", "lora"),
    "lora/full": ("lora", "full"),
    "lntuning/lora": ("lntuning", "lora"),
    "lntuning/frozen": ("lntuning", "frozen"),
}


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return [float(v) for v in f.read().split()[:3]]
    except OSError:
        return None


def system_busy_s():
    """(busy, steal) CPU seconds of the whole machine so far (all processes), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            v = [int(t) for t in f.readline().split()[1:]] + [0] * 8
        hz = os.sysconf("SC_CLK_TCK")
        busy = v[0] + v[1] + v[2] + v[5] + v[6]  # user nice system irq softirq (not idle, iowait, steal)
        return busy / hz, v[7] / hz
    except (OSError, ValueError):
        return None


def wait_idle(limit_s, window_s=5.0, threshold=0.1):
    """Waits until other processes used under `threshold` CPU per second over `window_s`; returns seconds waited."""
    start = time.perf_counter()
    while True:
        b0 = system_busy_s()
        if b0 is None:
            return 0.0
        time.sleep(window_s)
        b1 = system_busy_s()
        if (b1[0] - b0[0]) / window_s < threshold or time.perf_counter() - start >= limit_s:
            return time.perf_counter() - start


def one_measurement(args, weights, x, index):
    waited = None
    if args.wait_idle > 0:
        waited = wait_idle(args.wait_idle)
        log(f"[repeat {index + 1}/{args.repeat}] waited {waited:.0f} s for an idle machine")
    load_before = loadavg()
    busy0 = system_busy_s()
    cpu0, wall0 = os.times(), time.perf_counter()
    models = build(args, weights)
    train = {}
    optimizers = {}
    for name, (model, params) in models.items():
        input_grad = True if name == "frozen" else not args.no_input_grad
        train[name], optimizers[name] = make_train_step(model, params, x, input_grad)
    log(f"[repeat {index + 1}/{args.repeat}] training steps: {', '.join(train)} "
        f"({args.warmup} warm-up + {args.steps} timed rounds)")
    t = interleaved(train, args.warmup, args.steps)

    lora_model = models["lora"][0]
    inf = build_inference(args, weights, lora_model)
    with torch.no_grad():
        diff = float((inf["merged"](x) - inf["unmerged_lora"](x)).abs().max())
    infer = {f"infer_{k}": make_infer(m, x) for k, m in inf.items()}
    log(f"[repeat {index + 1}/{args.repeat}] inference (no_grad): {', '.join(infer)} "
        f"({args.warmup} warm-up + {args.inference_steps} timed rounds)")
    t.update(interleaved(infer, args.warmup, args.inference_steps))

    ms = {n: {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)} for n, v in t.items()}
    ratios = {r: ms[a]["median"] / ms[b]["median"] for r, (a, b) in RATIOS.items()}
    extra = {r: ms[a]["median"] / ms[b]["median"] for r, (a, b) in EXTRA_RATIOS.items() if a in ms and b in ms}
    trainable = {n: sum(p.numel() for p in params) for n, (_, params) in models.items()}
    foreach = {n: (o.defaults.get("foreach") if o is not None else None) for n, o in optimizers.items()}
    cpu1, wall1 = os.times(), time.perf_counter()
    busy1 = system_busy_s()
    cpu_s = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    wall = wall1 - wall0
    machine = {"loadavg_before": load_before, "loadavg_after": loadavg(), "wall_s": wall,
               "process_cpu_s": cpu_s, "process_cpu_per_wall": cpu_s / wall, "waited_for_idle_s": waited}
    if busy0 is not None and busy1 is not None:
        # CPU time used by every other process on the machine while this measurement ran (per wall second).
        machine["other_processes_cpu_per_wall"] = max(0.0, (busy1[0] - busy0[0]) - cpu_s) / wall
        machine["steal_per_wall"] = (busy1[1] - busy0[1]) / wall
        if machine["other_processes_cpu_per_wall"] > 0.1:
            log(f"WARNING: other processes used {machine['other_processes_cpu_per_wall']:.2f} CPU per second during "
                "this measurement: they compete for the cores, timings (multi-threaded ones most) are unreliable")
    return {"ms": ms, "ratios": ratios, "extra_ratios": extra, "trainable_parameters": trainable,
            "merged_vs_unmerged_maxabs": diff, "adamw_foreach": foreach, "machine_load": machine}


def summarize(runs, key):
    out = {}
    for name in runs[0][key]:
        vals = [r[key][name] for r in runs]
        out[name] = {"min": min(vals), "median": statistics.median(vals), "max": max(vals)}
    return out


def main(args):
    torch.set_num_threads(args.threads)
    blas = openblas_info()
    if "_lib" in blas:
        blas["_lib"].openblas_set_num_threads(args.blas_threads)
        blas["num_threads_used"] = blas["_lib"].openblas_get_num_threads()
        if blas["corename"].lower() in ("prescott", "core2", "nehalem", "generic"):
            blas["warning"] = (f"OpenBLAS runs its {blas['corename']} kernel (no AVX2/AVX-512): this CPU was not "
                               "recognised by this OpenBLAS; set --openblas-coretype Haswell (or SkylakeX)")
            log("WARNING: " + blas["warning"])
    env = environment(blas)
    log(f"torch {torch.__version__}, threads {torch.get_num_threads()}, OpenBLAS core "
        f"{blas.get('corename', '?')} (OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')})")

    weights = base_weights(args)
    x = torch.randn(args.rows, args.dim, generator=torch.Generator().manual_seed(args.seed + 3))
    check = checks(args)

    started = time.time()
    runs = [one_measurement(args, weights, x, i) for i in range(args.repeat)]
    elapsed = time.time() - started

    result = {
        "benchmark": "peft_reference (plain PyTorch, PEFT formulas)",
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "config": {
            "layers": args.layers, "dim": args.dim, "rows": args.rows, "rank": args.rank, "alpha": args.alpha,
            "lora_scaling": args.alpha / args.rank, "lokr_alpha": args.lokr_alpha,
            "lokr_scaling": args.lokr_alpha / args.rank, "loha_scaling": args.loha_alpha / args.rank, "activation": args.activation,
            "input_requires_grad": {"frozen": True, "adapters_and_full": not args.no_input_grad},
            "dora_reuses_base_result": not args.dora_recompute_base,
            "loss": "output.pow(2).mean()", "optimizer": "torch.optim.AdamW(lr=1e-4), zero_grad(set_to_none=True)",
            "warmup": args.warmup, "steps": args.steps, "inference_steps": args.inference_steps,
            "repeat": args.repeat, "wait_idle_s": args.wait_idle, "threads": args.threads,
            "blas_threads": args.blas_threads, "seed": args.seed, "dtype": "float32",
        },
        "environment": env,
        "checks": check,
        "summary": {
            "ratios": summarize(runs, "ratios"),
            "extra_ratios": summarize(runs, "extra_ratios"),
            "ms_median": {n: {"min": min(r["ms"][n]["median"] for r in runs),
                              "median": statistics.median(r["ms"][n]["median"] for r in runs),
                              "max": max(r["ms"][n]["median"] for r in runs)} for n in runs[0]["ms"]},
        },
        "runs": runs,
        "elapsed_s": elapsed,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))

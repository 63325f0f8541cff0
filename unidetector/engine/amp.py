"""Mixed precision: Jittor's ``auto_mixed_precision_level`` plus our loss scaling (Jittor has no GradScaler).

``--amp`` / config ``fp16=dict(loss_scale=...)``:

* **GPU**: sets ``jt.flags.auto_mixed_precision_level`` (default 5: ops whose inputs are fp16 run in
  fp16, reductions such as sum/exp stay fp32; parameters and optimizer state stay fp32 "master"
  weights, as in mmcv's ``Fp16OptimizerHook``).
* **CPU**: Jittor has no fast fp16 CPU kernels; on processors with AMX or AVX-512-BF16 the channels-last
  training convolutions (:func:`unidetector.ops.onednn.conv2d_nhwc`) read bfloat16 copies of their operands
  and accumulate in float32, and the fixed (frozen, running-statistics) blocks run in bfloat16 (weights,
  gradients, trained BatchNorms and their activations stay float32); elsewhere the
  compute stays fp32 and a warning says so. Loss scaling still runs (bfloat16 has float32's exponent range,
  so it is only harmless: scale, unscale, overflow check), which keeps the code path testable on CPU.
* Loss scaling (mmcv ``LossScaler``): the loss is multiplied by ``scale`` before ``backward``; gradients
  are divided by it before clipping/stepping; a step whose gradients are not finite is **skipped**.
  ``loss_scale='dynamic'`` (default for ``--amp``) starts at 2^16, halves on overflow and doubles after
  ``growth_interval`` (2000) good steps; a number means a static scale (official: 32).
"""
from __future__ import annotations

import math
import sys
import warnings


class LossScaler:
    def __init__(self, loss_scale="dynamic", init_scale=2.0 ** 16, growth_factor=2.0, backoff_factor=0.5,
                 growth_interval=2000):
        self.dynamic = loss_scale == "dynamic"
        self.scale = float(init_scale if self.dynamic else loss_scale)
        self.growth_factor = growth_factor
        self.backoff_factor = backoff_factor
        self.growth_interval = growth_interval
        self.good_steps = 0

    def update(self, found_inf: bool) -> None:
        if not self.dynamic:
            return
        if found_inf:
            self.scale = max(self.scale * self.backoff_factor, 1.0)
            self.good_steps = 0
        else:
            self.good_steps += 1
            if self.good_steps % self.growth_interval == 0:
                self.scale *= self.growth_factor

    def unscale_(self, optimizer) -> bool:
        """Divide the accumulated gradients by ``scale``; True if they are all finite."""
        from .optim import grad_global_norm

        inv = 1.0 / self.scale
        for _, _, g in optimizer.grads():
            g.update(g * inv)
        return math.isfinite(float(grad_global_norm(optimizer).item()))

    def state_dict(self) -> dict:
        return {"dynamic": self.dynamic, "scale": self.scale, "good_steps": self.good_steps}

    def load_state_dict(self, state: dict) -> None:
        self.scale = float(state["scale"])
        self.good_steps = int(state["good_steps"])


def enable_amp(level: int = 5) -> str | None:
    """Turn on mixed precision. GPU: Jittor's AMP (returns "float16"). CPU with AMX or AVX-512-BF16: returns
    "bfloat16", the operand type the trainer gives the channels-last training convolutions
    (:func:`unidetector.models.layers.channels_last.training_dtype`). Other CPUs: warn, compute in float32 (None)."""
    import jittor as jt

    from ..ops import onednn

    if jt.flags.use_cuda:
        jt.flags.auto_mixed_precision_level = level
        return "float16"
    if onednn.available() and onednn.bf16_supported():
        print("unidetector: --amp on the CPU: the training convolutions compute in bfloat16 (AMX / AVX-512-BF16, "
              "float32 accumulation and weights)", file=sys.stderr)
        return "bfloat16"
    warnings.warn("--amp on CPU: this processor has no AMX / AVX-512-BF16 (or Jittor no oneDNN); computing in fp32 "
                  "(loss scaling is still applied)", RuntimeWarning, stacklevel=2)
    return None

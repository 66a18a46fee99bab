"""The StyleGAN2-ADA training step: losses, lazy regularisation, EMA, FreezeD, ADA.

One :class:`Trainer` holds G, D, G_ema, their Adam optimisers, the augmentation pipe and the
small training state (images seen, step count, path-length mean, ADA statistics). ``step(reals)``
runs NVlabs' four phases on one minibatch:

- ``Gmain``: non-saturating logistic loss ``softplus(-D(aug(G(z))))`` with style mixing;
- ``Greg`` (every ``pl_interval`` steps, when ``pl_weight > 0``): path-length penalty on a
  batch shrunk by ``pl_batch_shrink``, loss multiplied by the interval;
- ``Dmain``: ``softplus(D(aug(G(z)))) + softplus(-D(aug(x)))``;
- ``Dreg`` (every ``r1_interval`` steps): R1 ``gamma/2 * |grad_x D(aug(x))|^2``, multiplied by
  the interval. R1 takes ``autograd.grad(create_graph=True)`` and then a plain backward.

Lazy regularisation corrects each optimiser: ``lr * I/(I+1)`` and ``betas ** (I/(I+1))``
(NVlabs' ``mb_ratio``). G_ema follows G with ``beta = 0.5 ** (batch / ema_nimg)``.

Randomness: every step draws from a ``torch.Generator`` seeded by ``(seed, rank, step)``
(EDM2's scheme), so a resumed run continues with exactly the numbers the uninterrupted run would
have used, with no RNG state to save. Several processes (torchrun) average their gradients with
one ``all_reduce`` per phase over the trainable parameters (StyleGAN3's scheme, which also works
with R1's double backward); frozen D layers have no gradients and are never reduced.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from advisor.finetuning.augment import AugmentPipe, ada_adjust
from advisor.finetuning.distributed import Distributed
from advisor.finetuning.options import FinetuneOptions
from advisor.networks import Discriminator, Generator


def d_layers(D: Discriminator) -> list[tuple[str, nn.Module]]:  # noqa: N803
    """D's layers in NVlabs' FreezeD order: from the input, per block fromrgb, conv0, conv1, skip.

    The highest-resolution block comes first; layers a block lacks are not counted; the ``b4``
    epilogue is never part of the count (NVlabs never freezes it).
    """
    layers = []
    for res in D.block_resolutions:
        block = getattr(D, f"b{res}")
        for name in ("fromrgb", "conv0", "conv1", "skip"):
            layer = getattr(block, name, None)
            if layer is not None:
                layers.append((f"b{res}.{name}", layer))
    return layers


def freeze_d(D: Discriminator, count: int) -> list[str]:  # noqa: N803
    """Freeze the first ``count`` layers of :func:`d_layers`; return their names."""
    layers = d_layers(D)
    frozen = []
    for name, layer in layers[:count]:
        layer.requires_grad_(False)
        frozen.append(name)
    return frozen


class Trainer:
    """Networks, optimisers and state of one fine-tune; see the module docstring."""

    def __init__(
        self,
        *,
        G: Generator,  # noqa: N803
        D: Discriminator,  # noqa: N803
        G_ema: Generator,  # noqa: N803
        options: FinetuneOptions,
        device: torch.device,
        dist: Distributed = Distributed(),  # noqa: B008 - frozen
    ) -> None:
        assert options.batch is not None and options.lr is not None
        self.G, self.D, self.G_ema = G.to(device), D.to(device), G_ema.to(device)
        self.options, self.device, self.dist = options, device, dist
        self.G.train().requires_grad_(True)
        self.D.train().requires_grad_(True)
        self.G_ema.eval().requires_grad_(False)
        self.frozen = freeze_d(self.D, options.freeze_d)
        self.augment: AugmentPipe | None = None
        if options.aug != "none":
            self.augment = AugmentPipe().to(device)
            self.augment.p.fill_(options.aug_p)
        self.opt_G = self._adam(self.G, options.pl_interval if options.pl_weight > 0 else None)
        self.opt_D = self._adam(self.D, options.r1_interval if options.r1_gamma else None)
        self.nimg = 0
        self.step_count = 0
        self.pl_mean = torch.zeros([], device=device)
        self.ada_signs = 0.0
        self.ada_count = 0
        # Since the last tick: sum of sign(D(real)), of D(real), of D(fake) logits, and images.
        self.tick_sums = [0.0, 0.0, 0.0, 0]
        self.last: dict[str, float] = {}

    # ----------------------------------------------------------------------------- setup
    def _adam(self, net: nn.Module, interval: int | None) -> torch.optim.Adam:
        lr, betas = self.options.lr, (0.0, 0.99)
        if interval:
            ratio = interval / (interval + 1)
            lr, betas = lr * ratio, (betas[0] ** ratio, betas[1] ** ratio)
        params = [p for p in net.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=lr, betas=betas, eps=1e-8)

    @property
    def per_rank_batch(self) -> int:
        return self.options.batch // self.dist.world_size

    def _rng(self, phase: int) -> torch.Generator:
        # One stream per (seed, rank, step, phase): exact resume without saving RNG state.
        g = torch.Generator(device=self.device)
        key = (
            (self.options.seed * 65_537 + self.dist.rank) * 1_000_003 + self.step_count
        ) * 8 + phase
        g.manual_seed(key % (2**63 - 1))
        return g

    def _autocast(self) -> contextlib.AbstractContextManager[None]:
        return torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.options.precision == "bf16"
        )

    # ----------------------------------------------------------------------------- forward
    def _augment(self, images: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        if self.augment is None or float(self.augment.p) <= 0:
            return images
        return self.augment(images, generator=rng)

    def _run_g(self, z: torch.Tensor, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        mapping, synthesis = self.G.mapping, self.G.synthesis
        ws = mapping(z, update_w_avg=True)
        if self.options.style_mixing > 0:
            mix = torch.rand([], generator=rng, device=self.device) < self.options.style_mixing
            if bool(mix):
                cutoff = int(torch.randint(1, ws.shape[1], [], generator=rng, device=self.device))
                z2 = torch.randn(z.shape, generator=rng, device=self.device)
                ws2 = mapping(z2)
                ws = torch.cat([ws[:, :cutoff], ws2[:, cutoff:]], dim=1)
        with self._autocast():
            images = synthesis(ws, noise_mode="random", noise_generator=rng)
        return images.float(), ws

    def _run_d(self, images: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        with self._autocast():
            return self.D(self._augment(images, rng)).float()

    def _z(self, n: int, rng: torch.Generator) -> torch.Tensor:
        return torch.randn([n, self.G.config.z_dim], generator=rng, device=self.device)

    # ----------------------------------------------------------------------------- step
    def step(self, reals: torch.Tensor) -> dict[str, float]:
        """One minibatch of this process's ``per_rank_batch`` reals, float32 NCHW in [-1, 1].

        Returns the phase losses (this process's values) for the stats line.
        """
        o = self.options
        n = reals.shape[0]
        reals = reals.to(self.device)
        stats: dict[str, float] = {}

        # Gmain: make D call the fakes real.
        rng = self._rng(0)
        with self._zero_step(self.opt_G, self.G):
            self.D.requires_grad_(False)
            fakes, _ = self._run_g(self._z(n, rng), rng)
            loss = F.softplus(-self._run_d(fakes, rng)).mean()
            loss.backward()
            stats["loss_g"] = float(loss.detach())

        # Greg: path-length regularisation, lazily.
        if o.pl_weight > 0 and self.step_count % o.pl_interval == 0:
            rng = self._rng(1)
            with self._zero_step(self.opt_G, self.G):
                m = max(n // o.pl_batch_shrink, 1)
                fakes, ws = self._run_g(self._z(m, rng), rng)
                res = fakes.shape[2] * fakes.shape[3]
                noise = torch.randn(fakes.shape, generator=rng, device=self.device) / math.sqrt(res)
                (grads,) = torch.autograd.grad((fakes * noise).sum(), ws, create_graph=True)
                lengths = grads.square().sum(2).mean(1).sqrt()
                mean = self._mean_across_ranks(lengths.detach().mean())
                self.pl_mean.copy_(self.pl_mean.lerp(mean, o.pl_decay))
                penalty = (lengths - self.pl_mean).square()
                (fakes[:, 0, 0, 0] * 0 + penalty * o.pl_weight).mean().mul(o.pl_interval).backward()
                stats["pl"] = float(penalty.detach().mean())

        # Dmain: fakes fake, reals real.
        rng = self._rng(2)
        self.D.requires_grad_(True)
        for name in self.frozen:
            self.D.get_submodule(name).requires_grad_(False)
        with self._zero_step(self.opt_D, self.D):
            with torch.no_grad():
                fakes, _ = self._run_g(self._z(n, rng), rng)
            fake_logits = self._run_d(fakes, rng)
            real_logits = self._run_d(reals, rng)
            loss = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
            loss.backward()
            stats["loss_d"] = float(loss.detach())
            real_signs = float(real_logits.detach().sign().sum())
            self.ada_signs += real_signs
            self.ada_count += n
            self.tick_sums[0] += real_signs
            self.tick_sums[1] += float(real_logits.detach().sum())
            self.tick_sums[2] += float(fake_logits.detach().sum())
            self.tick_sums[3] += n

        # Dreg: R1 on reals, lazily.
        if o.r1_gamma and self.step_count % o.r1_interval == 0:
            rng = self._rng(3)
            with self._zero_step(self.opt_D, self.D):
                x = reals.detach().requires_grad_(True)
                logits = self._run_d(x, rng)
                (grads,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
                penalty = grads.square().sum([1, 2, 3])
                (logits[:, 0] * 0 + penalty * (o.r1_gamma / 2)).mean().mul(o.r1_interval).backward()
                stats["r1"] = float(penalty.detach().mean())

        self.nimg += o.batch
        self.step_count += 1
        self._update_ema()
        if o.aug == "ada" and self.step_count % o.ada_interval == 0:
            self._adjust_ada()
        self.last = stats
        return stats

    @contextlib.contextmanager
    def _zero_step(self, opt: torch.optim.Optimizer, net: nn.Module) -> Iterator[None]:
        opt.zero_grad(set_to_none=True)
        yield
        params = [p for p in net.parameters() if p.requires_grad]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        if self.dist.active:
            flat = torch.cat([p.grad.flatten() for p in params])
            torch.distributed.all_reduce(flat)
            flat /= self.dist.world_size
            torch.nan_to_num(flat, nan=0, posinf=1e5, neginf=-1e5, out=flat)
            offset = 0
            for p in params:
                p.grad.copy_(flat[offset : offset + p.numel()].view_as(p))
                offset += p.numel()
        else:
            for p in params:
                torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
        opt.step()

    def _mean_across_ranks(self, value: torch.Tensor) -> torch.Tensor:
        if not self.dist.active:
            return value
        value = value.clone()
        torch.distributed.all_reduce(value)
        return value / self.dist.world_size

    def _update_ema(self) -> None:
        o = self.options
        ema_nimg = o.ema_kimg * 1000
        if o.ema_rampup is not None:
            ema_nimg = min(ema_nimg, self.nimg * o.ema_rampup)
        beta = 0.5 ** (o.batch / max(ema_nimg, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters(), strict=True):
                p_ema.copy_(p.detach().lerp(p_ema, beta))
            for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
                b_ema.copy_(b)

    def _adjust_ada(self) -> None:
        assert self.augment is not None
        signs = torch.tensor([self.ada_signs, float(self.ada_count)], dtype=torch.float64)
        if self.dist.active:
            torch.distributed.all_reduce(signs)
        self.ada_signs, self.ada_count = 0.0, 0
        if signs[1] <= 0:
            return
        o = self.options
        p = ada_adjust(
            float(self.augment.p),
            float(signs[0] / signs[1]),
            batch=o.batch,
            interval=o.ada_interval,
            ada_kimg=o.ada_kimg,
            target=o.ada_target,
        )
        self.augment.p.fill_(p)

    def take_tick_signal(self) -> dict[str, float]:
        """D's outputs since the last call, over every process, and start a new tick.

        ``ada_rt`` = E[sign(D(real))] (ADA's overfitting statistic), ``d_real``/``d_fake`` = the
        mean logit on the (augmented) reals and fakes of the Dmain phase, ``d_gap`` = their
        difference; NaN when no D step ran. Every process must call it (one ``all_reduce``).
        """
        sums = torch.tensor(self.tick_sums, dtype=torch.float64)
        if self.dist.active:
            torch.distributed.all_reduce(sums)
        self.tick_sums = [0.0, 0.0, 0.0, 0]
        count = float(sums[3])
        if count <= 0:
            return {k: math.nan for k in ("ada_rt", "d_real", "d_fake", "d_gap")}
        rt, real, fake = (float(v) / count for v in sums[:3])
        return {"ada_rt": rt, "d_real": real, "d_fake": fake, "d_gap": real - fake}

    @property
    def ada_p(self) -> float:
        """The augmentation probability now (0 without augmentation)."""
        return 0.0 if self.augment is None else float(self.augment.p)

    # ----------------------------------------------------------------------------- state
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Optimiser moments and the small tensors of the state, for an exact resume."""
        out: dict[str, torch.Tensor] = {"pl_mean": self.pl_mean.detach().cpu()}
        if self.augment is not None:
            out["augment.p"] = self.augment.p.detach().cpu()
        for tag, opt in (("opt_G", self.opt_G), ("opt_D", self.opt_D)):
            for index, state in opt.state_dict()["state"].items():
                for key, value in state.items():
                    out[f"{tag}.{index}.{key}"] = torch.as_tensor(value).detach().cpu()
        return out

    def state_scalars(self) -> dict[str, float | int]:
        """The scalar part of the state (JSON)."""
        return {
            "nimg": self.nimg,
            "step": self.step_count,
            "ada_signs": self.ada_signs,
            "ada_count": self.ada_count,
            "tick_sign_real": self.tick_sums[0],
            "tick_d_real": self.tick_sums[1],
            "tick_d_fake": self.tick_sums[2],
            "tick_count": self.tick_sums[3],
        }

    def load_state(self, tensors: dict[str, torch.Tensor], scalars: dict[str, float]) -> None:
        """Restore what :meth:`state_tensors` and :meth:`state_scalars` saved."""
        self.nimg = int(scalars["nimg"])
        self.step_count = int(scalars["step"])
        self.ada_signs = float(scalars["ada_signs"])
        self.ada_count = int(scalars["ada_count"])
        # Snapshots written before the loss-only signal lack these: the tick starts empty.
        self.tick_sums = [
            float(scalars.get("tick_sign_real", 0.0)),
            float(scalars.get("tick_d_real", 0.0)),
            float(scalars.get("tick_d_fake", 0.0)),
            int(scalars.get("tick_count", 0)),
        ]
        self.pl_mean.copy_(tensors["pl_mean"])
        if self.augment is not None and "augment.p" in tensors:
            self.augment.p.copy_(tensors["augment.p"])
        for tag, opt in (("opt_G", self.opt_G), ("opt_D", self.opt_D)):
            state = opt.state_dict()
            restored: dict[int, dict[str, torch.Tensor]] = {}
            for name, value in tensors.items():
                parts = name.split(".")
                if parts[0] == tag:
                    restored.setdefault(int(parts[1]), {})[parts[2]] = value.to(self.device)
            for moments in restored.values():
                if "step" in moments:
                    moments["step"] = moments["step"].cpu()
            state["state"] = restored
            opt.load_state_dict(state)

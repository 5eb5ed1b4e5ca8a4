"""PyTorch peer of `cargo bench -p distiller --bench training`: the same U-Net (weights read from
a bns model file), its flow-matching training step and a BNS distillation iteration, timed on
request. Not part of the product or the test suite; run from a venv with `torch` and `numpy`.

Protocol (one line per request on stdin, one line per answer on stdout):
  forward X_FILE OUT_FILE       the velocity of the rows in X_FILE (raw f32: t, class, x per row)
  train THREADS STEPS BATCH     STEPS training steps; answers the milliseconds of each
  distill THREADS ITERS BATCH NFE   ITERS distillation iterations; answers the milliseconds of each
"""

import json
import math
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

BETAS = (0.9, 0.999)
EPSILON = 1e-8
GROUP_NORM_EPSILON = 1e-5
MAX_PERIOD = 10000.0
DATA_PREDICTION_MIN_REMAINING = 0.05


def read_model(path):
    """The spec and the tensors (name -> float32 array) of a bns model file (safetensors)."""
    with open(path, "rb") as f:
        data = f.read()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    spec = json.loads(header.pop("__metadata__")["bns.model"])
    base = 8 + header_len
    tensors = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        dtype = {"F32": np.float32, "F16": np.float16}[entry["dtype"]]
        values = np.frombuffer(data[base + begin : base + end], dtype=dtype).astype(np.float32)
        tensors[name] = torch.from_numpy(values.reshape(entry["shape"]).copy())
    return spec, tensors


class Unet(torch.nn.Module):
    """The runtime's U-Net (web-sampler/src/model/unet), parameters named as in the model file."""

    def __init__(self, spec, tensors):
        super().__init__()
        self.spec = spec
        self.names = list(tensors)
        self.params = torch.nn.ParameterDict(
            {name.replace(".", "/"): torch.nn.Parameter(t.clone()) for name, t in tensors.items()}
        )
        unet = spec["unet"]
        self.groups = unet["groups"]
        self.levels = len(unet["channel_multipliers"])
        self.blocks = unet["residual_blocks"]
        self.attention = unet["attention"]
        half = spec["time_embedding"] // 2
        scale = spec.get("time_scale", 1000.0)
        frequencies = [scale * math.exp(-math.log(MAX_PERIOD) * k / half) for k in range(half)]
        self.register_buffer("frequencies", torch.tensor(frequencies, dtype=torch.float64))

    def p(self, name):
        return self.params[name.replace(".", "/")]

    def has(self, name):
        return name.replace(".", "/") in self.params

    def dense(self, name, x):
        return F.linear(x, self.p(name + ".weight"), self.p(name + ".bias"))

    def conv(self, name, x, stride=1):
        weight = self.p(name + ".weight")
        return F.conv2d(x, weight, self.p(name + ".bias"), stride, weight.shape[-1] // 2)

    def norm(self, name, x):
        return F.group_norm(
            x, self.groups, self.p(name + ".weight"), self.p(name + ".bias"), GROUP_NORM_EPSILON
        )

    def block(self, name, x, embedding):
        h = self.conv(name + ".conv1", F.silu(self.norm(name + ".norm1", x)))
        h = h + self.dense(name + ".embedding", embedding)[:, :, None, None]
        h = self.conv(name + ".conv2", F.silu(self.norm(name + ".norm2", h)))
        skip = self.conv(name + ".skip", x) if self.has(name + ".skip.weight") else x
        return skip + h

    def attend(self, x):
        b, c, height, width = x.shape
        qkv = self.conv("middle.attention.qkv", self.norm("middle.attention.norm", x))
        q, k, v = qkv.reshape(b, 3 * c, height * width).split(c, dim=1)
        weights = torch.softmax(q.transpose(1, 2) @ k / math.sqrt(c), dim=-1)
        attended = (v @ weights.transpose(1, 2)).reshape(b, c, height, width)
        return x + self.conv("middle.attention.proj", attended)

    def forward(self, x, t, classes):
        """Velocity [B, D] of x [B, D] at times t [B] for classes [B]."""
        c, height, width = self.spec["data_shape"]
        angles = t.double()[:, None] * self.frequencies[None, :]
        e = torch.cat([angles.sin(), angles.cos()], dim=1).float()
        embedding = self.dense("time.1", F.silu(self.dense("time.0", e)))
        if self.has("class_embedding.weight"):
            embedding = embedding + self.p("class_embedding.weight")[classes]
        embedding = F.silu(embedding)
        h = self.conv("input", x.reshape(-1, c, height, width))
        skips = []
        for level in range(self.levels):
            for b in range(self.blocks):
                h = self.block(f"down.{level}.{b}", h, embedding)
                skips.append(h)
            if level + 1 < self.levels:
                h = self.conv(f"down.{level}.downsample", h, stride=2)
        h = self.block("middle.0", h, embedding)
        if self.attention:
            h = self.attend(h)
        h = self.block("middle.1", h, embedding)
        for level in reversed(range(self.levels)):
            for b in range(self.blocks):
                h = self.block(f"up.{level}.{b}", torch.cat([h, skips.pop()], dim=1), embedding)
            if level > 0:
                h = self.conv(f"up.{level}.upsample", F.interpolate(h, scale_factor=2.0))
        out = self.conv("out.conv", F.silu(self.norm("out.norm", h))).reshape(x.shape[0], -1)
        if self.spec.get("prediction", "velocity") == "data":
            remaining = (1.0 - t).clamp_min(DATA_PREDICTION_MIN_REMAINING)[:, None]
            return (out - x) / remaining
        return out


def timed(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(1000.0 * (time.perf_counter() - start))
    return times


class Training:
    """`bns train`'s step: AdamW (decoupled weight decay) + EMA, velocity loss on x_t."""

    def __init__(self, net, batch, dim, classes):
        self.net = net
        self.batch, self.dim, self.classes = batch, dim, classes
        self.optimizer = torch.optim.AdamW(
            net.parameters(), lr=2e-4, betas=BETAS, eps=EPSILON, weight_decay=0.0
        )
        self.ema = [p.detach().clone() for p in net.parameters()]
        self.generator = torch.Generator().manual_seed(1)

    def step(self):
        g = self.generator
        x1 = torch.rand(self.batch, self.dim, generator=g) * 2 - 1
        x0 = torch.randn(self.batch, self.dim, generator=g)
        t = torch.rand(self.batch, generator=g)
        labels = torch.randint(0, max(self.classes, 1) + 1, (self.batch,), generator=g)
        xt = (1 - t[:, None]) * x0 + t[:, None] * x1
        loss = (self.net(xt, t, labels) - (x1 - x0)).square().mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            for average, p in zip(self.ema, self.net.parameters()):
                average.mul_(0.999).add_(p, alpha=0.001)


class Distillation:
    """`bns distill`'s iteration: the reduced-form solver from Euler, w = 0, Adam on θ, α, β."""

    def __init__(self, net, batch, dim, nfe):
        for p in net.parameters():
            p.requires_grad_(False)
        self.net, self.n = net, nfe
        g = torch.Generator().manual_seed(2)
        self.x0 = torch.randn(batch, dim, generator=g)
        self.truth = torch.rand(batch, dim, generator=g) * 2 - 1
        self.labels = torch.randint(0, 10, (batch,), generator=g)
        self.theta = torch.zeros(nfe, requires_grad=True)
        self.alpha = torch.ones(nfe, requires_grad=True)
        self.beta = torch.full((nfe, nfe), 1.0 / nfe).tril().requires_grad_(True)
        self.mask = torch.ones(nfe, nfe).tril()
        self.optimizer = torch.optim.Adam([self.theta, self.alpha, self.beta], lr=1e-3)

    def iteration(self):
        times = torch.cat([torch.zeros(1), torch.softmax(self.theta, 0).cumsum(0)])
        beta = self.beta * self.mask
        velocities, x = [], self.x0
        rows = self.x0.shape[0]
        for i in range(self.n):
            velocities.append(self.net(x, times[i].expand(rows), self.labels))
            x = self.alpha[i] * self.x0
            for j, u in enumerate(velocities):
                x = x + beta[i, j] * u
        loss = (x - self.truth).square().mean(dim=1).log().mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def main():
    spec, tensors = read_model(sys.argv[1])
    torch.manual_seed(0)
    dim = int(np.prod(spec["data_shape"]))
    classes = spec["num_classes"]
    print("ready torch " + torch.__version__, flush=True)
    trainings, distillations = {}, {}
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "forward":
            rows = np.fromfile(words[1], dtype=np.float32).reshape(-1, dim + 2)
            net = Unet(spec, tensors)
            with torch.no_grad():
                t = torch.from_numpy(rows[:, 0].copy())
                labels = torch.from_numpy(rows[:, 1].astype(np.int64))
                u = net(torch.from_numpy(rows[:, 2:].copy()), t, labels)
            u.numpy().astype(np.float32).tofile(words[2])
            print("ok", flush=True)
        elif words[0] == "train":
            threads, steps, batch = map(int, words[1:])
            torch.set_num_threads(threads)
            key = (threads, batch)
            if key not in trainings:
                trainings[key] = Training(Unet(spec, tensors), batch, dim, classes)
            times = timed(trainings[key].step, steps)
            print(" ".join(f"{t:.3f}" for t in times), flush=True)
        elif words[0] == "distill":
            threads, iterations, batch, nfe = map(int, words[1:])
            torch.set_num_threads(threads)
            key = (threads, batch, nfe)
            if key not in distillations:
                distillations[key] = Distillation(Unet(spec, tensors), batch, dim, nfe)
            times = timed(distillations[key].iteration, iterations)
            print(" ".join(f"{t:.3f}" for t in times), flush=True)
        else:
            print(f"error unknown request {words[0]}", flush=True)


if __name__ == "__main__":
    main()

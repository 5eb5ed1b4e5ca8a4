"""Exports a model file's velocity network (MLP or U-Net) to ONNX, for the `peers` benchmark.

    python export.py MODEL.safetensors NETWORK.onnx [--table TABLE.json --solve SOLVE.onnx]

NETWORK.onnx computes what `Model::velocity` does: inputs `x` [B, D] float32, `t` [B] float32,
`class` [B] int64; output `u` [B, D] (the velocity; a data-predicting model's x̂1 is turned into
the velocity as the runtime does). The time embedding is computed in float64, as the runtime's.
With --table (a JSON object with the NS table's `times`, `a` and `b`, as `NsTable` has them),
SOLVE.onnx runs the whole solve (guidance 0) in one graph: inputs `x0`, `class`; output `x`
(unclamped). Needs the `onnx` and `numpy` packages.
"""

import argparse
import json
import struct

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MIN_REMAINING = 0.05  # path::DATA_PREDICTION_MIN_REMAINING
MAX_PERIOD = 10000.0  # embedding::MAX_PERIOD


def read_model(path):
    """The spec (the `bns.model` metadata) and the tensors of a model file."""
    data = open(path, "rb").read()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    spec = json.loads(header.pop("__metadata__")["bns.model"])
    body = data[8 + length :]
    tensors = {}
    for name, info in header.items():
        if info["dtype"] != "F32":
            raise SystemExit(f"{path}: tensor {name} is {info['dtype']}, expected F32")
        start, end = info["data_offsets"]
        tensors[name] = np.frombuffer(body[start:end], dtype="<f4").reshape(info["shape"])
    if spec.get("architecture") not in ("mlp", "unet"):
        raise SystemExit(f"{path}: architecture {spec.get('architecture')!r} is not exported")
    return spec, tensors


class Builder:
    """Nodes and initializers of one graph, with fresh names."""

    def __init__(self, spec, tensors):
        self.spec, self.nodes, self.initializers, self.count = spec, [], [], 0
        self.tensors, self.weights, self.named, self.constants = tensors, {}, {}, set()
        if spec.get("architecture") == "mlp":
            for i in range(spec["depth"] + 1):
                w = tensors[f"layers.{i}.weight"]
                self.weights[i] = (
                    self.constant(np.ascontiguousarray(w.T), f"layers.{i}.weight_t"),
                    self.constant(tensors[f"layers.{i}.bias"], f"layers.{i}.bias"),
                )
        self.class_table = None
        if spec.get("class_embedding", 0) > 0:
            self.class_table = self.constant(tensors["class_embedding.weight"], "class_embedding")
        half = spec["time_embedding"] // 2
        k = np.arange(half, dtype=np.float64)
        frequencies = np.exp(-np.log(MAX_PERIOD) * k / half).reshape(1, half)
        self.frequencies = self.constant(frequencies, "time_frequencies")
        self.scale = self.constant(np.array(spec.get("time_scale", 1000.0), np.float64), "time_scale")
        self.one = self.constant(np.array(1.0, np.float32), "one")
        self.floor = self.constant(np.array(MIN_REMAINING, np.float32), "min_remaining")
        self.axis1 = self.constant(np.array([1], np.int64), "axis1")

    def constant(self, array, name):
        """An initializer named `name`, added once (a solve graph builds the network per step)."""
        if name not in self.constants:
            self.constants.add(name)
            self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, kind, inputs, **attributes):
        self.count += 1
        name = f"{kind.lower()}_{self.count}"
        self.nodes.append(helper.make_node(kind, inputs, [name], **attributes))
        return name

    def time_embedding(self, t):
        """e(t) [B, E_t], computed in float64 as the runtime does."""
        op = self.op
        scaled = op("Mul", [op("Cast", [op("Unsqueeze", [t, self.axis1])], to=TensorProto.DOUBLE), self.scale])
        angle = op("Mul", [scaled, self.frequencies])
        return op("Cast", [op("Concat", [op("Sin", [angle]), op("Cos", [angle])], axis=1)], to=TensorProto.FLOAT)

    def silu(self, h):
        return self.op("Mul", [h, self.op("Sigmoid", [h])])

    def velocity(self, x, t, label):
        """The network's velocity at x [B, D], t [B] (float32), class [B] (int64)."""
        op = self.op
        if self.spec.get("architecture") == "unet":
            h = self.unet(x, t, label)
        else:
            parts = [x, self.time_embedding(t)]
            if self.class_table is not None:
                parts.append(op("Gather", [self.class_table, label], axis=0))
            h = op("Concat", parts, axis=1)
            last = self.spec["depth"]
            for i in range(last + 1):
                weight, bias = self.weights[i]
                h = op("Add", [op("MatMul", [h, weight]), bias])
                if i < last:
                    h = self.silu(h)
        if self.spec.get("prediction") == "data":
            remaining = op("Max", [op("Sub", [self.one, t]), self.floor])
            factor = op("Unsqueeze", [op("Reciprocal", [remaining]), self.axis1])
            h = op("Mul", [op("Sub", [h, x]), factor])
        return h

    def tensor(self, name):
        """A tensor of the model file as an initializer (once)."""
        if name not in self.named:
            self.named[name] = self.constant(self.tensors[name], name)
        return self.named[name]

    def dense(self, h, name):
        weight = self.constant(np.ascontiguousarray(self.tensors[f"{name}.weight"].T), f"{name}.weight_t")
        return self.op("Add", [self.op("MatMul", [h, weight]), self.tensor(f"{name}.bias")])

    def conv(self, h, name, stride=1):
        k = self.tensors[f"{name}.weight"].shape[-1]
        p = k // 2
        return self.op(
            "Conv",
            [h, self.tensor(f"{name}.weight"), self.tensor(f"{name}.bias")],
            kernel_shape=[k, k],
            pads=[p, p, p, p],
            strides=[stride, stride],
        )

    def group_norm(self, h, name, activate):
        """GroupNorm as PyTorch exports it: InstanceNormalization over [B, groups, rest]."""
        op = self.op
        groups = self.spec["unet"]["groups"]
        channels = self.tensors[f"{name}.weight"].shape[0]
        if "group_norm_ones" not in self.named:
            self.named["group_norm_ones"] = self.constant(np.ones(groups, np.float32), "group_norm_ones")
            self.named["group_norm_zeros"] = self.constant(np.zeros(groups, np.float32), "group_norm_zeros")
            self.named["group_norm_shape"] = self.constant(np.array([0, groups, -1], np.int64), "group_norm_shape")
        grouped = op("Reshape", [h, self.named["group_norm_shape"]])
        normal = op(
            "InstanceNormalization",
            [grouped, self.named["group_norm_ones"], self.named["group_norm_zeros"]],
            epsilon=1e-5,
        )
        normal = op("Reshape", [normal, op("Shape", [h])])
        per_channel = lambda suffix: self.constant(
            self.tensors[f"{name}.{suffix}"].reshape(channels, 1, 1), f"{name}.{suffix}_chw"
        )
        y = op("Add", [op("Mul", [normal, per_channel("weight")]), per_channel("bias")])
        return self.silu(y) if activate else y

    def block(self, h, name, s):
        """A residual block; s [B, E] is SiLU(embedding)."""
        op = self.op
        a = self.conv(self.group_norm(h, f"{name}.norm1", True), f"{name}.conv1")
        shift = op("Unsqueeze", [self.dense(s, f"{name}.embedding"), self.constant(np.array([2, 3], np.int64), f"{name}.axes")])
        a = op("Add", [a, shift])
        a = self.conv(self.group_norm(a, f"{name}.norm2", True), f"{name}.conv2")
        residual = self.conv(h, f"{name}.skip") if f"{name}.skip.weight" in self.tensors else h
        return op("Add", [a, residual])

    def attention(self, h, name):
        op = self.op
        c = self.tensors[f"{name}.proj.weight"].shape[0]
        qkv = self.conv(self.group_norm(h, f"{name}.norm", False), f"{name}.qkv")
        flat = op("Reshape", [qkv, self.constant(np.array([0, 3 * c, -1], np.int64), f"{name}.flat")])
        q, k, v = (
            op("Slice", [flat, self.constant(np.array([i * c], np.int64), f"{name}.s{i}"),
                         self.constant(np.array([(i + 1) * c], np.int64), f"{name}.e{i}"),
                         self.constant(np.array([1], np.int64), f"{name}.a{i}")])
            for i in range(3)
        )
        scores = op("MatMul", [op("Transpose", [q], perm=[0, 2, 1]), k])
        scale = self.constant(np.array(1.0 / np.sqrt(c), np.float32), f"{name}.scale")
        weights = op("Softmax", [op("Mul", [scores, scale])], axis=-1)
        values = op("MatMul", [v, op("Transpose", [weights], perm=[0, 2, 1])])
        values = op("Reshape", [values, op("Shape", [h])])
        return op("Add", [h, self.conv(values, f"{name}.proj")])

    def unet(self, x, t, label):
        """The U-Net of FORMATS.md §1.3 on x [B, D]; its output [B, D]."""
        op = self.op
        u = self.spec["unet"]
        c, height, width = self.spec["data_shape"]
        emb = self.dense(self.silu(self.dense(self.time_embedding(t), "time.0")), "time.1")
        if self.class_table is not None:
            emb = op("Add", [emb, op("Gather", [self.class_table, label], axis=0)])
        s = self.silu(emb)
        h = op("Reshape", [x, self.constant(np.array([-1, c, height, width], np.int64), "image_shape")])
        h = self.conv(h, "input")
        levels = len(u["channel_multipliers"])
        skips = []
        for l in range(levels):
            for b in range(u["residual_blocks"]):
                h = self.block(h, f"down.{l}.{b}", s)
                skips.append(h)
            if l < levels - 1:
                h = self.conv(h, f"down.{l}.downsample", stride=2)
        h = self.block(h, "middle.0", s)
        if u.get("attention"):
            h = self.attention(h, "middle.attention")
        h = self.block(h, "middle.1", s)
        for l in reversed(range(levels)):
            for b in range(u["residual_blocks"]):
                h = self.block(op("Concat", [h, skips.pop()], axis=1), f"up.{l}.{b}", s)
            if l > 0:
                scales = self.constant(np.array([1, 1, 2, 2], np.float32), f"up.{l}.scales")
                h = op("Resize", [h, "", scales], mode="nearest",
                       coordinate_transformation_mode="asymmetric", nearest_mode="floor")
                h = self.conv(h, f"up.{l}.upsample")
        h = self.conv(self.group_norm(h, "out.norm", True), "out.conv")
        return op("Reshape", [h, self.constant(np.array([0, -1], np.int64), "flat_shape")])

    def save(self, inputs, output, path):
        graph = helper.make_graph(self.nodes, "velocity", inputs, [output], self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        onnx.save(model, path)


def data_dim(spec):
    return int(np.prod(spec["data_shape"]))


def network_graph(spec, tensors, path):
    b = Builder(spec, tensors)
    d = data_dim(spec)
    u = b.velocity("x", "t", "class")
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", d]),
        helper.make_tensor_value_info("t", TensorProto.FLOAT, ["B"]),
        helper.make_tensor_value_info("class", TensorProto.INT64, ["B"]),
    ]
    b.save(inputs, helper.make_tensor_value_info(u, TensorProto.FLOAT, ["B", d]), path)


def solve_graph(spec, tensors, table_path, path):
    """x_{i+1} = Σ_j a[i][j]·x_j + Σ_j b[i][j]·u_j with u_j = u(x_j, t_j), in one graph."""
    table = json.load(open(table_path))
    b = Builder(spec, tensors)
    d = data_dim(spec)
    batch = b.op("Shape", ["class"])
    xs, us = ["x0"], []
    for i, t in enumerate(table["times"][: len(table["a"])]):
        t_row = b.op("Expand", [b.constant(np.array([t], np.float32), f"t_{i}"), batch])
        us.append(b.velocity(xs[-1], t_row, "class"))
        terms = []
        for coefficients, vectors, kind in ((table["a"][i], xs, "a"), (table["b"][i], us, "b")):
            for j, c in enumerate(coefficients):
                if c != 0.0:
                    scale = b.constant(np.array(c, np.float32), f"{kind}_{i}_{j}")
                    terms.append(b.op("Mul", [vectors[j], scale]))
        x = terms[0]
        for term in terms[1:]:
            x = b.op("Add", [x, term])
        xs.append(x)
    inputs = [
        helper.make_tensor_value_info("x0", TensorProto.FLOAT, ["B", d]),
        helper.make_tensor_value_info("class", TensorProto.INT64, ["B"]),
    ]
    b.save(inputs, helper.make_tensor_value_info(xs[-1], TensorProto.FLOAT, ["B", d]), path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("network")
    parser.add_argument("--table")
    parser.add_argument("--solve")
    args = parser.parse_args()
    spec, tensors = read_model(args.model)
    network_graph(spec, tensors, args.network)
    if args.table and args.solve:
        solve_graph(spec, tensors, args.table, args.solve)


if __name__ == "__main__":
    main()

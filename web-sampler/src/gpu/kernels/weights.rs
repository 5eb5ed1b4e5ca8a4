//! How a kernel reads its weight matrix: the one kind of kernel variant, chosen per model and
//! per adapter.
//!
//! `linear.wgsl` and `conv2d.wgsl` read their weights only through `weight_at(i) -> f32`,
//! declared with the binding between the lines `// weights: begin` and `// weights: end`. As
//! written, the block is the `f32` form. For a model stored in half precision (FORMATS.md §1.8)
//! the weights stay halves on the GPU (half the memory and half the bytes read) and
//! [`splice`] makes the kernel's other forms from the same file:
//!
//! * [`Encoding::F16`], where the device has `shader-f16`: `enable f16;`, the binding an
//!   `array<f16>`, and `weight_at` returns `f32(weight[i])`;
//! * [`Encoding::PackedF16`], on every adapter: the binding an `array<u32>` of two halves per
//!   word (the same bytes), and `weight_at` widens one with `unpack2x16float`.
//!
//! Widening a half to `f32` is exact, and everything after it is the `f32` arithmetic of the
//! `f32` form, so every variant computes what the CPU path computes from the widened weights
//! (to the kernels' usual tolerance). The kernels' pipelines are keyed by (kernel, encoding):
//! `Kernels` compiles the `f32` forms with the device and the others on first use.

/// How a tensor's values are stored in its GPU buffer and read by the kernel that binds it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// Four-byte values (`f32`, or `u32` for labels): every tensor but half-precision weights.
    #[default]
    F32,
    /// Two-byte halves read as WGSL `f16` (the device has `shader-f16`).
    F16,
    /// The same two-byte halves read as `u32` words and unpacked (any device).
    PackedF16,
}

/// Every encoding, in [`Encoding::index`] order.
pub const ENCODINGS: [Encoding; 3] = [Encoding::F32, Encoding::F16, Encoding::PackedF16];

impl Encoding {
    /// Bytes per value.
    pub fn value_bytes(self) -> u64 {
        match self {
            Encoding::F32 => 4,
            Encoding::F16 | Encoding::PackedF16 => 2,
        }
    }

    /// The position in [`ENCODINGS`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// A short name for labels and messages.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::F32 => "f32",
            Encoding::F16 => "f16",
            Encoding::PackedF16 => "packed f16",
        }
    }
}

const BEGIN: &str = "// weights: begin";
const END: &str = "// weights: end";

/// Whether `source` has a weights block (and so variants).
pub fn has_variants(source: &str) -> bool {
    source.contains(BEGIN)
}

/// The source of `source`'s `encoding` form; the error names what is missing from the block.
pub fn splice(source: &str, encoding: Encoding) -> Result<String, String> {
    if encoding == Encoding::F32 {
        return Ok(source.to_string());
    }
    let begin = source.find(BEGIN).ok_or("no `// weights: begin` line")?;
    let end = source[begin..]
        .find(END)
        .map(|at| begin + at)
        .ok_or("no `// weights: end` line after `// weights: begin`")?;
    let block = &source[begin..end];
    let once = |needle: &str| {
        if block.matches(needle).count() == 1 {
            Ok(())
        } else {
            Err(format!("the weights block must hold `{needle}` once"))
        }
    };
    once("array<f32>")?;
    once("return weight[i];")?;
    let (element, body) = match encoding {
        Encoding::F16 => ("array<f16>", "return f32(weight[i]);"),
        Encoding::PackedF16 => (
            "array<u32>",
            "let pair = unpack2x16float(weight[i >> 1u]);\n    \
             return select(pair.x, pair.y, (i & 1u) == 1u);",
        ),
        Encoding::F32 => unreachable!("returned above"),
    };
    let block = block
        .replace("array<f32>", element)
        .replace("return weight[i];", body);
    let enable = if encoding == Encoding::F16 {
        "enable f16;\n"
    } else {
        ""
    };
    Ok(format!(
        "{enable}{}{block}{}",
        &source[..begin],
        &source[end..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KERNEL: &str = "// a kernel\n// weights: begin\n// weight: [n]\n\
        @group(0) @binding(2) var<storage, read> weight: array<f32>;\n\
        fn weight_at(i: u32) -> f32 {\n    return weight[i];\n}\n// weights: end\nfn main() {}\n";

    #[test]
    fn the_f32_form_is_the_file() {
        assert_eq!(splice(KERNEL, Encoding::F32).unwrap(), KERNEL);
        assert!(has_variants(KERNEL) && !has_variants("fn main() {}"));
    }

    #[test]
    fn the_half_forms_change_the_block_only() {
        let f16 = splice(KERNEL, Encoding::F16).unwrap();
        assert!(f16.starts_with("enable f16;\n// a kernel\n"), "{f16}");
        assert!(f16.contains("var<storage, read> weight: array<f16>;"));
        assert!(f16.contains("return f32(weight[i]);"));
        let packed = splice(KERNEL, Encoding::PackedF16).unwrap();
        assert!(!packed.contains("enable f16"));
        assert!(packed.contains("weight: array<u32>;"));
        assert!(packed.contains("unpack2x16float(weight[i >> 1u])"));
        for form in [&f16, &packed] {
            assert!(form.contains("// weight: [n]\n@group(0) @binding(2)"));
            assert!(form.ends_with("// weights: end\nfn main() {}\n"));
            assert!(!form.contains("array<f32>"));
        }
    }

    #[test]
    fn a_malformed_block_is_named() {
        let no_end = KERNEL.replace(END, "");
        assert!(splice(&no_end, Encoding::F16)
            .unwrap_err()
            .contains("weights: end"));
        let no_body = KERNEL.replace("return weight[i];", "return 0.0;");
        assert!(splice(&no_body, Encoding::F16)
            .unwrap_err()
            .contains("return weight[i];"));
    }
}

//! The uniform parameters of every kernel: one Rust struct per kernel, named like the WGSL
//! struct of the kernel's `var<uniform> params` (`{Kernel}Params`) with the same members in the
//! same order. The kernel table (`kernel_table!` in `kernels.rs`) pairs each kernel with its
//! struct (`Uniform::KERNEL`: a struct named twice would not compile), and `Plan::dispatch` runs
//! the kernel of the parameters it is given.
//!
//! The ops fill them with [`uniform!`]: the sizes from the `usize` variables of the members'
//! names, the other members given.
//!
//! Each struct's layout — member names, WGSL types and byte offsets, and its size — is
//! described from the struct itself (`uniforms!`), and a test parses every shader with naga and
//! compares it with its WGSL struct: a member added, moved or retyped on one side only fails it.

use bytemuck::{Pod, Zeroable};

/// A member of a uniform struct: its name, its WGSL type and its byte offset.
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Member {
    pub name: &'static str,
    pub ty: &'static str,
    pub offset: usize,
}

/// The layout of a uniform struct as WGSL sees it.
#[cfg(test)]
#[derive(Clone, Copy, Debug)]
pub(super) struct Layout {
    pub name: &'static str,
    pub size: usize,
    pub members: &'static [Member],
}

/// The Rust types a uniform member may have, by their WGSL names.
#[cfg(test)]
trait Wgsl {
    const TYPE: &'static str;
}

#[cfg(test)]
impl Wgsl for u32 {
    const TYPE: &'static str = "u32";
}

#[cfg(test)]
impl Wgsl for i32 {
    const TYPE: &'static str = "i32";
}

#[cfg(test)]
impl Wgsl for f32 {
    const TYPE: &'static str = "f32";
}

/// `Name { member: type, … }` makes the `#[repr(C)]` [`Pod`] struct and, in tests, its
/// [`Layout`] (`Name::LAYOUT`).
macro_rules! uniforms {
    ($($(#[doc = $doc:literal])* $name:ident { $($member:ident: $ty:ty),+ $(,)? })+) => {$(
        $(#[doc = $doc])*
        #[repr(C)]
        #[derive(Clone, Copy, Pod, Zeroable)]
        pub(super) struct $name {
            $(pub(super) $member: $ty),+
        }

        #[cfg(test)]
        impl $name {
            pub(super) const LAYOUT: Layout = Layout {
                name: stringify!($name),
                size: std::mem::size_of::<$name>(),
                members: &[$(Member {
                    name: stringify!($member),
                    ty: <$ty as Wgsl>::TYPE,
                    offset: std::mem::offset_of!($name, $member),
                }),+],
            };
        }
    )+};
}

/// `Params { a, b, …; c: value, … }`: the uniform parameters `Params` with the members `a`, `b`,
/// … taken from the `usize` variables of their names (an error that names the member past
/// `u32::MAX`) and the members `c`, … given, if any, as in a struct expression (every member is
/// named: padding too).
macro_rules! uniform {
    ($params:ident { $($size:ident),+; $($member:ident $(: $value:expr)?),* $(,)? }) => {
        $params {
            $($size: u32_of($size, stringify!($size))?,)+
            $($member $(: $value)?,)*
        }
    };
}

uniforms! {
    /// `linear.wgsl`: `activation` is `ACTIVATION_NONE` or `ACTIVATION_SILU`.
    LinearParams { rows: u32, inner: u32, outputs: u32, activation: u32 }
    /// `embed.wgsl`.
    EmbedParams {
        rows: u32, samples: u32, data: u32, time_width: u32, class_width: u32, time_row: u32,
        _pad0: u32, _pad1: u32,
    }
    /// `guidance.wgsl` (its members are documented there).
    GuidanceParams {
        count: u32, guided: u32, data_prediction: u32, slot_offset: u32,
        conditional_weight: f32, unconditional_weight: f32, inverse_remaining: f32, _pad: u32,
    }
    /// `ns_update.wgsl` (its members are documented there).
    NsUpdateParams { count: u32, step: u32, stride: u32, clamp_unit: u32 }
    /// `pack_rgba.wgsl`.
    PackRgbaParams {
        samples: u32, channels: u32, height: u32, width: u32,
        columns: u32, picture_width: u32, picture_height: u32, gap: u32,
    }
    /// `conv2d.wgsl`.
    Conv2dParams {
        rows: u32, inputs: u32, outputs: u32, height: u32, width: u32,
        out_height: u32, out_width: u32, kernel: u32, stride: u32,
        _pad0: u32, _pad1: u32, _pad2: u32,
    }
    /// `group_norm.wgsl`: `activation` is `ACTIVATION_NONE` or `ACTIVATION_SILU`.
    GroupNormParams {
        rows: u32, positions: u32, channels: u32, groups: u32, activation: u32, epsilon: f32,
        _pad0: u32, _pad1: u32,
    }
    /// `add.wgsl`: `count` values written.
    AddParams { count: u32, positions: u32, channels: u32, x_positions: u32 }
    /// `concat.wgsl`: `count` values written.
    ConcatParams { count: u32, a_channels: u32, b_channels: u32, _pad: u32 }
    /// `upsample.wgsl`: `count` values written.
    UpsampleParams { count: u32, height: u32, width: u32, channels: u32 }
    /// `transpose.wgsl`: `count` values written.
    TransposeParams { count: u32, samples: u32, a: u32, b: u32 }
    /// `condition.wgsl`: `count` values written; `conditional` is 1 with a class table.
    ConditionParams { count: u32, width: u32, conditional: u32, _pad: u32 }
    /// `attention_weights.wgsl`: `scale` is 1/√channels.
    AttentionWeightsParams { rows: u32, positions: u32, channels: u32, scale: f32 }
    /// `attention_values.wgsl`.
    AttentionValuesParams { rows: u32, positions: u32, channels: u32, _pad: u32 }
}

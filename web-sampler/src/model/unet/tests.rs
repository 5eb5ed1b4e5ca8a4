//! Tests of the U-Net's spec (its keys in the file, every validation error, the tensors) and of
//! its CPU forward's invariants (batch independence, round trip through the file). Its values
//! are checked against candle's convolutions in the distiller (`network.rs`).

use crate::model::*;

const ORIGIN: &str = "models/unet.safetensors";

/// A tiny conditional U-Net on 1×8×8 data: two levels, attention at 4×4.
pub(crate) fn tiny_unet_spec() -> ModelSpec {
    ModelSpec {
        dataset: "test".into(),
        ..ModelSpec::new(
            Architecture::unet(4, &[1, 2], 1, 2, true, 8),
            &[1, 8, 8],
            6,
            3,
            8,
        )
    }
}

/// `tiny_unet_spec` with another U-Net part.
fn with_unet(change: impl FnOnce(&mut UnetSpec)) -> ModelSpec {
    let mut spec = tiny_unet_spec();
    let Architecture::Unet(unet) = &mut spec.architecture else {
        panic!("a unet spec")
    };
    change(unet);
    spec
}

#[test]
fn json_nests_the_unet_fields() {
    let json = serde_json::to_string(&tiny_unet_spec()).unwrap();
    assert_eq!(
        json,
        "{\"format_version\":1,\"architecture\":\"unet\",\"data_shape\":[1,8,8],\
         \"unet\":{\"base_channels\":4,\"channel_multipliers\":[1,2],\"residual_blocks\":1,\
         \"groups\":2,\"attention\":true,\"embedding_width\":8},\"time_embedding\":6,\
         \"time_scale\":1000.0,\"class_embedding\":8,\"num_classes\":3,\"path\":\"cond-ot\",\
         \"dataset\":\"test\",\"training_steps\":0}"
    );
    let back: ModelSpec = serde_json::from_str(&json).unwrap();
    assert_eq!(back, tiny_unet_spec());
}

#[test]
fn json_refuses_other_architectures_fields() {
    let parse = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut value = serde_json::to_value(tiny_unet_spec()).unwrap();
        edit(&mut value);
        serde_json::from_value::<ModelSpec>(value)
            .unwrap_err()
            .to_string()
    };
    let problem = parse(&|v| v["depth"] = 3.into());
    assert!(
        problem.contains("field `depth` is not part of an \"unet\" model"),
        "{problem}"
    );
    let problem = parse(&|v| {
        v.as_object_mut().unwrap().remove("unet");
    });
    assert!(problem.contains("missing field `unet`"), "{problem}");
    let problem = parse(&|v| v["unet"]["heads"] = 2.into());
    assert!(problem.contains("unknown field `heads`"), "{problem}");
    let problem = parse(&|v| {
        v["unet"].as_object_mut().unwrap().remove("groups");
    });
    assert!(problem.contains("missing field `groups`"), "{problem}");
    let mut mlp = serde_json::to_value(crate::model::spec::tests::small_spec()).unwrap();
    mlp["unet"] = serde_json::to_value(tiny_unet_spec()).unwrap()["unet"].clone();
    let problem = serde_json::from_value::<ModelSpec>(mlp)
        .unwrap_err()
        .to_string();
    assert!(
        problem.contains("field `unet` is not part of an \"mlp\" model"),
        "{problem}"
    );
}

#[test]
fn validate_names_the_field() {
    let cases: Vec<(ModelSpec, &str)> = vec![
        (with_unet(|u| u.base_channels = 0), "unet.base_channels"),
        (with_unet(|u| u.base_channels = 1000), "unet.base_channels"),
        (
            with_unet(|u| u.channel_multipliers.clear()),
            "unet.channel_multipliers must have",
        ),
        (
            with_unet(|u| u.channel_multipliers = vec![1; 6]),
            "unet.channel_multipliers must have",
        ),
        (
            with_unet(|u| u.channel_multipliers = vec![1, 0]),
            "unet.channel_multipliers entries",
        ),
        (
            with_unet(|u| u.channel_multipliers = vec![1, 9]),
            "unet.channel_multipliers entries",
        ),
        (
            with_unet(|u| {
                u.base_channels = 256;
                u.channel_multipliers = vec![1, 8];
            }),
            "reaches 2048 channels",
        ),
        (with_unet(|u| u.residual_blocks = 0), "unet.residual_blocks"),
        (with_unet(|u| u.residual_blocks = 5), "unet.residual_blocks"),
        (with_unet(|u| u.groups = 0), "unet.groups must be"),
        (
            with_unet(|u| u.groups = 3),
            "unet.groups = 3 does not divide",
        ),
        (with_unet(|u| u.embedding_width = 0), "unet.embedding_width"),
        (
            with_unet(|u| u.embedding_width = 4096),
            "unet.embedding_width",
        ),
        (
            with_unet(|u| u.embedding_width = 16),
            "class_embedding must equal unet.embedding_width (16)",
        ),
        (
            ModelSpec {
                data_shape: vec![5, 8, 8],
                ..tiny_unet_spec()
            },
            "1..=4 channels",
        ),
        (
            ModelSpec {
                data_shape: vec![1, 7, 8],
                ..tiny_unet_spec()
            },
            "multiples of 2",
        ),
        (
            with_unet(|u| u.channel_multipliers = vec![1; 5]),
            "multiples of 16",
        ),
        (
            ModelSpec {
                data_shape: vec![1, 48, 48],
                architecture: Architecture::unet(4, &[1], 1, 2, true, 8),
                ..tiny_unet_spec()
            },
            "unet.attention over 2304 positions",
        ),
        (
            ModelSpec {
                data_shape: vec![3, 64, 64],
                architecture: Architecture::unet(256, &[1, 2, 4], 4, 32, false, 64),
                class_embedding: 64,
                ..tiny_unet_spec()
            },
            "floating-point operations",
        ),
    ];
    for (spec, needle) in cases {
        let Err(problem) = spec.validate() else {
            panic!("{needle:?}: {spec:?} is valid")
        };
        assert!(problem.contains(needle), "{problem:?} lacks {needle:?}");
    }
}

#[test]
fn image_shapes_of_the_published_data_sets_validate() {
    for (shape, multipliers, classes) in [
        ([1, 28, 28], &[1, 2, 2][..], 10),
        ([1, 32, 32], &[1, 2, 2, 2][..], 0),
        ([3, 32, 32], &[1, 2, 2][..], 0),
    ] {
        let spec = ModelSpec::new(
            Architecture::unet(32, multipliers, 2, 8, true, 128),
            &shape,
            64,
            classes,
            128,
        );
        spec.validate().unwrap();
        let Architecture::Unet(unet) = &spec.architecture else {
            panic!("a unet spec")
        };
        let layout = unet.layout(&spec);
        let lowest = layout.down.last().unwrap().size;
        assert_eq!(
            lowest,
            (
                shape[1] >> (multipliers.len() - 1),
                shape[2] >> (multipliers.len() - 1)
            )
        );
        assert_eq!(layout.out_conv.outputs, shape[0]);
    }
}

#[test]
fn tensors_follow_the_layout() {
    let spec = tiny_unet_spec();
    let shapes = spec.tensor_shapes();
    let names: Vec<&str> = shapes.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        &names[..8],
        [
            "class_embedding.weight",
            "time.0.weight",
            "time.0.bias",
            "time.1.weight",
            "time.1.bias",
            "input.weight",
            "input.bias",
            "down.0.0.norm1.weight",
        ]
    );
    assert_eq!(shapes[0].1, [4, 8]);
    assert_eq!(shapes[5].1, [4, 1, 3, 3]);
    let shape_of = |name: &str| &shapes.iter().find(|(n, _)| n == name).unwrap().1;
    // Level 1 doubles the channels: its first block has a 1×1 skip; the way up concatenates.
    assert_eq!(shape_of("down.1.0.skip.weight"), &[8, 4, 1, 1]);
    assert_eq!(shape_of("down.0.downsample.weight"), &[4, 4, 3, 3]);
    assert_eq!(shape_of("middle.attention.qkv.weight"), &[24, 8, 1, 1]);
    assert_eq!(shape_of("up.1.0.conv1.weight"), &[8, 16, 3, 3]);
    assert_eq!(shape_of("up.1.upsample.weight"), &[8, 8, 3, 3]);
    assert_eq!(shape_of("up.0.0.conv1.weight"), &[4, 12, 3, 3]);
    assert_eq!(shape_of("up.0.0.embedding.weight"), &[4, 8]);
    assert_eq!(shape_of("out.conv.weight"), &[1, 4, 3, 3]);
    assert!(!names.contains(&"down.0.0.skip.weight"));
    assert!(!names.iter().any(|n| n.starts_with("down.1.downsample")));
    assert!(!names.iter().any(|n| n.starts_with("up.0.upsample")));
    let mut unique = names.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), names.len());
    assert!(spec.architecture.summary().contains("attention"));

    let unconditional = ModelSpec {
        num_classes: 0,
        class_embedding: 0,
        ..spec.clone()
    };
    unconditional.validate().unwrap();
    assert_eq!(unconditional.tensor_shapes().len(), shapes.len() - 1);
    let without_attention = with_unet(|u| u.attention = false);
    assert_eq!(without_attention.tensor_shapes().len(), shapes.len() - 6);
}

#[test]
fn random_unet_round_trips_through_its_file() {
    let model = Model::random(tiny_unet_spec(), 4).unwrap();
    assert_eq!(
        model.tensor("down.0.0.norm1.weight").unwrap(),
        [1.0; 4].as_slice()
    );
    let bytes = model.to_bytes();
    let back = Model::from_bytes(&bytes, ORIGIN).unwrap();
    assert_eq!(back.id(), model.id());
    assert_eq!(back.to_bytes(), bytes);
    assert_eq!(back.spec(), model.spec());
}

#[test]
fn unet_rows_are_independent_of_the_batch() {
    let model = Model::random(tiny_unet_spec(), 6).unwrap();
    let d = model.spec().data_dim();
    let x = crate::noise::gaussian_batch(2, 3, d);
    let t = [0.1f32, 0.6, 1.0];
    let class = [0u32, 3, 2];
    let all = model.velocity(&x, &t, &class).unwrap();
    assert!(all.iter().all(|v| v.is_finite()));
    for r in 0..3 {
        let one = model
            .velocity(&x[r * d..(r + 1) * d], &t[r..=r], &class[r..=r])
            .unwrap();
        assert_eq!(one, all[r * d..(r + 1) * d]);
    }
    // The class and the time both change the output.
    let other_class = model.velocity(&x[..d], &t[..1], &[1]).unwrap();
    assert_ne!(other_class, all[..d]);
    let other_time = model.velocity(&x[..d], &[0.5], &class[..1]).unwrap();
    assert_ne!(other_time, all[..d]);
}

#[test]
fn invalid_unet_file_names_the_file_and_the_field() {
    let model = Model::random(tiny_unet_spec(), 1).unwrap();
    // The header holds the spec as an escaped JSON string: "groups":2 → "groups":3 keeps
    // every length and offset.
    let mut bytes = model.to_bytes();
    let key = br#"\"groups\":2"#;
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap();
    bytes[at + key.len() - 1] = b'3';
    let error = Model::from_bytes(&bytes, ORIGIN).unwrap_err();
    assert_eq!(error.origin, ORIGIN);
    assert!(
        error
            .problem
            .starts_with("invalid model description: unet.groups = 3 does not divide"),
        "{}",
        error.problem
    );
}

#[test]
fn absurd_sizes_are_refused_without_a_panic() {
    let spec = with_unet(|u| {
        u.base_channels = usize::MAX;
        u.channel_multipliers = vec![usize::MAX; 100];
        u.residual_blocks = 3;
        u.embedding_width = usize::MAX;
    });
    // The shapes of an unchecked spec are computed without overflow (saturating).
    assert!(spec.parameter_count() > 0);
    let problem = spec.validate().unwrap_err();
    assert!(problem.contains("unet.base_channels"), "{problem}");
    let mut value = serde_json::to_value(&spec).unwrap();
    value["unet"]["base_channels"] = 8.into();
    let spec: ModelSpec = serde_json::from_value(value).unwrap();
    let problem = spec.validate().unwrap_err();
    assert!(
        problem.contains("unet.channel_multipliers must have"),
        "{problem}"
    );
}

/// GroupNorm written plainly in the order FORMATS.md §1.3 states: per channel over the positions,
/// then per group over its channels, all in `f64`.
fn group_norm_in_the_documented_order(
    weight: &[f32],
    bias: &[f32],
    c: usize,
    groups: usize,
    x: &[f32],
) -> Vec<f32> {
    let positions = x.len() / c;
    let per_group = c / groups;
    let count = (positions * per_group) as f64;
    let mut out = vec![0.0f32; x.len()];
    for g in 0..groups {
        let channels = g * per_group..(g + 1) * per_group;
        let channel_sum = |j: usize, f: &dyn Fn(f32) -> f64| {
            let mut sum = 0.0f64;
            for p in 0..positions {
                sum += f(x[p * c + j]);
            }
            sum
        };
        let mut total = 0.0f64;
        for j in channels.clone() {
            total += channel_sum(j, &|v| f64::from(v));
        }
        let mean = total / count;
        let mut squares = 0.0f64;
        for j in channels.clone() {
            squares += channel_sum(j, &|v| (f64::from(v) - mean) * (f64::from(v) - mean));
        }
        let inverse = 1.0 / libm::sqrt(squares / count + crate::model::GROUP_NORM_EPSILON);
        for p in 0..positions {
            for j in channels.clone() {
                let normal = ((f64::from(x[p * c + j]) - mean) * inverse) as f32;
                out[p * c + j] = normal * weight[j] + bias[j];
            }
        }
    }
    out
}

#[test]
fn group_norm_sums_in_the_documented_order() {
    use crate::model::unet::group_norm;
    let mut noise = crate::noise::Noise::new(31);
    // (channels, groups, positions): one group, one channel per group, odd counts, and values
    // far from 0 so that the order of the sums shows in the bits.
    for &(c, groups, positions) in &[(8, 1, 5), (6, 6, 3), (64, 8, 49), (96, 8, 784), (5, 1, 1)] {
        let x: Vec<f32> = noise
            .gaussian_f32(c * positions)
            .iter()
            .map(|v| 1000.0 + 37.0 * v)
            .collect();
        let weight = noise.gaussian_f32(c);
        let bias = noise.gaussian_f32(c);
        let expected = group_norm_in_the_documented_order(&weight, &bias, c, groups, &x);
        let mut out = Vec::new();
        group_norm(&weight, &bias, c, groups, &x, false, &mut out);
        let same = out
            .iter()
            .zip(&expected)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(
            same && out.len() == expected.len(),
            "{c} channels, {groups} groups"
        );
        group_norm(&weight, &bias, c, groups, &x, true, &mut out);
        let activated: Vec<u32> = expected
            .iter()
            .map(|&v| crate::model::cpu_silu(v).to_bits())
            .collect();
        let bits: Vec<u32> = out.iter().map(|v| v.to_bits()).collect();
        assert_eq!(bits, activated, "{c} channels, {groups} groups, with SiLU");
    }
}

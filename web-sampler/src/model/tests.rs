//! Tests of the model file (round trip, every load error, robustness on corrupt bytes) and of
//! the forward against a plain f64 reference.

use std::collections::HashMap;

use safetensors::tensor::{Dtype, TensorView};

use super::spec::tests::small_spec;
use super::*;

const ORIGIN: &str = "models/test.safetensors";

fn small_model() -> Model {
    Model::random(small_spec(), 1).unwrap()
}

fn unconditional_spec() -> ModelSpec {
    ModelSpec {
        architecture: Architecture::mlp(11, 3),
        data_shape: vec![2, 1, 1],
        time_embedding: 4,
        class_embedding: 0,
        num_classes: 0,
        ..small_spec()
    }
}

/// Little-endian bytes of `values`.
fn le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A safetensors file written by the safetensors crate itself: `tensors` as (name, dtype,
/// shape, bytes) and the given metadata.
fn safetensors_file(
    tensors: &[(String, Dtype, Vec<usize>, Vec<u8>)],
    metadata: Option<HashMap<String, String>>,
) -> Vec<u8> {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            (
                name.clone(),
                TensorView::new(*dtype, shape.clone(), bytes).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, metadata).unwrap()
}

/// The tensors of `model` as (name, F32, shape, bytes), in tensor_shapes order.
fn model_tensors(model: &Model) -> Vec<(String, Dtype, Vec<usize>, Vec<u8>)> {
    model
        .spec()
        .tensor_shapes()
        .into_iter()
        .map(|(name, shape)| {
            let bytes = le_bytes(model.tensor(&name).unwrap());
            (name, Dtype::F32, shape, bytes)
        })
        .collect()
}

fn spec_metadata(json: &str) -> Option<HashMap<String, String>> {
    Some(HashMap::from([(
        MODEL_METADATA_KEY.to_string(),
        json.to_string(),
    )]))
}

fn good_metadata(model: &Model) -> Option<HashMap<String, String>> {
    spec_metadata(&serde_json::to_string(model.spec()).unwrap())
}

/// `model`'s tensors with their names, in file order.
fn named_values(model: &Model) -> Vec<(String, Vec<f32>)> {
    model
        .spec()
        .tensor_shapes()
        .into_iter()
        .map(|(name, _)| {
            let values = model.tensor(&name).unwrap().to_vec();
            (name, values)
        })
        .collect()
}

/// The load error for `bytes`, checked to name the file.
fn load_error(bytes: &[u8]) -> String {
    let error = Model::from_bytes(bytes, ORIGIN).unwrap_err();
    assert_eq!(error.origin, ORIGIN);
    let text = error.to_string();
    assert!(text.starts_with(&format!("{ORIGIN}: ")), "{text}");
    error.problem
}

#[test]
fn round_trip_keeps_bytes_and_id() {
    for model in [
        small_model(),
        Model::random(unconditional_spec(), 2).unwrap(),
    ] {
        let bytes = model.to_bytes();
        assert_eq!(model.id(), hex(&Sha256::digest(&bytes)));
        assert_eq!(model.id().len(), 64);
        assert!(model
            .id()
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
        let loaded = Model::from_bytes(&bytes, ORIGIN).unwrap();
        assert_eq!(loaded.id(), model.id());
        assert_eq!(loaded.spec(), model.spec());
        assert_eq!(loaded.to_bytes(), bytes);
        for (name, _) in model.spec().tensor_shapes() {
            assert_eq!(loaded.tensor(&name), model.tensor(&name), "{name}");
        }
    }
}

#[test]
fn written_file_is_standard_safetensors() {
    let model = small_model();
    let bytes = model.to_bytes();
    let (header_len, metadata) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(header_len % 8, 0);
    let json = metadata
        .metadata()
        .as_ref()
        .unwrap()
        .get(MODEL_METADATA_KEY)
        .unwrap();
    assert_eq!(
        &serde_json::from_str::<ModelSpec>(json).unwrap(),
        model.spec()
    );
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let expected: Vec<String> = model
        .spec()
        .tensor_shapes()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        metadata.offset_keys(),
        expected,
        "data in tensor_shapes order"
    );
    for (name, shape) in model.spec().tensor_shapes() {
        let view = file.tensor(&name).unwrap();
        assert_eq!(view.dtype(), Dtype::F32);
        assert_eq!(view.shape(), &shape[..]);
        assert_eq!(view.data(), &le_bytes(model.tensor(&name).unwrap())[..]);
    }
    // The same model written by the safetensors crate (another tensor order) loads too.
    let other = safetensors_file(&model_tensors(&model), good_metadata(&model));
    let loaded = Model::from_bytes(&other, ORIGIN).unwrap();
    assert_eq!(loaded.to_bytes(), bytes);
}

#[test]
fn from_tensors_any_order_and_same_id() {
    let model = small_model();
    let mut tensors = named_values(&model);
    tensors.reverse();
    let rebuilt = Model::from_tensors(model.spec().clone(), tensors.clone()).unwrap();
    assert_eq!(rebuilt.id(), model.id());

    let check = |tensors: Vec<(String, Vec<f32>)>, needle: &str| {
        let error = Model::from_tensors(model.spec().clone(), tensors).unwrap_err();
        assert_eq!(error.origin, "<model from tensors>");
        assert!(error.problem.contains(needle), "{error}");
    };
    let mut missing = tensors.clone();
    missing.retain(|(n, _)| n != "layers.1.bias");
    check(missing, "missing tensor layers.1.bias");
    let mut twice = tensors.clone();
    twice.push(tensors[0].clone());
    check(twice, "given twice");
    let mut extra = tensors.clone();
    extra.push(("layers.9.weight".into(), vec![0.0]));
    check(extra, "unexpected tensor layers.9.weight");
    let mut short = tensors.clone();
    short[0].1.pop();
    check(short, "expected shape");
    let mut nan = tensors.clone();
    nan[1].1[3] = f32::NAN;
    check(nan, "non-finite value (NaN) at index 3");
    let bad_spec = ModelSpec {
        architecture: Architecture::mlp(13, 0),
        ..model.spec().clone()
    };
    let error = Model::from_tensors(bad_spec, tensors).unwrap_err();
    assert!(error.problem.contains("depth"), "{error}");
}

#[test]
fn random_weights_follow_pytorch_init() {
    let model = small_model();
    let first = model.tensor("layers.0.weight").unwrap();
    let bound = 1.0 / (26f32).sqrt();
    assert!(first.iter().all(|v| v.abs() <= bound));
    assert!(first.iter().any(|v| v.abs() > 0.8 * bound));
    let bias = model.tensor("layers.2.bias").unwrap();
    assert!(bias.iter().all(|v| v.abs() <= 1.0 / (13f32).sqrt()));
    assert!(model.tensor("class_embedding.weight").unwrap().len() == 20);
    assert!(model.tensor("layers.3.weight").is_none());
    assert_eq!(
        Model::random(small_spec(), 1).unwrap().id(),
        model.id(),
        "same seed, same model"
    );
    assert_ne!(Model::random(small_spec(), 2).unwrap().id(), model.id());
    let error = Model::random(
        ModelSpec {
            architecture: Architecture::Mlp(MlpSpec {
                hidden_width: 0,
                depth: 2,
                activation: Activation::Silu,
            }),
            ..small_spec()
        },
        1,
    )
    .unwrap_err();
    assert_eq!(error.origin, "<random model>");
}

#[test]
fn truncated_file() {
    let bytes = small_model().to_bytes();
    let problem = load_error(&bytes[..bytes.len() - 4]);
    assert!(problem.contains("truncated"), "{problem}");
    let problem = load_error(&bytes[..5]);
    assert!(problem.contains("truncated"), "{problem}");
    let problem = load_error(&bytes[..100]);
    assert!(problem.contains("truncated"), "{problem}");
}

#[test]
fn garbage_bytes() {
    let problem = load_error(b"this is not a model file at all, just some text");
    assert!(problem.contains("not a safetensors file"), "{problem}");
    assert!(load_error(&[]).contains("not a safetensors file"));
    let mut json_garbage = 12u64.to_le_bytes().to_vec();
    json_garbage.extend_from_slice(b"{not json}  ");
    let problem = load_error(&json_garbage);
    assert!(problem.contains("safetensors"), "{problem}");
}

#[test]
fn missing_tensor() {
    let model = small_model();
    let mut tensors = model_tensors(&model);
    tensors.retain(|(name, ..)| name != "layers.2.weight");
    let problem = load_error(&safetensors_file(&tensors, good_metadata(&model)));
    assert_eq!(problem, "missing tensor layers.2.weight");
}

#[test]
fn wrong_shape() {
    let model = small_model();
    let mut tensors = model_tensors(&model);
    tensors[1] = (
        "layers.0.weight".into(),
        Dtype::F32,
        vec![3, 4],
        le_bytes(&[0.5; 12]),
    );
    let problem = load_error(&safetensors_file(&tensors, good_metadata(&model)));
    assert_eq!(
        problem,
        "tensor layers.0.weight has shape [3, 4], expected [13, 26]"
    );
}

#[test]
fn wrong_dtype() {
    let model = small_model();
    let mut tensors = model_tensors(&model);
    // layers.0.bias as F16 (13 values of 1.0 = 0x3c00).
    tensors[2] = (
        "layers.0.bias".into(),
        Dtype::F16,
        vec![13],
        [0x00u8, 0x3c].repeat(13),
    );
    let problem = load_error(&safetensors_file(&tensors, good_metadata(&model)));
    assert_eq!(
        problem,
        "tensor layers.0.bias is F16 but tensor class_embedding.weight is F32: a model stores \
         every tensor in one dtype"
    );
    // A dtype that is neither.
    tensors[2] = (
        "layers.0.bias".into(),
        Dtype::I32,
        vec![13],
        [1u8, 0, 0, 0].repeat(13),
    );
    let problem = load_error(&safetensors_file(&tensors, good_metadata(&model)));
    assert_eq!(
        problem,
        "tensor layers.0.bias has dtype I32, expected F32 or F16"
    );
}

/// `model`'s tensors as F16 (name, F16, shape, bytes), each value rounded by `half`.
fn f16_tensors(model: &Model) -> Vec<(String, Dtype, Vec<usize>, Vec<u8>)> {
    model
        .spec()
        .tensor_shapes()
        .into_iter()
        .map(|(name, shape)| {
            let bytes = model
                .tensor(&name)
                .unwrap()
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect();
            (name, Dtype::F16, shape, bytes)
        })
        .collect()
}

#[test]
fn f16_values_widen_exactly() {
    // Bit patterns with known values: 1, −2, the largest f16, the smallest subnormal, −0.
    let model = Model::random(unconditional_spec(), 3).unwrap();
    let mut tensors = f16_tensors(&model);
    let (name, _, shape, bytes) = &mut tensors[0];
    let patterns: [(u16, f32); 5] = [
        (0x3c00, 1.0),
        (0xc000, -2.0),
        (0x7bff, 65504.0),
        (0x0001, 2f32.powi(-24)),
        (0x8000, -0.0),
    ];
    for (i, (bits, _)) in patterns.iter().enumerate() {
        bytes[2 * i..2 * i + 2].copy_from_slice(&bits.to_le_bytes());
    }
    let name = name.clone();
    assert!(shape.iter().product::<usize>() >= patterns.len());
    let loaded =
        Model::from_bytes(&safetensors_file(&tensors, good_metadata(&model)), ORIGIN).unwrap();
    assert_eq!(loaded.dtype(), WeightDtype::F16);
    let values = loaded.tensor(&name).unwrap();
    for (i, (bits, expected)) in patterns.iter().enumerate() {
        assert_eq!(
            values[i].to_bits(),
            expected.to_bits(),
            "pattern {bits:#06x}"
        );
    }
    // An infinite or NaN f16 is refused like a non-finite f32.
    tensors[0].3[..2].copy_from_slice(&0x7c00u16.to_le_bytes());
    let problem = load_error(&safetensors_file(&tensors, good_metadata(&model)));
    assert!(
        problem.contains("non-finite value (inf) at index 0"),
        "{problem}"
    );
}

#[test]
fn f16_models_round_trip_and_answer_to_their_original() {
    let model = small_model();
    let half = model.with_dtype(WeightDtype::F16).unwrap();
    assert_eq!(half.dtype(), WeightDtype::F16);
    assert_eq!(half.spec().rounded_from.as_deref(), Some(model.id()));
    assert_ne!(half.id(), model.id());
    assert!(half.answers_to(model.id()) && half.answers_to(half.id()));
    assert!(!model.answers_to(half.id()));
    // Every weight is the nearest f16 (ties to even), stored in two bytes.
    for (name, _) in model.spec().tensor_shapes() {
        let original = model.tensor(&name).unwrap();
        let rounded = half.tensor(&name).unwrap();
        for (a, b) in original.iter().zip(rounded) {
            assert_eq!(half::f16::from_f32(*a).to_f32().to_bits(), b.to_bits());
        }
    }
    let bytes = half.to_bytes();
    let wide = model.to_bytes();
    assert!(
        bytes.len() < wide.len() / 2 + 1024,
        "{} vs {}",
        bytes.len(),
        wide.len()
    );
    // The canonical F16 file loads with the same id and is written back byte for byte.
    let loaded = Model::from_bytes(&bytes, ORIGIN).unwrap();
    assert_eq!(loaded.id(), half.id());
    assert_eq!(loaded.to_bytes(), bytes);
    assert_eq!(loaded.dtype(), WeightDtype::F16);
    // The same file as the safetensors crate lays it out loads to the same values.
    let theirs = safetensors_file(&f16_tensors(&model), good_metadata(&half));
    let other = Model::from_bytes(&theirs, ORIGIN).unwrap();
    assert_eq!(other.to_bytes(), bytes);
    // Rounding again changes nothing; widening keeps the values and the provenance, and the
    // CPU forward of both is the same, bit for bit.
    assert_eq!(half.with_dtype(WeightDtype::F16).unwrap().id(), half.id());
    let widened = half.with_dtype(WeightDtype::F32).unwrap();
    assert_eq!(widened.dtype(), WeightDtype::F32);
    assert_eq!(widened.spec().rounded_from.as_deref(), Some(model.id()));
    assert!(widened.answers_to(model.id()));
    let d = model.spec().data_dim();
    let rows = 5;
    let x: Vec<f32> = (0..rows * d).map(|i| (i as f32 * 0.37).sin()).collect();
    let t: Vec<f32> = (0..rows).map(|i| i as f32 / rows as f32).collect();
    let class: Vec<u32> = (0..rows as u32).map(|i| i % 4).collect();
    let a = loaded.velocity(&x, &t, &class).unwrap();
    let b = widened.velocity(&x, &t, &class).unwrap();
    assert_eq!(
        a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    // Close to the unrounded model, not equal to it.
    let c = model.velocity(&x, &t, &class).unwrap();
    assert_ne!(a, c);
    let worst = a
        .iter()
        .zip(&c)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f32::max);
    assert!(worst < 0.05, "{worst}");
}

#[test]
fn f16_rounding_refuses_values_beyond_its_range() {
    let model = small_model();
    let mut tensors = named_values(&model);
    tensors[1].1[3] = 1.0e5;
    let big = Model::from_tensors(model.spec().clone(), tensors).unwrap();
    let problem = big.with_dtype(WeightDtype::F16).unwrap_err().problem;
    assert!(
        problem.contains(&tensors_name(&model, 1)) && problem.contains("beyond the range of f16"),
        "{problem}"
    );
    // A rounded_from that is not a model id is refused.
    let mut spec = model.spec().clone();
    spec.rounded_from = Some("not-an-id".into());
    let json = serde_json::to_string(&spec).unwrap();
    let problem = load_error(&safetensors_file(
        &model_tensors(&model),
        spec_metadata(&json),
    ));
    assert!(
        problem.contains("rounded_from must be a model id"),
        "{problem}"
    );
}

/// The name of `model`'s tensor number `index` in file order.
fn tensors_name(model: &Model, index: usize) -> String {
    model.spec().tensor_shapes()[index].0.clone()
}

#[test]
fn non_finite_weight() {
    let model = small_model();
    let mut tensors = model_tensors(&model);
    let mut values = model.tensor("layers.1.weight").unwrap().to_vec();
    values[5] = f32::INFINITY;
    tensors[3].3 = le_bytes(&values);
    let problem = load_error(&safetensors_file(&tensors, good_metadata(&model)));
    assert_eq!(
        problem,
        "tensor layers.1.weight has a non-finite value (inf) at index 5"
    );
}

#[test]
fn unexpected_tensor() {
    let model = small_model();
    let mut tensors = model_tensors(&model);
    tensors.push(("extra.scale".into(), Dtype::F32, vec![1], le_bytes(&[1.0])));
    let problem = load_error(&safetensors_file(&tensors, good_metadata(&model)));
    assert_eq!(
        problem,
        "unexpected tensor extra.scale (not part of this mlp model)"
    );
}

#[test]
fn metadata_missing() {
    let model = small_model();
    let problem = load_error(&safetensors_file(&model_tensors(&model), None));
    assert!(problem.contains("no __metadata__"), "{problem}");
    let other_key = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
    let problem = load_error(&safetensors_file(&model_tensors(&model), other_key));
    assert!(problem.contains("no \"bns.model\" key"), "{problem}");
}

#[test]
fn metadata_invalid_json() {
    let model = small_model();
    let problem = load_error(&safetensors_file(
        &model_tensors(&model),
        spec_metadata("{\"format_version\": 1, \"architecture\": "),
    ));
    assert!(
        problem.starts_with("metadata \"bns.model\" is not valid JSON"),
        "{problem}"
    );
    let problem = load_error(&safetensors_file(
        &model_tensors(&model),
        spec_metadata("{\"format_version\": 1, \"architecture\": \"mlp\"}"),
    ));
    assert!(
        problem.contains("not a valid model description") && problem.contains("data_shape"),
        "{problem}"
    );
    let problem = load_error(&safetensors_file(
        &model_tensors(&model),
        spec_metadata("{\"architecture\": \"mlp\"}"),
    ));
    assert!(problem.contains("no format_version"), "{problem}");
}

#[test]
fn unknown_format_version() {
    let model = small_model();
    let mut value = serde_json::to_value(model.spec()).unwrap();
    value["format_version"] = 9.into();
    // A future version may change other fields too: the version is checked first.
    value["depth"] = "many".into();
    let problem = load_error(&safetensors_file(
        &model_tensors(&model),
        spec_metadata(&value.to_string()),
    ));
    assert_eq!(
        problem,
        "unknown model format version 9 (this runtime reads version 1)"
    );
}

#[test]
fn invalid_spec() {
    let model = small_model();
    let spec = ModelSpec {
        architecture: Architecture::mlp(100_000, 2),
        ..model.spec().clone()
    };
    let problem = load_error(&safetensors_file(
        &model_tensors(&model),
        spec_metadata(&serde_json::to_string(&spec).unwrap()),
    ));
    assert!(
        problem.starts_with("invalid model description: hidden_width"),
        "{problem}"
    );
}

#[test]
fn huge_data_offsets_are_an_error_not_a_panic() {
    // Chained offsets summing to nearly u64::MAX overflow safetensors' own size check.
    let size = (1u64 << 61) - 1;
    let mut entries = Vec::new();
    for i in 0..8u64 {
        entries.push(format!(
            "\"t{i}\":{{\"dtype\":\"U8\",\"shape\":[{size}],\"data_offsets\":[{},{}]}}",
            i * size,
            (i + 1) * size
        ));
    }
    let header = format!("{{{}}}", entries.join(","));
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    let problem = load_error(&bytes);
    assert!(problem.contains("beyond the file"), "{problem}");
}

#[test]
fn corrupt_files_never_panic() {
    let bytes = Model::random(unconditional_spec(), 3).unwrap().to_bytes();
    // Every truncation.
    for len in 0..bytes.len() {
        assert!(
            Model::from_bytes(&bytes[..len], ORIGIN).is_err(),
            "length {len}"
        );
    }
    // Byte flips everywhere (random positions and values, deterministic).
    let mut noise = Noise::new(99);
    let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    for round in 0..4000 {
        let mut corrupt = bytes.clone();
        let flips = 1 + (noise.next_u64() % 4) as usize;
        for _ in 0..flips {
            // Half the flips in the header, where parsing happens.
            let limit = if round % 2 == 0 {
                header_end
            } else {
                corrupt.len()
            };
            let at = (noise.next_u64() % limit as u64) as usize;
            corrupt[at] ^= 1 << (noise.next_u64() % 8);
        }
        if let Ok(model) = Model::from_bytes(&corrupt, ORIGIN) {
            // A flip that still parses (e.g. a weight changed) must give a usable model.
            let d = model.spec().data_dim();
            let out = model.velocity(&vec![0.1; 2 * d], &[0.2, 0.9], &[]);
            assert!(out.is_ok());
        }
        let cut = (noise.next_u64() % corrupt.len() as u64) as usize;
        let _ = Model::from_bytes(&corrupt[..cut], ORIGIN);
    }
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn save_and_load() {
    let scratch = crate::scratch::ScratchDir::new("model-test");
    let dir = scratch.path();
    let path = dir.join("model.safetensors");
    let model = small_model();
    model.save(&path).unwrap();
    let loaded = Model::load(&path).unwrap();
    assert_eq!(loaded.id(), model.id());
    assert_eq!(
        std::fs::read_dir(dir).unwrap().count(),
        1,
        "no temp file left"
    );
    let error = Model::load(&dir.join("absent.safetensors")).unwrap_err();
    assert!(error.origin.ends_with("absent.safetensors"));
    assert!(error.problem.contains("cannot read"), "{error}");
    std::fs::write(&path, b"garbage").unwrap();
    let error = Model::load(&path).unwrap_err();
    assert_eq!(error.origin, path.display().to_string());
    let error = model
        .save(&dir.join("no-such-dir").join("m.safetensors"))
        .unwrap_err();
    assert!(error.problem.contains("cannot save"), "{error}");
}

// ---- the forward ----

/// The network computed plainly in f64 (same inputs: f32 time embedding, f32 weights).
fn reference_velocity(model: &Model, x: &[f32], t: &[f32], class: &[u32]) -> Vec<f64> {
    let spec = model.spec();
    let Architecture::Mlp(mlp) = &spec.architecture else {
        panic!("an MLP spec")
    };
    let depth = mlp.depth;
    let d = spec.data_dim();
    let mut out = Vec::new();
    for (r, &time) in t.iter().enumerate() {
        let mut h: Vec<f64> = x[r * d..(r + 1) * d].iter().map(|&v| v as f64).collect();
        h.extend(
            time_embedding(time, spec.time_embedding, spec.time_scale)
                .iter()
                .map(|&v| v as f64),
        );
        if spec.is_conditional() {
            let e = spec.class_embedding;
            let table = model.tensor("class_embedding.weight").unwrap();
            let c = class[r] as usize;
            h.extend(table[c * e..(c + 1) * e].iter().map(|&v| v as f64));
        }
        for layer in 0..=depth {
            let w = model.tensor(&format!("layers.{layer}.weight")).unwrap();
            let b = model.tensor(&format!("layers.{layer}.bias")).unwrap();
            let fan_in = h.len();
            let mut next = Vec::with_capacity(b.len());
            for o in 0..b.len() {
                let mut sum = b[o] as f64;
                for i in 0..fan_in {
                    sum += w[o * fan_in + i] as f64 * h[i];
                }
                if layer < depth {
                    sum /= 1.0 + (-sum).exp();
                }
                next.push(sum);
            }
            h = next;
        }
        out.extend(h);
    }
    out
}

fn relative_error(got: &[f32], reference: &[f64]) -> f64 {
    assert_eq!(got.len(), reference.len());
    let diff: f64 = got
        .iter()
        .zip(reference)
        .map(|(&g, &r)| (g as f64 - r).powi(2))
        .sum();
    let norm: f64 = reference.iter().map(|r| r * r).sum();
    (diff / norm).sqrt()
}

#[test]
fn forward_matches_naive_reference() {
    let shapes: [(Vec<usize>, usize, usize, usize, usize, usize); 4] = [
        // data_shape, hidden, depth, time_emb, class_emb, classes — none multiples of 8.
        (vec![1, 3, 5], 13, 2, 6, 5, 3),
        (vec![2, 1, 1], 37, 3, 10, 0, 0),
        (vec![1, 7, 9], 101, 1, 18, 11, 10),
        (vec![3, 5, 7], 259, 4, 30, 7, 2),
    ];
    let mut noise = Noise::new(5);
    for (case, (data_shape, hidden, depth, temb, cemb, classes)) in shapes.into_iter().enumerate() {
        let spec = ModelSpec {
            architecture: Architecture::mlp(hidden, depth),
            data_shape,
            time_embedding: temb,
            class_embedding: cemb,
            num_classes: classes,
            ..small_spec()
        };
        let model = Model::random(spec.clone(), case as u64).unwrap();
        let rows = 7;
        let x = noise.gaussian_f32(rows * spec.data_dim());
        let t: Vec<f32> = (0..rows).map(|_| noise.uniform() as f32).collect();
        let class: Vec<u32> = (0..rows as u32)
            .map(|r| r % (spec.null_class() + 1))
            .collect();
        let got = model.velocity(&x, &t, &class).unwrap();
        let reference = reference_velocity(&model, &x, &t, &class);
        let error = relative_error(&got, &reference);
        assert!(error < 1e-5, "case {case}: relative error {error}");
    }
}

#[test]
fn rows_are_independent_of_the_batch() {
    let model = small_model();
    let d = model.spec().data_dim();
    let rows = 150; // more than one chunk of rows
    let mut noise = Noise::new(8);
    let x = noise.gaussian_f32(rows * d);
    let t: Vec<f32> = (0..rows).map(|_| noise.uniform() as f32).collect();
    let class: Vec<u32> = (0..rows as u32).map(|r| r % 4).collect();
    let all = model.velocity(&x, &t, &class).unwrap();
    for r in [0, 1, 63, 64, 65, 127, 128, 149] {
        let one = model
            .velocity(&x[r * d..(r + 1) * d], &t[r..r + 1], &class[r..r + 1])
            .unwrap();
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&one), bits(&all[r * d..(r + 1) * d]), "row {r}");
    }
    assert!(model.velocity(&[], &[], &[]).unwrap().is_empty());
}

#[test]
fn velocity_rejects_bad_inputs() {
    let model = small_model(); // 3 classes + null (3)
    let d = model.spec().data_dim();
    let x = vec![0.0; 2 * d];
    assert!(model.velocity(&x, &[0.5, 0.5], &[0, 3]).is_ok());
    let error = model.velocity(&x, &[0.5, 0.5], &[0, 4]).unwrap_err();
    assert_eq!(error.origin, "<random model>");
    assert!(error.problem.contains("class 4 is out of range"), "{error}");
    let error = model.velocity(&x, &[0.5, 0.5], &[0]).unwrap_err();
    assert!(
        error.problem.contains("1 class labels for 2 rows"),
        "{error}"
    );
    let error = model.velocity(&x[1..], &[0.5, 0.5], &[0, 1]).unwrap_err();
    assert!(error.problem.contains("x has"), "{error}");

    let loaded = Model::from_bytes(&model.to_bytes(), ORIGIN).unwrap();
    let error = loaded.velocity(&x, &[0.5, 0.5], &[9, 0]).unwrap_err();
    assert_eq!(error.origin, ORIGIN);

    let unconditional = Model::random(unconditional_spec(), 4).unwrap();
    let x = vec![0.3; 4];
    let without = unconditional.velocity(&x, &[0.1, 0.2], &[]).unwrap();
    let ignored = unconditional.velocity(&x, &[0.1, 0.2], &[0, 77]).unwrap();
    assert_eq!(without, ignored);
    assert!(unconditional.velocity(&x, &[0.1, 0.2], &[0]).is_err());
}

#[test]
fn forward_output_is_pinned() {
    // Pinned bits of one output, so that any change of summation order or maths is noticed
    // (the same bits must come out in wasm).
    let model = small_model();
    let d = model.spec().data_dim();
    let x: Vec<f32> = (0..d).map(|i| i as f32 / d as f32 - 0.5).collect();
    let out = model.velocity(&x, &[0.25], &[2]).unwrap();
    let bits: Vec<u32> = out[..3].iter().map(|v| v.to_bits()).collect();
    assert_eq!(bits, PINNED_FORWARD_BITS);
}

const PINNED_FORWARD_BITS: [u32; 3] = [1048744652, 1041624292, 1015618271];

#[test]
fn velocity_does_not_depend_on_the_thread_count() {
    let mut model = small_model();
    let d = model.spec().data_dim();
    let rows = 37;
    let mut noise = Noise::new(21);
    let x = noise.gaussian_f32(rows * d);
    let t: Vec<f32> = (0..rows).map(|i| i as f32 / rows as f32).collect();
    let classes: Vec<u32> = (0..rows as u32).map(|i| i % 3).collect();
    let one = model.velocity(&x, &t, &classes).unwrap();
    for threads in [2, 3, 8, 64] {
        model.set_threads(threads);
        assert_eq!(model.threads(), threads);
        let split = model.velocity(&x, &t, &classes).unwrap();
        let same = split
            .iter()
            .zip(&one)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "{threads} threads change the output");
    }
}

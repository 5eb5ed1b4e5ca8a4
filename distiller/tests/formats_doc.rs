//! `FORMATS.md` kept honest. Its worked examples (fenced blocks whose info string names them, e.g.
//! ```` ```json model-header ````) are loaded by the real loaders; the keys listed in each of its
//! key tables (after `<!-- keys: NAME -->`) are those the code writes, in the order it writes
//! them, and its `required` and `default when absent` columns are what the loaders do; its
//! formulas (time embedding, data → velocity, guidance, the NS update, the reduced form, PSNR,
//! the seeded noise, SiLU's `exp`, the MLP and U-Net forwards, a sample request) are recomputed
//! here from the text alone and compared with the runtime, to the bit wherever the text says how
//! the runtime rounds and sums; its table of limits equals the code's constants, and the
//! operation count behind one of them is recounted from the text. Any drift fails a test.

use std::collections::BTreeSet;
use std::fmt;

use distiller::metrics::{PsnrSummary, TestFigures};
use distiller::pairs::{Pairs, PairsMeta};
use distiller::shard::ShardMeta;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use web_sampler::manifest::{check_name, Manifest};
use web_sampler::model::{self, Model, ModelSpec};
use web_sampler::solver::{self, SolverFile};
use web_sampler::tensor_file::{self, TensorBytes};

const DOC: &str = include_str!("../../FORMATS.md");

// ---------------------------------------------------------------------------------------------
// Reading FORMATS.md

/// The text of the fenced block opened by ```` ```{info} ```` (e.g. `json solver`).
fn block(info: &str) -> &'static str {
    let opening = format!("```{info}\n");
    let start = DOC
        .find(&opening)
        .unwrap_or_else(|| panic!("FORMATS.md has no block ```{info}"))
        + opening.len();
    let length = DOC[start..]
        .find("\n```")
        .unwrap_or_else(|| panic!("FORMATS.md: block ```{info} is not closed"));
    &DOC[start..start + length + 1]
}

/// One row of a key table.
#[derive(Debug)]
struct KeyRow {
    key: String,
    /// `yes`, `no`, or the one architecture that needs it.
    required: String,
    /// The default when absent, as JSON, when the table gives one in backticks.
    default: Option<Value>,
}

/// The first backticked text of a table cell.
fn backticked(cell: &str) -> Option<&str> {
    let start = cell.find('`')? + 1;
    let length = cell[start..].find('`')?;
    Some(&cell[start..start + length])
}

/// The rows of the markdown table after the line `marker`, split into trimmed cells.
fn table_after(marker: &str) -> Vec<Vec<&'static str>> {
    let at = DOC
        .find(marker)
        .unwrap_or_else(|| panic!("FORMATS.md has no {marker}"));
    DOC[at + marker.len()..]
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2) // the header and the separator
        .map(|line| {
            line.trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The key table `name` (`<!-- keys: name -->`).
fn key_table(name: &str) -> Vec<KeyRow> {
    table_after(&format!("<!-- keys: {name} -->"))
        .into_iter()
        .map(|cells| {
            assert_eq!(cells.len(), 5, "key table {name}: {cells:?}");
            let key = backticked(cells[0])
                .unwrap_or_else(|| panic!("key table {name}: no key in {cells:?}"))
                .to_string();
            let default = backticked(cells[3]).map(|text| {
                serde_json::from_str(text).unwrap_or_else(|e| {
                    panic!("key table {name}, {key}: default {text:?} is not JSON: {e}")
                })
            });
            KeyRow {
                key,
                required: cells[2].to_string(),
                default,
            }
        })
        .collect()
}

fn keys_of(table: &[KeyRow]) -> Vec<&str> {
    table.iter().map(|row| row.key.as_str()).collect()
}

/// `json` without the whitespace outside strings (the key order kept).
fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if !c.is_whitespace() {
            in_string = c == '"';
            out.push(c);
        }
    }
    out
}

/// The keys of a JSON object in the order they are written.
struct OrderedKeys(Vec<String>);

impl<'de> Deserialize<'de> for OrderedKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeysVisitor;
        impl<'de> Visitor<'de> for KeysVisitor {
            type Value = OrderedKeys;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedKeys, A::Error> {
                let mut keys = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    map.next_value::<IgnoredAny>()?;
                    keys.push(key);
                }
                Ok(OrderedKeys(keys))
            }
        }
        deserializer.deserialize_map(KeysVisitor)
    }
}

/// The keys of the JSON object `json`, in order.
fn written_keys(json: &str) -> Vec<String> {
    serde_json::from_str::<OrderedKeys>(json).unwrap().0
}

/// Checks that `written` (the keys of one object the code wrote) are the table's keys that are
/// present, in the table's order.
fn assert_written_in_table_order(table: &str, rows: &[KeyRow], written: &[String]) {
    let present: Vec<&str> = keys_of(rows)
        .into_iter()
        .filter(|key| written.iter().any(|w| w == key))
        .collect();
    assert_eq!(
        written, present,
        "FORMATS.md key table {table}: the code writes these keys (left), the table lists them \
         in this order (right)"
    );
}

fn object(json: &str) -> serde_json::Map<String, Value> {
    match serde_json::from_str(json).unwrap() {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// Checks the `required` and `default when absent` columns of `table` on the example `example`
/// with `load`: without a required key it fails; without an optional one it loads, and as if the
/// key had its documented default. `conditions` are the `required` cells (besides `yes`) that
/// hold for the example: its architecture, for keys required by one; `with `key`` for keys
/// required together with another that the example has.
fn assert_required_and_defaults<T: PartialEq + fmt::Debug, E: fmt::Display>(
    table: &str,
    example: &serde_json::Map<String, Value>,
    conditions: &[&str],
    load: impl Fn(&serde_json::Map<String, Value>) -> Result<T, E>,
) {
    let rows = key_table(table);
    let full = load(example).unwrap_or_else(|e| panic!("{table}: the example fails: {e}"));
    for row in &rows {
        let mut without = example.clone();
        let present = without.remove(&row.key).is_some();
        let required = row.required == "yes" || conditions.contains(&row.required.as_str());
        match load(&without) {
            Err(e) if !(present && required) => {
                panic!("{table}: without `{}` the example fails ({e}), though FORMATS.md says it is optional", row.key)
            }
            Ok(_) if present && required => {
                panic!("{table}: without `{}` the example loads, though FORMATS.md says it is required", row.key)
            }
            Ok(loaded) => {
                if let Some(default) = &row.default {
                    let mut with_default = example.clone();
                    with_default.insert(row.key.clone(), default.clone());
                    let defaulted = load(&with_default).unwrap_or_else(|e| {
                        panic!("{table}: `{}` = its default {default} fails: {e}", row.key)
                    });
                    assert_eq!(
                        loaded, defaulted,
                        "{table}: an absent `{}` is not its documented default {default}",
                        row.key
                    );
                    if !present {
                        assert_eq!(loaded, full);
                    }
                }
            }
            Err(_) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The model file

/// `n` deterministic small weights.
fn weights(n: usize, offset: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i + offset) as f64 * 0.37).sin() * 0.5) as f32)
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The example model file: the doc's header, compacted and padded, and deterministic weights.
fn example_model_file() -> Vec<u8> {
    let mut header = compact(block("json model-header"));
    while !header.len().is_multiple_of(8) {
        header.push(' ');
    }
    let parsed: Value = serde_json::from_str(&header).unwrap();
    let data_len = parsed
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| *name != "__metadata__")
        .map(|(_, info)| info["data_offsets"][1].as_u64().unwrap() as usize)
        .max()
        .unwrap();
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    for v in weights(data_len / 4, 0) {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    bytes
}

#[test]
fn the_model_header_example_is_a_canonical_file_of_the_example_spec() {
    let bytes = example_model_file();
    let model = Model::from_bytes(&bytes, "FORMATS.md model-header").unwrap();
    assert_eq!(model.id(), hex(&Sha256::digest(&bytes)), "id = SHA-256");
    assert!(
        model.to_bytes() == bytes,
        "the documented header (compact, padded to 8) is not the canonical file"
    );
    let spec: ModelSpec = serde_json::from_str(block("json model-spec")).unwrap();
    assert_eq!(model.spec(), &spec);
    assert_eq!(
        serde_json::to_string(&spec).unwrap(),
        compact(block("json model-spec")),
        "the canonical spec is the example's keys in its order"
    );
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let data_len = bytes.len() - 8 - header_len;
    let sizes = format!(
        "{header_len} bytes, so the file is 8 + {header_len} + {data_len} = {} bytes",
        bytes.len()
    );
    let flowing = DOC.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flowing.contains(&sizes), "FORMATS.md should say {sizes:?}");
}

/// `"name [a, b]"` lines → names and shapes.
fn tensor_lines(text: &str) -> Vec<(String, Vec<usize>)> {
    text.lines()
        .map(|line| {
            let (name, shape) = line.split_once(' ').unwrap();
            (name.to_string(), serde_json::from_str(shape).unwrap())
        })
        .collect()
}

#[test]
fn the_unet_example_has_the_documented_tensors_and_loads() {
    let text = block("json unet-spec");
    let spec: ModelSpec = serde_json::from_str(text).unwrap();
    spec.validate().unwrap();
    assert_eq!(serde_json::to_string(&spec).unwrap(), compact(text));
    assert_eq!(
        spec.tensor_shapes(),
        tensor_lines(block("text unet-tensors"))
    );
    let model = Model::random(spec.clone(), 3).unwrap();
    let loaded = Model::from_bytes(&model.to_bytes(), "unet example").unwrap();
    assert_eq!(loaded.spec(), &spec);
}

#[test]
fn the_model_key_tables_are_the_spec_s_fields() {
    let rows = key_table("bns.model");
    let mlp = compact(block("json model-spec"));
    let unet = compact(block("json unet-spec"));
    for example in [&mlp, &unet] {
        let spec: ModelSpec = serde_json::from_str(example).unwrap();
        let written = written_keys(&serde_json::to_string(&spec).unwrap());
        assert_written_in_table_order("bns.model", &rows, &written);
    }
    let both: BTreeSet<String> = written_keys(&mlp)
        .into_iter()
        .chain(written_keys(&unet))
        .collect();
    let listed: BTreeSet<String> = rows.iter().map(|r| r.key.clone()).collect();
    assert_eq!(both, listed, "the examples show every key of the table");

    let unet_spec: ModelSpec = serde_json::from_str(&unet).unwrap();
    let model::Architecture::Unet(sizes) = &unet_spec.architecture else {
        panic!("the U-Net example is a unet")
    };
    let written = written_keys(&serde_json::to_string(sizes).unwrap());
    let unet_rows = key_table("unet");
    assert_written_in_table_order("unet", &unet_rows, &written);
    assert_eq!(written.len(), unet_rows.len());
}

fn load_spec(map: &serde_json::Map<String, Value>) -> Result<ModelSpec, String> {
    let spec: ModelSpec =
        serde_json::from_value(Value::Object(map.clone())).map_err(|e| e.to_string())?;
    spec.validate()?;
    Ok(spec)
}

#[test]
fn the_model_tables_say_which_keys_are_required_and_their_defaults() {
    let mlp = object(block("json model-spec"));
    let unet = object(block("json unet-spec"));
    assert_required_and_defaults("bns.model", &mlp, &["mlp"], load_spec);
    assert_required_and_defaults("bns.model", &unet, &["unet"], load_spec);
    // A key required by one architecture is refused in the other.
    for row in key_table("bns.model") {
        let (own, other) = match row.required.as_str() {
            "mlp" => (&mlp, &unet),
            "unet" => (&unet, &mlp),
            _ => continue,
        };
        let mut mixed = other.clone();
        mixed.insert(row.key.clone(), own[&row.key].clone());
        assert!(
            load_spec(&mixed).is_err(),
            "`{}` is accepted in a model of the other architecture",
            row.key
        );
    }
    let sizes = unet["unet"].as_object().unwrap().clone();
    assert_required_and_defaults("unet", &sizes, &["unet"], |sizes| {
        let mut spec = unet.clone();
        spec.insert("unet".into(), Value::Object(sizes.clone()));
        load_spec(&spec)
    });
    let mut extra = sizes.clone();
    extra.insert("dropout".into(), 0.into());
    let mut spec = unet.clone();
    spec.insert("unet".into(), Value::Object(extra));
    assert!(load_spec(&spec).is_err(), "an unknown key inside unet");
}

// ---------------------------------------------------------------------------------------------
// The formulas of §1.4–1.6

/// §1.4, as written.
fn documented_time_embedding(t: f32, width: usize, s: f64) -> Vec<f32> {
    let half = width / 2;
    let f = |k: usize| libm::exp(-libm::log(10000.0) * k as f64 / half as f64);
    let st = s * f64::from(t);
    let mut e: Vec<f32> = (0..half).map(|k| libm::sin(st * f(k)) as f32).collect();
    e.extend((0..half).map(|k| libm::cos(st * f(k)) as f32));
    if width % 2 == 1 {
        e.push(0.0);
    }
    e
}

#[test]
fn the_time_embedding_is_the_documented_formula() {
    for &(t, width, s) in &[
        (0.0f32, 8, 1000.0),
        (0.37, 6, 1000.0),
        (0.5, 64, 10.0),
        (0.999, 128, 10.0),
        (1.0, 4, 10.0),
        (0.123_456_7, 5, 10.0),
        (0.75, 2, 3.5),
    ] {
        let runtime = model::time_embedding(t, width, s);
        let documented = documented_time_embedding(t, width, s);
        assert_eq!(runtime.len(), documented.len());
        for (k, (a, b)) in runtime.iter().zip(&documented).enumerate() {
            assert_eq!(
                a.to_bits(),
                b.to_bits(),
                "e({t})[{k}] of width {width}, s = {s}: runtime {a}, FORMATS.md {b}"
            );
        }
    }
    assert_eq!(model::DEFAULT_TIME_SCALE, 1000.0);
}

/// §1.6: `u = (x̂1 − x)·r(t)`, `r(t) = 1/max(1 − t, 0.05)`, in f32.
fn documented_velocity(x_hat1: f32, x: f32, t: f32) -> f32 {
    let r = 1.0f32 / (1.0f32 - t).max(0.05);
    (x_hat1 - x) * r
}

#[test]
fn the_data_prediction_conversion_is_the_documented_formula() {
    let times = [0.0f32, 0.3, 0.9, 0.95, 0.97, 1.0];
    let x: Vec<f32> = (0..times.len() * 2)
        .map(|i| i as f32 * 0.25 - 1.0)
        .collect();
    let x_hat1: Vec<f32> = (0..times.len() * 2).map(|i| (i as f32).cos()).collect();
    let mut u = x_hat1.clone();
    web_sampler::path::velocity_from_data(&mut u, &x, &times);
    for (i, &got) in u.iter().enumerate() {
        let expected = documented_velocity(x_hat1[i], x[i], times[i / 2]);
        assert_eq!(got.to_bits(), expected.to_bits(), "value {i}");
    }
}

/// §1.3's MLP forward and §1.6's conversion, from the text, on the example model.
fn documented_mlp_output(model: &Model, x: &[f32], t: f32, class: u32) -> Vec<f32> {
    let spec = model.spec();
    let model::Architecture::Mlp(mlp) = &spec.architecture else {
        panic!("the example is an MLP")
    };
    let tensor = |name: &str| model.tensor(name).unwrap();
    let mut h: Vec<f32> = x.to_vec();
    h.extend(documented_time_embedding(
        t,
        spec.time_embedding,
        spec.time_scale,
    ));
    if spec.num_classes > 0 {
        let width = spec.class_embedding;
        let c = class as usize;
        h.extend_from_slice(&tensor("class_embedding.weight")[c * width..(c + 1) * width]);
    }
    for i in 0..=mlp.depth {
        let weight = tensor(&format!("layers.{i}.weight"));
        let bias = tensor(&format!("layers.{i}.bias"));
        h = bias
            .iter()
            .enumerate()
            .map(|(o, b)| {
                let y = documented_dense_sum(&h, &weight[o * h.len()..(o + 1) * h.len()]) + b;
                if i < mlp.depth {
                    silu(y)
                } else {
                    y
                }
            })
            .collect();
    }
    if spec.prediction == model::Prediction::Data {
        h = h
            .iter()
            .zip(x)
            .map(|(&x_hat1, &x)| documented_velocity(x_hat1, x, t))
            .collect();
    }
    h
}

#[test]
fn the_mlp_forward_and_the_guidance_are_the_documented_ones() {
    let model = Model::from_bytes(&example_model_file(), "example").unwrap();
    let null = model.spec().num_classes as u32;
    let w = 0.5f64;
    for (row, &t) in [0.0f32, 0.25, 0.6, 0.99].iter().enumerate() {
        let x = [0.3 - row as f32 * 0.4, 0.8 * row as f32 - 1.0];
        for class in 0..=null {
            let documented = documented_mlp_output(&model, &x, t, class);
            let runtime = model.velocity(&x, &[t], &[class]).unwrap();
            for (a, b) in runtime.iter().zip(&documented) {
                assert_eq!(
                    a.to_bits(),
                    b.to_bits(),
                    "u(x, {t}, {class}): runtime {a}, FORMATS.md {b}"
                );
            }
        }
        let c = 1;
        let u = model.velocity(&x, &[t], &[c]).unwrap();
        let n = model.velocity(&x, &[t], &[null]).unwrap();
        let guided =
            web_sampler::sample::guided_velocity(&model, &x, f64::from(t), &[c], w).unwrap();
        for k in 0..2 {
            let expected = (1.0 + w) as f32 * u[k] - w as f32 * n[k];
            assert_eq!(guided[k].to_bits(), expected.to_bits(), "ũ at t = {t}");
        }
    }
}

/// An activation `[c, h, w]`, row-major (the data's own layout).
#[derive(Clone)]
struct Activation {
    c: usize,
    h: usize,
    w: usize,
    v: Vec<f32>,
}

impl Activation {
    fn at(&self, c: usize, y: usize, x: usize) -> f32 {
        self.v[(c * self.h + y) * self.w + x]
    }
}

/// §1.3's `exp`, as written (Cephes' `expf` in plain `f32` steps).
fn documented_exp(a: f32) -> f32 {
    let clamped = a.clamp(-87.336_55, 88.376_26);
    let k = (clamped * std::f32::consts::LOG2_E + 12_582_912.0) - 12_582_912.0;
    let r = (clamped - k * 0.693_359_4) - k * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let p = (p * (r * r) + r) + 1.0;
    let two_to_k = f32::from_bits(((k as i32 + 127) as u32 & 0xff) << 23);
    if a.is_nan() {
        a
    } else if a > 88.376_26 {
        f32::INFINITY
    } else if a < -87.336_55 {
        0.0
    } else {
        p * two_to_k
    }
}

/// §1.3's SiLU.
fn silu(v: f32) -> f32 {
    v / (1.0 + documented_exp(-v))
}

/// §1.3's dense sum: `s = 0; s = s + x_i·w_i` for increasing `i`, each product rounded.
fn documented_dense_sum(x: &[f32], w: &[f32]) -> f32 {
    let mut s = 0.0f32;
    for (x, w) in x.iter().zip(w) {
        s += x * w;
    }
    s
}

/// §1.3's 3×3 stride-1 convolution by Winograd's F(2×2, 3×3), as written: for each output
/// channel and 2×2 tile, the 16 products summed over the input channels, then `Aᵀ·M·A + b`.
fn documented_winograd(weight: &[f32], bias: &[f32], x: &Activation) -> Activation {
    let l = |a: f64, b: f64, c: f64| [a, ((a + b) + c) * 0.5, ((a - b) + c) * 0.5, c];
    let t = |a: f32, b: f32, c: f32, e: f32| [a - c, b + c, c - b, b - e];
    let a = |a: f32, b: f32, c: f32, e: f32| [(a + b) + c, (b - c) - e];
    // U = G·g·Gᵀ: `u[i][x]` along each column x of g (`columns[x][i]`), then along each row i.
    let kernel = |o: usize, c: usize| -> [[f32; 4]; 4] {
        let g = |y: usize, col: usize| f64::from(weight[((o * x.c + c) * 3 + y) * 3 + col]);
        let columns: [[f64; 4]; 3] = std::array::from_fn(|col| l(g(0, col), g(1, col), g(2, col)));
        std::array::from_fn(|i| {
            let [u0, u1, u2] = columns.map(|column| column[i]);
            l(u0, u1, u2).map(|v| v as f32)
        })
    };
    let input = |c: usize, y: isize, col: isize| -> f32 {
        if (0..x.h as isize).contains(&y) && (0..x.w as isize).contains(&col) {
            x.at(c, y as usize, col as usize)
        } else {
            0.0
        }
    };
    let outputs = bias.len();
    let mut v = vec![0.0f32; outputs * x.h * x.w];
    for o in 0..outputs {
        let kernels: Vec<[[f32; 4]; 4]> = (0..x.c).map(|c| kernel(o, c)).collect();
        for ty in 0..x.h.div_ceil(2) {
            for tx in 0..x.w.div_ceil(2) {
                let mut m = [[0.0f32; 4]; 4];
                for (c, u) in kernels.iter().enumerate() {
                    let d = |i: usize, j: usize| {
                        input(c, (2 * ty + i) as isize - 1, (2 * tx + j) as isize - 1)
                    };
                    // t = Bᵀ·d along each column j (`columns[j][i]`), then V along each row i.
                    let columns: [[f32; 4]; 4] =
                        std::array::from_fn(|j| t(d(0, j), d(1, j), d(2, j), d(3, j)));
                    for (i, (m, u)) in m.iter_mut().zip(u).enumerate() {
                        let [t0, t1, t2, t3] = columns.map(|column| column[i]);
                        for ((m, v), u) in m.iter_mut().zip(t(t0, t1, t2, t3)).zip(u) {
                            *m += v * u;
                        }
                    }
                }
                // S = Aᵀ·M along each column j (`columns[j][r]`), then Y along each row r.
                let columns: [[f32; 2]; 4] =
                    std::array::from_fn(|j| a(m[0][j], m[1][j], m[2][j], m[3][j]));
                for r in 0..2 {
                    let [s0, s1, s2, s3] = columns.map(|column| column[r]);
                    for (col, value) in a(s0, s1, s2, s3).into_iter().enumerate() {
                        let (y, col) = (2 * ty + r, 2 * tx + col);
                        if y < x.h && col < x.w {
                            v[(o * x.h + y) * x.w + col] = value + bias[o];
                        }
                    }
                }
            }
        }
    }
    Activation {
        c: outputs,
        h: x.h,
        w: x.w,
        v,
    }
}

#[test]
fn silu_s_exp_is_the_documented_one() {
    let mut values = vec![
        0.0f32,
        -0.0,
        1.0,
        -1.0,
        88.376_26,
        88.376_27,
        88.3,
        -87.336_55,
        -87.336_56,
        -87.2,
        100.0,
        -100.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MIN_POSITIVE,
    ];
    // A sweep of [−90, 90] and every exponent of the small values.
    values.extend((0..=180_000).map(|i| i as f32 * 0.001 - 90.0));
    values.extend((-126..0).map(|e| 2f32.powi(e) * 1.3));
    for a in values {
        let (runtime, documented) = (model::exp(a), documented_exp(a));
        assert_eq!(
            runtime.to_bits(),
            documented.to_bits(),
            "exp({a}): runtime {runtime}, FORMATS.md {documented}"
        );
        // Within the documented range; outside it, 0 and +∞ by definition.
        let truth = f64::from(a).exp();
        if (-87.336_55..=88.376_26).contains(&a) {
            let error = (f64::from(documented) - truth).abs() / truth;
            assert!(
                error <= 2.0 * f64::from(f32::EPSILON),
                "exp({a}) = {documented}: relative error {error:e} above 2 ulp"
            );
        }
    }
    assert!(documented_exp(f32::NAN).is_nan() && model::exp(f32::NAN).is_nan());
}

/// §1.3's U-Net, from the text, over the tensors of `model`.
struct DocumentedUnet<'m> {
    model: &'m Model,
    groups: usize,
    /// Multiply-adds of the layers §1.2 counts, added up as the forward runs.
    multiply_adds: std::cell::Cell<usize>,
}

impl DocumentedUnet<'_> {
    fn tensor(&self, name: &str) -> &[f32] {
        self.model
            .tensor(name)
            .unwrap_or_else(|| panic!("no tensor {name}"))
    }

    fn dense(&self, name: &str, x: &[f32]) -> Vec<f32> {
        let weight = self.tensor(&format!("{name}.weight"));
        let bias = self.tensor(&format!("{name}.bias"));
        self.count(x.len() * bias.len());
        bias.iter()
            .enumerate()
            .map(|(o, b)| documented_dense_sum(x, &weight[o * x.len()..(o + 1) * x.len()]) + b)
            .collect()
    }

    fn count(&self, multiply_adds: usize) {
        self.multiply_adds
            .set(self.multiply_adds.get() + multiply_adds);
    }

    /// PyTorch's `Conv2d`: zero padding `k/2`, output `⌈h/stride⌉ × ⌈w/stride⌉`; a 3×3 one with
    /// stride 1 by §1.3's Winograd F(2×2, 3×3).
    fn conv(&self, name: &str, x: &Activation, stride: usize) -> Activation {
        let weight = self.tensor(&format!("{name}.weight"));
        let bias = self.tensor(&format!("{name}.bias"));
        let outputs = bias.len();
        let k = ((weight.len() / outputs / x.c) as f64).sqrt() as usize;
        let pad = (k / 2) as isize;
        let (oh, ow) = (x.h.div_ceil(stride), x.w.div_ceil(stride));
        self.count(oh * ow * outputs * x.c * k * k);
        if k == 3 && stride == 1 {
            return documented_winograd(weight, bias, x);
        }
        let mut v = Vec::with_capacity(outputs * oh * ow);
        for o in 0..outputs {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = 0.0f32;
                    for i in 0..x.c {
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = (oy * stride + ky) as isize - pad;
                                let ix = (ox * stride + kx) as isize - pad;
                                // The padding's zeros are products like any other input.
                                let input = if (0..x.h as isize).contains(&iy)
                                    && (0..x.w as isize).contains(&ix)
                                {
                                    x.at(i, iy as usize, ix as usize)
                                } else {
                                    0.0
                                };
                                s += input * weight[((o * x.c + i) * k + ky) * k + kx];
                            }
                        }
                    }
                    v.push(s + bias[o]);
                }
            }
        }
        Activation {
            c: outputs,
            h: oh,
            w: ow,
            v,
        }
    }

    fn group_norm(&self, name: &str, x: &Activation, then_silu: bool) -> Activation {
        let weight = self.tensor(&format!("{name}.weight"));
        let bias = self.tensor(&format!("{name}.bias"));
        let per_group = x.c / self.groups;
        let plane = x.h * x.w;
        let mut out = x.clone();
        // Each channel's sum over its positions in order, then the group's channels in order.
        let group_sum = |g: usize, term: &dyn Fn(f32) -> f64| {
            let mut total = 0.0f64;
            for c in g * per_group..(g + 1) * per_group {
                let mut channel = 0.0f64;
                for &v in &x.v[c * plane..(c + 1) * plane] {
                    channel += term(v);
                }
                total += channel;
            }
            total
        };
        for g in 0..self.groups {
            let range = g * per_group * plane..(g + 1) * per_group * plane;
            let count = (per_group * plane) as f64;
            let mean = group_sum(g, &|v| f64::from(v)) / count;
            let variance = group_sum(g, &|v| (f64::from(v) - mean) * (f64::from(v) - mean)) / count;
            let r = 1.0 / (variance + 1e-5).sqrt();
            for (index, target) in range.zip(&mut out.v[g * per_group * plane..]) {
                let c = index / plane;
                let normal = ((f64::from(x.v[index]) - mean) * r) as f32;
                let y = normal * weight[c] + bias[c];
                *target = if then_silu { silu(y) } else { y };
            }
        }
        out
    }

    fn block(&self, name: &str, h: &Activation, s: &[f32]) -> Activation {
        let mut a = self.conv(
            &format!("{name}.conv1"),
            &self.group_norm(&format!("{name}.norm1"), h, true),
            1,
        );
        let shift = self.dense(&format!("{name}.embedding"), s);
        let plane = a.h * a.w;
        for (i, v) in a.v.iter_mut().enumerate() {
            *v += shift[i / plane];
        }
        let mut out = self.conv(
            &format!("{name}.conv2"),
            &self.group_norm(&format!("{name}.norm2"), &a, true),
            1,
        );
        let skip_name = format!("{name}.skip");
        let residual = if self.model.tensor(&format!("{skip_name}.weight")).is_some() {
            self.conv(&skip_name, h, 1)
        } else {
            h.clone()
        };
        for (v, r) in out.v.iter_mut().zip(&residual.v) {
            *v += r;
        }
        out
    }

    fn attention(&self, h: &Activation) -> Activation {
        let a = self.group_norm("middle.attention.norm", h, false);
        let qkv = self.conv("middle.attention.qkv", &a, 1);
        let (c, p) = (h.c, h.h * h.w);
        let get = |part: usize, i: usize, position: usize| qkv.v[(part * c + i) * p + position];
        self.count(2 * p * p * c);
        let scale = (1.0 / (c as f64).sqrt()) as f32;
        let mut mixed = vec![0.0f32; c * p];
        for query in 0..p {
            let q: Vec<f32> = (0..c).map(|i| get(0, i, query)).collect();
            let scores: Vec<f32> = (0..p)
                .map(|key| {
                    let k: Vec<f32> = (0..c).map(|i| get(1, i, key)).collect();
                    (documented_dense_sum(&q, &k) + 0.0) * scale
                })
                .collect();
            let largest = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let exps: Vec<f32> = scores.iter().map(|s| libm::expf(s - largest)).collect();
            let mut total = 0.0f32;
            for e in &exps {
                total += e;
            }
            let weights: Vec<f32> = exps.iter().map(|e| e / total).collect();
            for i in 0..c {
                let v: Vec<f32> = (0..p).map(|key| get(2, i, key)).collect();
                mixed[i * p + query] = documented_dense_sum(&weights, &v) + 0.0;
            }
        }
        let mixed = Activation {
            v: mixed,
            ..h.clone()
        };
        self.conv("middle.attention.proj", &mixed, 1)
    }

    fn output(&self, x: &[f32], t: f32, class: u32) -> Vec<f32> {
        let spec = self.model.spec();
        let model::Architecture::Unet(sizes) = &spec.architecture else {
            panic!("a U-Net")
        };
        let e = documented_time_embedding(t, spec.time_embedding, spec.time_scale);
        let hidden: Vec<f32> = self.dense("time.0", &e).into_iter().map(silu).collect();
        let mut emb = self.dense("time.1", &hidden);
        if spec.num_classes > 0 {
            let width = emb.len();
            let row = &self.tensor("class_embedding.weight")
                [class as usize * width..(class as usize + 1) * width];
            for (v, c) in emb.iter_mut().zip(row) {
                *v += c;
            }
        }
        let s: Vec<f32> = emb.into_iter().map(silu).collect();
        let [c, height, width] = [spec.data_shape[0], spec.data_shape[1], spec.data_shape[2]];
        let input = Activation {
            c,
            h: height,
            w: width,
            v: x.to_vec(),
        };
        let levels = sizes.channel_multipliers.len();
        let mut h = self.conv("input", &input, 1);
        let mut skips = Vec::new();
        for l in 0..levels {
            for b in 0..sizes.residual_blocks {
                h = self.block(&format!("down.{l}.{b}"), &h, &s);
                skips.push(h.clone());
            }
            if l + 1 < levels {
                h = self.conv(&format!("down.{l}.downsample"), &h, 2);
            }
        }
        h = self.block("middle.0", &h, &s);
        if sizes.attention {
            let update = self.attention(&h);
            for (v, u) in h.v.iter_mut().zip(&update.v) {
                *v += u;
            }
        }
        h = self.block("middle.1", &h, &s);
        for l in (0..levels).rev() {
            for b in 0..sizes.residual_blocks {
                let skip = skips.pop().unwrap();
                let mut joined = h.clone();
                joined.c += skip.c;
                joined.v.extend_from_slice(&skip.v);
                h = self.block(&format!("up.{l}.{b}"), &joined, &s);
            }
            if l > 0 {
                let mut larger = Activation {
                    c: h.c,
                    h: 2 * h.h,
                    w: 2 * h.w,
                    v: Vec::new(),
                };
                for ch in 0..h.c {
                    for y in 0..larger.h {
                        for x in 0..larger.w {
                            larger.v.push(h.at(ch, y / 2, x / 2));
                        }
                    }
                }
                h = self.conv(&format!("up.{l}.upsample"), &larger, 1);
            }
        }
        let out = self.conv("out.conv", &self.group_norm("out.norm", &h, true), 1);
        if spec.prediction == model::Prediction::Data {
            out.v
                .iter()
                .zip(x)
                .map(|(&x_hat1, &x)| documented_velocity(x_hat1, x, t))
                .collect()
        } else {
            out.v
        }
    }
}

#[test]
fn the_unet_forward_is_the_documented_one() {
    let spec: ModelSpec = serde_json::from_str(block("json unet-spec")).unwrap();
    let model::Architecture::Unet(sizes) = &spec.architecture else {
        panic!("a U-Net")
    };
    let groups = sizes.groups;
    // Arbitrary weights (not an initialisation), so that every norm's affine part matters.
    let tensors: Vec<(String, Vec<f32>)> = spec
        .tensor_shapes()
        .into_iter()
        .enumerate()
        .map(|(i, (name, shape))| {
            let values = weights(shape.iter().product(), 11 * i);
            (name, values)
        })
        .collect();
    let model = Model::from_tensors(spec.clone(), tensors).unwrap();
    let documented = DocumentedUnet {
        model: &model,
        groups,
        multiply_adds: std::cell::Cell::new(0),
    };
    let dim = spec.data_dim();
    for (row, &t) in [0.0f32, 0.35, 0.97].iter().enumerate() {
        let x: Vec<f32> = weights(dim, 100 + row).iter().map(|v| 2.0 * v).collect();
        for class in 0..=spec.null_class() {
            documented.multiply_adds.set(0);
            let expected = documented.output(&x, t, class);
            let runtime = model.velocity(&x, &[t], &[class]).unwrap();
            for (k, (a, b)) in runtime.iter().zip(&expected).enumerate() {
                assert_eq!(
                    a.to_bits(),
                    b.to_bits(),
                    "U-Net u(x, {t}, {class})[{k}]: runtime {a}, FORMATS.md {b}"
                );
            }
            // §1.2: what the limit of operations per sample per evaluation counts.
            assert_eq!(
                2 * documented.multiply_adds.get(),
                2 * sizes.layout(&spec).multiply_adds(),
                "operations of one evaluation"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The solver file

#[test]
fn the_solver_example_loads_and_runs_as_documented() {
    let file = SolverFile::from_json(block("json solver"), "FORMATS.md solver").unwrap();
    let table = file.table();
    let model = Model::from_bytes(&example_model_file(), "example").unwrap();
    let classes = [0u32, 1, 2, 1];
    let x0 = web_sampler::noise::gaussian_batch(5, classes.len(), 2);
    let runtime =
        web_sampler::sample::integrate(&model, &table, x0.clone(), &classes, file.guidance)
            .unwrap();

    // §2's update, step by step, in f32.
    let mut xs: Vec<Vec<f32>> = vec![x0];
    let mut us: Vec<Vec<f32>> = Vec::new();
    for i in 0..file.nfe {
        let u = web_sampler::sample::guided_velocity(
            &model,
            &xs[i],
            file.times[i],
            &classes,
            file.guidance,
        )
        .unwrap();
        us.push(u);
        let mut next = vec![0.0f32; xs[i].len()];
        for (coefficients, vectors) in [(&file.a[i], &xs), (&file.b[i], &us)] {
            for (j, &c) in coefficients.iter().enumerate() {
                if c == 0.0 {
                    continue;
                }
                for (v, &x) in next.iter_mut().zip(&vectors[j]) {
                    *v += c as f32 * x;
                }
            }
        }
        xs.push(next);
    }
    let documented = xs.pop().unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&runtime), bits(&documented));

    // The reduced form, as FORMATS.md derives it and gives it for the example.
    #[derive(Deserialize)]
    struct Reduced {
        alpha: Vec<f64>,
        beta: Vec<Vec<f64>>,
    }
    let given: Reduced = serde_json::from_str(block("json solver-reduced")).unwrap();
    let (mut c, mut d): (Vec<f64>, Vec<Vec<f64>>) = (vec![1.0], vec![vec![]]);
    let (mut alpha, mut beta) = (Vec::new(), Vec::new());
    for i in 0..file.nfe {
        let a_i: f64 = (0..=i).map(|j| file.a[i][j] * c[j]).sum();
        let b_i: Vec<f64> = (0..=i)
            .map(|k| file.b[i][k] + (k + 1..=i).map(|j| file.a[i][j] * d[j][k]).sum::<f64>())
            .collect();
        c.push(a_i);
        d.push(b_i.clone());
        alpha.push(a_i);
        beta.push(b_i);
    }
    let reduced = table.reduced();
    let close = |x: &[f64], y: &[f64]| {
        x.len() == y.len() && x.iter().zip(y).all(|(a, b)| (a - b).abs() < 1e-12)
    };
    assert!(close(&reduced.alpha, &alpha) && close(&reduced.alpha, &given.alpha));
    assert_eq!(
        (reduced.beta.len(), given.beta.len()),
        (beta.len(), beta.len())
    );
    for ((runtime, ours), theirs) in reduced.beta.iter().zip(&beta).zip(&given.beta) {
        assert!(close(runtime, ours) && close(runtime, theirs));
    }
}

#[test]
fn the_solver_table_is_the_solver_file_s_fields() {
    let text = block("json solver");
    let file = SolverFile::from_json(text, "FORMATS.md solver").unwrap();
    let rows = key_table("solver");
    let written = written_keys(&file.to_json());
    assert_written_in_table_order("solver", &rows, &written);
    assert_eq!(written.len(), rows.len(), "the example has every key");
    assert_required_and_defaults("solver", &object(text), &[], |map| {
        SolverFile::from_json(&Value::Object(map.clone()).to_string(), "solver")
    });
}

#[test]
fn the_psnr_is_the_documented_formula() {
    let x = [0.1f32, -0.5, 0.9, 0.3, 2.5, -3.0, 1.0, 1.0];
    let y = [0.0f32, -0.4, 1.0, 0.35, 2.4, -3.1, 1.0, 1.0];
    let runtime = web_sampler::metrics::psnr(&x, &y, 2);
    for (i, p) in runtime.iter().enumerate() {
        let mse = (0..2)
            .map(|d| (f64::from(x[2 * i + d] - y[2 * i + d]) / 2.0).powi(2))
            .sum::<f64>()
            / 2.0;
        let documented = 10.0 * (1.0 / mse.max(1e-20)).log10();
        assert!((p - documented).abs() < 1e-9, "{p} vs {documented}");
    }
    assert_eq!(runtime[3], 200.0);
}

/// The metrics table lists what distillation writes: the validation figures, and every figure
/// [`TestFigures::record`] writes when all of them are known; the solver example has them all.
#[test]
fn the_metrics_table_is_what_is_recorded() {
    let documented: BTreeSet<String> = table_after("<!-- metrics: solver -->")
        .into_iter()
        .map(|cells| backticked(cells[0]).unwrap().to_string())
        .collect();
    let mut file = SolverFile::from_json(block("json solver"), "FORMATS.md solver").unwrap();
    let example: BTreeSet<String> = file.metrics.keys().cloned().collect();
    file.metrics.retain(|key, _| key.starts_with("validation_"));
    let figures = TestFigures {
        pairs: 512,
        pairs_id: "0".repeat(64),
        solver: PsnrSummary::of(&[20.0, 22.0]),
        init: Some(15.0),
        best_classical: ("midpoint-edm".into(), 17.25),
        time_only: Some(16.0),
    };
    figures.record(&mut file);
    let recorded: BTreeSet<String> = file.metrics.keys().cloned().collect();
    assert_eq!(recorded, documented);
    assert_eq!(example, documented);
    for key in ["test_pairs", "pairs_id", "best_classical"] {
        assert!(file.provenance.contains_key(key), "{key}");
        assert!(
            block("json solver").contains(&format!("\"{key}\"")),
            "{key}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Ground-truth pairs

/// A pairs file of the example metadata `meta`, with deterministic tensors of its sizes and
/// the labels of an unconditional model.
fn pairs_file(meta: &serde_json::Map<String, Value>) -> Vec<u8> {
    // An absent split size: 1 for the required ones (so that the file is refused for the key,
    // not for its tensors), 0 for the test split, whose absence means none.
    let rows = [("train", 1), ("validation", 1), ("test", 0)]
        .iter()
        .map(|&(k, absent)| meta.get(k).and_then(Value::as_u64).unwrap_or(absent) as usize)
        .sum::<usize>();
    let dim: usize = meta
        .get("data_shape")
        .and_then(Value::as_array)
        .map(|shape| {
            shape
                .iter()
                .map(|d| d.as_u64().unwrap_or(1) as usize)
                .product()
        })
        .unwrap_or(2);
    let noise = weights(rows * dim, 1);
    let truth = weights(rows * dim, 2);
    let labels = vec![0u32; rows];
    let tensors = [
        TensorBytes::f32s("noise", vec![rows, dim], &noise),
        TensorBytes::f32s("truth", vec![rows, dim], &truth),
        TensorBytes::u32s("labels", vec![rows], &labels),
    ];
    let json = Value::Object(meta.clone()).to_string();
    tensor_file::write(&tensors, ("bns.pairs", &json)).unwrap()
}

#[test]
fn the_pairs_example_loads_with_its_splits() {
    let meta = object(block("json pairs-meta"));
    let pairs = Pairs::from_bytes(&pairs_file(&meta), "FORMATS.md pairs-meta").unwrap();
    assert_eq!(pairs.len(), 7);
    let splits = (pairs.train().len, pairs.validation().len, pairs.test().len);
    assert_eq!(splits, (3, 2, 2));
    assert_eq!(pairs.train().noise, &pairs.noise[..6]);
    assert_eq!(pairs.validation().noise, &pairs.noise[6..10]);
    assert_eq!(pairs.test().noise, &pairs.noise[10..]);
    // The labels of an unconditional model: its null class 0, nothing else.
    let unconditional = ModelSpec::new(model::Architecture::mlp(8, 1), &[2, 1, 1], 4, 0, 0);
    let path = std::path::Path::new("pairs.safetensors");
    pairs.check_labels(&unconditional, path).unwrap();
    let mut other = pairs.clone();
    other.labels[1] = 1;
    assert!(other.check_labels(&unconditional, path).is_err());
    // The noise is gaussian_batch(seed, N, D) when bns truth writes it (§6).
    assert_eq!(pairs.meta.seed, 7);
}

#[test]
fn the_pairs_tables_are_the_metadata_s_fields() {
    let text = block("json pairs-meta");
    let mut meta: PairsMeta = serde_json::from_str(text).unwrap();
    meta.shard = Some(ShardMeta {
        index: 1,
        of: 2,
        start: 0,
        end: 3,
        batch: 3,
        class: Some(0),
    });
    let rows = key_table("bns.pairs");
    let written = written_keys(&serde_json::to_string(&meta).unwrap());
    assert_written_in_table_order("bns.pairs", &rows, &written);
    assert_eq!(written.len(), rows.len());
    let shard_rows = key_table("shard");
    let written = written_keys(&serde_json::to_string(&meta.shard).unwrap());
    assert_written_in_table_order("shard", &shard_rows, &written);
    assert_eq!(written.len(), shard_rows.len());
    assert_required_and_defaults("bns.pairs", &object(text), &[], |map| {
        Pairs::from_bytes(&pairs_file(map), "pairs").map(|p| p.meta)
    });
}

// ---------------------------------------------------------------------------------------------
// The site

#[test]
fn the_manifest_and_index_examples_load() {
    let text = block("json manifest");
    let manifest = Manifest::from_json(text, "FORMATS.md manifest").unwrap();
    let rows = key_table("manifest");
    let written = written_keys(&manifest.to_json());
    assert_written_in_table_order("manifest", &rows, &written);
    assert_eq!(written.len(), rows.len());
    let entry = serde_json::to_string(&manifest.solvers[0]).unwrap();
    let entry_rows = key_table("manifest solver");
    let written = written_keys(&entry);
    assert_written_in_table_order("manifest solver", &entry_rows, &written);
    assert_eq!(written.len(), entry_rows.len());

    let example = object(text);
    // The example is published with --f16.
    let f16 = ["with `model_f16`", "with `model_f16_id`"];
    assert_required_and_defaults("manifest", &example, &f16, |map| {
        Manifest::from_json(&Value::Object(map.clone()).to_string(), "manifest")
    });
    let entry = example["solvers"][0].as_object().unwrap().clone();
    assert_required_and_defaults("manifest solver", &entry, &f16, |entry| {
        let mut map = example.clone();
        map.insert(
            "solvers".into(),
            Value::Array(vec![Value::Object(entry.clone())]),
        );
        Manifest::from_json(&Value::Object(map).to_string(), "manifest")
    });

    let index: Vec<String> = serde_json::from_str(block("json index")).unwrap();
    assert!(!index.is_empty());
    for name in &index {
        check_name(name).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// §6 and §7

/// §6's generator, from the text.
fn documented_gaussian_batch(seed: u64, count: usize) -> Vec<f32> {
    let mut z = seed;
    let mut splitmix = || {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut v = z;
        v = (v ^ (v >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        v = (v ^ (v >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        v ^ (v >> 31)
    };
    let mut s = [splitmix(), splitmix(), splitmix(), splitmix()];
    // xoshiro256**, its standard state update.
    let mut bits = move || {
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    };
    let mut uniform = move || (bits() >> 11) as f64 * 2f64.powi(-53);
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let u1 = 1.0 - uniform();
        let u2 = uniform();
        let r = libm::sqrt(-2.0 * libm::log(u1));
        let angle = 2.0 * std::f64::consts::PI * u2;
        out.push((r * libm::cos(angle)) as f32);
        out.push((r * libm::sin(angle)) as f32);
    }
    out.truncate(count);
    out
}

#[test]
fn the_seeded_noise_is_the_documented_generator() {
    for seed in [0u64, 7, u64::MAX] {
        // An even and an odd count (the last pair's second normal dropped).
        for (batch, dim) in [(25, 4), (3, 5)] {
            let runtime = web_sampler::noise::gaussian_batch(seed, batch, dim);
            let documented = documented_gaussian_batch(seed, batch * dim);
            assert_eq!(runtime.len(), documented.len());
            for (i, (a, b)) in runtime.iter().zip(&documented).enumerate() {
                assert_eq!(
                    a.to_bits(),
                    b.to_bits(),
                    "seed {seed}, value {i}: runtime {a}, FORMATS.md {b}"
                );
            }
        }
    }
}

#[test]
fn a_sample_request_is_the_documented_one() {
    // §6: seeded noise, the default class `i mod K`, the solver's table, and an image model's
    // output clamped to [−1, 1].
    let spec: ModelSpec = serde_json::from_str(block("json unet-spec")).unwrap();
    let tensors: Vec<(String, Vec<f32>)> = spec
        .tensor_shapes()
        .into_iter()
        .enumerate()
        .map(|(i, (name, shape))| (name, weights(shape.iter().product(), 7 * i)))
        .collect();
    let model = Model::from_tensors(spec.clone(), tensors).unwrap();
    let table = web_sampler::solver::classical::euler(&[0.0, 0.5, 1.0]);
    let (seed, batch, w) = (3u64, 5usize, 0.7f64);
    let request = web_sampler::sample::SampleRequest {
        seed,
        batch,
        class: None,
        guidance: w,
        first_row: 0,
    };
    let k = spec.num_classes as u32;
    let classes: Vec<u32> = (0..batch as u32).map(|i| i % k).collect();
    assert_eq!(
        web_sampler::sample::class_labels(&model, &request).unwrap(),
        classes
    );
    let x0 = documented_gaussian_batch(seed, batch * spec.data_dim());
    let unclamped = web_sampler::sample::integrate(&model, &table, x0, &classes, w).unwrap();
    assert!(
        unclamped.iter().any(|v| v.abs() > 1.0),
        "the test needs values outside [−1, 1]"
    );
    let samples = web_sampler::sample::sample(&model, &table, &request).unwrap();
    assert_eq!(samples.shape, [batch, 1, 4, 4]);
    let clamped: Vec<u32> = unclamped
        .iter()
        .map(|v| v.clamp(-1.0, 1.0).to_bits())
        .collect();
    let got: Vec<u32> = samples.values.iter().map(|v| v.to_bits()).collect();
    assert_eq!(got, clamped);
    for v in [-1.5f32, -1.0, -0.3, 0.0, 0.999, 1.0, 2.0] {
        let documented = ((v.clamp(-1.0, 1.0) + 1.0) / 2.0 * 255.0).round() as u8;
        assert_eq!(web_sampler::sample::to_byte(v), documented, "pixel of {v}");
    }
}

#[test]
fn the_limits_table_is_the_code_s() {
    use web_sampler::model::*;
    let expected: Vec<(&str, String)> = vec![
        ("values per sample `C·H·W`", MAX_DATA_DIM.to_string()),
        (
            "`hidden_width`, `time_embedding`, `class_embedding`",
            MAX_WIDTH.to_string(),
        ),
        ("`depth`", MAX_DEPTH.to_string()),
        ("`num_classes`", MAX_CLASSES.to_string()),
        ("parameters of a model", MAX_PARAMETERS.to_string()),
        (
            "`dataset`, each of `class_names` (bytes)",
            MAX_DATASET_LEN.to_string(),
        ),
        ("`time_scale`", MAX_TIME_SCALE.to_string()),
        ("U-Net data channels", MAX_UNET_CHANNELS_IN.to_string()),
        ("`unet.base_channels`", MAX_BASE_CHANNELS.to_string()),
        ("`unet.channel_multipliers` entries", MAX_LEVELS.to_string()),
        (
            "`unet.channel_multipliers` each",
            MAX_MULTIPLIER.to_string(),
        ),
        ("U-Net channels of a level", MAX_UNET_CHANNELS.to_string()),
        ("`unet.residual_blocks`", MAX_RESIDUAL_BLOCKS.to_string()),
        ("`unet.groups`", MAX_GROUPS.to_string()),
        ("`unet.embedding_width`", MAX_EMBEDDING_WIDTH.to_string()),
        (
            "U-Net attention positions",
            MAX_ATTENTION_POSITIONS.to_string(),
        ),
        (
            "U-Net operations per sample per evaluation",
            MAX_UNET_FLOPS.to_string(),
        ),
        ("solver steps (NFE)", solver::MAX_STEPS.to_string()),
        (
            "solver file (bytes)",
            solver::MAX_SOLVER_FILE_BYTES.to_string(),
        ),
    ];
    let documented: Vec<(&str, String)> = table_after("<!-- limits -->")
        .into_iter()
        .map(|cells| (cells[0], cells[1].to_string()))
        .collect();
    assert_eq!(documented, expected);
    assert_eq!(GROUP_NORM_EPSILON, 1e-5, "§1.3 states ε = 10⁻⁵");
}

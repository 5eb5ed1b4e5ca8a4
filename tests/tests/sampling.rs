//! The runtime end to end: model file → solver file → guided samples, checked against
//! compositions written out by hand.

use web_sampler::grid::Grid;
use web_sampler::model::{Architecture, Model, ModelSpec};
use web_sampler::noise::gaussian_batch;
use web_sampler::sample::{
    class_labels, grid_picture, guided_velocity, sample, SampleRequest, MAX_ROW,
};
use web_sampler::solver::{Method, SolverFile};

fn spec(shape: [usize; 3], classes: usize) -> ModelSpec {
    ModelSpec {
        dataset: "test".into(),
        ..ModelSpec::new(Architecture::mlp(24, 2), &shape, 8, classes, 6)
    }
}

fn image_model() -> Model {
    Model::random(spec([1, 5, 3], 4), 11).unwrap()
}

#[test]
fn guided_velocity_is_the_two_pass_combination() {
    let model = image_model();
    let x = gaussian_batch(3, 3, 15);
    let classes = [0u32, 2, 3];
    let w = 2.5;
    let guided = guided_velocity(&model, &x, 0.4, &classes, w).unwrap();
    let t = [0.4f32; 3];
    let conditional = model.velocity(&x, &t, &classes).unwrap();
    let null = model.velocity(&x, &t, &[4, 4, 4]).unwrap();
    for i in 0..guided.len() {
        let expected = 3.5 * conditional[i] - 2.5 * null[i];
        assert!(
            (guided[i] - expected).abs() <= 1e-5 * (1.0 + expected.abs()),
            "value {i}: {} vs {expected}",
            guided[i]
        );
    }
    // w = 0 is exactly the conditional velocity.
    assert_eq!(
        guided_velocity(&model, &x, 0.4, &classes, 0.0).unwrap(),
        conditional
    );
}

#[test]
fn sample_runs_the_table_from_the_seeded_noise() {
    let model = image_model();
    let table = Method::Midpoint.build(6, Grid::Edm).unwrap();
    let request = SampleRequest {
        seed: 9,
        batch: 5,
        class: None,
        guidance: 1.0,
        first_row: 0,
    };
    let samples = sample(&model, &table, &request).unwrap();
    assert_eq!(samples.shape, [5, 1, 5, 3]);
    // Written out by hand: midpoint steps on the guided velocity, classes cycling 0, 1, 2, 3, 0.
    let classes = [0u32, 1, 2, 3, 0];
    let mut x: Vec<f32> = gaussian_batch(9, 5, 15);
    let grid = Grid::Edm.points(3);
    for m in 0..3 {
        let (t, h) = (grid[m], grid[m + 1] - grid[m]);
        let u0 = guided_velocity(&model, &x, t, &classes, 1.0).unwrap();
        let half: Vec<f32> = x
            .iter()
            .zip(&u0)
            .map(|(x, u)| x + (h / 2.0) as f32 * u)
            .collect();
        let u1 = guided_velocity(&model, &half, t + h / 2.0, &classes, 1.0).unwrap();
        x = x.iter().zip(&u1).map(|(x, u)| x + h as f32 * u).collect();
    }
    for (i, (got, want)) in samples.values.iter().zip(&x).enumerate() {
        let want = want.clamp(-1.0, 1.0);
        assert!((got - want).abs() <= 1e-5, "value {i}: {got} vs {want}");
    }
    // Same seed, same samples; another seed, other samples.
    assert_eq!(sample(&model, &table, &request).unwrap(), samples);
    let other = SampleRequest {
        seed: 10,
        ..request
    };
    assert_ne!(sample(&model, &table, &other).unwrap(), samples);
}

#[test]
fn the_parts_of_a_batch_are_its_rows() {
    // Rows `first_row …` of a seed's samples are those of the whole batch, bit for bit, with the
    // classes of their rows (the page shares a CPU-path batch between two workers this way).
    let model = image_model();
    let table = Method::Heun.build(4, Grid::Uniform).unwrap();
    let whole = SampleRequest {
        seed: 4,
        batch: 7,
        class: None,
        guidance: 1.5,
        first_row: 0,
    };
    let all = sample(&model, &table, &whole).unwrap();
    let d = 15;
    for (first_row, batch) in [(0, 3), (3, 4), (5, 2), (6, 1)] {
        let part = SampleRequest {
            first_row,
            batch,
            ..whole.clone()
        };
        let got = sample(&model, &table, &part).unwrap();
        assert_eq!(got.shape, [batch, 1, 5, 3]);
        assert_eq!(
            got.values,
            all.values[first_row * d..(first_row + batch) * d],
            "rows {first_row}.."
        );
        assert_eq!(
            class_labels(&model, &part).unwrap(),
            (first_row as u32..(first_row + batch) as u32)
                .map(|i| i % 4)
                .collect::<Vec<_>>()
        );
    }
    // A first row past the largest batch is refused with a message.
    let far = SampleRequest {
        first_row: MAX_ROW + 1,
        ..whole
    };
    let message = sample(&model, &table, &far).unwrap_err().to_string();
    assert!(message.contains("first row"), "{message}");
}

#[test]
fn reduced_form_samples_equal_general_form_samples() {
    let model = Model::random(spec([2, 1, 1], 0), 5).unwrap();
    for method in Method::ALL {
        let table = method.build(8, Grid::Uniform).unwrap();
        let x0 = gaussian_batch(1, 64, 2);
        let velocity = |x: &[f64], t: f64| -> Vec<f64> {
            let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            let u = model
                .velocity(&xf, &vec![t as f32; x.len() / 2], &[])
                .unwrap();
            u.into_iter().map(f64::from).collect()
        };
        let x0: Vec<f64> = x0.into_iter().map(f64::from).collect();
        let general = table.solve(&x0, velocity);
        let reduced = table.reduced().solve(&x0, velocity);
        for (g, r) in general.iter().zip(&reduced) {
            assert!(
                (g - r).abs() <= 1e-9 * (1.0 + g.abs()),
                "{}: {g} vs {r}",
                method.name()
            );
        }
    }
}

#[test]
fn a_solver_file_bound_to_a_model_is_refused_by_another() {
    let model = image_model();
    let other = Model::random(spec([1, 5, 3], 4), 12).unwrap();
    let mut file = SolverFile::new(
        "euler-4",
        "euler",
        0.0,
        Method::Euler.build(4, Grid::Uniform).unwrap(),
    );
    file.model_id = Some(model.id().to_string());
    let text = file.to_json();
    let parsed = SolverFile::from_json(&text, "euler-4.json").unwrap();
    parsed.check_model(&model, "euler-4.json").unwrap();
    let err = parsed.check_model(&other, "euler-4.json").unwrap_err();
    let message = err.to_string();
    assert!(message.starts_with("euler-4.json: "), "{message}");
    assert!(
        message.contains(model.id()) && message.contains(other.id()),
        "{message}"
    );
}

#[test]
fn bad_requests_are_errors_not_panics() {
    let model = image_model();
    let table = Method::Euler.build(2, Grid::Uniform).unwrap();
    let cases = [
        (
            SampleRequest {
                seed: 0,
                batch: 0,
                class: None,
                guidance: 0.0,
                first_row: 0,
            },
            "batch",
        ),
        (
            SampleRequest {
                seed: 0,
                batch: 2,
                class: Some(9),
                guidance: 0.0,
                first_row: 0,
            },
            "class 9",
        ),
        (
            SampleRequest {
                seed: 0,
                batch: 2,
                class: None,
                guidance: f64::NAN,
                first_row: 0,
            },
            "guidance",
        ),
        (
            SampleRequest {
                seed: 0,
                batch: 2,
                class: None,
                guidance: -1.0,
                first_row: 0,
            },
            "guidance",
        ),
    ];
    for (request, needle) in cases {
        let message = sample(&model, &table, &request).unwrap_err().to_string();
        assert!(message.contains(needle), "{request:?}: {message}");
    }
    let unconditional = Model::random(spec([2, 1, 1], 0), 1).unwrap();
    let request = SampleRequest {
        seed: 0,
        batch: 2,
        class: None,
        guidance: 2.0,
        first_row: 0,
    };
    let message = sample(&unconditional, &table, &request)
        .unwrap_err()
        .to_string();
    assert!(message.contains("unconditional"), "{message}");
}

#[test]
fn pictures_tile_the_batch() {
    let model = image_model();
    let table = Method::Euler.build(2, Grid::Uniform).unwrap();
    let request = SampleRequest {
        seed: 2,
        batch: 5,
        class: Some(1),
        guidance: 0.0,
        first_row: 0,
    };
    let samples = sample(&model, &table, &request).unwrap();
    let picture = grid_picture(&samples, 3).unwrap();
    // 3 columns of width 3 with 2-pixel gaps; 2 rows of height 5.
    assert_eq!((picture.width, picture.height), (3 * 3 + 2 * 2, 2 * 5 + 2));
    assert_eq!(picture.rgba.len(), picture.width * picture.height * 4);
    // Pixel (0, 0) of the first tile is the first value mapped to a byte.
    let v = samples.values[0];
    let expected = (((v + 1.0) * 0.5 * 255.0).round()) as u8;
    assert_eq!(&picture.rgba[..4], &[expected, expected, expected, 255]);
}

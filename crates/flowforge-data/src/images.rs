//! Image data sets: readers for the standard MNIST **IDX** files (plain or gzipped) and the
//! 8x8 **digits** CSV, seeded shuffling and batching, and normalisation to `[-1, 1]`.
//!
//! The repository ships 10,000 MNIST digits and the 1,797 8x8 digits under `data/`
//! ([`bundled_mnist`], [`bundled_digits`]), so examples need no download; the readers also take
//! the full 60,000-image MNIST unchanged.
//!
//! Corrupt input is a typed [`Error::Data`] naming the file and what is wrong (wrong magic
//! number, truncated data, a label count that does not match, a pixel or label out of range),
//! never a panic.

use burn::tensor::{Device, Int, Tensor, TensorData};
use flowforge_core::{Error, Result};
use rand::Rng;
use rand::seq::SliceRandom;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Grey-level images with class labels, stored row-major as bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSet {
    /// Pixels, `len · rows · cols` bytes, image after image.
    pub pixels: Vec<u8>,
    /// One label per image.
    pub labels: Vec<u8>,
    /// Image height.
    pub rows: usize,
    /// Image width.
    pub cols: usize,
    /// The largest grey level (255 for MNIST, 16 for the 8x8 digits).
    pub max_level: u8,
    /// Number of classes (10 for digits).
    pub classes: usize,
}

fn data_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::Data { path: path.display().to_string(), reason: reason.into() }
}

/// The file's bytes, gunzipped when it starts with the gzip magic `1f 8b`.
fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| data_error(path, format!("cannot read: {e}")))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out).map_err(|e| data_error(path, format!("corrupt gzip stream: {e}")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Read an IDX image file (magic `0x00000803`, count, rows, cols, then one byte a pixel):
/// `(count, rows, cols, pixels)`.
///
/// # Errors
/// [`Error::Data`] for an unreadable file, a wrong magic number, a short header or short
/// pixel data.
pub fn read_idx_images(path: impl AsRef<Path>) -> Result<(usize, usize, usize, Vec<u8>)> {
    let path = path.as_ref();
    let bytes = read_maybe_gzip(path)?;
    if bytes.len() < 16 {
        return Err(data_error(path, format!("truncated IDX header: {} bytes, need 16", bytes.len())));
    }
    let magic = be_u32(&bytes, 0);
    if magic != 0x0000_0803 {
        return Err(data_error(path, format!("wrong magic number {magic:#010x} for IDX images (expected 0x00000803)")));
    }
    let (count, rows, cols) = (be_u32(&bytes, 4) as usize, be_u32(&bytes, 8) as usize, be_u32(&bytes, 12) as usize);
    let need = count.checked_mul(rows).and_then(|n| n.checked_mul(cols)).ok_or_else(|| data_error(path, "image count × size overflows"))?;
    let have = bytes.len() - 16;
    if have < need {
        return Err(data_error(path, format!("truncated pixel data: {have} bytes for {count} images of {rows}x{cols} (need {need})")));
    }
    Ok((count, rows, cols, bytes[16..16 + need].to_vec()))
}

/// Read an IDX label file (magic `0x00000801`, count, then one byte a label).
///
/// # Errors
/// [`Error::Data`] for an unreadable file, a wrong magic number or short data.
pub fn read_idx_labels(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    let path = path.as_ref();
    let bytes = read_maybe_gzip(path)?;
    if bytes.len() < 8 {
        return Err(data_error(path, format!("truncated IDX header: {} bytes, need 8", bytes.len())));
    }
    let magic = be_u32(&bytes, 0);
    if magic != 0x0000_0801 {
        return Err(data_error(path, format!("wrong magic number {magic:#010x} for IDX labels (expected 0x00000801)")));
    }
    let count = be_u32(&bytes, 4) as usize;
    let have = bytes.len() - 8;
    if have < count {
        return Err(data_error(path, format!("truncated label data: {have} labels, header says {count}")));
    }
    Ok(bytes[8..8 + count].to_vec())
}

/// MNIST from an IDX image file and an IDX label file (plain or gzipped).
///
/// # Errors
/// As the readers; [`Error::Data`] when the counts differ or a label is not a digit.
pub fn load_mnist(images: impl AsRef<Path>, labels: impl AsRef<Path>) -> Result<ImageSet> {
    let (count, rows, cols, pixels) = read_idx_images(images.as_ref())?;
    let label_bytes = read_idx_labels(labels.as_ref())?;
    if label_bytes.len() != count {
        return Err(data_error(labels.as_ref(), format!("{} labels for {count} images", label_bytes.len())));
    }
    if let Some(bad) = label_bytes.iter().find(|&&l| l > 9) {
        return Err(data_error(labels.as_ref(), format!("label {bad} is not a digit 0..9")));
    }
    Ok(ImageSet { pixels, labels: label_bytes, rows, cols, max_level: 255, classes: 10 })
}

/// The 8x8 digits CSV (optionally gzipped): one image a line, 64 grey levels in `0..=16` then
/// the label `0..=9`.
///
/// # Errors
/// [`Error::Data`] naming the line for a wrong field count, a non-integer or an out-of-range value.
pub fn load_digits_csv(path: impl AsRef<Path>) -> Result<ImageSet> {
    let path = path.as_ref();
    let text = String::from_utf8(read_maybe_gzip(path)?).map_err(|_| data_error(path, "not UTF-8 text"))?;
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for (number, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != 65 {
            return Err(data_error(path, format!("line {}: {} fields, expected 65 (64 pixels and a label)", number + 1, fields.len())));
        }
        for (i, field) in fields.iter().enumerate() {
            let value: u8 = field.parse().map_err(|_| data_error(path, format!("line {}: `{field}` is not an integer", number + 1)))?;
            let limit = if i < 64 { 16 } else { 9 };
            if value > limit {
                return Err(data_error(path, format!("line {}: value {value} exceeds {limit}", number + 1)));
            }
            if i < 64 { pixels.push(value) } else { labels.push(value) }
        }
    }
    if labels.is_empty() {
        return Err(data_error(path, "no images"));
    }
    Ok(ImageSet { pixels, labels, rows: 8, cols: 8, max_level: 16, classes: 10 })
}

/// The folder of the bundled data sets: `$FLOWFORGE_DATA_DIR` where it is set and not empty,
/// else the repository's `data/` folder as it lay when this crate was compiled.
///
/// The override serves a binary run away from the checkout that built it (copied to another
/// machine, or built from a clone that has since moved).
pub fn bundled_data_dir() -> PathBuf {
    data_dir(std::env::var_os("FLOWFORGE_DATA_DIR"))
}

fn data_dir(overridden: Option<std::ffi::OsString>) -> PathBuf {
    match overridden.filter(|dir| !dir.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data"),
    }
}

/// The 10,000 MNIST digits shipped in `data/mnist-10k`.
///
/// # Errors
/// As [`load_mnist`].
pub fn bundled_mnist() -> Result<ImageSet> {
    let dir = bundled_data_dir().join("mnist-10k");
    load_mnist(dir.join("images-idx3-ubyte.gz"), dir.join("labels-idx1-ubyte.gz"))
}

/// The 1,797 8x8 digits shipped in `data/digits-8x8`.
///
/// # Errors
/// As [`load_digits_csv`].
pub fn bundled_digits() -> Result<ImageSet> {
    load_digits_csv(bundled_data_dir().join("digits-8x8/digits.csv.gz"))
}

impl ImageSet {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels per image.
    pub fn pixels_per_image(&self) -> usize {
        self.rows * self.cols
    }

    /// Images `indices` as `[n, rows·cols]` floats scaled to `[-1, 1]` (`2·p/max − 1`), with
    /// their labels `[n]`.
    ///
    /// # Errors
    /// [`Error::InvalidCount`] for an index out of range.
    pub fn batch(&self, indices: &[usize], device: &Device) -> Result<(Tensor<2>, Tensor<1, Int>)> {
        let per = self.pixels_per_image();
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(Error::InvalidCount { name: "image index", value: bad as i64, requirement: "< number of images" });
        }
        let scale = 2.0 / f64::from(self.max_level);
        let mut values = Vec::with_capacity(indices.len() * per);
        for &i in indices {
            values.extend(self.pixels[i * per..(i + 1) * per].iter().map(|&p| f64::from(p) * scale - 1.0));
        }
        let labels: Vec<i64> = indices.iter().map(|&i| i64::from(self.labels[i])).collect();
        Ok((
            Tensor::from_data(TensorData::new(values, [indices.len(), per]), device),
            Tensor::from_data(TensorData::new(labels, [indices.len()]), device),
        ))
    }

    /// The first `n` images as one batch (MNIST-10k is ordered 0..9 in turn, so a prefix is
    /// nearly balanced).
    ///
    /// # Errors
    /// As [`ImageSet::batch`].
    pub fn head(&self, n: usize, device: &Device) -> Result<(Tensor<2>, Tensor<1, Int>)> {
        self.batch(&(0..n.min(self.len())).collect::<Vec<_>>(), device)
    }

    /// A seeded epoch: the indices shuffled and cut into batches of `batch_size` (the last may
    /// be shorter).
    ///
    /// # Errors
    /// [`Error::InvalidCount`] for a zero batch size.
    pub fn epoch<R: Rng + ?Sized>(&self, batch_size: usize, rng: &mut R) -> Result<Vec<Vec<usize>>> {
        flowforge_core::error::check::count_at_least_one("batch_size", batch_size)?;
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.shuffle(rng);
        Ok(order.chunks(batch_size).map(<[usize]>::to_vec).collect())
    }

    /// The first `n` images and the rest, as two sets (for a held-out split; MNIST-10k is
    /// ordered 0..9 in turn, so both parts are nearly balanced).
    pub fn split_at(&self, n: usize) -> (ImageSet, ImageSet) {
        let n = n.min(self.len());
        let per = self.pixels_per_image();
        let part = |pixels: &[u8], labels: &[u8]| ImageSet { pixels: pixels.to_vec(), labels: labels.to_vec(), ..self.clone_header() };
        (part(&self.pixels[..n * per], &self.labels[..n]), part(&self.pixels[n * per..], &self.labels[n..]))
    }

    fn clone_header(&self) -> ImageSet {
        ImageSet { pixels: Vec::new(), labels: Vec::new(), rows: self.rows, cols: self.cols, max_level: self.max_level, classes: self.classes }
    }

    /// A random batch of `n` indices drawn with replacement.
    pub fn sample_indices<R: Rng + ?Sized>(&self, n: usize, rng: &mut R) -> Vec<usize> {
        use rand::RngExt;
        (0..n).map(|_| rng.random_range(0..self.len())).collect()
    }
}

/// Map `[-1, 1]` images back to grey levels in `[0, 1]` (for plotting), clamped.
pub fn to_unit_range(x: Tensor<2>) -> Tensor<2> {
    x.add_scalar(1.0).mul_scalar(0.5).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str, bytes: &[u8]) -> PathBuf {
        let path = std::env::temp_dir().join(format!("flowforge-idx-{name}-{}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn the_data_folder_can_be_overridden() {
        assert_eq!(data_dir(Some("/elsewhere/data".into())), PathBuf::from("/elsewhere/data"));
        let compiled = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data");
        assert_eq!(data_dir(Some("".into())), compiled);
        assert_eq!(data_dir(None), compiled);
    }

    #[test]
    fn the_bundled_mnist_has_ten_thousand_balanced_digits() {
        let mnist = bundled_mnist().unwrap();
        assert_eq!((mnist.len(), mnist.rows, mnist.cols), (10_000, 28, 28));
        let mut counts = [0usize; 10];
        for &l in &mnist.labels {
            counts[l as usize] += 1;
        }
        // The data README: between 863 and 1,127 a class.
        assert_eq!(*counts.iter().min().unwrap(), 863);
        assert_eq!(*counts.iter().max().unwrap(), 1127);
        // Digits are dark-on-bright strokes on a zero background: the corner is background, and
        // some pixels are fully on.
        assert_eq!(mnist.pixels[0], 0);
        assert_eq!(mnist.pixels.iter().copied().max(), Some(255));
        let (x, y) = mnist.head(3, &Device::flex()).unwrap();
        assert_eq!(x.dims(), [3, 784]);
        assert_eq!(y.try_into_vec_as::<i64>().unwrap(), mnist.labels[..3].iter().map(|&l| i64::from(l)).collect::<Vec<_>>());
    }

    #[test]
    fn the_bundled_digits_have_1797_images_of_17_levels() {
        let digits = bundled_digits().unwrap();
        assert_eq!((digits.len(), digits.rows, digits.cols), (1797, 8, 8));
        assert_eq!(digits.pixels.iter().copied().max(), Some(16));
        assert_eq!(digits.labels[..3], [0, 1, 2]);
    }

    #[test]
    fn corrupt_idx_files_are_typed_errors() {
        let mut header = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2];
        // Wrong magic.
        let wrong = scratch("magic", &[0, 0, 8, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0]);
        let err = read_idx_images(&wrong).unwrap_err();
        assert!(matches!(&err, Error::Data { reason, .. } if reason.contains("magic")), "{err}");
        // Short data: 2 images of 2x2 need 8 bytes.
        header.extend([1, 2, 3]);
        let short = scratch("short", &header);
        let err = read_idx_images(&short).unwrap_err();
        assert!(matches!(&err, Error::Data { reason, .. } if reason.contains("truncated")), "{err}");
        // Short header.
        let tiny = scratch("tiny", &[0, 0, 8]);
        assert!(matches!(read_idx_images(&tiny), Err(Error::Data { .. })));
        assert!(matches!(read_idx_labels(&tiny), Err(Error::Data { .. })));
        // A label file that claims more labels than it has.
        let labels = scratch("labels", &[0, 0, 8, 1, 0, 0, 0, 5, 1, 2]);
        assert!(matches!(read_idx_labels(&labels), Err(Error::Data { reason, .. }) if reason.contains("truncated")));
        // A missing file names itself.
        let missing = read_idx_images("/nonexistent/images.idx").unwrap_err();
        assert!(missing.to_string().contains("/nonexistent/images.idx"));
        // A corrupt CSV line.
        let csv = scratch("csv", b"1,2,3\n");
        assert!(matches!(load_digits_csv(&csv), Err(Error::Data { reason, .. }) if reason.contains("line 1")));
        for p in [wrong, short, tiny, labels, csv] {
            let _ = std::fs::remove_file(p);
        }
    }

    #[test]
    fn epochs_cover_every_image_once() {
        let digits = bundled_digits().unwrap();
        let mut r = crate::rng(0);
        let batches = digits.epoch(256, &mut r).unwrap();
        let mut seen: Vec<usize> = batches.concat();
        seen.sort_unstable();
        assert_eq!(seen, (0..1797).collect::<Vec<_>>());
        assert!(digits.epoch(0, &mut r).is_err());
        let (train, held_out) = digits.split_at(1500);
        assert_eq!((train.len(), held_out.len()), (1500, 297));
        assert_eq!(held_out.pixels[..64], digits.pixels[1500 * 64..1501 * 64]);
    }
}

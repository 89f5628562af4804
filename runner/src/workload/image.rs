//! The images multimodal rows send: generated, not shipped, and identical in every run.
//!
//! Each size is a square of 500, 1000 or 2000 pixels (the kit's "medium" was 1024 px and its
//! JPEGs were labelled PNG, kit defect 8.13: here the size is exact and the MIME type true).
//! The picture is a detailed deterministic pattern (smooth colour fields, rings, stripes, tiles
//! and fine grain, all in integer arithmetic) so its JPEG is realistically large. It is encoded
//! as a baseline JPEG at quality 85 and sent as a `data:image/jpeg;base64,...` URL. Generate
//! each size once per run ([`ImageSet`]). Dataset rows' image files are wrapped the same way
//! ([`EncodedImage::from_file_bytes`]); this module does no I/O.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use coebench_plan::ImageSize;

/// JPEG quality of the generated images.
pub const JPEG_QUALITY: u8 = 85;

/// An image ready to send: its size, pixels, MIME type and data URL.
#[derive(Clone, PartialEq, Eq)]
pub struct EncodedImage {
    /// The requested size; `None` for an image file of a dataset.
    pub size: Option<ImageSize>,
    /// Width in pixels (`None` for an image file, which is sent undecoded).
    pub width: Option<u32>,
    /// Height in pixels (`None` for an image file).
    pub height: Option<u32>,
    /// The MIME type of the encoded bytes: `image/jpeg` for generated images.
    pub mime: &'static str,
    /// `data:<mime>;base64,<bytes>`.
    pub data_url: Arc<str>,
}

impl std::fmt::Debug for EncodedImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncodedImage")
            .field("size", &self.size)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("mime", &self.mime)
            .field("data_url_len", &self.data_url.len())
            .finish()
    }
}

/// The image could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode the {size} test image as JPEG: {cause}")]
pub struct ImageError {
    /// The size being generated.
    pub size: &'static str,
    /// The encoder's message.
    pub cause: String,
}

impl EncodedImage {
    /// Generates and encodes the image of `size`. Takes tens to hundreds of milliseconds.
    pub fn generate(size: ImageSize) -> Result<EncodedImage, ImageError> {
        let jpeg = jpeg_bytes(size)?;
        let mime = "image/jpeg";
        let mut data_url = format!("data:{mime};base64,");
        coebench_support::base64::encode_into(
            &jpeg,
            coebench_support::base64::Alphabet::Standard,
            &mut data_url,
        );
        let side = size.pixels();
        Ok(EncodedImage {
            size: Some(size),
            width: Some(side),
            height: Some(side),
            mime,
            data_url: data_url.into(),
        })
    }

    /// The bytes of an image file (of MIME type `mime`), sent as they are.
    pub fn from_file_bytes(bytes: &[u8], mime: &'static str) -> EncodedImage {
        let mut data_url = format!("data:{mime};base64,");
        coebench_support::base64::encode_into(
            bytes,
            coebench_support::base64::Alphabet::Standard,
            &mut data_url,
        );
        EncodedImage {
            size: None,
            width: None,
            height: None,
            mime,
            data_url: data_url.into(),
        }
    }
}

/// The JPEG file of `size`'s image.
pub fn jpeg_bytes(size: ImageSize) -> Result<Vec<u8>, ImageError> {
    let side = size.pixels();
    let pixels = render(side);
    let mut out = Vec::with_capacity(pixels.len() / 8);
    let encoder = jpeg_encoder::Encoder::new(&mut out, JPEG_QUALITY);
    // Every size fits in u16 (at most 2000 px).
    let dim = u16::try_from(side).unwrap_or(u16::MAX);
    encoder
        .encode(&pixels, dim, dim, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| ImageError {
            size: size.as_str(),
            cause: e.to_string(),
        })?;
    Ok(out)
}

/// Images generated once per size and shared by every request of a run.
#[derive(Debug, Default)]
pub struct ImageSet {
    images: Mutex<HashMap<ImageSize, Arc<EncodedImage>>>,
}

impl ImageSet {
    /// An empty set.
    pub fn new() -> Self {
        ImageSet::default()
    }

    /// The image of `size`, generated on first use.
    pub fn get(&self, size: ImageSize) -> Result<Arc<EncodedImage>, ImageError> {
        let mut images = self.images.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(image) = images.get(&size) {
            return Ok(Arc::clone(image));
        }
        let image = Arc::new(EncodedImage::generate(size)?);
        images.insert(size, Arc::clone(&image));
        Ok(image)
    }
}

/// RGB pixels of the `side` x `side` pattern, row by row.
fn render(side: u32) -> Vec<u8> {
    let mut pixels = Vec::with_capacity(side as usize * side as usize * 3);
    // Pattern coordinates run over 0..4096 whatever the size, so every size shows the same
    // picture; the per-pixel grain keeps larger images proportionally larger on the wire.
    let scale = 4096 / side.max(1);
    for y in 0..side {
        for x in 0..side {
            let (u, v) = (x * scale, y * scale);
            let field = |seed: u32| smooth_noise(u, v, 512, seed) as i32;
            let (dx, dy) = (u as i32 - 1400, v as i32 - 2300);
            let ring = triangle(((dx * dx + dy * dy) as u32 >> 11) as i32);
            let stripe = triangle((u + 2 * v) as i32 >> 3);
            let tile = if ((u >> 8) ^ (v >> 8)) & 1 == 0 {
                24
            } else {
                -24
            };
            let grain = (hash(x, y, 7) & 31) as i32 - 16;
            let r = field(1) / 2 + ring / 3 + tile + grain;
            let g = field(2) / 2 + stripe / 3 - tile / 2 + grain;
            let b = field(3) / 3 + (ring + stripe) / 4 + grain;
            pixels.extend([clamp(r + 40), clamp(g + 30), clamp(b + 50)]);
        }
    }
    pixels
}

/// 0..=255 and back, period 512.
fn triangle(t: i32) -> i32 {
    let t = t.rem_euclid(512);
    if t < 256 { t } else { 511 - t }
}

fn clamp(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// A 32-bit hash of a grid point.
fn hash(x: u32, y: u32, seed: u32) -> u32 {
    let mut h =
        x.wrapping_mul(0x8DA6_B343) ^ y.wrapping_mul(0xD816_3841) ^ seed.wrapping_mul(0xCB1A_B31F);
    h ^= h >> 15;
    h = h.wrapping_mul(0x2C1B_3C6D);
    h ^= h >> 12;
    h = h.wrapping_mul(0x297A_2D39);
    h ^ (h >> 15)
}

/// Value noise in 0..=255: random values on a `cell`-spaced grid, bilinearly interpolated.
fn smooth_noise(u: u32, v: u32, cell: u32, seed: u32) -> u32 {
    let (cx, cy) = (u / cell, v / cell);
    let (fx, fy) = (u % cell, v % cell);
    let corner = |i: u32, j: u32| hash(cx + i, cy + j, seed) & 255;
    let top = corner(0, 0) * (cell - fx) + corner(1, 0) * fx;
    let bottom = corner(0, 1) * (cell - fx) + corner(1, 1) * fx;
    (top * (cell - fy) + bottom * fy) / (cell * cell)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Width and height from a JPEG's start-of-frame segment.
    fn jpeg_dimensions(jpeg: &[u8]) -> Option<(u32, u32)> {
        if jpeg.get(..2)? != [0xFF, 0xD8] {
            return None;
        }
        let mut i = 2;
        while i + 9 < jpeg.len() {
            if jpeg[i] != 0xFF {
                return None;
            }
            let marker = jpeg[i + 1];
            let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
            if (0xC0..=0xC2).contains(&marker) {
                let h = u16::from_be_bytes([jpeg[i + 5], jpeg[i + 6]]);
                let w = u16::from_be_bytes([jpeg[i + 7], jpeg[i + 8]]);
                return Some((u32::from(w), u32::from(h)));
            }
            i += 2 + len;
        }
        None
    }

    fn base64(bytes: &[u8]) -> String {
        coebench_support::base64::encode(bytes, coebench_support::base64::Alphabet::Standard)
    }

    #[test]
    fn small_and_medium_images_are_real_jpegs_of_the_exact_size() {
        for size in [ImageSize::Small, ImageSize::Medium] {
            let jpeg = jpeg_bytes(size).unwrap();
            let side = size.pixels();
            assert_eq!(jpeg_dimensions(&jpeg), Some((side, side)), "{size:?}");
            assert_eq!(&jpeg[jpeg.len() - 2..], &[0xFF, 0xD9]);
            // Detailed enough not to compress to almost nothing.
            assert!(
                jpeg.len() > side as usize * side as usize / 20,
                "{}",
                jpeg.len()
            );
            let image = EncodedImage::generate(size).unwrap();
            assert_eq!(
                (image.width, image.height, image.mime),
                (Some(side), Some(side), "image/jpeg")
            );
            assert_eq!(
                &*image.data_url,
                format!("data:image/jpeg;base64,{}", base64(&jpeg))
            );
        }
    }

    #[test]
    fn images_are_deterministic_and_shared() {
        assert_eq!(
            jpeg_bytes(ImageSize::Small).unwrap(),
            jpeg_bytes(ImageSize::Small).unwrap()
        );
        let set = ImageSet::new();
        let a = set.get(ImageSize::Small).unwrap();
        let b = set.get(ImageSize::Small).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!format!("{a:?}").contains("base64"));
    }

    #[test]
    fn large_image_is_2000_pixels() {
        let jpeg = jpeg_bytes(ImageSize::Large).unwrap();
        assert_eq!(jpeg_dimensions(&jpeg), Some((2000, 2000)));
    }
}

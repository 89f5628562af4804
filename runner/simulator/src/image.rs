//! Images in chat requests: decoding `data:` URLs and reading an image's width and height from
//! its JPEG SOF or PNG IHDR header. The pixels themselves are never decoded.
//!
//! The declared MIME type is ignored (the kit labels JPEGs `image/png`); the bytes decide.

/// Why an image could not be measured; the text is sent to the client in a 400.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ImageError {
    /// Not a `data:<mime>;base64,<data>` URL.
    #[error(
        "image_url must be a data URL (data:<mime>;base64,<data>); the simulator cannot fetch {0:?}"
    )]
    NotDataUrl(String),
    /// The base64 payload is invalid.
    #[error("the image's base64 payload is invalid at byte {0}")]
    Base64(usize),
    /// Neither a JPEG nor a PNG, or a truncated header.
    #[error("the image is not a readable JPEG or PNG ({0}); send a baseline JPEG or a PNG")]
    Format(&'static str),
}

/// Width and height, in pixels, of the image in a `data:` URL.
pub fn data_url_dimensions(url: &str) -> Result<(u32, u32), ImageError> {
    let shown: String = url.chars().take(40).collect();
    let rest = url
        .strip_prefix("data:")
        .ok_or_else(|| ImageError::NotDataUrl(shown.clone()))?;
    let (meta, payload) = rest
        .split_once(',')
        .ok_or_else(|| ImageError::NotDataUrl(shown.clone()))?;
    if !meta.ends_with(";base64") {
        return Err(ImageError::NotDataUrl(shown));
    }
    let bytes = coebench_support::base64::decode(payload.as_bytes()).map_err(ImageError::Base64)?;
    dimensions(&bytes)
}

/// Width and height of a JPEG or PNG image.
pub fn dimensions(bytes: &[u8]) -> Result<(u32, u32), ImageError> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        png_dimensions(bytes)
    } else if bytes.starts_with(&[0xFF, 0xD8]) {
        jpeg_dimensions(bytes)
    } else {
        Err(ImageError::Format("unknown signature"))
    }
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at + 2)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

fn png_dimensions(b: &[u8]) -> Result<(u32, u32), ImageError> {
    if b.get(12..16) != Some(b"IHDR") {
        return Err(ImageError::Format("PNG without IHDR"));
    }
    match (be32(b, 16), be32(b, 20)) {
        (Some(w), Some(h)) => Ok((w, h)),
        _ => Err(ImageError::Format("truncated PNG header")),
    }
}

fn jpeg_dimensions(b: &[u8]) -> Result<(u32, u32), ImageError> {
    let mut i = 2;
    loop {
        // Skip fill bytes before a marker.
        while b.get(i) == Some(&0xFF) && b.get(i + 1) == Some(&0xFF) {
            i += 1;
        }
        if b.get(i) != Some(&0xFF) {
            return Err(ImageError::Format("JPEG marker expected"));
        }
        let marker = *b.get(i + 1).ok_or(ImageError::Format("truncated JPEG"))?;
        i += 2;
        match marker {
            // Standalone markers carry no length.
            0x01 | 0xD0..=0xD7 => continue,
            0xD9 | 0xDA => return Err(ImageError::Format("JPEG without a frame header")),
            _ => {}
        }
        let len = usize::from(be16(b, i).ok_or(ImageError::Format("truncated JPEG"))?);
        let is_sof = matches!(marker, 0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF);
        if is_sof {
            return match (be16(b, i + 3), be16(b, i + 5)) {
                (Some(h), Some(w)) => Ok((u32::from(w), u32::from(h))),
                _ => Err(ImageError::Format("truncated JPEG frame header")),
            };
        }
        if len < 2 {
            return Err(ImageError::Format("bad JPEG segment length"));
        }
        i += len;
    }
}

/// Prompt tokens of a `w x h` image with square patches of `patch` pixels, capped at `cap`.
pub fn image_tokens(w: u32, h: u32, patch: u32, cap: Option<u32>) -> u32 {
    let patch = patch.max(1);
    let tokens = u64::from(w.div_ceil(patch)) * u64::from(h.div_ceil(patch));
    let tokens = u32::try_from(tokens).unwrap_or(u32::MAX);
    cap.map_or(tokens, |c| tokens.min(c))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Standard base64, for tests.
    pub(crate) fn encode_base64(bytes: &[u8]) -> String {
        coebench_support::base64::encode(bytes, coebench_support::base64::Alphabet::Standard)
    }

    /// A real baseline JPEG of `w x h`.
    pub(crate) fn jpeg(w: u16, h: u16) -> Vec<u8> {
        let mut out = Vec::new();
        let pixels = vec![128u8; usize::from(w) * usize::from(h) * 3];
        jpeg_encoder::Encoder::new(&mut out, 80)
            .encode(&pixels, w, h, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        out
    }

    #[test]
    fn a_bad_base64_payload_names_the_byte() {
        assert_eq!(
            data_url_dimensions("data:image/jpeg;base64,ab$c"),
            Err(ImageError::Base64(2))
        );
    }

    #[test]
    fn jpeg_size_is_read_from_the_frame_header() {
        let url = format!("data:image/png;base64,{}", encode_base64(&jpeg(64, 40)));
        assert_eq!(data_url_dimensions(&url), Ok((64, 40)));
    }

    #[test]
    fn png_size_is_read_from_ihdr() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend_from_slice(&500u32.to_be_bytes());
        png.extend_from_slice(&300u32.to_be_bytes());
        png.extend_from_slice(&[8, 2, 0, 0, 0]);
        assert_eq!(dimensions(&png), Ok((500, 300)));
    }

    #[test]
    fn non_images_and_remote_urls_are_refused() {
        assert!(matches!(
            data_url_dimensions("https://example.com/cat.jpg"),
            Err(ImageError::NotDataUrl(_))
        ));
        let url = format!("data:image/png;base64,{}", encode_base64(b"GIF89a...."));
        assert!(matches!(
            data_url_dimensions(&url),
            Err(ImageError::Format(_))
        ));
    }

    #[test]
    fn image_tokens_round_patches_up_and_cap() {
        assert_eq!(image_tokens(500, 500, 28, None), 18 * 18);
        assert_eq!(image_tokens(2000, 2000, 28, Some(1000)), 1000);
    }
}

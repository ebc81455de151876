//! Reads R's `save()` files (`.rda`, `.RData`) without R: the compression wrapper (gzip, bzip2,
//! xz or none), the `RDX2`/`RDX3` header and the XDR serialization into [`RObject`] trees.
//!
//! Only what data files hold is modelled as values (vectors, lists, pairlists, attributes,
//! symbols); closures, environments and language objects are read past and kept opaque.

mod error;
mod object;
mod xdr;

use std::io::Read;

pub use error::RDataError;
pub use object::{RObject, RValue};

/// The largest decompressed file accepted (a guard against decompression bombs).
pub const MAX_DECOMPRESSED: u64 = 512 << 20;

/// Decompresses `bytes` by their magic number (gzip, bzip2, xz, or none), up to
/// [`MAX_DECOMPRESSED`] bytes.
pub fn decompress(bytes: &[u8]) -> Result<Vec<u8>, RDataError> {
    decompress_capped(bytes, MAX_DECOMPRESSED)
}

/// [`decompress`] with an explicit cap: more than `cap` bytes out is an error.
pub fn decompress_capped(bytes: &[u8], cap: u64) -> Result<Vec<u8>, RDataError> {
    fn all(format: &'static str, r: impl Read, cap: u64) -> Result<Vec<u8>, RDataError> {
        let mut out = Vec::new();
        r.take(cap + 1)
            .read_to_end(&mut out)
            .map_err(|e| RDataError::Decompress {
                format,
                reason: e.to_string(),
            })?;
        if out.len() as u64 > cap {
            return Err(RDataError::Decompress {
                format,
                reason: format!("more than {cap} bytes once decompressed"),
            });
        }
        Ok(out)
    }
    match bytes {
        [0x1f, 0x8b, ..] => all("gzip", flate2::read::GzDecoder::new(bytes), cap),
        [b'B', b'Z', b'h', ..] => all("bzip2", bzip2::read::BzDecoder::new(bytes), cap),
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => {
            all("xz", liblzma::read::XzDecoder::new(bytes), cap)
        }
        _ => Ok(bytes.to_vec()),
    }
}

/// The named objects of a `save()` file, in file order.
pub fn read_rda(bytes: &[u8]) -> Result<Vec<(String, RObject)>, RDataError> {
    let raw = decompress(bytes)?;
    let body = match raw.get(..5) {
        Some(b"RDX2\n") | Some(b"RDX3\n") => &raw[5..],
        Some(b"RDA2\n") | Some(b"RDA3\n") => {
            return Err(RDataError::Unsupported(
                "ASCII save format (save(ascii = TRUE)); only XDR binary is read".into(),
            ));
        }
        _ => {
            return Err(RDataError::NotRData(
                "no RDX2/RDX3 header after decompression".into(),
            ));
        }
    };
    let top = xdr::Reader::new(body).read_stream()?;
    match top.value {
        RValue::Pairlist(items) => Ok(items
            .into_iter()
            .map(|(tag, v)| (tag.unwrap_or_default(), v))
            .collect()),
        RValue::Null => Ok(vec![]),
        _ => Err(RDataError::Malformed(
            "the top level of a save() file is not a pairlist of named objects".into(),
        )),
    }
}

/// One serialized object (`saveRDS()` / `.rds`): the same stream without the `RDX` line.
pub fn read_rds(bytes: &[u8]) -> Result<RObject, RDataError> {
    let raw = decompress(bytes)?;
    xdr::Reader::new(&raw).read_stream()
}

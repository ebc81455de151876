//! The reader against streams written by hand from R's documented layout (R Internals,
//! "Serialization formats"), each compression wrapper, and hostile input: truncated files,
//! impossible lengths, deep nesting and random bytes give errors, never panics.

use std::io::Write;

use pal_rdata::{RDataError, RValue, read_rda};
use proptest::prelude::*;

/// An XDR stream builder.
#[derive(Default)]
struct W(Vec<u8>);

const HAS_ATTR: i32 = 1 << 9;
const HAS_TAG: i32 = 1 << 10;
const IS_OBJECT: i32 = 1 << 8;

impl W {
    fn int(&mut self, v: i32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn real(&mut self, v: f64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn chars(&mut self, s: &str) -> &mut Self {
        self.int(9).int(s.len() as i32);
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    /// A symbol the first time; afterwards callers write a reference.
    fn sym(&mut self, s: &str) -> &mut Self {
        self.int(1).chars(s)
    }
    fn header(version: i32) -> Self {
        let mut w = W(b"RDX3\nX\n".to_vec());
        w.int(version).int(0x040300).int(0x030500);
        if version == 3 {
            w.int(5);
            w.0.extend_from_slice(b"UTF-8");
        }
        w
    }
}

/// `x <- structure(c(1L, NA, 3L), class = "demo"); lab <- c("a", NA); save(x, lab, y, file)`
/// with `y` a one-element double, the `class` symbol written once and then referenced.
fn sample(version: i32) -> Vec<u8> {
    let mut w = W::header(version);
    // Pairlist cell 1: tag `x`, value an integer vector with attributes.
    w.int(2 | HAS_TAG).sym("x");
    w.int(13 | HAS_ATTR | IS_OBJECT)
        .int(3)
        .int(1)
        .int(i32::MIN)
        .int(3);
    w.int(2 | HAS_TAG)
        .sym("class")
        .int(16)
        .int(1)
        .chars("demo")
        .int(254);
    // Cell 2: tag `lab`, a character vector with an NA string.
    w.int(2 | HAS_TAG).sym("lab");
    w.int(16).int(2).chars("a").int(9).int(-1);
    // Cell 3: tag `y` given as a reference to the first symbol (`x`, reference 1), a double.
    w.int(2 | HAS_TAG).int((1 << 8) | 255);
    w.int(14).int(1).real(2.5);
    w.int(254);
    w.0
}

#[test]
fn reads_vectors_attributes_na_and_references() {
    for version in [2, 3] {
        let objects = read_rda(&sample(version)).unwrap();
        let names: Vec<&str> = objects.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["x", "lab", "x"]);
        let x = &objects[0].1;
        assert_eq!(x.integers().unwrap(), [Some(1), None, Some(3)]);
        assert_eq!(x.class(), ["demo"]);
        assert!(x.inherits("demo"));
        assert_eq!(
            objects[1].1.value,
            RValue::Str(vec![Some("a".into()), None])
        );
        assert_eq!(objects[2].1.reals().unwrap(), [2.5]);
    }
}

#[test]
fn every_compression_wrapper_reads_the_same() {
    let raw = sample(3);
    let want = read_rda(&raw).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw).unwrap();
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    bz.write_all(&raw).unwrap();
    let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
    xz.write_all(&raw).unwrap();
    for bytes in [
        gz.finish().unwrap(),
        bz.finish().unwrap(),
        xz.finish().unwrap(),
    ] {
        assert_eq!(read_rda(&bytes).unwrap(), want);
    }
}

#[test]
fn hostile_input_is_a_one_line_error() {
    let one_line = |e: RDataError| {
        let s = e.to_string();
        assert!(!s.contains('\n'), "{s}");
        s
    };
    // Not R at all.
    let e = one_line(read_rda(b"PK\x03\x04 a zip file").unwrap_err());
    assert!(e.contains("RDX2/RDX3"), "{e}");
    // Every truncation of a valid stream.
    let full = sample(3);
    for cut in 7..full.len() {
        assert!(read_rda(&full[..cut]).is_err(), "cut at {cut}");
    }
    // A vector claiming more elements than bytes remain.
    let mut w = W::header(2);
    w.int(2 | HAS_TAG).sym("x").int(13).int(i32::MAX);
    let e = one_line(read_rda(&w.0).unwrap_err());
    assert!(e.contains("does not fit"), "{e}");
    // A 64-bit length far beyond the file.
    let mut w = W::header(2);
    w.int(2 | HAS_TAG).sym("x").int(14).int(-1).int(7).int(0);
    assert!(read_rda(&w.0).is_err());
    // A reference to an object never read.
    let mut w = W::header(2);
    w.int(2 | HAS_TAG).int((40 << 8) | 255);
    let e = one_line(read_rda(&w.0).unwrap_err());
    assert!(e.contains("reference 40"), "{e}");
    // Lists nested without end.
    let mut w = W::header(2);
    w.int(2 | HAS_TAG).sym("x");
    for _ in 0..100_000 {
        w.int(19).int(1);
    }
    let e = one_line(read_rda(&w.0).unwrap_err());
    assert!(e.contains("nested deeper"), "{e}");
    // A small file that inflates past the cap is cut off there, not read into memory whole.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![0u8; 1 << 20]).unwrap();
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 4096);
    let e = one_line(pal_rdata::decompress_capped(&bomb, 1 << 16).unwrap_err());
    assert!(e.contains("more than 65536 bytes"), "{e}");
    assert_eq!(
        pal_rdata::decompress_capped(&bomb, 1 << 20).unwrap().len(),
        1 << 20
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn random_bytes_never_panic(tail in prop::collection::vec(any::<u8>(), 0..400)) {
        let mut bytes = W::header(3).0;
        bytes.extend_from_slice(&tail);
        let _ = read_rda(&bytes);
        let _ = read_rda(&tail);
    }

    #[test]
    fn mutated_streams_never_panic(at in 0usize..200, byte in any::<u8>()) {
        let mut bytes = sample(3);
        let i = at % bytes.len();
        bytes[i] = byte;
        let _ = read_rda(&bytes);
    }
}

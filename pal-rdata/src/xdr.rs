//! The XDR serialization stream: format line, versions, then one item read recursively
//! (type flags, attributes, tags, reference table), with every length checked against the bytes
//! left so hostile input cannot make it allocate or recurse without bound.

use crate::error::RDataError;
use crate::object::{RObject, RValue};

// SEXP types (R Internals, "Serialization formats").
const SYMSXP: u8 = 1;
const LISTSXP: u8 = 2;
const CLOSXP: u8 = 3;
const ENVSXP: u8 = 4;
const PROMSXP: u8 = 5;
const LANGSXP: u8 = 6;
const SPECIALSXP: u8 = 7;
const BUILTINSXP: u8 = 8;
const CHARSXP: u8 = 9;
const LGLSXP: u8 = 10;
const INTSXP: u8 = 13;
const REALSXP: u8 = 14;
const CPLXSXP: u8 = 15;
const STRSXP: u8 = 16;
const DOTSXP: u8 = 17;
const VECSXP: u8 = 19;
const EXPRSXP: u8 = 20;
const EXTPTRSXP: u8 = 22;
const WEAKREFSXP: u8 = 23;
const RAWSXP: u8 = 24;
const S4SXP: u8 = 25;
// Pseudo-types of the stream.
const ALTREP_SXP: u8 = 238;
const ATTRLISTSXP: u8 = 239;
const ATTRLANGSXP: u8 = 240;
const BASEENV_SXP: u8 = 241;
const EMPTYENV_SXP: u8 = 242;
const NAMESPACESXP: u8 = 249;
const PACKAGESXP: u8 = 248;
const PERSISTSXP: u8 = 247;
const BASENAMESPACE_SXP: u8 = 250;
const MISSINGARG_SXP: u8 = 251;
const UNBOUNDVALUE_SXP: u8 = 252;
const GLOBALENV_SXP: u8 = 253;
const NILVALUE_SXP: u8 = 254;
const REFSXP: u8 = 255;

const HAS_ATTR: i32 = 1 << 9;
const HAS_TAG: i32 = 1 << 10;
/// Nesting deeper than this is refused (R data never comes close).
const MAX_DEPTH: usize = 256;

/// R's integer NA.
pub const NA_INTEGER: i32 = i32::MIN;

pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    refs: Vec<RObject>,
    depth: usize,
}

fn bad(msg: impl Into<String>) -> RDataError {
    RDataError::Malformed(msg.into())
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            refs: Vec::new(),
            depth: 0,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], RDataError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| bad(format!("truncated at byte {} (wanted {n} more)", self.pos)))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn int(&mut self) -> Result<i32, RDataError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn double(&mut self) -> Result<f64, RDataError> {
        let b = self.take(8)?;
        Ok(f64::from_be_bytes(b.try_into().expect("8 bytes")))
    }

    /// A vector length (`-1` announces a 64-bit one), checked against the bytes left at
    /// `bytes_each` bytes per element.
    fn length(&mut self, bytes_each: usize) -> Result<usize, RDataError> {
        let n = match self.int()? {
            -1 => {
                let hi = self.int()? as u32 as u64;
                let lo = self.int()? as u32 as u64;
                (hi << 32) | lo
            }
            n if n < 0 => return Err(bad(format!("negative length {n}"))),
            n => n as u64,
        };
        let left = (self.buf.len() - self.pos) as u64;
        if n.saturating_mul(bytes_each.max(1) as u64) > left {
            return Err(bad(format!(
                "a length of {n} does not fit in the {left} bytes left"
            )));
        }
        Ok(n as usize)
    }

    /// Format line `X\n`, the three versions (and the native encoding for version 3), then the item.
    pub fn read_stream(mut self) -> Result<RObject, RDataError> {
        match self.take(2)? {
            b"X\n" => {}
            b"A\n" => return Err(RDataError::Unsupported("ASCII serialization".into())),
            b"B\n" => {
                return Err(RDataError::Unsupported(
                    "native binary serialization".into(),
                ));
            }
            _ => return Err(RDataError::NotRData("no XDR format line".into())),
        }
        let version = self.int()?;
        let _writer = self.int()?;
        let _min_reader = self.int()?;
        match version {
            2 => {}
            3 => {
                let n = self.length(1)?;
                self.take(n)?;
            }
            v => {
                return Err(RDataError::Unsupported(format!(
                    "serialization version {v}"
                )));
            }
        }
        self.item()
    }

    fn item(&mut self) -> Result<RObject, RDataError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(bad(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        let r = self.item_inner();
        self.depth -= 1;
        r
    }

    fn item_inner(&mut self) -> Result<RObject, RDataError> {
        let flags = self.int()?;
        let ty = (flags & 0xff) as u8;
        let has_attr = flags & HAS_ATTR != 0;
        let has_tag = flags & HAS_TAG != 0;
        let value = match ty {
            NILVALUE_SXP => return Ok(RObject::null()),
            EMPTYENV_SXP | BASEENV_SXP | GLOBALENV_SXP | UNBOUNDVALUE_SXP | MISSINGARG_SXP
            | BASENAMESPACE_SXP => return Ok(RObject::new(RValue::Opaque(ty))),
            REFSXP => {
                let idx = match flags >> 8 {
                    0 => self.int()?,
                    i => i,
                };
                let i = usize::try_from(idx - 1)
                    .ok()
                    .filter(|&i| i < self.refs.len())
                    .ok_or_else(|| bad(format!("reference {idx} to an object not yet read")))?;
                return Ok(self.refs[i].clone());
            }
            PERSISTSXP | PACKAGESXP | NAMESPACESXP => {
                let v = self.string_vec()?;
                let obj = RObject::new(RValue::Str(v));
                self.refs.push(obj.clone());
                return Ok(obj);
            }
            SYMSXP => {
                let name = self.item()?;
                let s = match name.value {
                    RValue::Char(Some(s)) => s,
                    _ => return Err(bad("a symbol's name is not a string")),
                };
                let obj = RObject::new(RValue::Symbol(s));
                self.refs.push(obj.clone());
                return Ok(obj);
            }
            ENVSXP => {
                let _locked = self.int()?;
                self.refs.push(RObject::new(RValue::Opaque(ENVSXP)));
                for _ in 0..4 {
                    self.item()?; // enclosure, frame, hash table, attributes
                }
                return Ok(RObject::new(RValue::Opaque(ENVSXP)));
            }
            LISTSXP | LANGSXP | CLOSXP | PROMSXP | DOTSXP | ATTRLANGSXP | ATTRLISTSXP => {
                return self.pairlist(ty, flags);
            }
            EXTPTRSXP => {
                self.refs.push(RObject::new(RValue::Opaque(ty)));
                self.item()?;
                self.item()?;
                RValue::Opaque(ty)
            }
            WEAKREFSXP => {
                self.refs.push(RObject::new(RValue::Opaque(ty)));
                RValue::Opaque(ty)
            }
            SPECIALSXP | BUILTINSXP => {
                let n = self.length(1)?;
                self.take(n)?;
                RValue::Opaque(ty)
            }
            CHARSXP => match self.int()? {
                -1 => RValue::Char(None),
                n if n < 0 => return Err(bad(format!("string length {n}"))),
                n => {
                    let b = self.take(n as usize)?;
                    RValue::Char(Some(String::from_utf8_lossy(b).into_owned()))
                }
            },
            LGLSXP => {
                let n = self.length(4)?;
                let v = (0..n).map(|_| self.int()).collect::<Result<Vec<_>, _>>()?;
                RValue::Logical(
                    v.into_iter()
                        .map(|x| (x != NA_INTEGER).then_some(x != 0))
                        .collect(),
                )
            }
            INTSXP => {
                let n = self.length(4)?;
                let v = (0..n).map(|_| self.int()).collect::<Result<Vec<_>, _>>()?;
                RValue::Integer(
                    v.into_iter()
                        .map(|x| (x != NA_INTEGER).then_some(x))
                        .collect(),
                )
            }
            REALSXP => {
                let n = self.length(8)?;
                RValue::Real((0..n).map(|_| self.double()).collect::<Result<_, _>>()?)
            }
            CPLXSXP => {
                let n = self.length(16)?;
                let v = (0..2 * n)
                    .map(|_| self.double())
                    .collect::<Result<Vec<_>, _>>()?;
                RValue::Complex(v.chunks(2).map(|c| (c[0], c[1])).collect())
            }
            STRSXP => {
                let n = self.length(4)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    match self.item()?.value {
                        RValue::Char(s) => v.push(s),
                        _ => return Err(bad("a character vector holds a non-string")),
                    }
                }
                RValue::Str(v)
            }
            VECSXP | EXPRSXP => {
                let n = self.length(4)?;
                RValue::List((0..n).map(|_| self.item()).collect::<Result<_, _>>()?)
            }
            RAWSXP => {
                let n = self.length(1)?;
                RValue::Raw(self.take(n)?.to_vec())
            }
            S4SXP => RValue::Opaque(ty),
            ALTREP_SXP => return self.altrep(),
            t => return Err(RDataError::Unsupported(format!("object type {t}"))),
        };
        let mut obj = RObject::new(value);
        if has_attr {
            obj.attributes = self.attributes()?;
        }
        let _ = has_tag;
        Ok(obj)
    }

    /// `PERSISTSXP`-style string vectors: a zero, a length, then CHARSXP items.
    fn string_vec(&mut self) -> Result<Vec<Option<String>>, RDataError> {
        if self.int()? != 0 {
            return Err(bad("a string vector header is not 0"));
        }
        let n = self.length(4)?;
        (0..n)
            .map(|_| match self.item()?.value {
                RValue::Char(s) => Ok(s),
                _ => Err(bad("a string vector holds a non-string")),
            })
            .collect()
    }

    /// An attribute pairlist: (tag, value) pairs by name.
    fn attributes(&mut self) -> Result<Vec<(String, RObject)>, RDataError> {
        match self.item()?.value {
            RValue::Pairlist(items) => Ok(items
                .into_iter()
                .map(|(t, v)| (t.unwrap_or_default(), v))
                .collect()),
            RValue::Null => Ok(vec![]),
            _ => Err(bad("attributes are not a pairlist")),
        }
    }

    /// A pairlist-shaped cell chain, read iteratively along the CDR: attributes, tag, CAR.
    /// Only `LISTSXP` chains become values; closures and calls are kept opaque.
    fn pairlist(&mut self, first_ty: u8, first_flags: i32) -> Result<RObject, RDataError> {
        let mut items = Vec::new();
        let mut attributes = Vec::new();
        let mut flags = first_flags;
        loop {
            if flags & HAS_ATTR != 0 {
                let a = self.attributes()?;
                if items.is_empty() {
                    attributes = a;
                }
            }
            let tag = if flags & HAS_TAG != 0 {
                match self.item()?.value {
                    RValue::Symbol(s) => Some(s),
                    _ => None,
                }
            } else {
                None
            };
            let car = self.item()?;
            items.push((tag, car));
            // The CDR: continue the chain while it is another list cell.
            let next = self.int()?;
            let next_ty = (next & 0xff) as u8;
            if next_ty == LISTSXP {
                flags = next;
                continue;
            }
            if next_ty == NILVALUE_SXP {
                break;
            }
            // Any other CDR (a call's or closure's body): read it as an item and stop.
            self.pos -= 4;
            self.item()?;
            break;
        }
        let value = if first_ty == LISTSXP {
            RValue::Pairlist(items)
        } else {
            RValue::Opaque(first_ty)
        };
        Ok(RObject { value, attributes })
    }

    /// ALTREP objects: class info, state, attributes. Compact integer/real sequences and the
    /// wrapper classes are expanded; other classes are refused by name.
    fn altrep(&mut self) -> Result<RObject, RDataError> {
        let info = self.item()?;
        let state = self.item()?;
        let attrs = self.item()?;
        let class = match &info.value {
            RValue::Pairlist(p) => match p.first().map(|(_, v)| &v.value) {
                Some(RValue::Symbol(s)) => s.clone(),
                _ => String::new(),
            },
            _ => String::new(),
        };
        let mut obj = match (class.as_str(), &state.value) {
            ("compact_intseq", RValue::Real(s)) if s.len() == 3 => {
                let (n, start, step) = (s[0], s[1], s[2]);
                if !(0.0..=(self.buf.len() as f64 * 64.0)).contains(&n) {
                    return Err(bad(format!("compact sequence of length {n}")));
                }
                RObject::new(RValue::Integer(
                    (0..n as usize)
                        .map(|i| Some((start + step * i as f64) as i32))
                        .collect(),
                ))
            }
            ("compact_realseq", RValue::Real(s)) if s.len() == 3 => {
                let (n, start, step) = (s[0], s[1], s[2]);
                if !(0.0..=(self.buf.len() as f64 * 64.0)).contains(&n) {
                    return Err(bad(format!("compact sequence of length {n}")));
                }
                RObject::new(RValue::Real(
                    (0..n as usize).map(|i| start + step * i as f64).collect(),
                ))
            }
            (c, RValue::List(parts)) if c.starts_with("wrap_") && !parts.is_empty() => {
                parts[0].clone()
            }
            (c, _) => return Err(RDataError::Unsupported(format!("ALTREP class `{c}`"))),
        };
        if let RValue::Pairlist(items) = attrs.value {
            obj.attributes = items
                .into_iter()
                .map(|(t, v)| (t.unwrap_or_default(), v))
                .collect();
        }
        Ok(obj)
    }
}

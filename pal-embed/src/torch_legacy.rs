//! Reader for PyTorch's legacy (pre-1.6, non-zip) `torch.save` format: a state dict of f32 tensors.
//!
//! The file is five pickles in a row — magic number, protocol version, system info, the object, the
//! list of storage keys — followed by each storage as an 8-byte element count and raw little-endian
//! data. Only the pickle opcodes that `torch.save` emits for a state dict are understood; anything
//! else is a clear error, never a guess.

use std::collections::HashMap;

use crate::EmbedError;

const MAGIC: i64 = 0x1950a86a20f9469cfc6c_i128 as i64;

/// One tensor of a state dict, in row-major order.
#[derive(Debug, Clone)]
pub struct TorchTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

#[derive(Debug, Clone)]
enum Value {
    None,
    Int(i64),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String),
    Storage { key: String, dtype: String },
    Tensor(TensorRef),
    Object,
    Mark,
}

#[derive(Debug, Clone)]
struct TensorRef {
    key: String,
    dtype: String,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

fn bad(what: impl Into<String>) -> EmbedError {
    EmbedError::Format(format!("legacy torch file: {}", what.into()))
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EmbedError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| bad(format!("truncated at byte {}", self.pos)))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, EmbedError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, EmbedError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32, EmbedError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn line(&mut self) -> Result<String, EmbedError> {
        let rest = &self.bytes[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| bad("unterminated line"))?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }
    fn text(&mut self, n: usize) -> Result<String, EmbedError> {
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }

    /// Runs one pickle up to its STOP opcode.
    fn pickle(&mut self) -> Result<Value, EmbedError> {
        let mut stack: Vec<Value> = Vec::new();
        let mut memo: HashMap<u32, Value> = HashMap::new();
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?;
                }
                b'.' => return stack.pop().ok_or_else(|| bad("empty stack at STOP")),
                b'(' => stack.push(Value::Mark),
                b'N' => stack.push(Value::None),
                0x88 | 0x89 => stack.push(Value::Object),
                b'K' => stack.push(Value::Int(self.u8()? as i64)),
                b'M' => stack.push(Value::Int(self.u16()? as i64)),
                b'J' => stack.push(Value::Int(self.u32()? as i32 as i64)),
                0x8a => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    let mut v: i128 = 0;
                    for (i, byte) in b.iter().enumerate() {
                        v |= (*byte as i128) << (8 * i);
                    }
                    if n > 0 && n < 16 && b[n - 1] & 0x80 != 0 {
                        v -= 1i128 << (8 * n);
                    }
                    stack.push(Value::Int(v as i64));
                }
                b'G' => {
                    self.take(8)?;
                    stack.push(Value::Object);
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    stack.push(Value::Str(self.text(n)?));
                }
                b'U' => {
                    let n = self.u8()? as usize;
                    stack.push(Value::Str(self.text(n)?));
                }
                b'T' => {
                    let n = self.u32()? as usize;
                    stack.push(Value::Str(self.text(n)?));
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    stack.push(Value::Global(format!("{module}.{name}")));
                }
                b'q' => {
                    let i = self.u8()? as u32;
                    memo.insert(i, top(&stack)?.clone());
                }
                b'r' => {
                    let i = self.u32()?;
                    memo.insert(i, top(&stack)?.clone());
                }
                b'h' => {
                    let i = self.u8()? as u32;
                    stack.push(memo.get(&i).cloned().ok_or_else(|| bad("unknown memo"))?);
                }
                b'j' => {
                    let i = self.u32()?;
                    stack.push(memo.get(&i).cloned().ok_or_else(|| bad("unknown memo"))?);
                }
                b')' => stack.push(Value::Tuple(vec![])),
                b']' => stack.push(Value::List(vec![])),
                b'}' => stack.push(Value::Dict(vec![])),
                b't' => {
                    let items = pop_mark(&mut stack)?;
                    stack.push(Value::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if stack.len() < n {
                        return Err(bad("stack underflow in TUPLEn"));
                    }
                    let items = stack.split_off(stack.len() - n);
                    stack.push(Value::Tuple(items));
                }
                b'l' => {
                    let items = pop_mark(&mut stack)?;
                    stack.push(Value::List(items));
                }
                b'a' => {
                    let v = pop(&mut stack)?;
                    match stack.last_mut() {
                        Some(Value::List(l)) => l.push(v),
                        _ => return Err(bad("APPEND on a non-list")),
                    }
                }
                b'e' => {
                    let items = pop_mark(&mut stack)?;
                    match stack.last_mut() {
                        Some(Value::List(l)) => l.extend(items),
                        _ => return Err(bad("APPENDS on a non-list")),
                    }
                }
                b's' => {
                    let v = pop(&mut stack)?;
                    let k = pop(&mut stack)?;
                    set_items(&mut stack, vec![k, v])?;
                }
                b'u' => {
                    let items = pop_mark(&mut stack)?;
                    set_items(&mut stack, items)?;
                }
                b'Q' => {
                    let pid = pop(&mut stack)?;
                    stack.push(persistent(pid)?);
                }
                b'R' => {
                    let args = pop(&mut stack)?;
                    let func = pop(&mut stack)?;
                    stack.push(reduce(func, args)?);
                }
                b'b' => {
                    // BUILD: object state (e.g. the state dict's `_metadata`) is not needed.
                    pop(&mut stack)?;
                }
                other => return Err(bad(format!("unsupported pickle opcode 0x{other:02x}"))),
            }
        }
    }
}

fn top(stack: &[Value]) -> Result<&Value, EmbedError> {
    stack.last().ok_or_else(|| bad("empty stack"))
}

fn pop(stack: &mut Vec<Value>) -> Result<Value, EmbedError> {
    stack.pop().ok_or_else(|| bad("stack underflow"))
}

fn pop_mark(stack: &mut Vec<Value>) -> Result<Vec<Value>, EmbedError> {
    let at = stack
        .iter()
        .rposition(|v| matches!(v, Value::Mark))
        .ok_or_else(|| bad("no MARK"))?;
    let items = stack.split_off(at + 1);
    stack.pop();
    Ok(items)
}

fn set_items(stack: &mut [Value], items: Vec<Value>) -> Result<(), EmbedError> {
    let Some(Value::Dict(d)) = stack.last_mut() else {
        return Err(bad("SETITEM on a non-dict"));
    };
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        d.push((k, v));
    }
    Ok(())
}

fn persistent(pid: Value) -> Result<Value, EmbedError> {
    let Value::Tuple(t) = pid else {
        return Err(bad("persistent id is not a tuple"));
    };
    match (t.first(), t.get(1), t.get(2)) {
        (Some(Value::Str(kind)), Some(Value::Global(dtype)), Some(Value::Str(key)))
            if kind == "storage" =>
        {
            Ok(Value::Storage {
                key: key.clone(),
                dtype: dtype.clone(),
            })
        }
        _ => Err(bad("unexpected persistent id")),
    }
}

fn ints(v: &Value) -> Result<Vec<usize>, EmbedError> {
    let Value::Tuple(items) = v else {
        return Err(bad("expected a tuple of ints"));
    };
    items
        .iter()
        .map(|i| match i {
            Value::Int(n) if *n >= 0 => Ok(*n as usize),
            _ => Err(bad("expected a non-negative int")),
        })
        .collect()
}

fn reduce(func: Value, args: Value) -> Result<Value, EmbedError> {
    let Value::Global(name) = func else {
        return Ok(Value::Object);
    };
    match name.as_str() {
        "collections.OrderedDict" => Ok(Value::Dict(vec![])),
        "torch._utils._rebuild_tensor_v2" | "torch._utils._rebuild_tensor" => {
            let Value::Tuple(a) = args else {
                return Err(bad("tensor arguments are not a tuple"));
            };
            let (
                Some(Value::Storage { key, dtype }),
                Some(Value::Int(offset)),
                Some(size),
                Some(stride),
            ) = (a.first(), a.get(1), a.get(2), a.get(3))
            else {
                return Err(bad("unexpected tensor arguments"));
            };
            Ok(Value::Tensor(TensorRef {
                key: key.clone(),
                dtype: dtype.clone(),
                offset: *offset as usize,
                shape: ints(size)?,
                stride: ints(stride)?,
            }))
        }
        _ => Ok(Value::Object),
    }
}

/// Reads every floating-point tensor of a legacy `torch.save` state dict. Integer buffers (such as
/// batch-norm's `num_batches_tracked`) are skipped.
pub fn read_state_dict(bytes: &[u8]) -> Result<Vec<(String, TorchTensor)>, EmbedError> {
    let mut r = Reader { bytes, pos: 0 };
    match r.pickle()? {
        Value::Int(m) if m == MAGIC => {}
        _ => {
            return Err(bad(
                "not a legacy torch file (bad magic number; zip-format files are not this)",
            ));
        }
    }
    let _protocol = r.pickle()?;
    let _sys_info = r.pickle()?;
    let Value::Dict(entries) = r.pickle()? else {
        return Err(bad("the saved object is not a state dict"));
    };
    let Value::List(keys) = r.pickle()? else {
        return Err(bad("missing storage key list"));
    };
    let mut storages: HashMap<String, &[u8]> = HashMap::new();
    for key in keys {
        let Value::Str(key) = key else {
            return Err(bad("storage key is not a string"));
        };
        let n = u64::from_le_bytes(r.take(8)?.try_into().unwrap()) as usize;
        // The element size is known only from the tensors that use the storage (f32 and i64 occur).
        let elem = storage_elem_size(&entries, &key).unwrap_or(4);
        let len = n
            .checked_mul(elem)
            .ok_or_else(|| bad("storage size overflows"))?;
        storages.insert(key, r.take(len)?);
    }
    let mut out = Vec::new();
    for (name, value) in entries {
        let (Value::Str(name), Value::Tensor(t)) = (name, value) else {
            continue;
        };
        if t.dtype != "torch.FloatStorage" {
            continue;
        }
        let raw = storages
            .get(&t.key)
            .ok_or_else(|| bad(format!("missing storage for {name}")))?;
        out.push((
            name.clone(),
            gather(raw, &t).map_err(|e| bad(format!("{name}: {e}")))?,
        ));
    }
    Ok(out)
}

fn storage_elem_size(entries: &[(Value, Value)], key: &str) -> Option<usize> {
    entries.iter().find_map(|(_, v)| match v {
        Value::Tensor(t) if t.key == key => Some(match t.dtype.as_str() {
            "torch.LongStorage" | "torch.DoubleStorage" => 8,
            "torch.HalfStorage" | "torch.BFloat16Storage" => 2,
            "torch.ByteStorage" | "torch.BoolStorage" | "torch.CharStorage" => 1,
            _ => 4,
        }),
        _ => None,
    })
}

/// Copies a (possibly strided) f32 view out of its storage into row-major order.
fn gather(raw: &[u8], t: &TensorRef) -> Result<TorchTensor, String> {
    let n: usize = t.shape.iter().product();
    let mut data = Vec::with_capacity(n);
    let mut index = vec![0usize; t.shape.len()];
    for _ in 0..n {
        let at = t.offset
            + index
                .iter()
                .zip(&t.stride)
                .map(|(i, s)| i * s)
                .sum::<usize>();
        let b = raw
            .get(at * 4..at * 4 + 4)
            .ok_or("index outside its storage")?;
        data.push(f32::from_le_bytes(b.try_into().unwrap()));
        for d in (0..index.len()).rev() {
            index[d] += 1;
            if index[d] < t.shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Ok(TorchTensor {
        shape: t.shape.clone(),
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_other_files() {
        assert!(read_state_dict(b"PK\x03\x04 zip").is_err());
        assert!(read_state_dict(&[]).is_err());
        assert!(read_state_dict(&[0x80, 0x02, 0x8a, 0x0a]).is_err());
    }

    #[test]
    fn strided_gather_is_row_major() {
        let raw: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
        // A 3×2 transpose view of a 2×3 storage.
        let t = TensorRef {
            key: "0".into(),
            dtype: "torch.FloatStorage".into(),
            offset: 0,
            shape: vec![3, 2],
            stride: vec![1, 3],
        };
        assert_eq!(
            gather(&raw, &t).unwrap().data,
            vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
        );
    }
}

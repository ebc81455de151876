//! `cargo run -p pal-rdata --example rdump FILE.rda`: prints the structure of an R data file.

use pal_rdata::{RObject, RValue};

fn show(o: &RObject, indent: usize, name: &str) {
    let pad = " ".repeat(indent);
    let kind = match &o.value {
        RValue::Null => "NULL".to_string(),
        RValue::Symbol(s) => format!("symbol {s}"),
        RValue::Char(s) => format!("char {s:?}"),
        RValue::Logical(v) => format!("logical[{}] {:?}", v.len(), &v[..v.len().min(6)]),
        RValue::Integer(v) => format!("integer[{}] {:?}", v.len(), &v[..v.len().min(8)]),
        RValue::Real(v) => format!("real[{}] {:?}", v.len(), &v[..v.len().min(6)]),
        RValue::Complex(v) => format!("complex[{}]", v.len()),
        RValue::Str(v) => format!("character[{}] {:?}", v.len(), &v[..v.len().min(8)]),
        RValue::List(v) => format!("list[{}]", v.len()),
        RValue::Pairlist(v) => format!("pairlist[{}]", v.len()),
        RValue::Raw(v) => format!("raw[{}]", v.len()),
        RValue::Opaque(t) => format!("opaque type {t}"),
    };
    println!("{pad}{name}: {kind}");
    for (n, a) in &o.attributes {
        if n != "row.names" {
            show(a, indent + 4, &format!("@{n}"));
        }
    }
    let names = o.names();
    if let RValue::List(v) = &o.value {
        for (i, e) in v.iter().enumerate() {
            show(e, indent + 2, names.get(i).map_or("?", String::as_str));
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for path in std::env::args().skip(1) {
        println!("== {path}");
        for (name, obj) in pal_rdata::read_rda(&std::fs::read(&path)?)? {
            show(&obj, 0, &name);
        }
    }
    Ok(())
}

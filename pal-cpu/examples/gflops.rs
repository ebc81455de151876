//! Square-product throughput of every kernel path this CPU has, in f32 and bf16: the best of
//! five `n × n` products (default 2048) on all threads. `--json` prints one JSON object.
//!
//! `cargo run --release -p pal-cpu --example gflops -- [n] [--json]`

use std::time::Instant;

use pal_cpu::{Path, Precision, Products, View, cpu};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let n: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(2048);
    let a: Vec<f32> = (0..n * n)
        .map(|i| ((i % 97) as f32 - 48.0) / 97.0)
        .collect();
    let b: Vec<f32> = (0..n * n)
        .map(|i| ((i % 89) as f32 - 44.0) / 89.0)
        .collect();
    let mut out = vec![0.0f32; n * n];
    let mut rows = vec![];
    for path in Path::ALL {
        if let Err(e) = path.check() {
            if !json {
                println!("{path}: skipped ({e})");
            }
            continue;
        }
        for precision in [Precision::F32, Precision::Bf16] {
            let p = Products::on(path, precision).expect("checked");
            let mut best = f64::MAX;
            for _ in 0..5 {
                let t = Instant::now();
                p.product(
                    n,
                    n,
                    n,
                    View::rows(&a, n),
                    View::rows(&b, n),
                    &mut out,
                    false,
                );
                best = best.min(t.elapsed().as_secs_f64());
            }
            let gflops = 2.0 * (n * n * n) as f64 / best / 1e9;
            if !json {
                println!("{:<40} {gflops:8.1} GFLOP/s", p.describe());
            }
            rows.push(format!(
                "{{\"path\":\"{path}\",\"precision\":\"{precision}\",\"kernel\":\"{}\",\"gflops\":{gflops:.1}}}",
                p.describe()
            ));
        }
    }
    let c = cpu();
    if json {
        println!(
            "{{\"cpu\":\"{}\",\"flags\":[{}],\"lacks\":[{}],\"threads\":{},\"n\":{n},\"products\":[{}]}}",
            c.model.replace('"', "'"),
            quoted(&c.flags),
            quoted(&c.missing()),
            rayon::current_num_threads(),
            rows.join(",")
        );
    } else {
        println!(
            "CPU: {} ({} threads); flags: {}; lacks: {}",
            c.model,
            rayon::current_num_threads(),
            c.flags.join(" "),
            c.missing().join(" ")
        );
    }
}

fn quoted(flags: &[&str]) -> String {
    flags
        .iter()
        .map(|f| format!("\"{f}\""))
        .collect::<Vec<_>>()
        .join(",")
}

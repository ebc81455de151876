//! The pal browser app as a library: what can run natively is plain Rust with unit tests
//! (`bundle`: the model bundle's files and the gallery's content; `policy`: the visitor's
//! posterior and the next question; `visitor`: their answers as ids, storage keys), and the browser half is compiled for wasm32 only
//! (`api`: fetching from `pal serve`; `components`: the Leptos page; `ranker`: cached f(x) on
//! the faster path; `check`: in-browser kernel
//! checks). `main.rs` mounts [`components::App`].

pub mod bundle;
pub mod policy;
pub mod visitor;

#[cfg(target_arch = "wasm32")]
pub mod api;
#[cfg(target_arch = "wasm32")]
mod check;
#[cfg(target_arch = "wasm32")]
pub mod components;
#[cfg(target_arch = "wasm32")]
pub mod ranker;

//! The pal browser app: loads a model bundle from `pal serve`, ranks the item gallery for a user
//! on WebGPU (CPU fallback) through `pal-infer`, and personalises the visitor locally from A/B
//! answers with `pal_math::personalise` — nothing leaves the browser unless they press save.

#[cfg(target_arch = "wasm32")]
fn main() {
    leptos::mount::mount_to_body(pal_app::components::App);
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("pal-app runs in the browser: build it with `cargo xtask app`");
}

//! The pal server: a training and scoring HTTP API (axum) over the PAL core, with metadata and
//! comparisons in SQLite or Postgres and model weights as safetensors files in a data directory.

pub mod api;
pub mod auth;
pub mod bodies;
pub mod bundle;
pub mod chat;
pub mod cli;
pub mod config;
pub mod db;
pub mod embed;
pub mod error;
pub mod import;
pub mod models;
pub mod ratelimit;
pub mod spec;
pub mod state;
pub mod worker;

pub use config::ServeConfig;
pub use state::AppState;

/// Opens the database, recovers interrupted jobs, starts the workers and returns the router.
pub async fn build(config: ServeConfig) -> Result<(axum::Router, AppState), error::ApiError> {
    let state = AppState::open(config).await?;
    worker::start(&state).await?;
    // Idle visitors expire once at start and then every ten minutes, while the server lives.
    let weak = std::sync::Arc::downgrade(&state.0);
    tokio::spawn(async move {
        while let Some(inner) = weak.upgrade() {
            if let Err(e) = api::visitors::expire_idle(&AppState(inner)).await {
                tracing::warn!("expiring idle visitors: {}", e.detail);
            }
            tokio::time::sleep(std::time::Duration::from_secs(600)).await;
        }
    });
    Ok((api::router(state.clone()), state))
}

/// Serves until Ctrl-C.
pub async fn serve(config: ServeConfig) -> Result<(), error::ApiError> {
    let addr = config.addr;
    let (app, _state) = build(config).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| error::ApiError::internal(format!("binding {addr}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| error::ApiError::internal(e.to_string()))?;
    // The line tests and scripts wait for.
    println!("pal serve: listening on http://{local}");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .map_err(|e| error::ApiError::internal(e.to_string()))
}

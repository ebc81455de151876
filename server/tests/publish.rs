//! What a model's open bundle publishes: the maps, prototypes and stores, and no user's weights
//! unless the operator runs with `--publish-user-weights` (the weights are guarded everywhere
//! else: reading one needs the admin token). Turning the flag on or off takes effect at the
//! next start, for bundles published before too.

mod inproc;

use std::path::Path;

use axum::http::{Method, StatusCode};
use inproc::{Api, trained_model};

/// The users the current bundle lists, after checking its weights file holds as many rows.
async fn published_users(api: &Api, model: &str) -> usize {
    let (s, manifest) = api.get(&format!("/models/{model}/bundle")).await;
    assert_eq!(s, StatusCode::OK, "{manifest}");
    let rev = manifest["revision"].as_u64().unwrap();
    let path = format!("/models/{model}/files/weights.safetensors?rev={rev}");
    let (s, bytes) = api.raw(Method::GET, &path, None, false).await;
    assert_eq!(s, StatusCode::OK);
    let config: pal_core::ModelConfig = serde_json::from_value(manifest["config"].clone()).unwrap();
    let users = manifest["users"].as_array().unwrap().len();
    let w = pal_math::weights::weights_from_bytes(&config, users, &bytes, Path::new("bundle"))
        .expect("the weights file has exactly the users the manifest lists");
    assert_eq!(w.user_logits.len(), users);
    users
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_hold_no_user_weights_unless_published() {
    let api = Api::new(None).await;
    let (_, model) = trained_model(&api).await;
    assert_eq!(published_users(&api, &model).await, 0);
    // The same weights stay guarded: no token, no weights.
    let (s, _) = api
        .raw(
            Method::GET,
            &format!("/models/{model}/users/u0"),
            None,
            false,
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let Api { mut dir, .. } = api;
    for (publish, want) in [(true, 6), (false, 0)] {
        let api = Api::open(dir, None, |c| c.publish_user_weights = publish).await;
        assert_eq!(
            published_users(&api, &model).await,
            want,
            "publish {publish}"
        );
        let Api { dir: d, .. } = api;
        dir = d;
    }
}

//! A data dir from before mutable users were database rows: a model whose files hold a visitor
//! (as a job with contributions wrote them then) and an admin-set user after the learned ones
//! has them moved into `visitor_weights` and `model_users` at start, once; the model's files
//! and its bundle then hold only the users its job learned.

mod inproc;

use axum::http::{Method, StatusCode};
use inproc::{Api, parse, trained_model, visitor};
use pal_core::TrainedModel;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitors_in_model_files_move_to_rows_at_start() {
    let api = Api::new(None).await;
    let (_, model) = trained_model(&api).await;
    let (v, secret) = visitor(&api, &model, [10, 0, 0, 1]).await;
    let mdir = api.dir.path().join("models").join(&model);
    let mut m = TrainedModel::load(&mdir).unwrap();
    let revision = m.meta["revision"].as_u64().unwrap();
    let dataset_users = m.users.len();
    m.users.push(v.clone());
    m.weights.user_logits.push(vec![0.5, -0.5]);
    m.meta["trained_users"] = m.users.len().into();
    m.users.push("admin1".into());
    m.weights.user_logits.push(vec![-1.0, 1.0]);
    m.save(&mdir).unwrap();
    let Api { mut dir, .. } = api;

    for restart in 0..2 {
        let api = Api::open(dir, None, |_| {}).await;
        let w = api.state.db.visitor_weights(&model, &v).await.unwrap();
        let w = w.expect("moved into the database");
        assert_eq!((w.revision, w.logits.clone()), (1, vec![0.5, -0.5]));
        let admin = api.state.db.model_user(&model, "admin1").await.unwrap();
        let admin = admin.expect("the admin's user moved into the database");
        assert_eq!((admin.revision, admin.logits), (1, vec![-1.0, 1.0]));
        let m = TrainedModel::load(&mdir).unwrap();
        assert_eq!(m.users.len(), dataset_users, "restart {restart}");
        assert!(!m.users.contains(&v));
        assert_eq!(m.meta["revision"].as_u64(), Some(revision + 1), "once");
        assert_eq!(m.meta["trained_users"].as_u64(), Some(dataset_users as u64));
        let (s, manifest) = api.get(&format!("/models/{model}/bundle")).await;
        assert_eq!(s, StatusCode::OK, "{manifest}");
        assert_eq!(
            manifest["revision"].as_u64(),
            Some(revision + 1),
            "{manifest}"
        );
        assert!(!manifest.to_string().contains(&v), "{manifest}");
        assert!(!manifest.to_string().contains("admin1"), "{manifest}");
        let (s, got) = api.get(&format!("/models/{model}/users/admin1")).await;
        assert_eq!(
            (s, got["revision"].as_u64()),
            (StatusCode::OK, Some(1)),
            "{got}"
        );
        // The visitor reads their weights with their own secret, as before the upgrade.
        let auth = format!("Bearer {secret}");
        let (s, _, body) = api
            .request(
                Method::GET,
                &format!("/models/{model}/users/{v}"),
                None,
                &[("authorization", auth.as_str())],
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{}", parse(&body));
        let Api { dir: d, .. } = api;
        dir = d;
    }
}

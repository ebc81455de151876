//! Many clients at once, on SQLite and (when `PAL_TEST_POSTGRES_URL` is set; CI requires it)
//! Postgres: every request below is spawned on the runtime before any is awaited, so they
//! reach the database together. Different visitors all succeed, one `If-Match` lets exactly one
//! writer through, "forget me" racing a visitor's writes leaves nothing behind (and no later
//! training job sees them), admin-set users are rows whose writes leave the model alone, and
//! racing writers never pass a limit.

mod inproc;

use std::net::IpAddr;

use axum::http::{Method, StatusCode};
use inproc::{Api, TOKEN, parse, send, trained_model, visitor, wait_for_job};
use serde_json::{Value, json};

/// One request with a bearer credential and extra headers, spawned at once; `(status, body)`.
fn spawn(
    api: &Api,
    method: Method,
    path: String,
    body: Option<Value>,
    bearer: &str,
    if_match: Option<&str>,
) -> tokio::task::JoinHandle<(StatusCode, Value)> {
    let app = api.app.clone();
    let auth = format!("Bearer {bearer}");
    let if_match = if_match.map(str::to_string);
    tokio::spawn(async move {
        let mut headers = vec![("authorization", auth.as_str())];
        if let Some(tag) = &if_match {
            headers.push(("if-match", tag.as_str()));
        }
        let (s, _, b) = send(app, method, &path, body.map(|v| v.to_string()), &headers).await;
        (s, parse(&b))
    })
}

/// Of writers sending one `If-Match`, the answer of the only one that got 200; every other
/// answer is a 412.
fn the_one_200(answers: &[(StatusCode, Value)]) -> &Value {
    let ok: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::OK)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(ok.len(), 1, "{answers:?}");
    for (s, b) in answers {
        assert!(
            *s == StatusCode::OK || *s == StatusCode::PRECONDITION_FAILED,
            "{s} {b}"
        );
    }
    ok[0]
}

/// One request, sent and awaited.
async fn one(
    api: &Api,
    method: Method,
    path: String,
    body: Option<Value>,
    bearer: &str,
    if_match: Option<&str>,
) -> (StatusCode, Value) {
    let task = spawn(api, method, path, body, bearer, if_match);
    task.await.unwrap()
}

async fn all(tasks: Vec<tokio::task::JoinHandle<(StatusCode, Value)>>) -> Vec<(StatusCode, Value)> {
    let mut out = vec![];
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn ip(n: usize) -> IpAddr {
    IpAddr::from([10, 1, (n / 250) as u8, (n % 250) as u8 + 1])
}

/// Weights of a visitor `n` of 50 on a K = 2 model.
fn weights(n: usize) -> Value {
    let a = (n as f64 + 1.0) / 52.0;
    json!({"weights": [a, 1.0 - a]})
}

fn stored_weight(v: &Value) -> f64 {
    v["weights"][0].as_f64().unwrap()
}

/// 50 different visitors write their weights at the same moment, then 20 contribute at once:
/// every request succeeds and every write is stored.
async fn different_visitors(api: &Api, model: &str) {
    let mut vs = vec![];
    for n in 0..50 {
        vs.push(visitor(api, model, ip(n)).await);
    }
    let tasks = vs
        .iter()
        .enumerate()
        .map(|(n, (u, s))| {
            let path = format!("/models/{model}/users/{u}");
            spawn(api, Method::PUT, path, Some(weights(n)), s, None)
        })
        .collect();
    for (s, b) in all(tasks).await {
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    for (n, (u, _)) in vs.iter().enumerate() {
        let w = api
            .state
            .db
            .visitor_weights(model, u)
            .await
            .unwrap()
            .unwrap();
        let want = weights(n)["weights"][0].as_f64().unwrap();
        assert!((softmax0(&w.logits) - want).abs() < 1e-5, "visitor {n}");
    }
    let pair = json!({"pairs": [{"prompt": "p0", "left": "i1", "right": "i2", "label": 1}]});
    let tasks = vs[..20]
        .iter()
        .map(|(u, s)| {
            let path = format!("/models/{model}/users/{u}/comparisons");
            spawn(api, Method::POST, path, Some(pair.clone()), s, None)
        })
        .collect();
    for (s, b) in all(tasks).await {
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    for (u, _) in &vs[..20] {
        assert_eq!(api.state.db.contributions(model, u).await.unwrap().len(), 1);
    }
}

fn softmax0(logits: &[f32]) -> f64 {
    let e: Vec<f64> = logits.iter().map(|l| f64::from(*l).exp()).collect();
    e[0] / e.iter().sum::<f64>()
}

/// 50 PUTs of one visitor with one `If-Match`: exactly one 200, 49 × 412, and what is stored
/// is the 200's; over three rounds. A weak ETag never matches.
async fn one_if_match(api: &Api, model: &str) {
    let (u, secret) = visitor(api, model, ip(900)).await;
    let path = format!("/models/{model}/users/{u}");
    let (s, _) = one(
        api,
        Method::PUT,
        path.clone(),
        Some(weights(0)),
        &secret,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    for round in 1..=3u64 {
        let tag = format!("\"r{round}\"");
        let tasks = (0..50)
            .map(|n| {
                let body = Some(weights(n));
                spawn(api, Method::PUT, path.clone(), body, &secret, Some(&tag))
            })
            .collect();
        let answers = all(tasks).await;
        let ok = the_one_200(&answers);
        assert_eq!(ok["revision"], round + 1);
        let stored = api
            .state
            .db
            .visitor_weights(model, &u)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.revision, round + 1);
        assert!((softmax0(&stored.logits) - stored_weight(ok)).abs() < 1e-5);
    }
    let weak = Some("W/\"r4\"");
    let (s, b) = one(api, Method::PUT, path, Some(weights(1)), &secret, weak).await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED, "{b}");
}

/// "Forget me" racing 40 writes of the same visitor (weights and contributions) leaves no row
/// of theirs; a training job with contributions afterwards has none of them.
async fn forget_me_races(api: &Api, ds: &str, model: &str) {
    let (keeper, ks) = visitor(api, model, ip(950)).await;
    let pair = |n: usize| {
        json!({"pairs": [{"prompt": "p0", "left": format!("i{}", n % 9 + 1),
            "right": format!("i{}", n % 9 + 10), "label": 1}]})
    };
    let kpath = format!("/models/{model}/users/{keeper}/comparisons");
    let (s, b) = one(api, Method::POST, kpath, Some(pair(0)), &ks, None).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let mut forgotten = vec![];
    for round in 0..10 {
        let (u, secret) = visitor(api, model, ip(1000 + round)).await;
        let upath = format!("/models/{model}/users/{u}");
        let mut tasks = vec![];
        for n in 0..40 {
            if n == 20 {
                tasks.push(spawn(
                    api,
                    Method::DELETE,
                    upath.clone(),
                    None,
                    &secret,
                    None,
                ));
            }
            tasks.push(if n % 2 == 0 {
                spawn(
                    api,
                    Method::PUT,
                    upath.clone(),
                    Some(weights(n)),
                    &secret,
                    None,
                )
            } else {
                let cpath = format!("{upath}/comparisons");
                spawn(api, Method::POST, cpath, Some(pair(n)), &secret, None)
            });
        }
        for (s, b) in all(tasks).await {
            assert!(
                s.is_success() || [404, 401, 403].contains(&s.as_u16()),
                "round {round}: {s} {b}"
            );
        }
        assert_eq!(
            api.state.db.visitor_rows(&u).await.unwrap(),
            0,
            "round {round}"
        );
        let db = &api.state.db;
        let counted = db.count_visitors().await.unwrap();
        assert_eq!(
            db.kept_visitor_count().await.unwrap(),
            counted,
            "round {round}"
        );
        forgotten.push(u);
    }
    let spec = json!({"dataset": ds, "model": {"variant": "b", "k": 2, "d": 4, "layers": 1},
        "train": {"epochs": 3, "batch_size": 32}, "include_contributions": true});
    let (s, job) = api.post("/jobs", spec).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let job = wait_for_job(api, job["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let new_model = job["model_id"].as_str().unwrap();
    let db = &api.state.db;
    for u in &forgotten {
        assert_eq!(db.visitor_rows(u).await.unwrap(), 0);
        assert!(db.visitor_weights(new_model, u).await.unwrap().is_none());
    }
    assert!(
        db.visitor_weights(new_model, &keeper)
            .await
            .unwrap()
            .is_some()
    );
    let (_, bundle) = api.get(&format!("/models/{new_model}/bundle")).await;
    assert!(!bundle.to_string().contains("visitor-"), "{bundle}");
}

/// Racing contributions of one visitor never pass the per-visitor limit (100 here).
async fn contribution_limit(api: &Api, model: &str) {
    let (u, secret) = visitor(api, model, ip(1100)).await;
    let pairs: Vec<Value> = (0..30)
        .map(|n| json!({"prompt": "p0", "left": format!("i{}", n % 9 + 1), "right": "i12", "label": 0}))
        .collect();
    let path = format!("/models/{model}/users/{u}/comparisons");
    let tasks = (0..10)
        .map(|_| {
            let body = Some(json!({"pairs": pairs}));
            spawn(api, Method::POST, path.clone(), body, &secret, None)
        })
        .collect();
    let answers = all(tasks).await;
    let created = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    for (s, b) in &answers {
        assert!(
            *s == StatusCode::CREATED || *s == StatusCode::UNPROCESSABLE_ENTITY,
            "{s} {b}"
        );
    }
    assert_eq!(created, 3, "{answers:?}");
    assert_eq!(
        api.state.db.contributions(model, &u).await.unwrap().len(),
        90
    );
}

/// A job with contributions counts the contributing visitors against `--max-users` at
/// submission: 6 dataset users + 3 contributing visitors over a limit of 8 is refused.
async fn max_users(api: &Api, ds: &str, model: &str) {
    let pair = json!({"pairs": [{"prompt": "p0", "left": "i3", "right": "i4", "label": 1}]});
    let mut tasks = vec![];
    for n in 0..3 {
        let (u, s) = visitor(api, model, ip(1200 + n)).await;
        let path = format!("/models/{model}/users/{u}/comparisons");
        tasks.push(spawn(api, Method::POST, path, Some(pair.clone()), &s, None));
    }
    for (s, b) in all(tasks).await {
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    let spec = json!({"dataset": ds, "model": {"variant": "b", "k": 2, "d": 4, "layers": 1},
        "train": {"epochs": 3, "batch_size": 32}, "include_contributions": true});
    let (s, e) = api.post("/jobs", spec).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert!(
        e["detail"]
            .as_str()
            .unwrap()
            .contains("include_contributions"),
        "{e}"
    );
}

/// Admin-set users are rows: 50 different users written at once all land; 50 writers with
/// one `If-Match` let exactly one through; no write reloads the model or touches its files or
/// bundle; racing creations stop exactly at `max_users` (6 learned users + 50 + 1 + 3 here).
async fn admin_users(api: &Api, model: &str) {
    let loaded = api.state.model(model).await.unwrap();
    let files = std::fs::read(api.dir.path().join("models").join(model).join("model.json"));
    let bundle_before = api.get(&format!("/models/{model}/bundle")).await.1;
    let tasks = (0..50)
        .map(|n| {
            let path = format!("/models/{model}/users/admin{n}");
            spawn(api, Method::PUT, path, Some(weights(n)), TOKEN, None)
        })
        .collect();
    for (s, b) in all(tasks).await {
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    let path = format!("/models/{model}/users/shared");
    let (s, b) = one(
        api,
        Method::PUT,
        path.clone(),
        Some(weights(0)),
        TOKEN,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let tasks = (0..50)
        .map(|n| {
            spawn(
                api,
                Method::PUT,
                path.clone(),
                Some(weights(n)),
                TOKEN,
                Some("\"r1\""),
            )
        })
        .collect();
    let answers = all(tasks).await;
    let ok = the_one_200(&answers);
    let stored = api
        .state
        .db
        .model_user(model, "shared")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.revision, 2);
    assert!((softmax0(&stored.logits) - stored_weight(ok)).abs() < 1e-5);
    // Nothing of the model changed: same loaded copy, same files, same bundle.
    let now = api.state.model(model).await.unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&loaded, &now),
        "a user write reloaded the model"
    );
    let after = std::fs::read(api.dir.path().join("models").join(model).join("model.json"));
    assert_eq!(
        files.unwrap(),
        after.unwrap(),
        "a user write rewrote the model's files"
    );
    assert_eq!(
        bundle_before,
        api.get(&format!("/models/{model}/bundle")).await.1
    );
    // 6 learned + 51 stored; the limit is 60: of 20 racing creations exactly 3 land.
    let tasks = (0..20)
        .map(|n| {
            let path = format!("/models/{model}/users/late{n}");
            spawn(api, Method::PUT, path, Some(weights(n)), TOKEN, None)
        })
        .collect();
    let answers = all(tasks).await;
    let created = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    assert_eq!(created, 3, "{answers:?}");
    assert_eq!(api.state.db.count_model_users(model).await.unwrap(), 54);
    let (_, info) = api.get(&format!("/models/{model}")).await;
    assert_eq!(info["users"], 60, "{info}");
}

async fn scenarios(url: Option<String>) {
    let api = Api::with(url.clone(), |c| {
        c.limits.visitors_per_minute = 10_000;
        c.limits.max_contributions = 100;
    })
    .await;
    let (ds, model) = trained_model(&api).await;
    different_visitors(&api, &model).await;
    one_if_match(&api, &model).await;
    forget_me_races(&api, &ds, &model).await;
    contribution_limit(&api, &model).await;
    let (_, h) = api.get("/health").await;
    assert_eq!(h["status"], "ok", "{h}");
    let _ = TOKEN;
}

async fn limits(url: Option<String>) {
    let api_url = url.clone();
    let api = Api::with(url, |c| {
        c.limits.visitors_per_minute = 10_000;
        c.limits.max_users = 8;
    })
    .await;
    let (ds, model) = trained_model(&api).await;
    max_users(&api, &ds, &model).await;
    let api = Api::with(api_url, |c| c.limits.max_users = 60).await;
    let (_, model) = trained_model(&api).await;
    admin_users(&api, &model).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_on_sqlite() {
    scenarios(None).await;
    limits(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_on_postgres() {
    for scenario in 0..2 {
        let Some((url, base)) = inproc::fresh_postgres().await else {
            return;
        };
        match scenario {
            0 => scenarios(Some(url.clone())).await,
            _ => limits(Some(url.clone())).await,
        }
        inproc::drop_postgres(&url, &base).await;
    }
}

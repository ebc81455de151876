//! Visitors (issue #16): account-less users with their own secret, on SQLite and (when
//! `PAL_TEST_POSTGRES_URL` is set; CI requires it) Postgres. Secrets are checked (401 without,
//! 403 with another's), weights and contributions stay with their visitor, bad input is a JSON
//! 4xx that stores nothing, creation is rate-limited per address, "forget me" deletes
//! everything, and a training job includes contributions only when asked.

mod inproc;

use axum::http::{Method, StatusCode};
use inproc::{Api, TOKEN, assert_err, new_visitor, trained_model, visitor, wait_for_job};
use serde_json::{Value, json};

/// Secrets, weights, bad input and "forget me".
async fn secrets_and_weights(url: Option<String>) {
    let api = Api::new(url).await;
    let (ds, model) = trained_model(&api).await;
    let (a, sa) = visitor(&api, &model, [10, 0, 0, 1]).await;
    let (b, sb) = visitor(&api, &model, [10, 0, 0, 1]).await;
    assert_ne!(a, b);
    let stored = api.state.db.visitor(&a).await.unwrap().unwrap();
    assert!(
        !stored.secret_hash.contains(&sa) && !stored.salt.contains(&sa),
        "only a salted hash is stored"
    );
    let ua = format!("/models/{model}/users/{a}");
    let w = json!({"weights": [0.8, 0.2]});

    // Missing credential → 401, another visitor's → 403, own → 404 until saved.
    assert_err(
        api.with_bearer(Method::GET, &ua, None, None).await,
        StatusCode::UNAUTHORIZED,
        "Bearer",
    );
    assert_err(
        api.with_bearer(Method::PUT, &ua, Some(w.clone()), None)
            .await,
        StatusCode::UNAUTHORIZED,
        "Bearer",
    );
    assert_err(
        api.with_bearer(Method::GET, &ua, None, Some(&sb)).await,
        StatusCode::FORBIDDEN,
        "not user",
    );
    assert_err(
        api.with_bearer(Method::PUT, &ua, Some(w.clone()), Some(&sb))
            .await,
        StatusCode::FORBIDDEN,
        "not user",
    );
    assert_err(
        api.with_bearer(Method::GET, &ua, None, Some(&sa)).await,
        StatusCode::NOT_FOUND,
        "no weights",
    );
    // Own secret: saved and read back; the admin token may read too.
    let (s, put) = api
        .with_bearer(Method::PUT, &ua, Some(w.clone()), Some(&sa))
        .await;
    assert_eq!(s, StatusCode::OK, "{put}");
    for cred in [sa.as_str(), TOKEN] {
        let (s, got) = api.with_bearer(Method::GET, &ua, None, Some(cred)).await;
        assert_eq!(s, StatusCode::OK, "{got}");
        let got: Vec<f32> = serde_json::from_value(got["weights"].clone()).unwrap();
        assert!((got[0] - 0.8).abs() < 1e-5, "{got:?}");
    }
    // Bad weights: 422 naming the field, nothing stored.
    for bad in [
        json!({"weights": [0.5, "NaN"]}),
        json!({"weights": [1.0]}),
        json!({"weights": [-0.5, 1.5]}),
        json!({"weights": [0.5, 0.5], "extra": 1}),
    ] {
        let (s, e) = api
            .with_bearer(Method::PUT, &ua, Some(bad.clone()), Some(&sa))
            .await;
        assert!(s.is_client_error(), "{bad} → {s} {e}");
        assert!(e["error"].is_string(), "{e}");
    }
    let (_, got) = api.with_bearer(Method::GET, &ua, None, Some(&sa)).await;
    assert_eq!(got["revision"], 1, "{got}");
    // A stale If-Match: 412, nothing stored.
    let (s, _, _) = api
        .request(
            Method::PUT,
            &ua,
            Some(json!({"weights": [0.1, 0.9]}).to_string()),
            &[
                ("authorization", &format!("Bearer {sa}")),
                ("if-match", "\"r7\""),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED);
    // Visitors are never in the model's users or bundle.
    let (_, users) = api.get(&format!("/models/{model}/users")).await;
    assert!(!users.to_string().contains(&a), "{users}");
    let (_, manifest) = api.get(&format!("/models/{model}/bundle")).await;
    assert!(!manifest.to_string().contains(&a));

    // Unknown users: 404 for the admin, whatever the id looks like; nothing created.
    for unknown in ["nobody", "visitor-0000"] {
        assert_err(
            api.get(&format!("/models/{model}/users/{unknown}")).await,
            StatusCode::NOT_FOUND,
            unknown,
        );
    }
    assert_err(
        api.with_bearer(
            Method::GET,
            &format!("/models/{model}/users/nobody/comparisons"),
            None,
            Some(&sa),
        )
        .await,
        StatusCode::NOT_FOUND,
        "nobody",
    );
    // A visitor id that names nobody answers exactly as an existing visitor does to a missing
    // or wrong secret (no answer confirms which ids exist).
    let ub = format!("/models/{model}/users/{b}");
    for path in ["", "/comparisons"] {
        for cred in [None, Some(sa.as_str())] {
            let real = api
                .with_bearer(Method::GET, &format!("{ub}{path}"), None, cred)
                .await;
            let fake = format!("/models/{model}/users/visitor-0000{path}");
            let fake = api.with_bearer(Method::GET, &fake, None, cred).await;
            assert_eq!(real.0, fake.0, "{} / {}", real.1, fake.1);
            assert!([401, 403].contains(&real.0.as_u16()), "{}", real.1);
            let real_text = real.1.to_string().replace(&b, "ID");
            assert_eq!(real_text, fake.1.to_string().replace("visitor-0000", "ID"));
        }
    }
    // Dataset users stay admin-only: reading, listing and ranking by user id.
    assert_err(
        api.with_bearer(
            Method::GET,
            &format!("/models/{model}/users/u0"),
            None,
            None,
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "Bearer",
    );
    assert_err(
        api.with_bearer(
            Method::GET,
            &format!("/models/{model}/users/u0"),
            None,
            Some(&sa),
        )
        .await,
        StatusCode::FORBIDDEN,
        "admin",
    );
    assert_err(
        api.with_bearer(Method::GET, &format!("/models/{model}/users"), None, None)
            .await,
        StatusCode::UNAUTHORIZED,
        "Bearer",
    );
    let rank = json!({"model": model, "user": "u0", "prompt": "p0", "k": 3});
    assert_err(
        api.with_bearer(Method::POST, "/rank", Some(rank.clone()), None)
            .await,
        StatusCode::UNAUTHORIZED,
        "Bearer",
    );
    assert_eq!(api.post("/rank", rank).await.0, StatusCode::OK);
    let open = json!({"model": model, "weights": [0.5, 0.5], "prompt": "p0", "k": 3});
    assert_eq!(
        api.with_bearer(Method::POST, "/rank", Some(open), None)
            .await
            .0,
        StatusCode::OK
    );
    // A visitor's secret cannot write a dataset user; the visitor prefix is reserved.
    assert_err(
        api.with_bearer(
            Method::PUT,
            &format!("/models/{model}/users/u0"),
            Some(w.clone()),
            Some(&sa),
        )
        .await,
        StatusCode::FORBIDDEN,
        "admin",
    );
    assert_err(
        api.call(
            Method::PUT,
            &format!("/models/{model}/users/visitor-0abc"),
            Some(w.clone()),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "reserved for visitors",
    );

    // Contributions: checked whole before any is stored, and only the visitor's own.
    let cpath = format!("{ua}/comparisons");
    let good = json!({"pairs": [{"prompt": "p0", "left": "i1", "right": "i2", "label": 1}]});
    for (bad, field) in [
        (json!({"pairs": []}), "pairs"),
        (
            json!({"pairs": [{"prompt": "p0", "left": "i1", "right": "i2", "label": 1},
                             {"prompt": "p0", "left": "nope", "right": "i2", "label": 1}]}),
            "pairs[1].left",
        ),
        (
            json!({"pairs": [{"prompt": "p9", "left": "i1", "right": "i2", "label": 1}]}),
            "pairs[0].prompt",
        ),
        (
            json!({"pairs": [{"prompt": "p0", "left": "i1", "right": "i1", "label": 1}]}),
            "pairs[0].right",
        ),
        (
            json!({"pairs": [{"prompt": "p0", "left": "i1", "right": "i2", "label": 3}]}),
            "pairs[0].label",
        ),
        (
            json!({"pairs": [{"left": "i1", "right": "i2", "label": 1}]}),
            "pairs[0].prompt",
        ),
    ] {
        assert_err(
            api.with_bearer(Method::POST, &cpath, Some(bad), Some(&sa))
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            field,
        );
    }
    assert_err(
        api.with_bearer(Method::POST, &cpath, Some(good.clone()), Some(&sb))
            .await,
        StatusCode::FORBIDDEN,
        "not user",
    );
    assert_err(
        api.with_bearer(Method::POST, &cpath, Some(good.clone()), None)
            .await,
        StatusCode::UNAUTHORIZED,
        "Bearer",
    );
    let (_, none) = api.with_bearer(Method::GET, &cpath, None, Some(&sa)).await;
    assert_eq!(
        none["pairs"],
        json!([]),
        "nothing stored by refused requests"
    );
    let (s, c) = api
        .with_bearer(Method::POST, &cpath, Some(good), Some(&sa))
        .await;
    assert_eq!(
        (s, c["stored"].as_u64()),
        (StatusCode::CREATED, Some(1)),
        "{c}"
    );

    // Forget me: only with the visitor's secret; then nothing of them is left.
    assert_err(
        api.with_bearer(Method::DELETE, &ua, None, Some(&sb)).await,
        StatusCode::FORBIDDEN,
        "not user",
    );
    assert_err(
        api.with_bearer(
            Method::DELETE,
            &format!("/models/{model}/users/u0"),
            None,
            None,
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "Bearer",
    );
    let (s, _) = api.with_bearer(Method::DELETE, &ua, None, Some(&sa)).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(api.state.db.visitor(&a).await.unwrap().is_none());
    assert!(
        api.state
            .db
            .visitor_weights(&model, &a)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        api.state
            .db
            .contributions(&model, &a)
            .await
            .unwrap()
            .is_empty()
    );
    let (s, _) = api.with_bearer(Method::GET, &ua, None, Some(&sa)).await;
    assert!(
        s.is_client_error(),
        "a forgotten visitor's secret opens nothing: {s}"
    );
    // B is untouched.
    let ub = format!("/models/{model}/users/{b}");
    assert_eq!(
        api.with_bearer(Method::PUT, &ub, Some(w), Some(&sb))
            .await
            .0,
        StatusCode::OK
    );
    let (_, h) = api.get("/health").await;
    assert_eq!(h["status"], "ok", "{h}");
    let _ = ds;
}

/// A flood of visitor creation is refused per address with `Retry-After`; other addresses
/// and the rest of the server are unaffected.
async fn rate_limit(url: Option<String>) {
    let api = Api::with(url, |c| c.limits.visitors_per_minute = 3).await;
    let (_, model) = trained_model(&api).await;
    for _ in 0..3 {
        assert_eq!(
            new_visitor(&api, &model, [10, 0, 0, 7]).await.0,
            StatusCode::CREATED
        );
    }
    let before = api.state.db.count_visitors().await.unwrap();
    for _ in 0..20 {
        let (s, e, retry) = new_visitor(&api, &model, [10, 0, 0, 7]).await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{e}");
        assert!(e["detail"].as_str().unwrap().contains("retry in"), "{e}");
        let secs: u64 = retry.expect("Retry-After").parse().unwrap();
        assert!((1..=20).contains(&secs), "{secs}");
    }
    assert_eq!(
        api.state.db.count_visitors().await.unwrap(),
        before,
        "nothing stored"
    );
    assert_eq!(
        new_visitor(&api, &model, [10, 0, 0, 8]).await.0,
        StatusCode::CREATED
    );
    // Unknown model: 404 and nothing stored.
    let (s, e, _) = new_visitor(&api, "nope", [10, 0, 0, 9]).await;
    assert_err((s, e), StatusCode::NOT_FOUND, "nope");
    // One IPv6 /64 is one network: its hosts share the bucket; another /64 has its own.
    let host = |net: u16, last: u16| std::net::IpAddr::from([0x2001, 0xdb8, 0, net, 0, 0, 0, last]);
    for last in 1..=3 {
        assert_eq!(
            new_visitor(&api, &model, host(1, last)).await.0,
            StatusCode::CREATED
        );
    }
    let (s, e, _) = new_visitor(&api, &model, host(1, 99)).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{e}");
    assert_eq!(
        new_visitor(&api, &model, host(2, 1)).await.0,
        StatusCode::CREATED
    );
    let (_, h) = api.get("/health").await;
    assert_eq!(h["status"], "ok", "{h}");
}

/// One network holds at most `--max-visitors-per-network` live visitors (429 beyond, others
/// unaffected); idle visitors expire with all their data, and a full server expires the idle
/// ones before it refuses anybody.
async fn caps_and_expiry(url: Option<String>) {
    let api = Api::with(url, |c| {
        c.limits.visitors_per_minute = 1000;
        c.limits.max_visitors_per_network = 2;
        c.limits.max_visitors = 4;
        c.limits.visitor_ttl_days = 1;
    })
    .await;
    let (_, model) = trained_model(&api).await;
    let (a, sa) = visitor(&api, &model, [10, 0, 1, 1]).await;
    visitor(&api, &model, [10, 0, 1, 1]).await;
    let (s, e, retry) = new_visitor(&api, &model, [10, 0, 1, 1]).await;
    assert_err((s, e), StatusCode::TOO_MANY_REQUESTS, "share of 2 visitors");
    assert!(retry.is_some());
    visitor(&api, &model, [10, 0, 1, 2]).await;
    visitor(&api, &model, [10, 0, 1, 3]).await;
    let (s, e, _) = new_visitor(&api, &model, [10, 0, 1, 4]).await;
    assert_err(
        (s, e),
        StatusCode::SERVICE_UNAVAILABLE,
        "limit of 4 visitors",
    );
    // A's data, then everyone idle for more than a day (as seen from two days ahead) expires.
    let ua = format!("/models/{model}/users/{a}");
    let w = json!({"weights": [0.3, 0.7]});
    assert_eq!(
        api.with_bearer(Method::PUT, &ua, Some(w), Some(&sa))
            .await
            .0,
        StatusCode::OK
    );
    let db = &api.state.db;
    assert!(db.visitor_rows(&a).await.unwrap() > 0);
    let later = pal_server::db::now() + 2 * 86_400_000;
    assert_eq!(db.expire_visitors(later - 86_400_000).await.unwrap(), 4);
    assert_eq!(db.visitor_rows(&a).await.unwrap(), 0);
    assert_eq!(db.count_visitors().await.unwrap(), 0);
    assert_eq!(
        new_visitor(&api, &model, [10, 0, 1, 4]).await.0,
        StatusCode::CREATED
    );
}

/// A training job includes contributions only with `include_contributions`, and then the
/// contributing visitor is a seen user of the new model, readable with their own secret.
async fn contributions_train(url: Option<String>) {
    let api = Api::new(url).await;
    let (ds, model) = trained_model(&api).await;
    let (a, sa) = visitor(&api, &model, [10, 0, 0, 1]).await;
    let (b, _sb) = visitor(&api, &model, [10, 0, 0, 1]).await;
    let pairs: Vec<Value> = (0..12)
        .map(|n| json!({"prompt": "p0", "left": format!("i{}", n + 5), "right": format!("i{n}"), "label": 1}))
        .collect();
    let cpath = format!("/models/{model}/users/{a}/comparisons");
    let (s, c) = api
        .with_bearer(
            Method::POST,
            &cpath,
            Some(json!({"pairs": pairs})),
            Some(&sa),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let train = |include: bool| {
        json!({"dataset": ds, "model": {"variant": "b", "k": 2, "d": 4, "layers": 1},
            "train": {"epochs": 5, "batch_size": 32}, "include_contributions": include})
    };
    let mut users = vec![];
    for include in [false, true] {
        let (s, job) = api.post("/jobs", train(include)).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{job}");
        let job = wait_for_job(&api, job["id"].as_str().unwrap()).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        let id = job["model_id"].as_str().unwrap().to_string();
        let (_, list) = api.get(&format!("/models/{id}/users")).await;
        let ids: Vec<String> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_string())
            .collect();
        users.push((id, ids));
    }
    // A visitor is never among a model's own users (files, bundle, the admin's list): the
    // weights the job learned for them are a database row of the new model, revision 1.
    for (id, ids) in &users {
        assert!(!ids.contains(&a) && !ids.contains(&b), "{ids:?}");
        let (s, manifest) = api.get(&format!("/models/{id}/bundle")).await;
        assert_eq!(s, StatusCode::OK, "{manifest}");
        assert!(!manifest.to_string().contains("visitor-"), "{manifest}");
    }
    let db = &api.state.db;
    assert!(db.visitor_weights(&users[0].0, &a).await.unwrap().is_none());
    let learned = db.visitor_weights(&users[1].0, &a).await.unwrap();
    assert_eq!(
        learned.map(|w| w.revision),
        Some(1),
        "with include_contributions"
    );
    assert!(
        db.visitor_weights(&users[1].0, &b).await.unwrap().is_none(),
        "B contributed nothing"
    );
    // The visitor reads the weights the new model learned for them with their own secret.
    let (s, got) = api
        .with_bearer(
            Method::GET,
            &format!("/models/{}/users/{a}", users[1].0),
            None,
            Some(&sa),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitors_on_sqlite() {
    secrets_and_weights(None).await;
    rate_limit(None).await;
    contributions_train(None).await;
    caps_and_expiry(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitors_on_postgres() {
    for scenario in 0..4 {
        let Some((url, base)) = inproc::fresh_postgres().await else {
            return;
        };
        let u = Some(url.clone());
        match scenario {
            0 => secrets_and_weights(u).await,
            1 => rate_limit(u).await,
            2 => contributions_train(u).await,
            _ => caps_and_expiry(u).await,
        }
        inproc::drop_postgres(&url, &base).await;
    }
}

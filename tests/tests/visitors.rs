//! Two real visitors in two browser profiles (issue #16), against `pal serve --token`: each
//! personalises as a member of a different group and saves under their own secret; a reload
//! restores each one's weights; B's secret is refused on A's user; with consent off nothing of
//! B's answers reaches the server, with it on A's answers are stored and a training job with
//! `include_contributions` makes A a seen user of the next model (their learned weights a
//! database row, not in the model's files or bundle; the app offers that model);
//! "forget me" deletes A on the server and in the browser.

mod common;

use common::browser::{
    answer_as, argmax, chromedriver, open_app, prerequisites, serve, session, shown_weights, synth,
    train, wait_text,
};
use common::{call_as, json_as};
use fantoccini::{Client, Locator};
use serde_json::{Value, json};

const ADMIN: &str = "admin-token-for-the-test";
const ANSWERS: usize = 8;

/// The `{user, secret}` this profile keeps in `localStorage`.
async fn kept_visitor(c: &Client) -> Option<(String, String)> {
    let v = c
        .execute("return localStorage.getItem('pal.visitor');", vec![])
        .await
        .unwrap();
    let v: Value = serde_json::from_str(v.as_str()?).unwrap();
    Some((
        v["user"].as_str().unwrap().to_string(),
        v["secret"].as_str().unwrap().to_string(),
    ))
}

/// Personalises a fresh profile as a member of `group`, ticks consent if asked, and saves.
async fn personalise(
    c: &Client,
    addr: &str,
    model: &str,
    data: &std::path::Path,
    group: usize,
    consent: bool,
) -> Vec<f32> {
    open_app(c, &format!("http://{addr}/?model={model}&cpu=1")).await;
    let truth_w: Vec<f32> = (0..3).map(|k| f32::from(k == group)).collect();
    answer_as(c, data, &truth_w, 0, ANSWERS).await;
    let panel = wait_text(c, "#personalise", |t| {
        t.contains(&format!("{ANSWERS} answers"))
    })
    .await;
    if consent {
        c.find(Locator::Id("consent"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }
    c.find(Locator::Id("save"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let status = wait_text(c, "#status", |t| {
        t.starts_with("saved") || t.contains("failed")
    })
    .await;
    assert!(
        status.starts_with("saved your weights as visitor-"),
        "{status}"
    );
    assert_eq!(status.contains("answers contributed"), consent, "{status}");
    shown_weights(&panel, 3)
}

fn weights_of(v: &Value) -> Vec<f32> {
    serde_json::from_value(v["weights"].clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_visitors_keep_their_own_weights_and_consent_decides_what_is_sent() {
    let Some((dist, driver)) = prerequisites() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = synth(tmp.path());
    let (addr, _server) = serve(
        &dist,
        &tmp.path().join("store"),
        tmp.path(),
        &["--token", ADMIN],
    );
    let admin = Some(ADMIN);
    let ds = json_as(
        &addr,
        "POST",
        "/datasets",
        Some(&json!({"name": "synth", "path": data})),
        admin,
    );
    let spec = |include: bool| {
        json!({"dataset": ds["id"], "model": {"variant": "b", "layers": 1},
            "train": {"epochs": 300, "weight_decay": {"item_map": 0.3, "head": 0.3, "users": 0.0, "scale": 0.0}},
            "include_contributions": include})
    };
    let model = train(&addr, &spec(false), admin);
    let (port, _driver) = chromedriver(&driver);
    let a = session(port, &tmp.path().join("profile-a")).await;
    let b = session(port, &tmp.path().join("profile-b")).await;

    // 1. Two visitors of different groups, A consenting, B not.
    let (ga, gb) = (0, 2);
    let shown_a = personalise(&a, &addr, &model, &data, ga, true).await;
    let shown_b = personalise(&b, &addr, &model, &data, gb, false).await;
    let (ua, sa) = kept_visitor(&a).await.expect("A keeps a visitor");
    let (ub, sb) = kept_visitor(&b).await.expect("B keeps a visitor");
    assert_ne!(ua, ub);
    let user = |u: &str| format!("/models/{model}/users/{u}");
    let saved_a = weights_of(&json_as(&addr, "GET", &user(&ua), None, Some(&sa)));
    let saved_b = weights_of(&json_as(&addr, "GET", &user(&ub), None, Some(&sb)));
    for (shown, saved) in [(&shown_a, &saved_a), (&shown_b, &saved_b)] {
        for (x, y) in shown.iter().zip(saved.iter()) {
            assert!((x - y).abs() < 0.006, "shown {shown:?} vs saved {saved:?}");
        }
    }
    // Each points to its own group, as that group's dataset member does.
    for (saved, g) in [(&saved_a, ga), (&saved_b, gb)] {
        let member = weights_of(&json_as(
            &addr,
            "GET",
            &user(&format!("user{g}")),
            None,
            admin,
        ));
        assert_eq!(
            argmax(saved),
            argmax(&member),
            "visitor {saved:?} vs member {member:?}"
        );
    }
    assert_ne!(argmax(&saved_a), argmax(&saved_b));

    // 2. Secrets: none → 401, the other visitor's → 403.
    assert_eq!(call_as(&addr, "GET", &user(&ua), None, None).0, 401);
    assert_eq!(call_as(&addr, "GET", &user(&ua), None, Some(&sb)).0, 403);
    assert_eq!(
        call_as(
            &addr,
            "PUT",
            &user(&ua),
            Some(&json!({"weights": [1, 0, 0]})),
            Some(&sb)
        )
        .0,
        403
    );

    // 3. Consent: B's answers never reached the server, A's all did.
    let sent = |u: &str, s: &str| {
        json_as(
            &addr,
            "GET",
            &format!("{}/comparisons", user(u)),
            None,
            Some(s),
        )["pairs"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(sent(&ub, &sb), 0, "consent off: nothing stored");
    assert_eq!(sent(&ua, &sa), ANSWERS, "consent on: every answer stored");

    // 4. A reload restores each profile's own answers and weights.
    for (c, saved) in [(&a, &saved_a), (&b, &saved_b)] {
        c.refresh().await.unwrap();
        let panel = wait_text(c, "#personalise", |t| {
            t.contains(&format!("{ANSWERS} answers"))
        })
        .await;
        let shown = shown_weights(&panel, 3);
        for (x, y) in shown.iter().zip(saved.iter()) {
            assert!(
                (x - y).abs() < 0.006,
                "after reload {shown:?} vs saved {saved:?}"
            );
        }
    }

    // 5. A training job with contributions: A is a seen user of the new model (their learned
    //    weights are a database row, revision 1, never in the model's files, users or bundle),
    //    B is not, and the app offers the newer model.
    let next = train(&addr, &spec(true), admin);
    let users = json_as(&addr, "GET", &format!("/models/{next}/users"), None, admin).to_string();
    assert!(!users.contains(&ua) && !users.contains(&ub), "{users}");
    let bundle = json_as(&addr, "GET", &format!("/models/{next}/bundle"), None, None).to_string();
    assert!(!bundle.contains("visitor-"), "{bundle}");
    let learned = json_as(
        &addr,
        "GET",
        &format!("/models/{next}/users/{ua}"),
        None,
        Some(&sa),
    );
    assert_eq!(learned["revision"], 1, "{learned}");
    let b_next = format!("/models/{next}/users/{ub}");
    assert_eq!(call_as(&addr, "GET", &b_next, None, Some(&sb)).0, 404);
    a.refresh().await.unwrap();
    wait_text(&a, "#newer", |t| t.contains("newer model")).await;

    // 6. Forget me: A is gone on the server and in the browser; B is untouched.
    a.find(Locator::Id("forget"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let status = wait_text(&a, "#status", |t| {
        t.starts_with("forgotten") || t.contains("failed")
    })
    .await;
    assert!(status.starts_with("forgotten"), "{status}");
    assert!(
        kept_visitor(&a).await.is_none(),
        "nothing left in A's browser"
    );
    let left = a
        .execute(
            "return Object.keys(localStorage).filter(k => k.startsWith('pal.')).length;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(left, json!(0));
    assert!(call_as(&addr, "GET", &user(&ua), None, Some(&sa)).0 >= 400);
    assert_eq!(
        call_as(
            &addr,
            "GET",
            &format!("{}/comparisons", user(&ua)),
            None,
            admin
        )
        .0,
        404
    );
    assert_eq!(call_as(&addr, "GET", &user(&ub), None, Some(&sb)).0, 200);
    wait_text(&a, "#personalise", |t| t.contains("0 answers")).await;
    a.close().await.unwrap();
    b.close().await.unwrap();
}

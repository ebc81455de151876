//! `"k": "auto"` jobs (issue #12): the server chooses K, the residual strength and the epochs by
//! cross-validation within its limits, reports each run of the search as a `select` event,
//! publishes the chosen model with the search in its metadata, keeps the finished search for a
//! rerun, resumes an interrupted search without training its scored candidates again, and can
//! be cancelled in the middle of the search.

mod inproc;

use std::time::Duration;

use axum::http::StatusCode;
use inproc::{Api, assert_err, upload, wait_for_job};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_k_chooses_within_the_limits_and_publishes_the_search() {
    let api = Api::with(None, |c| {
        c.limits.max_epochs = 6;
        c.limits.max_k = 2;
    })
    .await;
    let (s, ds) = api.post("/datasets", upload()).await;
    assert_eq!(s, StatusCode::CREATED, "{ds}");
    assert_err(
        api.post(
            "/jobs",
            json!({"dataset": ds["id"], "model": {"k": "many"}}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "auto",
    );
    let spec = json!({"dataset": ds["id"], "model": {"variant": "b", "k": "auto", "d": 4,
        "layers": 1}, "train": {"epochs": 2, "batch_size": 32, "patience": null}});
    let (s, job) = api.post("/jobs", spec).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let job = wait_for_job(&api, &id).await;
    assert_eq!(job["status"], "succeeded", "{job}");

    let model_id = job["model_id"].as_str().unwrap();
    let model =
        pal_core::TrainedModel::load(&api.dir.path().join("models").join(model_id)).unwrap();
    let sel: pal_core::select::Selection =
        serde_json::from_value(model.meta["selection"].clone()).expect("the search in meta");
    // K ∈ {1, 2} (the server's max_k), every residual strength, 3 folds: 8 candidates.
    assert_eq!(sel.candidates.len(), 8, "{sel:?}");
    assert!(sel.candidates.iter().all(|c| c.k <= 2 && c.epochs <= 6));
    let best = sel.best();
    assert_eq!(model.weights.config.k, best.k);
    assert_eq!(model.weights.config.residual, best.residual);
    // The published config is the chosen one, and the search is kept for a rerun.
    let (s, m) = api.get(&format!("/models/{model_id}")).await;
    assert_eq!(s, StatusCode::OK, "{m}");
    assert_eq!(m["config"]["k"], best.k, "{m}");
    let kept = api.dir.path().join("jobs").join(&id).join("selection.json");
    let again: pal_core::select::Selection =
        serde_json::from_slice(&std::fs::read(kept).unwrap()).unwrap();
    assert_eq!(again, sel);
    // Every scored grid candidate was kept as it came, for a resume.
    let partial = api
        .dir
        .path()
        .join("jobs")
        .join(&id)
        .join("search.partial.json");
    let kept: Vec<pal_core::select::Candidate> =
        serde_json::from_slice(&std::fs::read(partial).unwrap()).unwrap();
    assert_eq!(kept, sel.candidates);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_k_reports_its_runs_and_stops_when_cancelled() {
    let api = Api::new(None).await;
    let (_, ds) = api.post("/datasets", upload()).await;
    // Long enough (each fold up to the server's epoch limit) that the search is still running.
    let spec = json!({"dataset": ds["id"], "model": {"variant": "b", "k": "auto", "d": 4,
        "layers": 1}, "train": {"epochs": 1, "batch_size": 8}});
    let (s, job) = api.post("/jobs", spec).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let mut seen = None;
    for _ in 0..600 {
        let (_, j) = api.get(&format!("/jobs/{id}")).await;
        if j["progress"]["event"] == "select" {
            seen = Some(j["progress"].clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let p = seen.expect("a `select` progress event while the search runs");
    assert!(p["run"].as_u64().unwrap() >= 1, "{p}");
    assert!(
        p["runs"].as_u64().unwrap() >= p["run"].as_u64().unwrap(),
        "{p}"
    );
    assert!(p["what"].as_str().unwrap().contains("fold"), "{p}");
    let (s, c) = api.post(&format!("/jobs/{id}/cancel"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let job = wait_for_job(&api, &id).await;
    assert_eq!(job["status"], "cancelled", "{job}");
    assert!(job["model_id"].is_null(), "{job}");
}

/// A `"k": "auto"` job the server stopped in the middle of its search resumes it at restart:
/// the candidates the interrupted run scored (`jobs/ID/search.partial.json`) are not trained
/// again, and the search chooses among them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_search_resumes_at_restart() {
    let tune = |c: &mut pal_server::config::ServeConfig| {
        c.limits.max_epochs = 6;
        c.limits.max_k = 2;
    };
    let api = Api::with(None, tune).await;
    let (s, ds) = api.post("/datasets", upload()).await;
    assert_eq!(s, StatusCode::CREATED, "{ds}");
    let Api { dir, .. } = api;
    // What the first run had scored before the server went down: every candidate of the
    // default grid, the best (by log-loss) K = 2 with λ = 1 — numbers no training would produce.
    let grid = pal_core::select::SelectConfig::default().residuals;
    assert!(
        grid.contains(&Some(1.0)),
        "the test plants λ = 1 as the best"
    );
    let scored: Vec<pal_core::select::Candidate> = [1usize, 2]
        .iter()
        .flat_map(|&k| {
            grid.clone()
                .into_iter()
                .map(move |residual| pal_core::select::Candidate {
                    k,
                    residual,
                    layers: 1,
                    epochs: 3,
                    cv_log_loss: if k == 2 && residual == Some(1.0) {
                        0.125
                    } else {
                        0.5
                    },
                    cv_accuracy: 0.75,
                })
        })
        .collect();
    let job_dir = dir.path().join("jobs").join("resumed");
    std::fs::create_dir_all(&job_dir).unwrap();
    std::fs::write(
        job_dir.join("search.partial.json"),
        serde_json::to_vec(&scored).unwrap(),
    )
    .unwrap();
    let db_url = format!("sqlite://{}?mode=rwc", dir.path().join("pal.db").display());
    let db = pal_server::db::Db::connect(&db_url).await.unwrap();
    let now = pal_server::db::now();
    db.insert_job(&pal_server::db::JobRow {
        id: "resumed".into(),
        dataset_id: ds["id"].as_str().unwrap().into(),
        status: "running".into(),
        spec: json!({"dataset": ds["id"], "model": {"variant": "b", "k": "auto", "d": 4,
            "layers": 1}, "train": {"epochs": 2, "batch_size": 32, "patience": null}}),
        progress: None,
        error: None,
        model_id: None,
        created_at: now,
        updated_at: now,
        attempts: 1,
    })
    .await
    .unwrap();
    drop(db);

    let api = Api::open(dir, None, tune).await;
    let job = wait_for_job(&api, "resumed").await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let model = pal_core::TrainedModel::load(
        &api.dir
            .path()
            .join("models")
            .join(job["model_id"].as_str().unwrap()),
    )
    .unwrap();
    let sel: pal_core::select::Selection =
        serde_json::from_value(model.meta["selection"].clone()).unwrap();
    assert_eq!(sel.candidates, scored, "the grid was trained again");
    assert_eq!((sel.best().k, sel.best().residual), (2, Some(1.0)));
    assert_eq!(model.weights.config.k, 2);
}

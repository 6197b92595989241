//! Operating wopigate: metrics.

use crate::helpers::*;
use serde_json::json;

fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn metrics_count_requests_operations_bytes_and_rejections() {
    let app = spawn_app().await;
    app.put_file("u1", "a.docx", &vec![b'x'; 1000]);
    let s = app.session_for("u1", "cloudreve://my/a.docx", "edit").await;
    app.info(&s).await;
    app.info(&s).await;
    assert_eq!(app.contents(&s).await.0, 200);
    assert_eq!(app.lock(&s, "A").await.status(), 200);
    assert_eq!(app.lock(&s, "B").await.status(), 409);
    assert_eq!(app.put(&s, vec![b'y'; 500]).header("X-WOPI-Lock", "A").send().await.unwrap().status(), 200);
    assert_eq!(app.client.get(app.file_url(&s.fid, "", "forged")).send().await.unwrap().status(), 401);
    let other = app.session_for("u1", "cloudreve://my/a.docx", "view").await;
    let wrong = Session { fid: "AAAAAAAAAAAAAAAAAAAAAA".into(), ..other };
    assert_eq!(app.check_file_info(&wrong).await.status(), 401);

    let r = app.client.get(format!("{}/metrics", app.address)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = r.text().await.unwrap();
    let route = r#"route="/wopi/files/{id}""#;
    assert_eq!(metric(&text, "wopigate_http_requests_total", &[route, r#"op="CheckFileInfo""#, r#"status="200""#]), 2.0);
    assert_eq!(metric(&text, "wopigate_http_requests_total", &[r#"op="Lock""#, r#"status="409""#]), 1.0);
    assert_eq!(metric(&text, "wopigate_http_requests_total", &[r#"route="/api/v4/file/viewerSession""#, r#"status="200""#]), 2.0);
    assert!(metric(&text, "wopigate_http_request_duration_seconds_count", &[r#"op="GetFile""#]) >= 1.0);
    assert_eq!(metric(&text, "wopigate_bytes_out_total", &[]), 1000.0);
    assert_eq!(metric(&text, "wopigate_bytes_in_total", &[]), 500.0);
    assert_eq!(metric(&text, "wopigate_lock_conflicts_total", &[r#"op="Lock""#]), 1.0);
    assert_eq!(metric(&text, "wopigate_token_rejections_total", &[r#"reason="invalid""#]), 1.0);
    assert_eq!(metric(&text, "wopigate_token_rejections_total", &[r#"reason="wrong_file""#]), 1.0);
    assert!(metric(&text, "wopigate_discovery_fetches_total", &[r#"viewer="Collabora""#, r#"result="ok""#]) >= 1.0);
    assert!(text.contains("wopigate_proof_failures_total 0"));
    assert!(!text.contains(&s.token), "no tokens in metrics");
}

#[tokio::test]
async fn metrics_bind_serves_metrics_alone_on_its_own_port() {
    let app = spawn_with(&[("WOPIGATE_METRICS_BIND", "127.0.0.1:0")]).await;
    let port = app.metrics_port.expect("a metrics listener");
    assert_ne!(port, app.port);
    let main = app.client.get(format!("{}/metrics", app.address)).send().await.unwrap();
    assert_eq!(main.status(), 404, "not on the port the Ingress reaches");
    let scrape = app.client.get(format!("http://127.0.0.1:{port}/metrics")).send().await.unwrap();
    assert_eq!(scrape.status(), 200);
    assert!(scrape.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    assert!(scrape.text().await.unwrap().contains("wopigate_discovery_up{viewer=\"Collabora\"}"));
    for path in ["/healthz", "/readyz", "/api/v4/site/config/explorer"] {
        let r = app.client.get(format!("http://127.0.0.1:{port}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path} is not on the metrics port");
    }
    assert_eq!(app.client.get(format!("{}/readyz", app.address)).send().await.unwrap().status(), 200);
}

/// The metric names a PromQL expression reads: `wopigate_…`, histogram series folded into their
/// family.
fn queried_metrics(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("wopigate_") {
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_lowercase() || c == '_')).unwrap_or(tail.len());
        let name = &tail[..end];
        let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        names.push(family.to_string());
        rest = &tail[end..];
    }
    names
}

fn exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn every_metric_the_grafana_dashboard_queries_is_exported() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("k8s/components/monitoring/wopigate-dashboard.json");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut queries = Vec::new();
    exprs(&dashboard, &mut queries);
    assert!(queries.len() >= 8, "the dashboard has panels: {queries:?}");

    // Requests that give every family a sample (a labelled family with none is not exported).
    let app = spawn_with(&[("WOPIGATE_METRICS_BIND", "127.0.0.1:0")]).await;
    app.put_file("u1", "a.docx", b"content");
    let s = app.session_for("u1", "cloudreve://my/a.docx", "edit").await;
    app.info(&s).await;
    assert_eq!(app.contents(&s).await.0, 200);
    assert_eq!(app.lock(&s, "A").await.status(), 200);
    assert_eq!(app.lock(&s, "B").await.status(), 409);
    assert_eq!(app.put(&s, "new").header("X-WOPI-Lock", "A").send().await.unwrap().status(), 200);
    assert_eq!(app.client.get(app.file_url(&s.fid, "", "forged")).send().await.unwrap().status(), 401);
    app.put_file("owner", "Docs/shared.docx", b"x");
    app.put_share("s1", json!({"owner": "owner", "path": "Docs/shared.docx",
        "password_hash": crate::share_passwords::cheap_hash("right")}));
    app.open_anonymous("cloudreve://s1:wrong@share/", "view").await;

    let port = app.metrics_port.unwrap();
    let text = app.client.get(format!("http://127.0.0.1:{port}/metrics")).send().await.unwrap().text().await.unwrap();
    let exported: std::collections::BTreeSet<&str> =
        text.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next()).collect();
    for expr in &queries {
        let names = queried_metrics(expr);
        assert!(!names.is_empty(), "a query that reads no wopigate metric: {expr}");
        for name in names {
            assert!(exported.contains(name.as_str()), "the dashboard queries {name}, which /metrics does not export ({expr})");
        }
    }
}

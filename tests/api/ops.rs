//! Operating wopigate: metrics.

use crate::helpers::*;

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

//! wopigate's own host page (`/host`): its headers, the `host_url` of viewerSession, and the
//! `HostViewUrl`/`HostEditUrl`/`PostMessageOrigin` defaults that point at it. The page itself
//! runs in a real browser in `tests/browser/host_page.test.mjs`.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;
use crate::process::{serve_document, stop};

/// Waits until every viewer's discovery has loaded (the page's CSP names their origins).
async fn ready(app: &TestApp) {
    for _ in 0..200 {
        let r: Value = app.client.get(format!("{}/readyz", app.address)).send().await.unwrap().json().await.unwrap();
        let discovery = r["discovery"].as_object().unwrap();
        if discovery.values().all(|d| d["loaded"] == true) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("discovery never loaded");
}

async fn get(app: &TestApp, path_or_url: &str) -> reqwest::Response {
    let url = if path_or_url.starts_with("http") { path_or_url.to_string() } else { format!("{}{path_or_url}", app.address) };
    app.client.get(url).send().await.unwrap()
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers().get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
}

/// The CSP's directives by name.
fn directives(csp: &str) -> HashMap<String, Vec<String>> {
    csp.split(';')
        .filter_map(|d| {
            let mut words = d.split_whitespace().map(str::to_string);
            Some((words.next()?, words.collect()))
        })
        .collect()
}

#[tokio::test]
async fn the_page_is_static_with_a_strict_policy() {
    let app = spawn_app().await;
    ready(&app).await;
    let fid = "A".repeat(22);
    for path in ["/host".to_string(), format!("/host/{fid}?action=edit")] {
        let r = get(&app, &path).await;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(header(&r, "content-type"), "text/html; charset=utf-8");
        assert_eq!(header(&r, "referrer-policy"), "no-referrer", "the fragment must never leak");
        assert_eq!(header(&r, "x-content-type-options"), "nosniff");
        assert_eq!(header(&r, "cache-control"), "no-store");
        let csp = directives(&header(&r, "content-security-policy"));
        assert_eq!(csp["default-src"], ["'none'"]);
        assert_eq!(csp["script-src"], ["'self'"]);
        assert_eq!(csp["style-src"], ["'self'"]);
        assert_eq!(csp["base-uri"], ["'none'"]);
        assert_eq!(csp["frame-ancestors"], ["'none'"]);
        // The action URLs' origins of the three fixture viewers (Office: its configured zone only).
        let clients = [
            "http://cool.test:9980",
            "http://ds.test",
            "https://excel.office.test",
            "https://onenote.office.test",
            "https://word-edit.office.test",
            "https://word-view.office.test",
        ];
        assert_eq!(csp["frame-src"], clients, "{csp:?}");
        assert_eq!(csp["form-action"], clients);

        let body = r.text().await.unwrap();
        assert!(body.contains("Open this document from your file platform"));
        for tag in body.split("<script").skip(1) {
            assert!(tag.starts_with(" src=\"/host/host.js\"></script>"), "no inline script: {tag}");
        }
        assert!(!body.contains("http:") && !body.contains("https:"), "no third-party assets: {body}");
    }
    for (path, kind) in [("/host/host.js", "text/javascript; charset=utf-8"), ("/host/host.css", "text/css; charset=utf-8")] {
        let r = get(&app, path).await;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(header(&r, "content-type"), kind);
        assert_eq!(header(&r, "x-content-type-options"), "nosniff");
        assert!(!r.text().await.unwrap().contains("http://"), "{path} loads nothing from elsewhere");
    }
    assert_eq!(get(&app, "/host/not-a-file-id").await.status(), 404);
}

#[tokio::test]
async fn the_platform_link_and_pages_reach_the_page() {
    let app = spawn_with(&[
        ("WOPIGATE_PLATFORM_URL", "https://drive.example.test/home"),
        ("WOPIGATE_CLOSE_URL", "https://drive.example.test/files?closed=1"),
        ("WOPIGATE_VERSIONS_URL", "https://drive.example.test/versions/{file_id}"),
        ("WOPIGATE_SHARING_URL", "https://drive.example.test/share/{file_id}"),
    ])
    .await;
    let r = get(&app, "/host").await;
    let csp = directives(&header(&r, "content-security-policy"));
    assert_eq!(csp["frame-ancestors"], ["https://drive.example.test"], "the platform may frame the page");
    let body = r.text().await.unwrap();
    assert!(body.contains(r#"<a href="https://drive.example.test/home">"#), "{body}");
    assert!(body.contains(r#"data-close-url="https://drive.example.test/files?closed=1""#));
    assert!(body.contains(r#"data-versions-url="https://drive.example.test/versions/&#123;file_id}""#));
    assert!(body.contains(r#"data-sharing-url="https://drive.example.test/share/&#123;file_id}""#));

    // CheckFileInfo offers them, and says the page answers their messages.
    app.put_file("u1", "a.docx", b"x");
    let s = app.session_for("u1", "cloudreve://my/a.docx", "edit").await;
    let info = app.info(&s).await;
    assert_eq!(info["CloseUrl"], "https://drive.example.test/files?closed=1");
    assert_eq!(info["FileVersionUrl"], format!("https://drive.example.test/versions/{}", s.fid));
    assert_eq!(info["FileSharingUrl"], format!("https://drive.example.test/share/{}", s.fid));
    assert_eq!(info["ClosePostMessage"], true);
    assert_eq!(info["FileVersionPostMessage"], true);
    assert_eq!(info["FileSharingPostMessage"], true);
}

#[tokio::test]
async fn viewer_session_links_to_the_page_with_the_session_in_the_fragment() {
    let app = spawn_app().await;
    app.put_file("u1", "a.docx", b"x");
    let e = app.open("u1", "cloudreve://my/a.docx", "edit").await;
    assert_code(&e, 0);
    let data = &e["data"];
    let host_url = data["host_url"].as_str().expect("host_url");
    let (page, fragment) = host_url.split_once('#').expect("a fragment");
    assert_eq!(page, format!("{}/host", app.address), "nothing of the session in the path or query");
    let fields: HashMap<String, String> = url::form_urlencoded::parse(fragment.as_bytes()).into_owned().collect();
    assert_eq!(fields.len(), 3, "{fields:?}");
    assert_eq!(fields["wopi_src"], data["wopi_src"].as_str().unwrap());
    assert_eq!(fields["access_token"], data["session"]["access_token"].as_str().unwrap());
    assert_eq!(fields["access_token_ttl"], data["session"]["expires"].to_string());
    // Cloudreve's own fields are all still there.
    for key in ["id", "access_token", "expires", "action"] {
        assert!(!data["session"][key].is_null(), "{key}");
    }
}

#[tokio::test]
async fn host_urls_and_post_message_origin_default_to_the_page() {
    let app = spawn_app().await;
    app.put_file("u1", "a.docx", b"x");
    app.put_file("u1", "b.docx", b"y");
    let s = app.session_for("u1", "cloudreve://my/a.docx", "edit").await;
    let info = app.info(&s).await;
    let view = format!("{}/host/{}?action=view", app.address, s.fid);
    assert_eq!(info["HostViewUrl"], view);
    assert_eq!(info["HostEditUrl"], format!("{}/host/{}?action=edit", app.address, s.fid));
    assert_eq!(info["PostMessageOrigin"], "https://drive.example.test", "a viewer's own setting wins");
    assert_eq!(info["ClosePostMessage"], true);
    assert_eq!(info["FileVersionPostMessage"], false, "no versions page configured");
    assert!(info.get("CloseUrl").is_none());

    // A viewer without post_message_origin: the page's origin.
    let jwt = caller_jwt("u1", "U");
    let e = app.session(json!({"uri": "cloudreve://my/a.docx", "viewer_id": ONLYOFFICE, "preferred_action": "view"}), Some(&jwt)).await;
    let only = Session::from_envelope(&e);
    assert_eq!(app.info(&only).await["PostMessageOrigin"], app.address.as_str());

    // The page opened without a session says where to go.
    let r = get(&app, &view).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Open this document from your file platform"));

    // GetFileWopiSrc takes them back, with the query Office may add.
    let other = app.session_for("u1", "cloudreve://my/b.docx", "view").await;
    for native in [view.clone(), format!("{}&wdPreviousSession=x", view), format!("{}/host/{}", app.address, s.fid)] {
        let r = app.wopi_src(&other.token, &native).await;
        assert_eq!(r.status(), 200, "{native}");
        let url = r.json::<Value>().await.unwrap()["Url"].as_str().unwrap().to_string();
        assert!(url.starts_with(&format!("{}/wopi/files/{}?", app.address, s.fid)), "{url}");
    }
    let r = app.wopi_src(&other.token, &format!("{}/host/{}x?action=view", app.address, s.fid)).await;
    assert_eq!(r.status(), 404, "not a file id");

    // PutRelativeFile answers the new file's page.
    let r = app.op(&s, "PUT_RELATIVE").header("X-WOPI-SuggestedTarget", "copy.docx").header("X-WOPI-Size", "4").body("copy").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let copy = TestApp::session_from_url(body["Url"].as_str().unwrap());
    assert_eq!(body["HostViewUrl"], format!("{}/host/{}?action=view", app.address, copy.fid));
    assert_eq!(body["HostEditUrl"], format!("{}/host/{}?action=edit", app.address, copy.fid));
}

#[tokio::test]
async fn a_platform_host_page_overrides_ours() {
    let app = spawn_with(&[("WOPIGATE_HOST_PAGE_URL", "https://drive.example.test:8443/open?file={file_id}&action={action}")]).await;
    app.put_file("u1", "a.docx", b"x");
    let jwt = caller_jwt("u1", "U");
    let e = app.session(json!({"uri": "cloudreve://my/a.docx", "viewer_id": ONLYOFFICE, "preferred_action": "view"}), Some(&jwt)).await;
    let s = Session::from_envelope(&e);
    let info = app.info(&s).await;
    assert_eq!(info["HostViewUrl"], format!("https://drive.example.test:8443/open?file={}&action=view", s.fid));
    assert_eq!(info["HostEditUrl"], format!("https://drive.example.test:8443/open?file={}&action=edit", s.fid));
    assert_eq!(info["PostMessageOrigin"], "https://drive.example.test:8443");
    assert_eq!(info["ClosePostMessage"], false, "the platform's page may not answer UI_Close");
    // Our page stays available (viewerSession's host_url), and so does its link.
    assert!(e["data"]["host_url"].as_str().unwrap().starts_with(&format!("{}/host#", app.address)));
    assert_eq!(get(&app, "/host").await.status(), 200);
}

#[tokio::test]
async fn opening_the_page_puts_no_token_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = serve_document(port, dir.path(), &base_env(port, dir.path(), &[]), b"x").await;
    let app = TestApp::on_port(port, dir.path());
    let e = app.open("u1", "cloudreve://my/a.docx", "edit").await;
    let token = e["data"]["session"]["access_token"].as_str().unwrap().to_string();
    let host_url = e["data"]["host_url"].as_str().unwrap().to_string();
    // What a browser fetches for the link: the page (the fragment stays behind), its script, its style.
    for url in [host_url.clone(), format!("{}/host/host.js", app.address), format!("{}/host/host.css", app.address)] {
        assert_eq!(get(&app, &url).await.status(), 200, "{url}");
    }
    let stderr = stop(child);
    let page_lines: Vec<Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| v["fields"].clone())
        .filter(|f| f["message"] == "request" && f["route"].as_str().is_some_and(|r| r.starts_with("/host")))
        .collect();
    assert_eq!(page_lines.len(), 3, "{stderr}");
    assert_eq!(page_lines[0]["path"], "/host");
    assert!(!stderr.contains(&token), "the token never reaches the log");
}

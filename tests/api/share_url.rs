//! GetShareUrl and `SupportedShareUrlTypes`: owners get one share link per type (a share
//! manifest like any other, the same on every call, also under concurrent calls), which opens
//! with the rights its type names; everyone else is refused, and refusals change nothing.

use serde_json::{json, Value};

use crate::cli::run;
use crate::helpers::*;

async fn get_share_url(app: &TestApp, s: &Session, url_type: Option<&str>) -> reqwest::Response {
    let mut req = app.op(s, "GET_SHARE_URL");
    if let Some(t) = url_type {
        req = req.header("X-WOPI-UrlType", t);
    }
    req.send().await.unwrap()
}

/// The `ShareUrl` of a 200 answer.
async fn share_url(app: &TestApp, s: &Session, url_type: &str) -> String {
    let r = get_share_url(app, s, Some(url_type)).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    body["ShareUrl"].as_str().unwrap_or_else(|| panic!("no ShareUrl: {body}")).to_string()
}

/// The share id of a default-template link, `cloudreve://<id>@share/`.
fn share_id(link: &str) -> String {
    link.strip_prefix("cloudreve://").and_then(|l| l.strip_suffix("@share/")).unwrap_or_else(|| panic!("{link}")).to_string()
}

fn manifest(app: &TestApp, id: &str) -> Value {
    serde_json::from_slice(&std::fs::read(app.data.join(format!(".wopigate/objects/shares/{id}.json"))).unwrap()).unwrap()
}

fn manifests(app: &TestApp) -> usize {
    std::fs::read_dir(app.data.join(".wopigate/objects/shares")).map(|d| d.count()).unwrap_or(0)
}

#[tokio::test]
async fn owners_get_one_link_per_type_that_opens_with_its_rights() {
    let app = spawn_app().await;
    app.put_file("alice", "Docs/report.docx", b"report");
    let s = app.session_for("alice", "cloudreve://my/Docs/report.docx", "edit").await;
    assert_eq!(app.info(&s).await["SupportedShareUrlTypes"], json!(["ReadOnly", "ReadWrite"]));

    let read_only = share_url(&app, &s, "ReadOnly").await;
    let read_write = share_url(&app, &s, "ReadWrite").await;
    assert_ne!(read_only, read_write);
    assert_eq!(share_url(&app, &s, "ReadOnly").await, read_only, "asking again answers the same link");
    assert_eq!(share_url(&app, &s, "readwrite").await, read_write);
    assert_eq!(manifests(&app), 2);
    let (ro, rw) = (share_id(&read_only), share_id(&read_write));
    assert!(ro.len() == 20 && ro.bytes().all(|b| b.is_ascii_alphanumeric()), "{ro}");
    assert_eq!(manifest(&app, &ro), json!({"owner": "alice", "target": s.fid, "editable": false,
        "allow_anonymous": true, "paid": false, "purchase_ticket_sha256": [], "download": true, "print": true, "copy": true}));
    assert_eq!(manifest(&app, &rw)["editable"], true);

    // Another user opens each link through viewerSession, with the rights its type names.
    let viewer = app.session_for("bob", &read_only, "edit").await;
    assert_eq!((viewer.action.as_str(), viewer.fid.as_str()), ("view", s.fid.as_str()));
    assert_eq!(app.info(&viewer).await["UserCanWrite"], false);
    let editor = app.session_for("bob", &read_write, "edit").await;
    assert_eq!((editor.action.as_str(), editor.fid.as_str()), ("edit", s.fid.as_str()));
    let info = app.info(&editor).await;
    assert_eq!((info["UserCanWrite"].clone(), info["UserId"].clone()), (json!(true), json!("bob")));
    assert_eq!(app.lock(&editor, "B").await.status(), 200);
    assert_eq!(app.put(&editor, "bob's edit").header("X-WOPI-Lock", "B").send().await.unwrap().status(), 200);

    // A link whose manifest was deleted (revoked) is replaced by a new one.
    std::fs::remove_file(app.data.join(format!(".wopigate/objects/shares/{ro}.json"))).unwrap();
    let again = share_url(&app, &s, "ReadOnly").await;
    assert_ne!(again, read_only);
    assert_eq!(manifest(&app, &share_id(&again))["target"], json!(s.fid));
    assert_eq!(share_url(&app, &s, "ReadOnly").await, again);
}

#[tokio::test]
async fn a_missing_or_unknown_type_is_501_and_changes_nothing() {
    let app = spawn_app().await;
    app.put_file("alice", "a.docx", b"x");
    let s = app.session_for("alice", "cloudreve://my/a.docx", "edit").await;
    app.info(&s).await;
    let before = snapshot(&app.data);
    for url_type in [None, Some(""), Some("UnknownType"), Some("ReadOnly,ReadWrite"), Some("Read Only")] {
        let r = get_share_url(&app, &s, url_type).await;
        assert_eq!(r.status(), 501, "{url_type:?}");
        let body = r.text().await.unwrap();
        assert!(body.contains("X-WOPI-UrlType"), "{body}");
        assert!(!body.contains("UnknownType"), "the header's value is not repeated: {body}");
    }
    assert_eq!(snapshot(&app.data), before);
    let bad = Session { token: format!("{}x", s.token), ..s.clone() };
    assert_eq!(get_share_url(&app, &bad, Some("ReadOnly")).await.status(), 401);
}

#[tokio::test]
async fn only_owners_may_create_links_and_only_as_much_as_their_session_may() {
    let app = spawn_app().await;
    app.put_file("alice", "Team/a.docx", b"x");
    app.put_share("team", json!({"owner": "alice", "path": "Team", "editable": true}));
    let visitor = app.session_for("bob", "cloudreve://team@share/a.docx", "edit").await;
    let anonymous = Session::from_envelope(&app.open_anonymous("cloudreve://team@share/a.docx", "edit").await);
    // An owner's view session: a read-only link, not an editable one.
    let owner_view = app.session_for("alice", "cloudreve://my/Team/a.docx", "view").await;
    assert_eq!(app.info(&owner_view).await["SupportedShareUrlTypes"], json!(["ReadOnly"]));

    let before = snapshot(&app.data);
    for s in [&visitor, &anonymous] {
        let info = app.info(s).await;
        assert_eq!((info["UserCanWrite"].clone(), info["SupportedShareUrlTypes"].clone()), (json!(true), json!([])));
        for url_type in ["ReadOnly", "ReadWrite"] {
            let r = get_share_url(&app, s, Some(url_type)).await;
            assert_eq!(r.status(), 501, "{url_type}");
            assert!(r.text().await.unwrap().contains("only the owner"));
        }
    }
    let r = get_share_url(&app, &owner_view, Some("ReadWrite")).await;
    assert_eq!(r.status(), 501);
    assert!(r.text().await.unwrap().contains("may not edit"));
    assert_eq!(snapshot(&app.data), before, "refusals change nothing");
    let link = share_url(&app, &owner_view, "ReadOnly").await;
    assert_eq!(app.session_for("carol", &link, "edit").await.action, "view");
}

#[tokio::test]
async fn concurrent_first_requests_agree_on_one_link() {
    let app = spawn_app().await;
    app.put_file("alice", "a.docx", b"x");
    let s = app.session_for("alice", "cloudreve://my/a.docx", "edit").await;
    let calls = (0..12).map(|i| {
        let (app, s) = (&app, &s);
        async move { share_url(app, s, if i % 2 == 0 { "ReadOnly" } else { "ReadWrite" }).await }
    });
    let links = futures_util::future::join_all(calls).await;
    let (ro, rw): (Vec<_>, Vec<_>) = links.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    assert!(ro.iter().all(|(_, l)| *l == ro[0].1), "{links:?}");
    assert!(rw.iter().all(|(_, l)| *l == rw[0].1), "{links:?}");
    assert_ne!(ro[0].1, rw[0].1);
    assert_eq!(manifests(&app), 2, "the losers' manifests are gone");
}

#[tokio::test]
async fn the_template_shapes_the_link() {
    let app = spawn_with(&[("WOPIGATE_SHARE_URL_TEMPLATE", "https://drive.example/s/{share_id}?from=office")]).await;
    app.put_file("alice", "a.docx", b"x");
    let s = app.session_for("alice", "cloudreve://my/a.docx", "edit").await;
    let link = share_url(&app, &s, "ReadOnly").await;
    let id = link.strip_prefix("https://drive.example/s/").and_then(|l| l.strip_suffix("?from=office")).unwrap();
    assert_eq!(manifest(&app, id)["target"], json!(s.fid));
}

/// `wopigate share` makes links with the same function: the same link as GetShareUrl's.
#[tokio::test]
async fn the_share_command_and_get_share_url_make_the_same_links() {
    let app = spawn_app().await;
    app.put_file("alice", "Docs/report.docx", b"x");
    let s = app.session_for("alice", "cloudreve://my/Docs/report.docx", "edit").await;
    let env = base_env(free_port(), &app.data, &[]);
    let share = |args: &[&str]| {
        let (code, out, err) = run(&env, &[&["share"], args].concat());
        (code, out.trim().to_string(), err)
    };
    let (code, editable, err) = share(&["alice/Docs/report.docx", "--editable"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(&format!("shares/{}.json", share_id(&editable))), "{err}");
    assert_eq!(share_url(&app, &s, "ReadWrite").await, editable);
    let read_only = share_url(&app, &s, "ReadOnly").await;
    assert_eq!(share(&["alice/Docs/report.docx"]).1, read_only);
    // A folder can be shared too; a missing file cannot.
    let (code, folder, err) = share(&["alice/Docs"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(app.session_for("bob", &format!("{folder}report.docx"), "edit").await.action, "view");
    let (code, _, err) = share(&["alice/Docs/nope.docx"]);
    assert_ne!(code, 0);
    assert!(err.contains("no such file"), "{err}");
    assert_eq!(manifests(&app), 3);
}

/// The folder a file session's EnumerateAncestors names last (its parent), as a container URL
/// with a token.
async fn parent_container(app: &TestApp, s: &Session) -> String {
    let r = app.client.get(app.file_url(&s.fid, "/ancestry", &s.token)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    body["AncestorsWithRootFirst"].as_array().and_then(|a| a.last()).unwrap_or_else(|| panic!("{body}"))["Url"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn containers_share_through_the_same_function() {
    let app = spawn_app().await;
    app.put_file("alice", "Team/a.docx", b"x");
    app.put_share("team", json!({"owner": "alice", "path": "Team", "editable": true}));
    let owner = app.session_for("alice", "cloudreve://my/Team/a.docx", "edit").await;
    let team = parent_container(&app, &owner).await;
    let info: Value = app.client.get(&team).send().await.unwrap().json().await.unwrap();
    assert_eq!((info["Name"].clone(), info["SupportedShareUrlTypes"].clone()), (json!("Team"), json!(["ReadOnly", "ReadWrite"])));
    let get = |url_type: &'static str| {
        let request = app.client.post(&team).header("X-WOPI-Override", "GET_SHARE_URL").header("X-WOPI-UrlType", url_type);
        async move { request.send().await.unwrap() }
    };
    let r = get("ReadOnly").await;
    assert_eq!(r.status(), 200);
    let link = r.json::<Value>().await.unwrap()["ShareUrl"].as_str().unwrap().to_string();
    let r = get("ReadOnly").await;
    assert_eq!(r.json::<Value>().await.unwrap()["ShareUrl"], json!(link), "the same link again");
    let folder_id = claims_of(&url::Url::parse(&team).unwrap().query_pairs().find(|(k, _)| k == "access_token").unwrap().1)["fid"].clone();
    assert_eq!(manifest(&app, &share_id(&link))["target"], folder_id);
    let visitor = app.session_for("bob", &format!("{link}a.docx"), "edit").await;
    assert_eq!((visitor.action.as_str(), visitor.fid.as_str()), ("view", owner.fid.as_str()));
    assert_eq!(get("UnknownType").await.status(), 501);

    // A visitor of the shared folder: the same container, no links.
    let bob = app.session_for("bob", "cloudreve://team@share/a.docx", "edit").await;
    let theirs = parent_container(&app, &bob).await;
    let info: Value = app.client.get(&theirs).send().await.unwrap().json().await.unwrap();
    assert_eq!((info["UserCanCreateChildFile"].clone(), info["SupportedShareUrlTypes"].clone()), (json!(true), json!([])));
    let before = snapshot(&app.data);
    let r = app.client.post(&theirs).header("X-WOPI-Override", "GET_SHARE_URL").header("X-WOPI-UrlType", "ReadOnly").send().await.unwrap();
    assert_eq!(r.status(), 501);
    assert_eq!(snapshot(&app.data), before);
}

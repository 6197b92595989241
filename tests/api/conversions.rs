//! Discovery actions beyond view and edit (view_comment, editnew, mobileView/mobileEdit) and the
//! `convert` flow: viewerSession answers the convert action's URL for a binary format, the client
//! converts and PutRelativeFile's the result with `X-WOPI-FileConversion`.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

/// ONLYOFFICE without the shared test app's allow-list (which has no binary formats), Office
/// without proof checks (its fixture publishes a key the tests cannot sign with), and a
/// Collabora entry for mobile devices.
const ONLYOFFICE_ALL: Uuid = Uuid::from_u128(0x44444444_4444_4444_8444_444444444444);
const OFFICE_UNSIGNED: Uuid = Uuid::from_u128(0x55555555_5555_4555_8555_555555555555);
const ONLYOFFICE_MOBILE: Uuid = Uuid::from_u128(0x66666666_6666_4666_8666_666666666666);

async fn spawn() -> TestApp {
    let mut viewers: Vec<Value> = serde_json::from_str(&viewers_json()).unwrap();
    viewers.push(json!({"id": ONLYOFFICE_ALL, "name": "ONLYOFFICE (all formats)", "discovery": fixture("discovery/onlyoffice.xml")}));
    viewers.push(json!({"id": OFFICE_UNSIGNED, "name": "Office (unsigned)", "discovery": fixture("discovery/office.xml"),
                        "net_zone": "external-https", "verify_proof": false}));
    viewers.push(json!({"id": ONLYOFFICE_MOBILE, "name": "ONLYOFFICE (phones)", "discovery": fixture("discovery/onlyoffice.xml"),
                        "mobile": true}));
    let viewers = Value::Array(viewers).to_string();
    spawn_with(&[("WOPIGATE_VIEWERS", &viewers), ("WOPIGATE_HOST_PAGE_URL", "https://drive.example.test/open/{file_id}?action={action}")]).await
}

/// viewerSession for `user` (display name "Test User"), with extra headers.
async fn open_with(app: &TestApp, user: &str, body: Value, headers: &[(&str, &str)]) -> Value {
    let mut req = app
        .client
        .put(format!("{}/api/v4/file/viewerSession", app.address))
        .bearer_auth(caller_jwt(user, "Test User"))
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap().json().await.unwrap()
}

async fn open(app: &TestApp, user: &str, uri: &str, viewer: Uuid, action: &str) -> Value {
    open_with(app, user, json!({"uri": uri, "viewer_id": viewer, "preferred_action": action}), &[]).await
}

/// (session action, discovery action, iframe URL).
fn chosen(envelope: &Value) -> (String, String, String) {
    assert_code(envelope, 0);
    let session = &envelope["data"]["session"];
    let field = |v: &Value| v.as_str().unwrap().to_string();
    (field(&session["action"]), field(&session["viewer_action"]), field(&envelope["data"]["wopi_src"]))
}

/// PutRelativeFile as a client ends a conversion.
async fn put_converted(app: &TestApp, s: &Session, suggested: &str, body: &'static str) -> reqwest::Response {
    app.op(s, "PUT_RELATIVE")
        .header("X-WOPI-FileConversion", "true")
        .header("X-WOPI-SuggestedTarget", suggested)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn pdf_on_collabora_opens_with_view_comment() {
    let app = spawn().await;
    app.put_file("u1", "scan.pdf", b"%PDF-1.7");
    for action in ["view", "edit"] {
        let (act, viewer_action, url) = chosen(&open(&app, "u1", "cloudreve://my/scan.pdf", COLLABORA, action).await);
        assert_eq!((act.as_str(), viewer_action.as_str()), ("view", "view_comment"), "asked for {action}");
        assert!(url.starts_with("http://cool.test:9980/browser/1a2b3c/cool.html?WOPISrc="), "{url}");
    }
    // The session reads the PDF like any other.
    let s = Session::from_envelope(&open(&app, "u1", "cloudreve://my/scan.pdf", COLLABORA, "view").await);
    assert_eq!(app.info(&s).await["UserCanWrite"], false);
    assert_eq!(app.contents(&s).await, (200, b"%PDF-1.7".to_vec()));
    // A real view action still wins over view_comment and edit.
    app.put_file("u1", "old.sxw", b"x");
    assert_eq!(chosen(&open(&app, "u1", "cloudreve://my/old.sxw", COLLABORA, "view").await).1, "view");
}

#[tokio::test]
async fn empty_files_open_with_editnew_where_the_client_has_it() {
    let app = spawn().await;
    app.put_file("u1", "new.docx", b"");
    app.put_file("u1", "new.xlsx", b"");
    let (act, viewer_action, url) = chosen(&open(&app, "u1", "cloudreve://my/new.docx", OFFICE, "edit").await);
    assert_eq!((act.as_str(), viewer_action.as_str()), ("edit", "editnew"));
    assert!(url.starts_with("https://word-edit.office.test/we/wordeditorframe.aspx?new=1&"), "{url}");
    let (_, viewer_action, url) = chosen(&open(&app, "u1", "cloudreve://my/new.docx", ONLYOFFICE, "edit").await);
    assert_eq!(viewer_action, "editnew");
    assert!(url.starts_with("http://ds.test/hosting/wopi/word/edit?new=1&"), "{url}");
    // No editnew for this format: edit. Viewing an empty file is a plain view.
    assert_eq!(chosen(&open(&app, "u1", "cloudreve://my/new.xlsx", OFFICE, "edit").await).1, "edit");
    assert_eq!(chosen(&open(&app, "u1", "cloudreve://my/new.docx", OFFICE, "view").await).1, "view");
    // Collabora has no editnew: edit.
    assert_eq!(chosen(&open(&app, "u1", "cloudreve://my/new.docx", COLLABORA, "edit").await).1, "edit");
}

#[tokio::test]
async fn mobile_layouts_when_the_platform_asks_for_them() {
    let app = spawn().await;
    app.put_file("u1", "a.docx", b"x");
    app.put_file("u1", "empty.docx", b"");
    let body = |viewer: Uuid, action: &str| json!({"uri": "cloudreve://my/a.docx", "viewer_id": viewer, "preferred_action": action});
    let mobile = [("X-Wopigate-Device", "mobile")];

    let (act, viewer_action, url) = chosen(&open_with(&app, "u1", body(ONLYOFFICE, "view"), &mobile).await);
    assert_eq!((act.as_str(), viewer_action.as_str()), ("view", "mobileView"));
    assert!(url.starts_with("http://ds.test/hosting/wopi/word/view?mobile=1&"), "{url}");
    let (act, viewer_action, url) = chosen(&open_with(&app, "u1", body(ONLYOFFICE, "edit"), &mobile).await);
    assert_eq!((act.as_str(), viewer_action.as_str()), ("edit", "mobileEdit"));
    assert!(url.starts_with("http://ds.test/hosting/wopi/word/edit?mobile=1&"), "{url}");
    // An empty file still needs the client's blank template.
    let empty = json!({"uri": "cloudreve://my/empty.docx", "viewer_id": ONLYOFFICE, "preferred_action": "edit"});
    assert_eq!(chosen(&open_with(&app, "u1", empty, &mobile).await).1, "editnew");
    // Office: mobileView, and edit (it has no mobileEdit).
    assert_eq!(chosen(&open_with(&app, "u1", body(OFFICE, "view"), &mobile).await).1, "mobileView");
    assert_eq!(chosen(&open_with(&app, "u1", body(OFFICE, "edit"), &mobile).await).1, "edit");
    // Collabora has no mobile actions (its pages adapt by themselves): the usual ones.
    assert_eq!(chosen(&open_with(&app, "u1", body(COLLABORA, "edit"), &mobile).await).1, "edit");
    // Without the header: desktop.
    assert_eq!(chosen(&open_with(&app, "u1", body(ONLYOFFICE, "view"), &[]).await).1, "view");

    // A viewer configured for phones is mobile unless the request says desktop.
    assert_eq!(chosen(&open_with(&app, "u1", body(ONLYOFFICE_MOBILE, "edit"), &[]).await).1, "mobileEdit");
    let desktop = [("X-Wopigate-Device", "Desktop")];
    assert_eq!(chosen(&open_with(&app, "u1", body(ONLYOFFICE_MOBILE, "edit"), &desktop).await).1, "edit");

    // Anything else is a bad parameter, named without repeating the value.
    let e = open_with(&app, "u1", body(ONLYOFFICE, "view"), &[("X-Wopigate-Device", "tablet-secret")]).await;
    let msg = assert_code(&e, 40001);
    assert!(msg.contains("X-Wopigate-Device") && !msg.contains("tablet-secret"), "{msg}");
}

#[tokio::test]
async fn binary_formats_open_the_convert_action_for_editing() {
    let app = spawn().await;
    for name in ["a.doc", "a.xls", "a.ppt", "a.odt"] {
        app.put_file("u1", name, b"legacy");
    }
    let uri = |name: &str| format!("cloudreve://my/{name}");

    // Office for the web.
    let e = open(&app, "u1", &uri("a.doc"), OFFICE, "edit").await;
    let (act, viewer_action, url) = chosen(&e);
    assert_eq!((act.as_str(), viewer_action.as_str()), ("edit", "convert"));
    assert!(url.starts_with("https://word-edit.office.test/we/WordConvertAndEdit.aspx?ui=en-US&"), "{url}");
    assert!(url.contains("wopisrc=https%3A%2F%2Fwopi.front.test%2Fgw%2Fwopi%2Ffiles%2F"), "{url}");
    assert_eq!(claims_of(e["data"]["session"]["access_token"].as_str().unwrap())["act"], "edit", "PutRelativeFile needs edit");
    let (_, viewer_action, url) = chosen(&open(&app, "u1", &uri("a.xls"), OFFICE, "edit").await);
    assert_eq!(viewer_action, "convert");
    assert!(url.starts_with("https://excel.office.test/x/_layouts/xlconvert.aspx?"), "{url}");
    // Viewing needs no conversion.
    assert_eq!(chosen(&open(&app, "u1", &uri("a.doc"), OFFICE, "view").await).1, "view");

    // ONLYOFFICE: doc, odt → docx, xls → xlsx, ppt → pptx.
    for (name, path) in [("a.doc", "doc/docx"), ("a.odt", "odt/docx"), ("a.xls", "xls/xlsx"), ("a.ppt", "ppt/pptx")] {
        let (act, viewer_action, url) = chosen(&open(&app, "u1", &uri(name), ONLYOFFICE_ALL, "edit").await);
        assert_eq!((act.as_str(), viewer_action.as_str()), ("edit", "convert"), "{name}");
        assert!(url.starts_with(&format!("http://ds.test/hosting/wopi/convert-and-edit/{path}?ui=en-US&wopisrc=")), "{url}");
    }
    // Collabora edits binary formats as they are.
    assert_eq!(chosen(&open(&app, "u1", &uri("a.doc"), COLLABORA, "edit").await).1, "edit");
}

#[tokio::test]
async fn a_conversion_creates_the_converted_file_beside_the_original() {
    let app = spawn().await;
    app.put_file("u1", "Docs/report.doc", b"legacy bytes");
    for viewer in [ONLYOFFICE_ALL, OFFICE_UNSIGNED] {
        let e = open(&app, "u1", "cloudreve://my/Docs/report.doc", viewer, "edit").await;
        assert_eq!(chosen(&e).1, "convert");
        let s = Session::from_envelope(&e);
        let before = app.info(&s).await;
        assert_eq!(before["UserCanNotWriteRelative"], false, "the convert flow needs PutRelativeFile");

        let r = put_converted(&app, &s, "report.docx", "converted bytes").await;
        assert_eq!(r.status(), 200);
        let created: Value = r.json().await.unwrap();
        let expected = if viewer == ONLYOFFICE_ALL { "report.docx" } else { "report (1).docx" };
        assert_eq!(created["Name"], expected, "a free name: an earlier conversion is not overwritten");
        assert_eq!(std::fs::read(app.data.join("u1/Docs").join(expected)).unwrap(), b"converted bytes");
        // The client opens the new file for editing from Url, or navigates to HostEditUrl.
        let url = created["Url"].as_str().unwrap();
        let converted = TestApp::session_from_url(url);
        assert_eq!(converted.action, "edit");
        assert_ne!(converted.fid, s.fid);
        assert_eq!(created["HostEditUrl"], format!("https://drive.example.test/open/{}?action=edit", converted.fid));
        assert_eq!(created["HostViewUrl"], format!("https://drive.example.test/open/{}?action=view", converted.fid));
        let info = app.info(&converted).await;
        assert_eq!((info["BaseFileName"].as_str(), info["UserCanWrite"].as_bool()), (Some(expected), Some(true)));

        // The original is unchanged, and its session keeps working.
        assert_eq!(std::fs::read(app.data.join("u1/Docs/report.doc")).unwrap(), b"legacy bytes");
        let after = app.info(&s).await;
        assert_eq!(after["BaseFileName"], "report.doc");
        assert_eq!(after["Version"], before["Version"]);
        assert_eq!(app.contents(&s).await, (200, b"legacy bytes".to_vec()));
    }
    // Office may send only the new extension: the original's name with it.
    let s = Session::from_envelope(&open(&app, "u1", "cloudreve://my/Docs/report.doc", OFFICE_UNSIGNED, "edit").await);
    let r = put_converted(&app, &s, ".docx", "again").await;
    assert_eq!(r.json::<Value>().await.unwrap()["Name"], "report (2).docx");
    // Exact names follow PutRelativeFile's rules: taken → 409 unless overwriting.
    let exact = |overwrite: &'static str| {
        app.op(&s, "PUT_RELATIVE")
            .header("X-WOPI-FileConversion", "true")
            .header("X-WOPI-RelativeTarget", "report.docx")
            .header("X-WOPI-OverwriteRelativeTarget", overwrite)
            .body("exact")
            .send()
    };
    let r = exact("false").await.unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(r.headers()["X-WOPI-ValidRelativeTarget"], "report (3).docx");
    assert_eq!(std::fs::read(app.data.join("u1/Docs/report.docx")).unwrap(), b"converted bytes");
    assert_eq!(exact("true").await.unwrap().status(), 200);
    assert_eq!(std::fs::read(app.data.join("u1/Docs/report.docx")).unwrap(), b"exact");
}

#[tokio::test]
async fn a_conversion_goes_to_the_sessions_parent_folder() {
    let app = spawn().await;
    app.put_file("u1", "Archive/old.doc", b"legacy");
    std::fs::create_dir_all(app.data.join("u1/Current")).unwrap();
    let body = json!({"uri": "cloudreve://my/Archive/old.doc", "viewer_id": ONLYOFFICE_ALL, "preferred_action": "edit",
                      "parent_uri": "cloudreve://my/Current"});
    let e = open_with(&app, "u1", body, &[]).await;
    assert_eq!(chosen(&e).1, "convert");
    let s = Session::from_envelope(&e);
    let r = put_converted(&app, &s, "old.docx", "converted").await;
    assert_eq!(r.status(), 200);
    assert_eq!(std::fs::read(app.data.join("u1/Current/old.docx")).unwrap(), b"converted");
    assert!(!app.data.join("u1/Archive/old.docx").exists());
}

#[tokio::test]
async fn a_conversion_needs_edit_rights_on_the_folder() {
    let app = spawn().await;
    app.put_file("owner", "Team/minutes.doc", b"legacy");
    app.put_file("owner", "Single/memo.doc", b"legacy");
    app.put_share("readonly", json!({"owner": "owner", "path": "Team"}));
    app.put_share("onefile", json!({"owner": "owner", "path": "Single/memo.doc", "editable": true}));
    app.put_share("editable", json!({"owner": "owner", "path": "Team", "editable": true}));
    let before = snapshot(&app.data.join("owner"));

    // A read-only share: a view session, not the convert action; PutRelativeFile is 501.
    let e = open(&app, "bob", "cloudreve://readonly@share/minutes.doc", ONLYOFFICE_ALL, "edit").await;
    assert_eq!(chosen(&e).0, "view");
    assert_eq!(chosen(&e).1, "view");
    let s = Session::from_envelope(&e);
    assert_eq!(app.info(&s).await["UserCanNotWriteRelative"], true);
    assert_eq!(put_converted(&app, &s, "minutes.docx", "converted").await.status(), 501);

    // One shared file may be edited, but its folder is not the visitor's: nothing to convert into.
    let e = open(&app, "bob", "cloudreve://onefile@share/", ONLYOFFICE_ALL, "edit").await;
    assert_eq!(chosen(&e).1, "view", "no convert action where the converted file cannot be created");
    let s = Session::from_envelope(&e);
    assert_eq!(put_converted(&app, &s, "memo.docx", "converted").await.status(), 501);
    assert_eq!(snapshot(&app.data.join("owner")), before, "nothing created");

    // An editable shared folder: converted inside it.
    let e = open(&app, "bob", "cloudreve://editable@share/minutes.doc", ONLYOFFICE_ALL, "edit").await;
    assert_eq!(chosen(&e).1, "convert");
    let s = Session::from_envelope(&e);
    assert_eq!(put_converted(&app, &s, "minutes.docx", "converted").await.status(), 200);
    assert_eq!(std::fs::read(app.data.join("owner/Team/minutes.docx")).unwrap(), b"converted");

    // Made read-only since: the open session may no longer convert.
    app.put_share("editable", json!({"owner": "owner", "path": "Team"}));
    assert_eq!(put_converted(&app, &s, "minutes.docx", "again").await.status(), 501);
    assert!(!app.data.join("owner/Team/minutes (1).docx").exists());
}

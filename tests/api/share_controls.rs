//! Per-share client controls (secure view): a share manifest's `watermark`, `download`, `print`
//! and `copy` reach share visitors' CheckFileInfo; owners are never restricted; downloads off
//! also refuses PutRelativeFile (Save As is an export) but never GetFile.

use serde_json::{json, Value};

use crate::helpers::*;

const CONTROL_FIELDS: [&str; 7] =
    ["WatermarkText", "DisableExport", "HideExportOption", "DisablePrint", "HidePrintOption", "DisableCopy", "CopyPasteRestrictions"];

fn today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

/// A Collabora session for `user` (display name `name`; `None` = anonymous).
async fn open(app: &TestApp, who: Option<(&str, &str)>, uri: &str, action: &str) -> Session {
    let jwt = who.map(|(user, name)| caller_jwt(user, name));
    let body = json!({"uri": uri, "viewer_id": COLLABORA, "preferred_action": action});
    Session::from_envelope(&app.session(body, jwt.as_deref()).await)
}

fn secure_share() -> Value {
    json!({"owner": "owner", "path": "Team", "editable": true,
           "watermark": "Confidential: {user}, {date}", "download": false, "print": false, "copy": false})
}

#[tokio::test]
async fn share_controls_reach_the_visitors_check_file_info() {
    let app = spawn_app().await;
    app.put_file("owner", "Team/plan.docx", b"plan");
    app.put_share("secure", secure_share());

    let s = open(&app, Some(("bob", "Bob Visitor")), "cloudreve://secure@share/plan.docx", "edit").await;
    assert_eq!(s.action, "edit", "controls do not take editing away");
    let info = app.info(&s).await;
    assert_eq!(info["WatermarkText"], format!("Confidential: Bob Visitor, {}", today()));
    for field in ["DisableExport", "HideExportOption", "DisablePrint", "HidePrintOption", "DisableCopy"] {
        assert_eq!(info[field], true, "{field}: {info}");
    }
    assert_eq!(info["CopyPasteRestrictions"], "CurrentDocumentOnly");
    assert_eq!(info["UserCanNotWriteRelative"], true, "Save As is an export");
    assert_eq!(info["UserCanWrite"], true);

    // The client still needs the bytes, and the visitor may still save.
    assert_eq!(app.contents(&s).await, (200, b"plan".to_vec()));
    assert_eq!(app.lock(&s, "L").await.status(), 200);
    assert_eq!(app.put(&s, "edited").header("X-WOPI-Lock", "L").send().await.unwrap().status(), 200);

    // Anonymous visitors are "Guest" in the watermark.
    let anon = open(&app, None, "cloudreve://secure@share/plan.docx", "view").await;
    assert_eq!(app.info(&anon).await["WatermarkText"], format!("Confidential: Guest, {}", today()));
}

#[tokio::test]
async fn owner_sessions_are_unaffected() {
    let app = spawn_app().await;
    app.put_file("owner", "Team/plan.docx", b"plan");
    app.put_share("secure", secure_share());
    for uri in ["cloudreve://my/Team/plan.docx", "cloudreve://secure@share/plan.docx"] {
        let s = open(&app, Some(("owner", "Owner")), uri, "edit").await;
        let info = app.info(&s).await;
        for field in CONTROL_FIELDS {
            assert!(info.get(field).is_none(), "{uri}: {field} in {info}");
        }
        assert_eq!(info["UserCanNotWriteRelative"], false, "{uri}");
        let r = app.op(&s, "PUT_RELATIVE").header("X-WOPI-SuggestedTarget", ".pdf").body("pdf").send().await.unwrap();
        assert_eq!(r.status(), 200, "{uri}");
    }
    // A share without controls restricts nothing either.
    app.put_share("plain", json!({"owner": "owner", "path": "Team", "editable": true}));
    let s = open(&app, Some(("bob", "Bob")), "cloudreve://plain@share/plan.docx", "edit").await;
    let info = app.info(&s).await;
    for field in CONTROL_FIELDS {
        assert!(info.get(field).is_none(), "{field} in {info}");
    }
    assert_eq!(info["UserCanNotWriteRelative"], false);
}

#[tokio::test]
async fn each_control_sets_only_its_own_properties() {
    let app = spawn_app().await;
    app.put_file("owner", "Team/plan.docx", b"plan");
    let cases = [
        (json!({"print": false}), vec!["DisablePrint", "HidePrintOption"]),
        (json!({"copy": false}), vec!["DisableCopy", "CopyPasteRestrictions"]),
        (json!({"download": false}), vec!["DisableExport", "HideExportOption"]),
        (json!({"watermark": "Draft"}), vec!["WatermarkText"]),
        // An empty watermark is none.
        (json!({"watermark": "  "}), vec![]),
    ];
    for (controls, expected) in cases {
        let mut manifest = json!({"owner": "owner", "path": "Team"});
        manifest.as_object_mut().unwrap().extend(controls.as_object().unwrap().clone());
        app.put_share("s", manifest);
        let s = open(&app, Some(("bob", "Bob")), "cloudreve://s@share/plan.docx", "view").await;
        let info = app.info(&s).await;
        let present: Vec<&str> = CONTROL_FIELDS.into_iter().filter(|f| info.get(*f).is_some()).collect();
        assert_eq!(present, expected, "{controls}");
    }
}

#[tokio::test]
async fn downloads_off_refuses_put_relative_file_but_not_get_file() {
    let app = spawn_app().await;
    app.put_file("owner", "Team/plan.docx", b"plan");
    app.put_file("owner", "Team/old.doc", b"legacy");
    app.put_share("nodl", json!({"owner": "owner", "path": "Team", "editable": true, "download": false}));
    let before = snapshot(&app.data.join("owner"));

    let s = open(&app, Some(("bob", "Bob")), "cloudreve://nodl@share/plan.docx", "edit").await;
    assert_eq!(app.contents(&s).await.0, 200);
    for (header, value) in [("X-WOPI-SuggestedTarget", ".pdf"), ("X-WOPI-RelativeTarget", "copy.docx")] {
        let r = app.op(&s, "PUT_RELATIVE").header(header, value).body("copy").send().await.unwrap();
        assert_eq!(r.status(), 501, "{header}");
    }
    let r = app.op(&s, "PUT_RELATIVE").header("X-WOPI-FileConversion", "true").header("X-WOPI-SuggestedTarget", ".docx").body("c").send().await.unwrap();
    assert_eq!(r.status(), 501, "a conversion is a new file too");
    assert_eq!(snapshot(&app.data.join("owner")), before, "nothing created");

    // Binary formats are not offered for conversion there (viewed instead).
    let jwt = caller_jwt("bob", "Bob");
    let e = app.session(json!({"uri": "cloudreve://nodl@share/old.doc", "viewer_id": OFFICE, "preferred_action": "edit"}), Some(&jwt)).await;
    assert_eq!(e["data"]["session"]["viewer_action"], "view", "{e}");

    // The manifest as the store holds it now: downloads back on, Save As works in the same session.
    app.put_share("nodl", json!({"owner": "owner", "path": "Team", "editable": true}));
    let info = app.info(&s).await;
    assert!(info.get("DisableExport").is_none());
    assert_eq!(info["UserCanNotWriteRelative"], false);
    let r = app.op(&s, "PUT_RELATIVE").header("X-WOPI-SuggestedTarget", ".pdf").body("copy").send().await.unwrap();
    assert_eq!(r.status(), 200);
    // And off again: refused at once, and CheckFileInfo says so.
    app.put_share("nodl", json!({"owner": "owner", "path": "Team", "editable": true, "download": false}));
    assert_eq!(app.info(&s).await["DisableExport"], true);
    let r = app.op(&s, "PUT_RELATIVE").header("X-WOPI-SuggestedTarget", ".pdf").body("copy").send().await.unwrap();
    assert_eq!(r.status(), 501);
}

#[tokio::test]
async fn a_watermark_is_at_most_200_characters() {
    let app = spawn_app().await;
    app.put_file("owner", "Team/plan.docx", b"plan");
    let jwt = caller_jwt("bob", "Bob");
    let body = json!({"uri": "cloudreve://wm@share/plan.docx", "viewer_id": COLLABORA, "preferred_action": "view"});

    app.put_share("wm", json!({"owner": "owner", "path": "Team", "watermark": "é".repeat(200)}));
    let s = Session::from_envelope(&app.session(body.clone(), Some(&jwt)).await);
    assert_eq!(app.info(&s).await["WatermarkText"], "é".repeat(200), "characters, not bytes");

    // One more is a broken manifest: the store's error path, for new sessions and open ones.
    app.put_share("wm", json!({"owner": "owner", "path": "Team", "watermark": "x".repeat(201)}));
    let msg = assert_code(&app.session(body, Some(&jwt)).await, 50004);
    assert!(!msg.contains("xxxx") && !msg.contains("wm"), "{msg}");
    assert_eq!(app.check_file_info(&s).await.status(), 404);

    // Controls of the wrong type are refused the same way.
    app.put_share("wm", json!({"owner": "owner", "path": "Team", "print": "no"}));
    assert_eq!(app.check_file_info(&s).await.status(), 404);
}

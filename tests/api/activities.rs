//! AddActivities: the answer, what is kept per file, who may add them, each refusal, and the
//! webhook (a real receiver on 127.0.0.1: signature, retries, the answer not waiting).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::helpers::*;

const HOOK_SECRET: &str = "activity-webhook-secret-0123456789abcdef-xyz";

fn comment(id: &str) -> Value {
    json!({"Type": "comment", "Id": id, "Created": "2017-02-15T13:47:13000000Z",
           "Data": {"ContentId": "cid123", "ContentAction": "created"}})
}

fn batch(activities: Vec<Value>) -> String {
    json!({"Activities": activities}).to_string()
}

fn guid(n: usize) -> String {
    format!("{n:08x}-0000-4000-8000-000000000000")
}

async fn add(app: &TestApp, s: &Session, body: String) -> reqwest::Response {
    app.op(s, "ADD_ACTIVITIES").header("Content-Type", "application/json").body(body).send().await.unwrap()
}

/// What the store holds for the file (`None`: nothing).
fn stored(app: &TestApp, fid: &str) -> Option<Value> {
    let path = app.data.join(format!(".wopigate/objects/activities/{fid}.json"));
    std::fs::read(path).ok().map(|raw| serde_json::from_slice(&raw).unwrap())
}

fn stored_ids(app: &TestApp, fid: &str) -> Vec<String> {
    stored(app, fid).map_or(vec![], |v| v["activities"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_string()).collect())
}

async fn document(app: &TestApp, action: &str) -> Session {
    app.put_file("alice", "notes.docx", b"text");
    app.session_for("alice", "cloudreve://my/notes.docx", action).await
}

#[tokio::test]
async fn a_batch_is_answered_in_order_and_its_comments_are_kept() {
    let app = spawn_app().await;
    let s = document(&app, "edit").await;
    assert_eq!(app.info(&s).await["SupportsAddActivities"], json!(true));
    let body = batch(vec![
        json!({"Type": "comment", "Id": "00000001-0000-0000-0000-000000000000", "Created": "2017-02-15T13:47:13000000Z",
               "Data": {"CommentText": "basic text", "ContentId": "cid123", "NavigationId": "nid123", "ContentAction": "created",
                        "IsReply": true, "BonusProperty": "future"},
               "People": [{"Name": "John Able", "Id": "111", "Provider": "wopi-contoso", "Mentioned": true, "Bonus": 1},
                          {"Name": "Pat", "Id": "{00000000-0000-0000-0000-000000000000}", "Provider": "Windows Live", "InThread": true, "RepliedTo": true}],
               "BonusTopLevelProperty": "future"}),
        json!({"Type": "unsupported", "Id": "00000002-0000-0000-0000-000000000000", "Created": "2017-02-15T13:47:13000000Z"}),
        json!({"Type": "comment", "Id": "00000003-ABCD-ABCD-ABCD-ABCDEFABCDEF", "Timestamp": "2017-03-15T14:47:13+01:00",
               "Data": {"ContentId": "x".repeat(1024), "ContentAction": "deleted"}}),
    ]);
    let r = add(&app, &s, body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let answer: Value = r.json().await.unwrap();
    assert_eq!(
        answer,
        json!({"ActivityResponses": [
            {"Id": "00000001-0000-0000-0000-000000000000", "Status": 0},
            {"Id": "00000002-0000-0000-0000-000000000000", "Status": 3},
            {"Id": "00000003-ABCD-ABCD-ABCD-ABCDEFABCDEF", "Status": 0},
        ]})
    );
    let kept = stored(&app, &s.fid).expect("the comments are stored");
    let list = kept["activities"].as_array().unwrap();
    assert_eq!(list.len(), 2, "the unsupported type is not kept: {kept}");
    let first = &list[0];
    assert_eq!(first["id"], "00000001-0000-0000-0000-000000000000");
    assert_eq!(first["type"], "comment");
    assert_eq!(first["created"], "2017-02-15T13:47:13.000000Z");
    assert_eq!(first["user_id"], "alice");
    assert_eq!(first["user_name"], "Test User");
    assert_eq!(first["content_id"], "cid123");
    assert_eq!(first["navigation_id"], "nid123");
    assert_eq!(first["comment_text"], "basic text");
    assert_eq!(first["content_action"], "created");
    assert_eq!(first["is_reply"], true);
    assert_eq!(
        first["people"],
        json!([{"id": "111", "name": "John Able", "provider": "wopi-contoso", "mentioned": true, "in_thread": false, "replied_to": false},
               {"id": "{00000000-0000-0000-0000-000000000000}", "name": "Pat", "provider": "Windows Live", "mentioned": false, "in_thread": true, "replied_to": true}])
    );
    assert!(!kept.to_string().contains("Bonus") && !kept.to_string().contains("future"), "unknown properties are not kept: {kept}");
    let received = chrono::DateTime::parse_from_rfc3339(first["received"].as_str().unwrap()).unwrap();
    assert!((chrono::Utc::now() - received.to_utc()).num_seconds().abs() < 60);
    assert_eq!(list[1]["created"], "2017-03-15T13:47:13.000000Z", "Timestamp is read, in UTC");
    assert_eq!(list[1]["content_action"], "deleted");
    assert_eq!(list[1]["content_id"].as_str().unwrap().len(), 1024);

    // A client's retry of the same ids replaces them (any case) rather than adding copies.
    let again = add(&app, &s, batch(vec![comment("00000003-abcd-abcd-abcd-abcdefabcdef")])).await;
    assert_eq!(again.status(), 200);
    assert_eq!(stored_ids(&app, &s.fid), ["00000001-0000-0000-0000-000000000000", "00000003-abcd-abcd-abcd-abcdefabcdef"]);
}

#[tokio::test]
async fn view_sessions_may_add_activities_and_anonymous_visitors_may_not() {
    let app = spawn_app().await;
    let viewer = document(&app, "view").await;
    assert_eq!(viewer.action, "view");
    assert_eq!(add(&app, &viewer, batch(vec![comment(&guid(1))])).await.status(), 200, "comments are made in view mode too");
    assert_eq!(stored_ids(&app, &viewer.fid), [guid(1)]);

    app.put_file("owner", "shared.docx", b"x");
    app.put_share("pub", json!({"owner": "owner", "path": "shared.docx", "editable": true}));
    let visitor = Session::from_envelope(&app.open_anonymous("cloudreve://pub@share/", "edit").await);
    assert_eq!(app.info(&visitor).await["SupportsAddActivities"], json!(false), "not advertised to anonymous visitors");
    let r = add(&app, &visitor, batch(vec![comment(&guid(2))])).await;
    assert_eq!(r.status(), 501);
    assert!(r.text().await.unwrap().contains("signed-in users only"));
    assert_eq!(stored(&app, &visitor.fid), None, "nothing kept for an anonymous visitor");

    // A session whose token is not for this file, or none at all.
    let url = |token: &str| app.file_url(&viewer.fid, "", token);
    for token in ["", "garbage"] {
        let r = app.client.post(url(token)).header("X-WOPI-Override", "ADD_ACTIVITIES").body(batch(vec![comment(&guid(3))])).send().await.unwrap();
        assert_eq!(r.status(), 401);
    }
    assert_eq!(stored_ids(&app, &viewer.fid), [guid(1)]);
}

#[tokio::test]
async fn malformed_batches_are_refused_whole_and_change_nothing() {
    let app = spawn_app().await;
    let s = document(&app, "edit").await;
    let mut no_id = comment(&guid(1));
    no_id.as_object_mut().unwrap().remove("Id");
    let with = |change: &dyn Fn(&mut Value)| {
        let mut c = comment(&guid(1));
        change(&mut c);
        batch(vec![c])
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("not JSON", "{\"Activities\": [".into(), "not JSON"),
        ("no Activities", json!({"activities": []}).to_string(), "\"Activities\" array"),
        ("Activities not an array", json!({"Activities": {}}).to_string(), "\"Activities\" array"),
        ("empty batch", batch(vec![]), "empty"),
        ("too many", batch((0..101).map(|i| comment(&guid(i))).collect()), "at most 100"),
        ("activity not an object", batch(vec![json!("comment")]), "not an object"),
        ("missing Id", batch(vec![no_id]), "Id is required"),
        ("Id not a GUID", with(&|c| c["Id"] = json!("comment-1")), "GUID"),
        ("Id a number", with(&|c| c["Id"] = json!(7)), "must be a string"),
        ("repeated Id", batch(vec![comment(&guid(1)), comment(&guid(1).to_uppercase())]), "repeats"),
        ("missing Type", with(&|c| { c.as_object_mut().unwrap().remove("Type"); }), "Type is required"),
        ("missing time", with(&|c| { c.as_object_mut().unwrap().remove("Created"); }), "needs Created"),
        ("bad time", with(&|c| c["Created"] = json!("2017-02-30T13:47:13Z")), "not a date and time"),
        ("time a number", with(&|c| c["Created"] = json!(1487166433)), "must be a string"),
        ("missing Data", with(&|c| { c.as_object_mut().unwrap().remove("Data"); }), "Data is required"),
        ("Data not an object", with(&|c| c["Data"] = json!("x")), "must be an object"),
        ("missing ContentId", with(&|c| { c["Data"].as_object_mut().unwrap().remove("ContentId"); }), "ContentId is required"),
        ("too long ContentId", with(&|c| c["Data"]["ContentId"] = json!("x".repeat(5000))), "longer than 4096"),
        ("unknown ContentAction", with(&|c| c["Data"]["ContentAction"] = json!("moved")), "created, updated or deleted"),
        ("IsReply not a boolean", with(&|c| c["Data"]["IsReply"] = json!("yes")), "true or false"),
        ("People not an array", with(&|c| c["People"] = json!({})), "must be an array"),
        ("person without Id", with(&|c| c["People"] = json!([{"Name": "Nobody"}])), "People[0].Id is required"),
        // One good activity does not carry a bad one: the batch is refused whole.
        ("a bad one after a good one", batch(vec![comment(&guid(1)), json!({"Type": "comment", "Id": guid(2)})]), "Activities[1]"),
    ];
    for (what, body, message) in cases {
        let r = add(&app, &s, body).await;
        assert_eq!(r.status(), 400, "{what}");
        let text = r.text().await.unwrap();
        assert!(text.contains("AddActivities") && text.contains(message), "{what}: {text}");
    }
    assert_eq!(stored(&app, &s.fid), None, "no refused batch kept anything");

    // Too large: refused from its declared length before it is read, and when it arrives longer.
    let huge = batch(vec![json!({"Type": "comment", "Id": guid(1), "Data": {"CommentText": "x".repeat(300 * 1024)}})]);
    let r = add(&app, &s, huge.clone()).await;
    assert_eq!(r.status(), 413);
    assert!(r.text().await.unwrap().contains("262144"));
    let chunks = futures_util::stream::iter(huge.into_bytes().chunks(8192).map(|c| Ok::<_, std::io::Error>(c.to_vec())).collect::<Vec<_>>());
    let r = app.op(&s, "ADD_ACTIVITIES").body(reqwest::Body::wrap_stream(chunks)).send().await.unwrap();
    assert_eq!(r.status(), 413, "a chunked body is cut off at the limit too");
    assert_eq!(stored(&app, &s.fid), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_batches_on_one_file_lose_nothing_and_the_newest_are_kept() {
    let app = Arc::new(spawn_app().await);
    let s = document(&app, "edit").await;
    let requests = (0..40).map(|i| {
        let (app, s) = (app.clone(), s.clone());
        tokio::spawn(async move { add(&app, &s, batch(vec![comment(&guid(2 * i)), comment(&guid(2 * i + 1))])).await.status().as_u16() })
    });
    for status in futures_util::future::join_all(requests).await {
        assert_eq!(status.unwrap(), 200);
    }
    let mut ids = stored_ids(&app, &s.fid);
    ids.sort();
    assert_eq!(ids, (0..80).map(guid).collect::<Vec<_>>(), "every concurrent batch landed");

    // Beyond the bound the oldest go: 80 + 6 × 100 = 680 sent, the newest 500 kept.
    for round in 0..6 {
        let body = batch((0..100).map(|i| comment(&guid(1000 + round * 100 + i))).collect());
        assert_eq!(add(&app, &s, body).await.status(), 200);
    }
    let ids = stored_ids(&app, &s.fid);
    assert_eq!(ids.len(), 500);
    assert_eq!(ids.first().unwrap(), &guid(1100));
    assert_eq!(ids.last().unwrap(), &guid(1599));
}

/// A webhook receiver on 127.0.0.1: answers the n-th request with `script[n]` (a delay, then a
/// status), 200 after the script; keeps what it received.
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Received>>>,
}

#[derive(Clone, Debug)]
struct Received {
    headers: HashMap<String, String>,
    body: Vec<u8>,
    at: Instant,
}

struct Script {
    steps: Vec<(Duration, u16)>,
    got: Arc<Mutex<Vec<Received>>>,
}

async fn hook(req: HttpRequest, body: web::Bytes, script: web::Data<Script>) -> HttpResponse {
    let headers = req.headers().iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or_default().to_string())).collect();
    let n = {
        let mut got = script.got.lock().unwrap();
        got.push(Received { headers, body: body.to_vec(), at: Instant::now() });
        got.len() - 1
    };
    let (delay, status) = script.steps.get(n).copied().unwrap_or((Duration::ZERO, 200));
    tokio::time::sleep(delay).await;
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).finish()
}

fn receiver(steps: Vec<(Duration, u16)>) -> Receiver {
    let got = Arc::new(Mutex::new(Vec::new()));
    let script = web::Data::new(Script { steps, got: got.clone() });
    let server = HttpServer::new(move || App::new().app_data(script.clone()).route("/hook", web::post().to(hook)))
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .unwrap();
    let port = server.addrs()[0].port();
    tokio::spawn(server.run());
    Receiver { port, got }
}

impl Receiver {
    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        while self.received().len() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.received()
    }
}

fn expected_signature(timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(HOOK_SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

async fn metric(app: &TestApp, result: &str) -> u64 {
    let text = app.client.get(format!("{}/metrics", app.address)).send().await.unwrap().text().await.unwrap();
    let line = format!("wopigate_activity_webhook_deliveries_total{{result=\"{result}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&line)).map_or(0, |v| v.trim().parse().unwrap())
}

/// The metric once it reaches `expected` (the receiver records a request before the sender
/// counts its answer), or what it is after a few seconds.
async fn metric_reaching(app: &TestApp, result: &str, expected: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let value = metric(app, result).await;
        if value == expected || Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn batches_reach_the_webhook_signed_retried_and_without_holding_up_the_answer() {
    // Slow and failing first, failing again, then accepted.
    let hook = receiver(vec![(Duration::from_secs(2), 503), (Duration::ZERO, 503)]);
    let url = format!("http://hookuser:hookpass@127.0.0.1:{}/hook?key=query-credential", hook.port);
    let app = spawn_with(&[("WOPIGATE_ACTIVITY_WEBHOOK", &url), ("WOPIGATE_ACTIVITY_WEBHOOK_SECRET", HOOK_SECRET)]).await;
    let s = document(&app, "edit").await;
    let started = Instant::now();
    let r = add(&app, &s, batch(vec![comment(&guid(1)), json!({"Type": "unsupported", "Id": guid(2)}), comment(&guid(3))])).await;
    let answered = started.elapsed();
    assert_eq!(r.status(), 200);
    assert!(answered < Duration::from_secs(1), "the answer did not wait for the webhook: {answered:?}");

    let got = hook.wait_for(3, Duration::from_secs(15)).await;
    assert_eq!(got.len(), 3, "two failures, then the delivery: {got:?}");
    assert!(got[0].at.duration_since(started) < Duration::from_secs(1), "the first attempt starts at once");
    // Backoff: ≥ 0.5 s after the first failure answered (2 s in), ≥ 1 s after the second.
    assert!(got[1].at.duration_since(got[0].at) >= Duration::from_millis(2500), "{:?}", got[1].at.duration_since(got[0].at));
    assert!(got[2].at.duration_since(got[1].at) >= Duration::from_millis(1000), "{:?}", got[2].at.duration_since(got[1].at));
    let delivery_id = got[0].headers["x-wopigate-delivery"].clone();
    for attempt in &got {
        let h = &attempt.headers;
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(h["x-wopigate-delivery"], delivery_id, "the same delivery id on every attempt");
        let timestamp = &h["x-wopigate-timestamp"];
        assert!((timestamp.parse::<i64>().unwrap() - now()).abs() < 60, "a current timestamp: {timestamp}");
        assert_eq!(h["x-wopigate-signature"], expected_signature(timestamp, &attempt.body), "signed over the timestamp and the exact body");
        assert_ne!(h["x-wopigate-signature"], expected_signature(&(timestamp.parse::<i64>().unwrap() + 1).to_string(), &attempt.body));
        // The URL's credentials reach the receiver as HTTP basic auth.
        assert!(h.get("authorization").is_some_and(|a| a.starts_with("Basic ")), "{h:?}");
    }
    let body: Value = serde_json::from_slice(&got[2].body).unwrap();
    assert_eq!(body["delivery_id"], delivery_id.as_str());
    assert_eq!(body["file_id"], s.fid.as_str());
    assert_eq!(body["user"], json!({"id": "alice", "name": "Test User"}));
    assert!(chrono::DateTime::parse_from_rfc3339(body["timestamp"].as_str().unwrap()).is_ok());
    let ids: Vec<&str> = body["activities"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [guid(1), guid(3)], "comments only: {body}");
    assert_eq!(body["activities"][0]["content_id"], "cid123");
    assert_eq!(body["activities"], stored(&app, &s.fid).unwrap()["activities"], "the stored form is delivered");
    assert_eq!(metric_reaching(&app, "delivered", 1).await, 1);
    assert_eq!(metric(&app, "retried").await, 2);
    assert_eq!(metric(&app, "failed").await, 0);
}

#[tokio::test]
async fn a_receiver_refusing_with_4xx_is_not_retried_but_429_is() {
    let hook = receiver(vec![(Duration::ZERO, 400), (Duration::ZERO, 429)]);
    let url = format!("http://127.0.0.1:{}/hook", hook.port);
    let app = spawn_with(&[("WOPIGATE_ACTIVITY_WEBHOOK", &url), ("WOPIGATE_ACTIVITY_WEBHOOK_SECRET", HOOK_SECRET)]).await;
    let s = document(&app, "edit").await;
    assert_eq!(add(&app, &s, batch(vec![comment(&guid(1))])).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(hook.received().len(), 1, "a 400 is final");
    assert_eq!(metric_reaching(&app, "failed", 1).await, 1);
    assert_eq!(add(&app, &s, batch(vec![comment(&guid(2))])).await.status(), 200);
    let got = hook.wait_for(3, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 3, "a 429 is tried again");
    assert_eq!(got[1].headers["x-wopigate-delivery"], got[2].headers["x-wopigate-delivery"]);
    assert_eq!(metric_reaching(&app, "delivered", 1).await, 1);
    // Unsupported types alone deliver nothing.
    let r = add(&app, &s, batch(vec![json!({"Type": "unsupported", "Id": guid(3)})])).await;
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hook.received().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_drops_with_a_metric_and_answers_stay_fast() {
    // The receiver holds every request (longer than the test): 8 in flight, 1024 queued.
    let hook = receiver((0..5000).map(|_| (Duration::from_secs(120), 200)).collect());
    let url = format!("http://127.0.0.1:{}/hook", hook.port);
    let app = Arc::new(spawn_with(&[("WOPIGATE_ACTIVITY_WEBHOOK", &url), ("WOPIGATE_ACTIVITY_WEBHOOK_SECRET", HOOK_SECRET)]).await);
    // One file per sender: they do not wait for each other's writes.
    let mut sessions = Vec::new();
    for w in 0..4 {
        app.put_file("alice", &format!("f{w}.docx"), b"x");
        sessions.push(app.session_for("alice", &format!("cloudreve://my/f{w}.docx"), "edit").await);
    }
    let started = Instant::now();
    let senders = sessions.iter().enumerate().map(|(w, s)| {
        let (app, s) = (app.clone(), s.clone());
        tokio::spawn(async move {
            for i in 0..270 {
                assert_eq!(add(&app, &s, batch(vec![comment(&guid(w * 1000 + i))])).await.status(), 200);
            }
        })
    });
    for sender in futures_util::future::join_all(senders).await {
        sender.unwrap();
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(60), "answers did not wait for the stuck receiver: {elapsed:?}");
    let dropped = metric(&app, "dropped").await;
    // 8 in flight, one taken by the sender waiting for a slot, 1024 queued: the other 47 dropped.
    assert_eq!(dropped, 1080 - 8 - 1 - 1024, "{elapsed:?}");
    assert_eq!(metric(&app, "delivered").await, 0);
    for s in &sessions {
        assert_eq!(stored_ids(&app, &s.fid).len(), 270, "the store keeps them regardless");
    }
}

#[test]
fn the_webhook_needs_an_http_url_and_a_long_secret() {
    let dir = tempfile::tempdir().unwrap();
    let config = |extra: &[(&str, &str)]| wopigate::config::Config::from_vars(base_env(free_port(), dir.path(), extra));
    let secret = ("WOPIGATE_ACTIVITY_WEBHOOK_SECRET", HOOK_SECRET);
    let url = "https://user:url-password@hooks.test/in?token=url-token";
    let cases: Vec<(Vec<(&str, &str)>, &str, &str)> = vec![
        (vec![("WOPIGATE_ACTIVITY_WEBHOOK", url)], "WOPIGATE_ACTIVITY_WEBHOOK_SECRET", "is required"),
        (vec![("WOPIGATE_ACTIVITY_WEBHOOK", url), ("WOPIGATE_ACTIVITY_WEBHOOK_SECRET", "short")], "WOPIGATE_ACTIVITY_WEBHOOK_SECRET", "32 bytes"),
        (vec![("WOPIGATE_ACTIVITY_WEBHOOK", "ftp://user:url-password@hooks.test/in"), secret], "WOPIGATE_ACTIVITY_WEBHOOK", "http(s)"),
        (vec![("WOPIGATE_ACTIVITY_WEBHOOK", "hooks.test/in?token=url-token"), secret], "WOPIGATE_ACTIVITY_WEBHOOK", "not a URL"),
    ];
    for (extra, var, message) in cases {
        let e = config(&extra).expect_err(var);
        let shown = e.to_string();
        assert!(shown.contains(var) && shown.contains(message), "{shown}");
        assert!(!shown.contains("url-password") && !shown.contains("url-token"), "the URL's credentials are not repeated: {shown}");
    }
    let ok = config(&[("WOPIGATE_ACTIVITY_WEBHOOK", url), secret]).unwrap();
    let debug = format!("{:?}", ok.activity_webhook);
    assert!(!debug.contains("url-password") && !debug.contains(HOOK_SECRET), "{debug}");
    assert!(config(&[("WOPIGATE_ACTIVITY_WEBHOOK", ""), ("WOPIGATE_ACTIVITY_WEBHOOK_SECRET", "")]).unwrap().activity_webhook.is_none(), "empty = unset");
    let production = config(&[("WOPIGATE_ENV", "production"), ("WOPIGATE_ACTIVITY_WEBHOOK", url), ("WOPIGATE_ACTIVITY_WEBHOOK_SECRET", "replace-me-replace-me-replace-me-00")]);
    assert_eq!(production.expect_err("a placeholder").var, "WOPIGATE_ACTIVITY_WEBHOOK_SECRET");

    // The binary: exit 2, one line naming the variable.
    let output = crate::process::command(&base_env(free_port(), dir.path(), &[("WOPIGATE_ACTIVITY_WEBHOOK", url)])).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("WOPIGATE_ACTIVITY_WEBHOOK_SECRET") && !stderr.contains("url-password"), "{stderr}");
}

#[tokio::test]
async fn failed_deliveries_are_logged_without_the_url_credentials_or_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // Nothing listens there: every attempt fails to connect.
    let url = format!("http://hookuser:hook-password-never-logged@127.0.0.1:{}/hook?key=hook-query-never-logged", free_port());
    let env = base_env(port, dir.path(), &[("WOPIGATE_ACTIVITY_WEBHOOK", &url), ("WOPIGATE_ACTIVITY_WEBHOOK_SECRET", HOOK_SECRET)]);
    let child = crate::process::serve_document(port, dir.path(), &env, b"x").await;
    let (token, fid) = crate::process::edit_session_as(port, &caller_jwt("u1", "U"), "a.docx").await;
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/wopi/files/{fid}?access_token={token}"))
        .header("X-WOPI-Override", "ADD_ACTIVITIES")
        .body(batch(vec![comment(&guid(1))]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a webhook that is down does not fail the answer");
    // The first retry is due after 0.5–0.625 s.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let stderr = crate::process::stop(child);
    assert!(stderr.contains("activity webhook delivery failed; retrying") && stderr.contains("connection failed"), "{stderr}");
    assert!(stderr.contains("/hook"), "the webhook is named, without credentials: {stderr}");
    for secret in ["hook-password-never-logged", "hook-query-never-logged", HOOK_SECRET, token.as_str()] {
        assert!(!stderr.contains(secret), "the log leaks {secret}");
    }
}

//! Containers, the ecosystem and the bootstrapper: every token they hand out comes from policy
//! over the store's current state, and a token of one kind or for one container opens nothing
//! else.

use serde_json::{json, Value};

use crate::helpers::*;

/// A container (or file) URL and its token, as an answer gave them.
struct Pointer {
    url: String,
    token: String,
    id: String,
}

impl Pointer {
    fn of(value: &Value) -> Pointer {
        let url = value["Url"].as_str().unwrap_or_else(|| panic!("no Url in {value}")).to_string();
        let parsed = url::Url::parse(&url).unwrap();
        let token = parsed.query_pairs().find(|(k, _)| k == "access_token").unwrap().1.into_owned();
        let id = parsed.path().rsplit('/').next().unwrap().to_string();
        Pointer { url, token, id }
    }

    fn at(&self, suffix: &str) -> String {
        let (base, query) = self.url.split_once('?').unwrap();
        format!("{base}{suffix}?{query}")
    }
}

impl TestApp {
    async fn get_json(&self, url: &str) -> (u16, Value) {
        let r = self.client.get(url).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn ancestors_of_file(&self, s: &Session) -> Vec<Value> {
        let (status, body) = self.get_json(&self.file_url(&s.fid, "/ancestry", &s.token)).await;
        assert_eq!(status, 200, "{body}");
        body["AncestorsWithRootFirst"].as_array().unwrap().clone()
    }

    fn container_op(&self, c: &Pointer, override_: &str) -> reqwest::RequestBuilder {
        self.client.post(&c.url).header("X-WOPI-Override", override_)
    }
}

/// The folder a session's file is in, as a container.
async fn parent_of(app: &TestApp, s: &Session) -> Pointer {
    Pointer::of(app.ancestors_of_file(s).await.last().expect("the file has a parent container"))
}

#[tokio::test]
async fn an_owner_browses_creates_renames_and_deletes_folders() {
    let app = spawn_app().await;
    app.put_file("alice", "Projects/Q3/plan.docx", b"plan");
    app.put_file("alice", "Projects/Q3/sheet.xlsx", b"sheet");
    let s = app.session_for("alice", "cloudreve://my/Projects/Q3/plan.docx", "edit").await;
    let info = app.info(&s).await;
    assert_eq!(info["SupportsContainers"], true);
    assert_eq!(info["SupportsEcosystem"], true);

    // Ancestors: root first, the file's folder last.
    let names: Vec<_> = app.ancestors_of_file(&s).await.iter().map(|a| a["Name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, ["My files", "Projects", "Q3"]);
    let q3 = parent_of(&app, &s).await;
    let (_, q3_info) = app.get_json(&q3.url).await;
    assert_eq!(q3_info["Name"], "Q3");
    assert_eq!((q3_info["UserCanCreateChildFile"].clone(), q3_info["UserCanRename"].clone(), q3_info["UserCanDelete"].clone()), (json!(true), json!(true), json!(true)));
    let (_, ancestry) = app.get_json(&q3.at("/ancestry")).await;
    assert_eq!(ancestry["AncestorsWithRootFirst"].as_array().unwrap().len(), 2);

    // Children, with and without a filter; each child file's URL opens that file.
    let (_, children) = app.get_json(&q3.at("/children")).await;
    let files = children["ChildFiles"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files[0]["Name"], "plan.docx");
    assert_eq!(files[0]["Size"], 4);
    assert_eq!(Pointer::of(&files[0]).id, s.fid, "a child's id is the file's id, the same for every user");
    let r = app.client.get(format!("{}/wopi/containers/{}/children?access_token={}", app.address, q3.id, q3.token)).header("X-WOPI-FileExtensionFilterList", ".XLSX,.pdf").send().await.unwrap();
    let filtered: Value = r.json().await.unwrap();
    assert_eq!(filtered["ChildFiles"].as_array().unwrap().iter().map(|f| f["Name"].clone()).collect::<Vec<_>>(), [json!("sheet.xlsx")]);

    // CreateChildContainer: a suggested name is adjusted, an exact one taken is 409.
    let create = |name: &'static str, header: &'static str| app.container_op(&q3, "CREATE_CHILD_CONTAINER").header(header, name).send();
    let first: Value = create("Drafts", "X-WOPI-SuggestedTarget").await.unwrap().json().await.unwrap();
    assert_eq!(first["ContainerPointer"]["Name"], "Drafts");
    assert_eq!(first["ContainerInfo"]["Name"], "Drafts");
    let second: Value = create("Drafts", "X-WOPI-SuggestedTarget").await.unwrap().json().await.unwrap();
    assert_eq!(second["ContainerPointer"]["Name"], "Drafts (1)");
    assert_eq!(create("Drafts", "X-WOPI-RelativeTarget").await.unwrap().status(), 409);
    assert!(app.data.join("alice/Projects/Q3/Drafts (1)").is_dir());

    // CreateChildFile: an empty file, with a token of its own.
    let drafts = Pointer::of(&first["ContainerPointer"]);
    let r = app.container_op(&drafts, "CREATE_CHILD_FILE").header("X-WOPI-RelativeTarget", "notes.docx").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["Name"], "notes.docx");
    assert_eq!(std::fs::read(app.data.join("alice/Projects/Q3/Drafts/notes.docx")).unwrap(), b"");
    let notes = TestApp::session_from_url(created["Url"].as_str().unwrap());
    assert_eq!(app.put(&notes, &b"first words"[..]).send().await.unwrap().status(), 200, "unlocked empty file: PutFile allowed");

    // A non-empty folder is not deleted: nothing is lost.
    assert_eq!(app.container_op(&drafts, "DELETE_CONTAINER").send().await.unwrap().status(), 409);
    assert!(app.data.join("alice/Projects/Q3/Drafts/notes.docx").exists());

    // RenameContainer moves everything inside; ids and tokens keep working.
    let r = app.container_op(&drafts, "RENAME_CONTAINER").header("X-WOPI-RequestedName", "Final").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["Name"], "Final");
    assert!(app.data.join("alice/Projects/Q3/Final/notes.docx").exists());
    assert!(!app.data.join("alice/Projects/Q3/Drafts").exists());
    assert_eq!(app.contents(&notes).await, (200, b"first words".to_vec()), "the file inside keeps its id");
    let (status, renamed) = app.get_json(&drafts.url).await;
    assert_eq!((status, renamed["Name"].clone()), (200, json!("Final")), "the container keeps its id");
    let r = app.container_op(&drafts, "RENAME_CONTAINER").header("X-WOPI-RequestedName", "Drafts (1)").send().await.unwrap();
    assert_eq!(r.status(), 409, "the name is taken");

    // An empty folder goes; its id then names nothing.
    let empty = Pointer::of(&second["ContainerPointer"]);
    assert_eq!(app.container_op(&empty, "DELETE_CONTAINER").send().await.unwrap().status(), 200);
    assert!(!app.data.join("alice/Projects/Q3/Drafts (1)").exists());
    assert_eq!(app.get_json(&empty.url).await.0, 404);

    // The root is neither deleted nor renamed.
    let root = Pointer::of(&app.ancestors_of_file(&s).await[0]);
    let (_, root_info) = app.get_json(&root.url).await;
    assert_eq!((root_info["UserCanDelete"].clone(), root_info["UserCanRename"].clone()), (json!(false), json!(false)));
    // Nor shared by link: a token for one document must not open the whole account to anyone.
    assert_eq!(root_info["SupportedShareUrlTypes"], json!([]));
    for kind in ["ReadOnly", "ReadWrite"] {
        let r = app.container_op(&root, "GET_SHARE_URL").header("X-WOPI-UrlType", kind).send().await.unwrap();
        assert_eq!(r.status(), 501, "{kind}");
    }
    assert!(!app.data.join(".wopigate/objects/shares").exists() || std::fs::read_dir(app.data.join(".wopigate/objects/shares")).unwrap().count() == 0);
    let (_, q3_again) = app.get_json(&q3.url).await;
    assert_eq!(q3_again["SupportedShareUrlTypes"], json!(["ReadOnly", "ReadWrite"]), "a folder inside may be shared");
    assert_eq!(app.container_op(&root, "DELETE_CONTAINER").send().await.unwrap().status(), 409);
    assert_eq!(app.container_op(&root, "RENAME_CONTAINER").header("X-WOPI-RequestedName", "x").send().await.unwrap().status(), 401);
    assert!(app.data.join("alice/Projects").is_dir());
}

#[tokio::test]
async fn bad_container_requests_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    app.put_file("alice", "Docs/a.docx", b"a");
    let s = app.session_for("alice", "cloudreve://my/Docs/a.docx", "edit").await;
    let docs = parent_of(&app, &s).await;
    let before = snapshot(&app.data);
    let send = |override_: &'static str, headers: Vec<(&'static str, &'static str)>| {
        let mut req = app.container_op(&docs, override_);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send()
    };
    let r = send("CREATE_CHILD_CONTAINER", vec![("X-WOPI-RelativeTarget", "bad:name")]).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("X-WOPI-InvalidContainerNameError").is_some());
    let r = send("CREATE_CHILD_FILE", vec![("X-WOPI-RelativeTarget", "bad|name.docx")]).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("X-WOPI-InvalidFileNameError").is_some() || r.headers().get("X-WOPI-ValidRelativeTarget").is_some());
    for override_ in ["CREATE_CHILD_CONTAINER", "CREATE_CHILD_FILE"] {
        let both = send(override_, vec![("X-WOPI-RelativeTarget", "x.docx"), ("X-WOPI-SuggestedTarget", "y.docx")]).await.unwrap();
        assert_eq!(both.status(), 501, "{override_}: both targets");
        assert_eq!(send(override_, vec![]).await.unwrap().status(), 400, "{override_}: no target");
    }
    let utf7 = send("CREATE_CHILD_CONTAINER", vec![("X-WOPI-RelativeTarget", "+2D0-lone-surrogate")]).await.unwrap();
    assert_eq!(utf7.status(), 400);
    assert_eq!(send("RENAME_CONTAINER", vec![]).await.unwrap().status(), 400, "no X-WOPI-RequestedName");
    let r = send("RENAME_CONTAINER", vec![("X-WOPI-RequestedName", "a/b")]).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("X-WOPI-InvalidContainerNameError").is_some());
    assert_eq!(send("SOMETHING_ELSE", vec![]).await.unwrap().status(), 501);
    let r = app.client.get(docs.at("/children")).header("X-WOPI-FileExtensionFilterList", "docx, *").send().await.unwrap();
    assert_eq!(r.status(), 400);
    // Guards leave their (empty) lock files behind; nothing else may differ.
    let without_guards = |v: Vec<String>| v.into_iter().filter(|p| !p.starts_with(".wopigate/locks/")).collect::<Vec<_>>();
    assert_eq!(without_guards(snapshot(&app.data)), without_guards(before), "nothing changed");
}

#[tokio::test]
async fn a_token_opens_only_its_own_kind_and_container() {
    let app = spawn_app().await;
    app.put_file("alice", "Docs/a.docx", b"a");
    app.put_file("bob", "Mine/b.docx", b"b");
    let alice = app.session_for("alice", "cloudreve://my/Docs/a.docx", "edit").await;
    let bob = app.session_for("bob", "cloudreve://my/Mine/b.docx", "edit").await;
    let docs = parent_of(&app, &alice).await;
    let mine = parent_of(&app, &bob).await;

    // A container token on the file endpoints, a file token on the container endpoints.
    let r = app.client.get(format!("{}/wopi/files/{}?access_token={}", app.address, docs.id, docs.token)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = app.client.get(format!("{}/wopi/containers/{}?access_token={}", app.address, alice.fid, alice.token)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // Bob's container token on Alice's container.
    let r = app.client.get(format!("{}/wopi/containers/{}?access_token={}", app.address, docs.id, mine.token)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .client
        .post(format!("{}/wopi/containers/{}?access_token={}", app.address, docs.id, mine.token))
        .header("X-WOPI-Override", "CREATE_CHILD_FILE")
        .header("X-WOPI-RelativeTarget", "planted.docx")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(!app.data.join("alice/Docs/planted.docx").exists());
    // Nor can he name her folders to get a token for them.
    for native in ["cloudreve://alice@my/Docs", &docs.url, &format!("{}/wopi/containers/{}", app.address, docs.id)] {
        let r = app.wopi_src(&bob.token, native).await;
        assert!(matches!(r.status().as_u16(), 403 | 404 | 401), "{native}: {}", r.status());
    }
    // His own folder by URI: a container URL with a container token.
    let r = app.wopi_src(&bob.token, "cloudreve://my/Mine").await;
    assert_eq!(r.status(), 200);
    let own = Pointer::of(&r.json::<Value>().await.unwrap());
    assert!(own.url.contains("/wopi/containers/"), "{}", own.url);
    assert_eq!(own.id, mine.id);
    assert_eq!(claims_of(&own.token)["res"], "container");
    assert!(claims_of(&own.token)["exp"].as_i64() <= claims_of(&bob.token)["exp"].as_i64(), "no longer than the presented token");
    // And by its container URL (what EnumerateAncestors gave him), query and all.
    let r = app.wopi_src(&bob.token, &mine.url).await;
    assert_eq!(r.status(), 200);
    assert_eq!(Pointer::of(&r.json::<Value>().await.unwrap()).id, mine.id);
}

#[tokio::test]
async fn share_visitors_reach_only_what_the_share_grants() {
    let app = spawn_app().await;
    app.put_file("owner", "Team/Plans/plan.docx", b"plan");
    app.put_file("owner", "Team/Plans/other.docx", b"other");
    app.put_file("owner", "Private/secret.docx", b"secret");
    app.put_file("owner", "Single/one.docx", b"one");
    app.put_share("ROteam", json!({"owner": "owner", "path": "Team"}));
    app.put_share("RWteam", json!({"owner": "owner", "path": "Team", "editable": true}));
    app.put_share("onefile", json!({"owner": "owner", "path": "Single/one.docx", "editable": true}));

    // Read-only folder share: ancestors stop at the shared folder; nothing may be created.
    let ro = app.session_for("bob", "cloudreve://ROteam@share/Plans/plan.docx", "edit").await;
    let names: Vec<_> = app.ancestors_of_file(&ro).await.iter().map(|a| a["Name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, ["Team", "Plans"], "nothing above the shared folder");
    let plans = parent_of(&app, &ro).await;
    let (_, info) = app.get_json(&plans.url).await;
    assert_eq!((info["UserCanCreateChildFile"].clone(), info["UserCanDelete"].clone(), info["UserCanRename"].clone()), (json!(false), json!(false), json!(false)));
    let r = app.container_op(&plans, "CREATE_CHILD_FILE").header("X-WOPI-RelativeTarget", "x.docx").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let (_, children) = app.get_json(&plans.at("/children")).await;
    for file in children["ChildFiles"].as_array().unwrap() {
        assert_eq!(claims_of(&Pointer::of(file).token)["act"], "view", "read-only share: view tokens");
    }
    // The ecosystem's root for this session is the shared folder.
    let (_, eco) = app.get_json(&app.file_url(&ro.fid, "/ecosystem_pointer", &ro.token)).await;
    let eco = Pointer::of(&eco);
    let (status, root) = app.get_json(&eco.at("/root_container_pointer")).await;
    assert_eq!(status, 200);
    assert_eq!(root["ContainerPointer"]["Name"], "Team");
    // Nothing outside the share, by URI or by id.
    let r = app.wopi_src(&ro.token, "cloudreve://ROteam@share/../Private").await;
    assert!(r.status().is_client_error());

    // Editable folder share: a visitor creates, but only the owner deletes.
    let rw = app.session_for("bob", "cloudreve://RWteam@share/Plans/plan.docx", "edit").await;
    let plans_rw = parent_of(&app, &rw).await;
    let r = app.container_op(&plans_rw, "CREATE_CHILD_CONTAINER").header("X-WOPI-RelativeTarget", "Bob's").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let bobs = Pointer::of(&r.json::<Value>().await.unwrap()["ContainerPointer"]);
    assert_eq!(app.container_op(&bobs, "DELETE_CONTAINER").send().await.unwrap().status(), 401, "visitors do not delete");
    assert!(app.data.join("owner/Team/Plans/Bob's").is_dir());

    // The share revoked: its container tokens stop working at once.
    std::fs::remove_file(app.data.join(".wopigate/objects/shares/RWteam.json")).unwrap();
    assert_eq!(app.get_json(&plans_rw.url).await.0, 401);

    // A single shared file: no container at all.
    let one = app.session_for("bob", "cloudreve://onefile@share/", "edit").await;
    assert!(app.ancestors_of_file(&one).await.is_empty());
    let (_, eco) = app.get_json(&app.file_url(&one.fid, "/ecosystem_pointer", &one.token)).await;
    assert_eq!(app.get_json(&Pointer::of(&eco).at("/root_container_pointer")).await.0, 404);
}

#[tokio::test]
async fn containers_can_be_turned_off() {
    let app = spawn_with(&[("WOPIGATE_CONTAINERS", "false")]).await;
    app.put_file("alice", "Docs/a.docx", b"a");
    let s = app.session_for("alice", "cloudreve://my/Docs/a.docx", "edit").await;
    assert_eq!(app.info(&s).await["SupportsContainers"], false);
    assert_eq!(app.get_json(&app.file_url(&s.fid, "/ancestry", &s.token)).await.0, 501);
    let r = app.client.get(format!("{}/wopi/ecosystem?access_token={}", app.address, s.token)).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["SupportsContainers"], false);
    assert_eq!(app.wopi_src(&s.token, "cloudreve://my/Docs").await.status(), 404);
}

const BOOTSTRAP: &[(&str, &str)] = &[
    ("WOPIGATE_BOOTSTRAP_AUTHORIZATION_URL", "https://platform.example/oauth/authorize"),
    ("WOPIGATE_BOOTSTRAP_TOKEN_URL", "https://platform.example/oauth/token"),
    ("WOPIGATE_BOOTSTRAP_PROVIDER_ID", "tpexample"),
];

#[tokio::test]
async fn the_bootstrapper_signs_native_clients_in_with_the_platform_token() {
    let app = spawn_with(BOOTSTRAP).await;
    app.put_file("alice", "Docs/a.docx", b"a");
    app.put_file("bob", "b.docx", b"b");
    let url = format!("{}/wopibootstrapper", app.address);

    // No token, a bad one, an expired one: 401 with where to sign in.
    let expired = caller_jwt_claims(json!({"sub": "alice", "name": "Alice", "exp": now() - 3600}));
    for auth in [None, Some("Bearer not-a-jwt".to_string()), Some(format!("Bearer {expired}"))] {
        let mut req = app.client.get(&url);
        if let Some(auth) = &auth {
            req = req.header("Authorization", auth);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        let challenges: Vec<_> = r.headers().get_all("WWW-Authenticate").iter().collect();
        assert_eq!(challenges.len(), 1);
        let challenge = challenges[0].to_str().unwrap();
        assert!(challenge.starts_with("Bearer authorization_uri=\"https://platform.example/oauth/authorize\""), "{challenge}");
        assert!(challenge.contains("tokenIssuance_uri=\"https://platform.example/oauth/token\"") && challenge.contains("providerId=\"tpexample\""));
        let body = r.text().await.unwrap();
        assert!(!body.contains(&expired), "the caller's token is not echoed");
    }

    // Signed in (the docs' `Bearer: <token>` spelling too): Bootstrap with an ecosystem URL.
    let jwt = caller_jwt("alice", "Alice");
    for auth in [format!("Bearer {jwt}"), format!("Bearer: {jwt}")] {
        let r = app.client.get(&url).header("Authorization", &auth).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["Bootstrap"]["UserId"], "alice");
        let eco = Pointer::of(&json!({"Url": body["Bootstrap"]["EcosystemUrl"]}));
        assert_eq!(claims_of(&eco.token)["res"], "ecosystem");
        let (_, root) = app.get_json(&eco.at("/root_container_pointer")).await;
        assert_eq!(root["ContainerPointer"]["Name"], "My files");
    }

    let post = |op: &'static str| app.client.post(&url).header("Authorization", format!("Bearer {jwt}")).header("X-WOPI-EcosystemOperation", op);
    let root: Value = post("GET_ROOT_CONTAINER").send().await.unwrap().json().await.unwrap();
    assert_eq!(root["RootContainerInfo"]["ContainerPointer"]["Name"], "My files");
    assert_eq!(root["Bootstrap"]["UserId"], "alice");

    // A new token for her own file; none for Bob's.
    let alice = app.session_for("alice", "cloudreve://my/Docs/a.docx", "view").await;
    let bob = app.session_for("bob", "cloudreve://my/b.docx", "edit").await;
    let own = format!("{}/wopi/files/{}", app.address, alice.fid);
    let r = post("GET_NEW_ACCESS_TOKEN").header("X-WOPI-WopiSrc", &own).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let info: Value = r.json().await.unwrap();
    let token = info["AccessTokenInfo"]["AccessToken"].as_str().unwrap();
    assert_eq!(claims_of(token)["fid"], alice.fid.as_str());
    assert!(info["AccessTokenInfo"]["AccessTokenExpiry"].as_i64().unwrap() > now() * 1000);
    let r = app.client.get(app.file_url(&alice.fid, "", token)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let theirs = format!("{}/wopi/files/{}", app.address, bob.fid);
    let r = post("GET_NEW_ACCESS_TOKEN").header("X-WOPI-WopiSrc", &theirs).send().await.unwrap();
    assert_eq!(r.status(), 404, "another user's file");
    assert_eq!(post("GET_NEW_ACCESS_TOKEN").send().await.unwrap().status(), 400, "no X-WOPI-WopiSrc");
    let r = post("GET_WOPI_SRC_WITH_ACCESS_TOKEN").header("X-WOPI-HostNativeFileName", "cloudreve://my/Docs/a.docx").send().await.unwrap();
    let src: Value = r.json().await.unwrap();
    assert!(src["WopiSrcInfo"]["Url"].as_str().unwrap().contains(&alice.fid));

    // Not configured: there is no bootstrapper.
    let plain = spawn_app().await;
    let r = plain.client.get(format!("{}/wopibootstrapper", plain.address)).bearer_auth(&jwt).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[test]
fn bootstrapper_settings_are_checked_at_start_up() {
    let start = |vars: &[(&str, &str)]| {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        wopigate::config::Config::from_vars(vars).map(|_| ()).map_err(|e| e.to_string())
    };
    assert!(start(BOOTSTRAP).is_ok());
    let only_one = start(&BOOTSTRAP[..1]).unwrap_err();
    assert!(only_one.contains("WOPIGATE_BOOTSTRAP_TOKEN_URL"), "{only_one}");
    let bad_url = start(&[BOOTSTRAP[0], ("WOPIGATE_BOOTSTRAP_TOKEN_URL", "not a url")]).unwrap_err();
    assert!(bad_url.contains("WOPIGATE_BOOTSTRAP_TOKEN_URL") && bad_url.contains("http"), "{bad_url}");
    let bad_provider = start(&[BOOTSTRAP[0], BOOTSTRAP[1], ("WOPIGATE_BOOTSTRAP_PROVIDER_ID", "tp-contoso")]).unwrap_err();
    assert!(bad_provider.contains("WOPIGATE_BOOTSTRAP_PROVIDER_ID"), "{bad_provider}");
    let containers = start(&[("WOPIGATE_CONTAINERS", "maybe")]).unwrap_err();
    assert!(containers.contains("WOPIGATE_CONTAINERS"), "{containers}");
}

#[tokio::test]
async fn a_rename_that_would_make_a_path_inside_too_long_moves_nothing() {
    let app = spawn_app().await;
    // 16 folders of 250 characters: 4 KB of path below `T`, just under the limits as it is.
    let deep: Vec<String> = (0..16).map(|i| format!("{i:02}{}", "d".repeat(248))).collect();
    let rel = format!("T/{}/doc.docx", deep.join("/"));
    app.put_file("alice", &rel, b"deep");
    app.put_file("alice", "T/top.docx", b"top");
    let s = app.session_for("alice", &format!("cloudreve://my/{rel}"), "edit").await;
    let top = app.session_for("alice", "cloudreve://my/T/top.docx", "edit").await;
    let t = Pointer::of(&app.ancestors_of_file(&top).await.last().unwrap().clone());
    let before = snapshot(&app.data);
    let long = "Z".repeat(250);
    let r = app.container_op(&t, "RENAME_CONTAINER").header("X-WOPI-RequestedName", &long).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("X-WOPI-InvalidContainerNameError").is_some());
    let without_guards = |v: Vec<String>| v.into_iter().filter(|p| !p.starts_with(".wopigate/locks/")).collect::<Vec<_>>();
    assert_eq!(without_guards(snapshot(&app.data)), without_guards(before), "nothing moved");
    assert_eq!(app.contents(&s).await, (200, b"deep".to_vec()), "the file inside keeps its id");
    assert_eq!(app.contents(&top).await, (200, b"top".to_vec()));
    // A creation that would be too long is a 400 too, not a store failure.
    let deepest = Pointer::of(&app.ancestors_of_file(&s).await.last().unwrap().clone());
    let r = app.container_op(&deepest, "CREATE_CHILD_CONTAINER").header("X-WOPI-RelativeTarget", "x".repeat(250)).send().await.unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn symlinks_never_lead_into_another_users_files() {
    let app = spawn_app().await;
    app.put_file("bob", "Docs/bob.docx", b"bob's");
    app.put_file("alice", "SL/mine.docx", b"alice's");
    std::fs::create_dir_all(app.data.join("alice/Own")).unwrap();
    std::os::unix::fs::symlink(app.data.join("bob/Docs"), app.data.join("alice/SL/LinkBob")).unwrap();
    std::os::unix::fs::symlink(app.data.join("alice/Own"), app.data.join("alice/SL/LinkOwn")).unwrap();
    std::os::unix::fs::symlink(app.data.join("alice/SL/Loop"), app.data.join("alice/SL/Loop")).unwrap();
    let s = app.session_for("alice", "cloudreve://my/SL/mine.docx", "edit").await;
    let sl = parent_of(&app, &s).await;
    let (_, children) = app.get_json(&sl.at("/children")).await;
    let names: Vec<_> = children["ChildContainers"].as_array().unwrap().iter().map(|c| c["Name"].as_str().unwrap().to_string()).collect();
    assert!(!names.contains(&"LinkBob".to_string()) && !names.contains(&"Loop".to_string()), "{names:?}");
    for native in ["cloudreve://my/SL/LinkBob", "cloudreve://my/SL/LinkBob/bob.docx", "cloudreve://my/SL/Loop"] {
        let r = app.wopi_src(&s.token, native).await;
        assert_eq!(r.status(), 404, "{native}");
        let body = r.text().await.unwrap();
        assert!(!body.contains("outside") && !body.contains("symbolic"), "the answer says nothing of links: {body}");
    }
    // A link to one of her own folders is listed, but is not moved or deleted through.
    let own = Pointer::of(children["ChildContainers"].as_array().unwrap().iter().find(|c| c["Name"] == "LinkOwn").expect("LinkOwn listed"));
    let r = app.container_op(&own, "RENAME_CONTAINER").header("X-WOPI-RequestedName", "Moved").send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(app.container_op(&own, "DELETE_CONTAINER").send().await.unwrap().status(), 404);
    assert!(app.data.join("alice/Own").is_dir() && app.data.join("bob/Docs/bob.docx").exists());
}

/// A request body that arrives in two parts: the first at once, the rest when `release` says.
fn held_body(first: &'static [u8], rest: &'static [u8]) -> (reqwest::Body, tokio::sync::oneshot::Sender<()>) {
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let stream = futures_util::stream::unfold((Some(first), Some(released), rest), |(first, released, rest)| async move {
        if let Some(first) = first {
            return Some((Ok::<_, std::io::Error>(bytes::Bytes::from_static(first)), (None, released, rest)));
        }
        let released = released?;
        let _ = released.await;
        Some((Ok(bytes::Bytes::from_static(rest)), (None, None, rest)))
    });
    (reqwest::Body::wrap_stream(stream), release)
}

#[tokio::test]
async fn a_save_as_during_a_folder_rename_or_delete_lands_where_the_folder_is_now() {
    let app = spawn_app().await;
    app.put_file("alice", "RaceA/a.docx", b"a");
    app.put_file("alice", "Keep/src.docx", b"src");
    std::fs::create_dir_all(app.data.join("alice/EmptyF")).unwrap();
    let s = app.session_for("alice", "cloudreve://my/RaceA/a.docx", "edit").await;
    let race_a = parent_of(&app, &s).await;

    // Rename while the Save As body is still arriving: the copy goes to the renamed folder.
    let (body, release) = held_body(b"saved ", b"copy");
    let save_as = app.op(&s, "PUT_RELATIVE").header("X-WOPI-RelativeTarget", "saved.docx").body(body).send();
    let save_as = tokio::spawn(save_as);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let r = app.container_op(&race_a, "RENAME_CONTAINER").header("X-WOPI-RequestedName", "RaceB").send().await.unwrap();
    assert_eq!(r.status(), 200);
    release.send(()).unwrap();
    let r = save_as.await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    assert!(!app.data.join("alice/RaceA").exists(), "the old folder does not come back");
    assert_eq!(std::fs::read(app.data.join("alice/RaceB/saved.docx")).unwrap(), b"saved copy");

    // Delete while a Save As into that (empty) folder is arriving: the folder stays deleted.
    let jwt = caller_jwt("alice", "Alice");
    let e = app
        .session(json!({"uri": "cloudreve://my/Keep/src.docx", "viewer_id": COLLABORA, "preferred_action": "edit", "parent_uri": "cloudreve://my/EmptyF"}), Some(&jwt))
        .await;
    let keep = Session::from_envelope(&e);
    let r = app.wopi_src(&keep.token, "cloudreve://my/EmptyF").await;
    let empty = Pointer::of(&r.json::<Value>().await.unwrap());
    let (body, release) = held_body(b"into ", b"the void");
    let save_as = tokio::spawn(app.op(&keep, "PUT_RELATIVE").header("X-WOPI-SuggestedTarget", ".docx").body(body).send());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(app.container_op(&empty, "DELETE_CONTAINER").send().await.unwrap().status(), 200);
    release.send(()).unwrap();
    let r = save_as.await.unwrap().unwrap();
    assert_eq!(r.status(), 404, "the folder is gone");
    assert!(!app.data.join("alice/EmptyF").exists(), "a deleted folder does not come back");
}

#[tokio::test]
async fn names_that_disguise_themselves_are_refused() {
    let app = spawn_app().await;
    app.put_file("alice", "Docs/e.docx", b"e");
    let s = app.session_for("alice", "cloudreve://my/Docs/e.docx", "edit").await;
    let docs = parent_of(&app, &s).await;
    // UTF-7 for a right-to-left override and for a zero-width space.
    for name in ["invoice+IC4-xcod.docx", "e+IAs-.docx"] {
        let r = app.container_op(&docs, "CREATE_CHILD_FILE").header("X-WOPI-RelativeTarget", name).send().await.unwrap();
        assert_eq!(r.status(), 400, "{name}");
    }
    let r = app.container_op(&docs, "CREATE_CHILD_CONTAINER").header("X-WOPI-RelativeTarget", "a+IC4-b").send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(std::fs::read_dir(app.data.join("alice/Docs")).unwrap().count(), 1, "nothing created");
}

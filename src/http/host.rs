//! wopigate's own host page (`/host`): the page that form-POSTs the access token into the WOPI
//! client's iframe and answers the client's PostMessages (`host.js`).
//!
//! The page is the same for everyone: the session travels in its URL's fragment, which browsers
//! never send, so no token reaches this server, its logs, a proxy or a `Referer`. Opened without
//! a fragment (`HostViewUrl`/`HostEditUrl`, `/host/{file id}?action=…`) it tells the person to
//! open the document from their platform.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::config::{origin_of, HostPageConfig};
use crate::state::AppState;
use crate::store::ids;

const PAGE: &str = include_str!("host.html");
const SCRIPT: &str = include_str!("host.js");
const STYLE: &str = include_str!("host.css");

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/host", web::get().to(page))
        .route("/host/host.js", web::get().to(script))
        .route("/host/host.css", web::get().to(style))
        .route("/host/{file_id}", web::get().to(file_page));
}

async fn page(state: web::Data<AppState>) -> HttpResponse {
    let config = &state.config.host_page;
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CONTENT_SECURITY_POLICY, content_security_policy(config, &state.viewers.client_origins())))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(render(config))
}

/// `/host/{file id}`: the same page (the id fills `{file_id}` of the platform's pages).
async fn file_page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if !req.match_info().get("file_id").is_some_and(ids::is_file_id) {
        return asset_headers(HttpResponse::NotFound()).body("no such file id");
    }
    page(state).await
}

async fn script() -> HttpResponse {
    asset_headers(HttpResponse::Ok()).insert_header((header::CONTENT_TYPE, "text/javascript; charset=utf-8")).body(SCRIPT)
}

async fn style() -> HttpResponse {
    asset_headers(HttpResponse::Ok()).insert_header((header::CONTENT_TYPE, "text/css; charset=utf-8")).body(STYLE)
}

fn asset_headers(mut response: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    response
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    response
}

/// Only this server's script and style; frames and the form only to the configured clients;
/// framed only by the platform, when one is configured.
pub fn content_security_policy(config: &HostPageConfig, client_origins: &[String]) -> String {
    let clients = match client_origins {
        [] => "'none'".to_string(),
        origins => origins.join(" "),
    };
    let ancestors = config.platform_url.as_deref().and_then(origin_of).unwrap_or_else(|| "'none'".into());
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; frame-src {clients}; form-action {clients}; \
         frame-ancestors {ancestors}; base-uri 'none'"
    )
}

/// The page with the configured platform URLs in `data-` attributes for the script.
fn render(config: &HostPageConfig) -> String {
    let settings: String = [
        ("close-url", &config.close_url),
        ("versions-url", &config.versions_url),
        ("sharing-url", &config.sharing_url),
        ("platform-url", &config.platform_url),
    ]
    .iter()
    .filter_map(|(name, value)| value.as_deref().map(|v| format!(" data-{name}=\"{}\"", escape(v))))
    .collect();
    let link = match &config.platform_url {
        Some(url) => format!("<a href=\"{}\">Go to your files</a>", escape(url)),
        None => String::new(),
    };
    PAGE.replace("{{settings}}", &settings).replace("{{platform_link}}", &link)
}

fn escape(text: &str) -> String {
    // `{` too, so no value can spell a placeholder of the page.
    text.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;").replace('{', "&#123;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn config(vars: &[(&str, &str)]) -> HostPageConfig {
        Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap().host_page
    }

    #[test]
    fn platform_urls_are_escaped_into_attributes() {
        let page = render(&config(&[
            ("WOPIGATE_PLATFORM_URL", "https://drive.example/?a=1&b=\"x\""),
            ("WOPIGATE_CLOSE_URL", "https://drive.example/files"),
        ]));
        assert!(page.contains(r#"data-platform-url="https://drive.example/?a=1&amp;b=&quot;x&quot;""#), "{page}");
        assert!(page.contains(r#"data-close-url="https://drive.example/files""#));
        assert!(page.contains(r#"<a href="https://drive.example/?a=1&amp;b=&quot;x&quot;">"#));
        assert!(!page.contains("data-versions-url"));
        assert!(!page.contains("{{"));
    }

    #[test]
    fn policy_names_the_clients_or_nothing() {
        let plain = config(&[]);
        let csp = content_security_policy(&plain, &[]);
        assert!(csp.contains("frame-src 'none'; form-action 'none'; frame-ancestors 'none'"), "{csp}");
        let csp = content_security_policy(
            &config(&[("WOPIGATE_PLATFORM_URL", "https://drive.example/home")]),
            &["https://a.example".into(), "http://b.example:9980".into()],
        );
        assert!(csp.contains("frame-src https://a.example http://b.example:9980;"), "{csp}");
        assert!(csp.contains("frame-ancestors https://drive.example;"), "{csp}");
    }
}

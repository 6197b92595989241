//! The benchmark floor: a bare actix-web handler answering a fixed JSON body, as fast as this
//! stack can answer anything. `bench/run.sh` compares wopigate against it in the same run.
//!
//!     cargo run --release --example floor -- 127.0.0.1:9000 <body bytes>

use actix_web::{web, App, HttpResponse, HttpServer};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let bind = args.next().unwrap_or_else(|| "127.0.0.1:9000".into());
    let size: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(900);
    // A JSON object of exactly `size` bytes.
    let filler = "x".repeat(size.saturating_sub(12));
    let body = web::Bytes::from(format!("{{\"filler\":\"{filler}\"}}"));
    HttpServer::new(move || {
        let body = body.clone();
        App::new().default_service(web::to(move || {
            let body = body.clone();
            async move { HttpResponse::Ok().content_type("application/json").body(body) }
        }))
    })
    .bind(bind)?
    .run()
    .await
}

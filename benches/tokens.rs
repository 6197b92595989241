//! Access-token mint and verify on one core (criterion runs one thread).
//!     cargo bench --bench tokens

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use uuid::Uuid;
use wopigate::config::{derived_kid, KeyMaterial, Secret, TokenAlgorithm, TokenConfig, TokenKeyConfig};
use wopigate::token::{Action, Grant, TokenKeys};

fn keys() -> TokenKeys {
    let secret = "benchmark-secret-benchmark-secret-benchmark-01";
    let current = TokenKeyConfig { kid: derived_kid(secret), material: KeyMaterial::Secret(Secret::new(secret)) };
    let config = TokenConfig {
        algorithm: TokenAlgorithm::Hs256,
        current: Some(current.clone()),
        previous: vec![],
        ttl_secs: 36000,
        audience: "wopigate".into(),
    };
    TokenKeys::new(&config, &current, 60).unwrap()
}

fn grant() -> Grant {
    Grant {
        res: wopigate::token::Resource::File,
        sid: Uuid::new_v4(),
        sub: "u1234567".into(),
        name: "Ada Lovelace".into(),
        anon: false,
        fid: "dqZA8dEC9pZqVgAxzk2kWA".into(),
        ver: String::new(),
        act: Action::Edit,
        vid: Uuid::new_v4(),
        profile: false,
        shr: None,
        pid: None,
    }
}

fn bench(c: &mut Criterion) {
    let keys = keys();
    let now = chrono::Utc::now().timestamp();
    let (token, _) = keys.mint(grant(), now, None).unwrap();
    let mut group = c.benchmark_group("token");
    group.throughput(Throughput::Elements(1));
    group.bench_function("mint", |b| b.iter(|| keys.mint(grant(), now, None).unwrap()));
    // The full check (signature, claims); `verify` answers repeated tokens from its cache.
    group.bench_function("verify", |b| b.iter(|| keys.verify_signature(&token).unwrap()));
    group.bench_function("verify (cached)", |b| b.iter(|| keys.verify(&token).unwrap()));
    group.bench_function("mint+verify", |b| {
        b.iter(|| {
            let (token, _) = keys.mint(grant(), now, None).unwrap();
            keys.verify_signature(&token).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! The WOPI conformance suite (every configuration, unsigned and proof-key signed) on S3 + Redis.

use std::path::Path;
use std::process::Command;

use crate::servers::{Garage, Redis};

#[tokio::test]
async fn conformance_on_s3_and_redis() {
    let (Some(garage), Some(redis)) = (Garage::start(), Redis::start()) else { return };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new("python3");
    cmd.arg(root.join("scripts/conformance.py"))
        .args(["--binary", env!("CARGO_BIN_EXE_wopigate"), "--label", "s3-redis"])
        .args(["--env", "WOPIGATE_LOCKS=redis"])
        .arg("--env")
        .arg(format!("WOPIGATE_REDIS_URL={}", redis.url()));
    for (k, v) in garage.env("conformance") {
        cmd.arg("--env").arg(format!("{k}={v}"));
    }
    let out = cmd.output().expect("python3 runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // Kept for the test script's summary and for whoever reads the failure.
    let _ = std::fs::create_dir_all(root.join("target"));
    let _ = std::fs::write(root.join("target/conformance-s3-redis.txt"), &text);
    assert!(out.status.success(), "conformance on S3 + Redis failed:\n{text}");
    assert!(text.contains("conformance: ok, 0 failed"), "{text}");
}

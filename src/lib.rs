//! wopigate: a stateless WOPI host gateway. See DESIGN.md for the parts and their contracts.

pub mod admin;
pub mod attempts;
pub mod auth;
pub mod clock;
pub mod config;
pub mod discovery;
pub mod http;
pub mod locks;
pub mod metrics;
pub mod passwords;
pub mod policy;
pub mod proof;
pub mod session;
pub mod shares;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod token;
pub mod uri;
pub mod users;
pub mod utf7;
pub mod versions;
pub mod webhook;
pub mod wopi;

pub use startup::{Application, StartError};

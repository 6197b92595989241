//! wopigate: a stateless WOPI host gateway. See DESIGN.md for the parts and their contracts.

pub mod auth;
pub mod config;
pub mod discovery;
pub mod http;
pub mod policy;
pub mod session;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod token;
pub mod uri;

pub use startup::{Application, StartError};

//! HTTP integration tests: the real app on a random port, a real store in a temp directory.

mod helpers;
mod process;
mod proof;
mod tokens;
mod viewer_session;
mod wopi;

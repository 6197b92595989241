//! What wopigate keeps per signed-in user in the store: the profile from their caller JWT (full
//! display name, avatar, mail: too long to ride in every token) and the client's `UserInfo`
//! (PutUserInfo). Anonymous visitors have neither: they cannot grow the store.

use serde::{Deserialize, Serialize};

use crate::auth::UserExtra;
use crate::store::{Store, StoreError};
use crate::token::{self, NAME_BYTES};

/// A user's profile as their platform last described it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Profile {
    pub name: String,
    #[serde(flatten)]
    pub extra: UserExtra,
}

impl Profile {
    /// Whether the token alone cannot show this user as they are (name cut, or extras).
    pub fn needs_storing(&self) -> bool {
        token::cut(&self.name, NAME_BYTES).len() < self.name.len() || self.extra != UserExtra::default()
    }
}

fn profile_object(user: &str) -> String {
    format!("users/{user}.json")
}

fn user_info_object(user: &str) -> String {
    format!("userinfo/{user}.txt")
}

/// Stores `profile` for `user` unless the store already holds exactly it (most sessions of a
/// user repeat it: a read is cheaper than a write, and keeps objects' times meaningful).
pub async fn save_profile(store: &dyn Store, user: &str, profile: &Profile) -> Result<(), StoreError> {
    let text = serde_json::to_vec(profile).map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
    if store.get_object(&profile_object(user)).await?.as_deref() == Some(text.as_slice()) {
        return Ok(());
    }
    store.put_object(&profile_object(user), &text).await
}

/// The stored profile; `None` when there is none or it cannot be read as one.
pub async fn profile(store: &dyn Store, user: &str) -> Result<Option<Profile>, StoreError> {
    Ok(store.get_object(&profile_object(user)).await?.and_then(|raw| serde_json::from_slice(&raw).ok()))
}

pub async fn user_info(store: &dyn Store, user: &str) -> Result<Option<String>, StoreError> {
    Ok(store.get_object(&user_info_object(user)).await?.map(|raw| String::from_utf8_lossy(&raw).into_owned()))
}

pub async fn put_user_info(store: &dyn Store, user: &str, text: &str) -> Result<(), StoreError> {
    store.put_object(&user_info_object(user), text.as_bytes()).await
}

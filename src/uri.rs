//! File URIs in Cloudreve's shape: `cloudreve://[id[:password]@]fs/path?query`.
//!
//! Parsed by hand rather than with a general URL parser, because those normalise `..` and
//! `%2e%2e` away silently; here every traversal attempt is an error and the store is never asked.

use std::fmt;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

const SCHEME: &str = "cloudreve://";
const MAX_PATH_BYTES: usize = 4096;
const MAX_SEGMENT_BYTES: usize = 255;
const MAX_DEPTH: usize = 64;
const MAX_URI_BYTES: usize = 8192;

/// Characters escaped when a segment is written back into a URI.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ').add(b'"').add(b'#').add(b'%').add(b'?').add(b'/').add(b'\\').add(b'<').add(b'>')
    .add(b'`').add(b'{').add(b'}').add(b'^').add(b'[').add(b']').add(b'|').add(b'@').add(b':')
    .add(b'+').add(b'&').add(b'=').add(b';');

/// Why a URI was refused. No variant carries text of the URI: its authority may hold a share
/// id and password (`cloudreve://PWsec:<password>/…`, the `@share` forgotten), and these
/// messages reach answers and log lines.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UriError {
    #[error("uri must start with cloudreve://")]
    Scheme,
    #[error("uri is longer than {MAX_URI_BYTES} bytes")]
    TooLong,
    #[error("uri has no file system (expected cloudreve://my/… or cloudreve://<share id>@share/…)")]
    NoFileSystem,
    #[error("file system '{0}' cannot be opened in a viewer (only 'my' and 'share' can)")]
    UnsupportedFileSystem(&'static str),
    #[error("unknown file system (expected cloudreve://my/… or cloudreve://<share id>[:<password>]@share/…)")]
    UnknownFileSystem,
    #[error("uri must not carry a query or fragment when naming a file")]
    Query,
    #[error("share uri needs the share id: cloudreve://<share id>[:<password>]@share/…")]
    NoShareId,
    #[error("{0} must be 1-{1} characters of A-Z a-z 0-9 - _")]
    BadId(&'static str, usize),
    #[error("path has an invalid percent-escape")]
    BadEscape,
    #[error("path is not valid UTF-8 once decoded")]
    NotUtf8,
    #[error("path has an empty segment ('//')")]
    EmptySegment,
    #[error("path must not contain '.' or '..' segments")]
    Traversal,
    #[error("path must not contain NUL, control characters or backslashes")]
    ForbiddenCharacter,
    #[error("a path segment is longer than {MAX_SEGMENT_BYTES} bytes")]
    SegmentTooLong,
    #[error("path is longer than 4096 bytes or deeper than 64 folders")]
    PathTooLong,
}

/// A validated path relative to a root: no empty, `.` or `..` segments, no separators inside a
/// segment, no NUL or control characters. Joining it onto a directory cannot climb out of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct RelPath(Vec<String>);

impl RelPath {
    pub fn root() -> Self {
        RelPath(Vec::new())
    }

    /// Validates already-decoded segments.
    pub fn from_segments<I, S>(segments: I) -> Result<Self, UriError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut out = Vec::new();
        let mut total = 0;
        for segment in segments {
            let segment = segment.into();
            check_segment(&segment)?;
            total += segment.len() + 1;
            out.push(segment);
        }
        if total > MAX_PATH_BYTES || out.len() > MAX_DEPTH {
            return Err(UriError::PathTooLong);
        }
        Ok(RelPath(out))
    }

    /// Parses a plain `a/b/c` path (as stored in share manifests), one leading slash allowed.
    pub fn parse_plain(path: &str) -> Result<Self, UriError> {
        let trimmed = path.strip_prefix('/').unwrap_or(path);
        let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
        if trimmed.is_empty() {
            return Ok(RelPath::root());
        }
        Self::from_segments(trimmed.split('/'))
    }

    pub fn segments(&self) -> &[String] {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    pub fn file_name(&self) -> Option<&str> {
        self.0.last().map(String::as_str)
    }

    /// Lower-case extension of the last segment, without the dot.
    pub fn extension(&self) -> Option<String> {
        let name = self.file_name()?;
        let (stem, ext) = name.rsplit_once('.')?;
        if stem.is_empty() || ext.is_empty() {
            return None;
        }
        Some(ext.to_ascii_lowercase())
    }

    pub fn parent(&self) -> RelPath {
        let mut segments = self.0.clone();
        segments.pop();
        RelPath(segments)
    }

    pub fn join(&self, other: &RelPath) -> Result<RelPath, UriError> {
        Self::from_segments(self.0.iter().chain(other.0.iter()).cloned())
    }

    /// `a/b/c`, decoded.
    pub fn as_plain(&self) -> String {
        self.0.join("/")
    }

    /// `a/b%20c`, each segment percent-encoded.
    pub fn encoded(&self) -> String {
        self.0
            .iter()
            .map(|s| utf8_percent_encode(s, SEGMENT).to_string())
            .collect::<Vec<_>>()
            .join("/")
    }
}

fn check_segment(segment: &str) -> Result<(), UriError> {
    if segment.is_empty() {
        return Err(UriError::EmptySegment);
    }
    if segment == "." || segment == ".." {
        return Err(UriError::Traversal);
    }
    if segment.chars().any(|c| c.is_control() || c == '\\' || c == '/') {
        return Err(UriError::ForbiddenCharacter);
    }
    if segment.len() > MAX_SEGMENT_BYTES {
        return Err(UriError::SegmentTooLong);
    }
    Ok(())
}

/// Which file system of Cloudreve's the URI addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSystem {
    /// `my`: a user's own files; `owner` is the id before `@`, when given.
    My { owner: Option<String> },
    /// `share`: files reached through a share link.
    Share { id: String, password: Option<String> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileUri {
    pub fs: FileSystem,
    pub path: RelPath,
}

impl FileUri {
    pub fn parse(input: &str) -> Result<FileUri, UriError> {
        if input.len() > MAX_URI_BYTES {
            return Err(UriError::TooLong);
        }
        let rest = input
            .get(..SCHEME.len())
            .filter(|s| s.eq_ignore_ascii_case(SCHEME))
            .map(|_| &input[SCHEME.len()..])
            .ok_or(UriError::Scheme)?;
        if rest.contains('?') || rest.contains('#') {
            return Err(UriError::Query);
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let (userinfo, fs_name) = match authority.rsplit_once('@') {
            Some((u, f)) => (Some(u), f),
            None => (None, authority),
        };
        if fs_name.is_empty() {
            return Err(UriError::NoFileSystem);
        }
        let fs = match fs_name.to_ascii_lowercase().as_str() {
            "my" => {
                let owner = match userinfo {
                    Some(u) => Some(parse_id(u, "user id", crate::token::MAX_USER_ID)?),
                    None => None,
                };
                FileSystem::My { owner }
            }
            "share" => {
                let userinfo = userinfo.ok_or(UriError::NoShareId)?;
                let (id, password) = match userinfo.split_once(':') {
                    Some((id, pw)) => (id, Some(decode(pw)?)),
                    None => (userinfo, None),
                };
                FileSystem::Share { id: parse_id(id, "share id", crate::token::MAX_SHARE_ID)?, password: password.filter(|p| !p.is_empty()) }
            }
            "trash" => return Err(UriError::UnsupportedFileSystem("trash")),
            "shared_with_me" => return Err(UriError::UnsupportedFileSystem("shared_with_me")),
            "shared_by_me" => return Err(UriError::UnsupportedFileSystem("shared_by_me")),
            // Without '@' the whole authority lands here, share id and password included.
            _ => return Err(UriError::UnknownFileSystem),
        };
        Ok(FileUri { fs, path: parse_path(path)? })
    }
}

/// Percent-decodes strictly: a `%` not followed by two hex digits is an error, not a literal.
fn decode(raw: &str) -> Result<String, UriError> {
    let bytes = raw.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%' {
            let ok = bytes.len() > i + 2 && bytes[i + 1].is_ascii_hexdigit() && bytes[i + 2].is_ascii_hexdigit();
            if !ok {
                return Err(UriError::BadEscape);
            }
        }
    }
    percent_decode_str(raw).decode_utf8().map(|s| s.into_owned()).map_err(|_| UriError::NotUtf8)
}

fn parse_path(raw: &str) -> Result<RelPath, UriError> {
    let raw = raw.strip_suffix('/').unwrap_or(raw);
    if raw.is_empty() {
        return Ok(RelPath::root());
    }
    let mut segments = Vec::new();
    for part in raw.split('/') {
        segments.push(decode(part)?);
    }
    RelPath::from_segments(segments)
}

/// User and share ids name directories and appear in WOPI `UserId`: keep them to a safe alphabet.
/// An id of at most `max` characters (they ride in tokens: see `token::MAX_TOKEN_CHARS`).
pub fn parse_id(raw: &str, what: &'static str, max: usize) -> Result<String, UriError> {
    let id = decode(raw)?;
    if is_valid_id(&id) && id.len() <= max {
        Ok(id)
    } else {
        Err(UriError::BadId(what, max))
    }
}

pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The canonical form of a resolved file: owner explicit, password never included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CanonicalUri {
    My { owner: String, path: RelPath },
    Share { id: String, path: RelPath },
}

impl fmt::Display for CanonicalUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CanonicalUri::My { owner, path } => write!(f, "{SCHEME}{owner}@my/{}", path.encoded()),
            CanonicalUri::Share { id, path } => write!(f, "{SCHEME}{id}@share/{}", path.encoded()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_my_and_share() {
        let uri = FileUri::parse("cloudreve://my/Docs/a%20b.docx").unwrap();
        assert_eq!(uri.fs, FileSystem::My { owner: None });
        assert_eq!(uri.path.segments(), ["Docs", "a b.docx"]);
        assert_eq!(uri.path.extension().as_deref(), Some("docx"));

        let uri = FileUri::parse("cloudreve://u1@my/x.xlsx").unwrap();
        assert_eq!(uri.fs, FileSystem::My { owner: Some("u1".into()) });

        let uri = FileUri::parse("cloudreve://AbC:p%40ss@share/").unwrap();
        assert_eq!(uri.fs, FileSystem::Share { id: "AbC".into(), password: Some("p@ss".into()) });
        assert!(uri.path.is_root());
    }

    #[test]
    fn rejects_traversal_and_junk() {
        let bad = [
            ("cloudreve://my/../etc/passwd", UriError::Traversal),
            ("cloudreve://my/a/%2e%2e/b", UriError::Traversal),
            ("cloudreve://my/a/./b", UriError::Traversal),
            ("cloudreve://my/a%2fb", UriError::ForbiddenCharacter),
            ("cloudreve://my/a%5cb", UriError::ForbiddenCharacter),
            ("cloudreve://my/a\\b", UriError::ForbiddenCharacter),
            ("cloudreve://my/a%00b", UriError::ForbiddenCharacter),
            ("cloudreve://my/a//b", UriError::EmptySegment),
            ("cloudreve://my/a%zz", UriError::BadEscape),
            ("cloudreve://my/a%ff", UriError::NotUtf8),
            ("cloudreve://trash/x", UriError::UnsupportedFileSystem("trash")),
            ("cloudreve://shared_with_me/x", UriError::UnsupportedFileSystem("shared_with_me")),
            ("cloudreve://nope/x", UriError::UnknownFileSystem),
            ("cloudreve://share/x", UriError::NoShareId),
            ("http://my/x", UriError::Scheme),
            ("cloudreve://my/x?name=1", UriError::Query),
        ];
        for (input, expected) in bad {
            assert_eq!(FileUri::parse(input).unwrap_err(), expected, "{input}");
        }
        let long = format!("cloudreve://my/{}", "a".repeat(256));
        assert_eq!(FileUri::parse(&long).unwrap_err(), UriError::SegmentTooLong);
        let deep = format!("cloudreve://my/{}", vec!["ab"; 2000].join("/"));
        assert_eq!(FileUri::parse(&deep).unwrap_err(), UriError::PathTooLong);
        assert!(matches!(FileUri::parse("cloudreve://a.b@my/x"), Err(UriError::BadId(..))));
    }

    #[test]
    fn errors_never_carry_the_authority() {
        let secret = "Pw-9f3e7c";
        let long = "a".repeat(300);
        let shapes = [
            format!("cloudreve://PWsec:{secret}"),
            format!("cloudreve://PWsec:{secret}/x.docx"),
            format!("cloudreve://{secret}/x.docx"),
            format!("cloudreve://PWsec:{secret}@nope/x"),
            format!("cloudreve://PWsec:{secret}@my/x"),
            format!("cloudreve://PWsec:{secret}@/x"),
            format!("cloudreve://PWsec:{secret}%zz@share/"),
            format!("cloudreve://PWsec:{secret}%ff@share/"),
            format!("cloudreve://PWsec:{secret}@share/../x"),
            format!("cloudreve://PWsec:{secret}@share/x?a=1"),
            format!("cloudreve://my/sh:{secret}{long}@share/x"),
            format!("cloudreve://PWsec:{secret}{}@share/", "a".repeat(MAX_URI_BYTES)),
            format!("http://PWsec:{secret}@share/"),
        ];
        for shape in shapes {
            let err = FileUri::parse(&shape).unwrap_err();
            assert!(!err.to_string().contains(secret) && !format!("{err:?}").contains(secret), "{shape}: {err}");
            assert!(!err.to_string().contains("PWsec"), "{shape}: {err}");
        }
    }

    #[test]
    fn canonical_round_trips() {
        let path = RelPath::from_segments(["Docs", "a b#1.docx"]).unwrap();
        let canonical = CanonicalUri::My { owner: "u1".into(), path: path.clone() };
        let text = canonical.to_string();
        assert_eq!(text, "cloudreve://u1@my/Docs/a%20b%231.docx");
        assert_eq!(FileUri::parse(&text).unwrap().path, path);
    }
}

//! Turning a discovery `urlsrc` template into the URL of the client's iframe.
//!
//! Placeholders look like `<name=PLACEHOLDER&>`: known ones we set are replaced by `name=value&`,
//! every other group is removed whole (clients add new ones at any time). Templates without a
//! `WOPI_SOURCE` placeholder (Collabora, old Office) get `WOPISrc=` appended.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// encodeURIComponent's set: everything but `A-Z a-z 0-9 - _ . ! ~ * ' ( )`.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-').remove(b'_').remove(b'.').remove(b'!').remove(b'~').remove(b'*').remove(b'\'').remove(b'(').remove(b')');

pub fn encode_component(value: &str) -> String {
    utf8_percent_encode(value, COMPONENT).to_string()
}

/// What the host sets in the template.
pub struct ActionParams<'a> {
    pub wopi_src: &'a str,
    pub lang: &'a str,
    pub host_session_id: &'a str,
}

pub fn build(urlsrc: &str, params: &ActionParams) -> String {
    let mut out = String::with_capacity(urlsrc.len() + params.wopi_src.len() * 2);
    let mut rest = urlsrc;
    let mut has_wopi_source = false;
    let mut has_placeholders = false;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('>') else {
            // An unterminated '<' is not a placeholder: drop it rather than emit a broken URL.
            rest = "";
            break;
        };
        let group = &after[..end];
        rest = &after[end + 1..];
        has_placeholders = true;
        let (group, amp) = match group.strip_suffix('&') {
            Some(g) => (g, "&"),
            None => (group, ""),
        };
        let Some((name, placeholder)) = group.split_once('=') else {
            continue;
        };
        let value = match placeholder.trim() {
            "WOPI_SOURCE" => {
                has_wopi_source = true;
                Some(encode_component(params.wopi_src))
            }
            "UI_LLCC" | "DC_LLCC" => Some(encode_component(params.lang)),
            "HOST_SESSION_ID" => Some(encode_component(params.host_session_id)),
            _ => None,
        };
        if let Some(value) = value {
            out.push_str(name);
            out.push('=');
            out.push_str(&value);
            out.push_str(amp);
        }
    }
    out.push_str(rest);
    if !has_wopi_source {
        append_param(&mut out, "WOPISrc", &encode_component(params.wopi_src));
        if !has_placeholders {
            // Collabora's template carries no placeholders; it reads the language from `lang`.
            append_param(&mut out, "lang", &encode_component(params.lang));
        }
    }
    tidy(&out)
}

/// Removed groups leave `&&`, `?&` or a trailing `&`: harmless, but untidy. Values are
/// percent-encoded, so every raw `&` here is a separator.
fn tidy(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    for c in url.chars() {
        if c == '&' && (out.ends_with('&') || out.ends_with('?')) {
            continue;
        }
        out.push(c);
    }
    while out.ends_with('&') {
        out.pop();
    }
    out
}

fn append_param(url: &mut String, name: &str, value: &str) {
    if !url.contains('?') {
        url.push('?');
    } else if !url.ends_with('?') && !url.ends_with('&') {
        url.push('&');
    }
    url.push_str(name);
    url.push('=');
    url.push_str(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "http://127.0.0.1:8080/wopi/files/abc_D-1";

    fn params() -> ActionParams<'static> {
        ActionParams { wopi_src: SRC, lang: "de-DE", host_session_id: "s1" }
    }

    #[test]
    fn office_template() {
        let url = build(
            "https://word-edit.example/we/wordeditorframe.aspx?<ui=UI_LLCC&><rs=DC_LLCC&><dchat=DISABLE_CHAT&><hid=HOST_SESSION_ID&><sc=SESSION_CONTEXT&><wopisrc=WOPI_SOURCE&><showpagestats=PERFSTATS&><IsLicensedUser=BUSINESS_USER&><actnavid=ACTIVITY_NAVIGATION_ID&>",
            &params(),
        );
        assert_eq!(
            url,
            "https://word-edit.example/we/wordeditorframe.aspx?ui=de-DE&rs=de-DE&hid=s1&wopisrc=http%3A%2F%2F127.0.0.1%3A8080%2Fwopi%2Ffiles%2Fabc_D-1"
        );
    }

    #[test]
    fn onlyoffice_template_keeps_literal_params() {
        let url = build(
            "https://ds.example/hosting/wopi/word/view?<rs=DC_LLCC&><dchat=DISABLE_CHAT&><embed=EMBEDDED&><fs=FULLSCREEN&><hid=HOST_SESSION_ID&><rec=RECORDING&><sc=SESSION_CONTEXT&><thm=THEME_ID&><ui=UI_LLCC&><wopisrc=WOPI_SOURCE&>&embed=1",
            &params(),
        );
        assert!(url.starts_with("https://ds.example/hosting/wopi/word/view?rs=de-DE&hid=s1&ui=de-DE&wopisrc=http%3A%2F%2F"));
        assert!(url.ends_with("abc_D-1&embed=1"));
        assert!(!url.contains('<') && !url.contains('>'));
    }

    #[test]
    fn collabora_template_gets_wopisrc_appended() {
        let url = build("https://cool.example:9980/browser/1a2b/cool.html?", &params());
        assert_eq!(
            url,
            "https://cool.example:9980/browser/1a2b/cool.html?WOPISrc=http%3A%2F%2F127.0.0.1%3A8080%2Fwopi%2Ffiles%2Fabc_D-1&lang=de-DE"
        );
        let url = build("https://cool.example/browser/x/cool.html", &params());
        assert!(url.starts_with("https://cool.example/browser/x/cool.html?WOPISrc="));
        let url = build("https://cool.example/browser/x/cool.html?a=b", &params());
        assert!(url.starts_with("https://cool.example/browser/x/cool.html?a=b&WOPISrc="));
    }

    #[test]
    fn unknown_and_malformed_groups_are_removed() {
        let url = build("https://x.example/v?<new=NEW_THING&><junk><wopisrc=WOPI_SOURCE>", &params());
        assert_eq!(url, "https://x.example/v?wopisrc=http%3A%2F%2F127.0.0.1%3A8080%2Fwopi%2Ffiles%2Fabc_D-1");
    }
}

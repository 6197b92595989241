//! UTF-7 (RFC 2152), the encoding of WOPI's file-name headers (`X-WOPI-SuggestedTarget`,
//! `X-WOPI-RelativeTarget`, `X-WOPI-RequestedName`, `X-WOPI-ValidRelativeTarget`). No maintained
//! crate implements RFC 2152 (the IMAP variant of RFC 3501 is a different encoding), hence this.

use base64::alphabet::STANDARD;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine;

/// UTF-7 runs are unpadded and end with up to 4 spare bits.
const RUN: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true).with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

fn is_base64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

/// Decodes UTF-7; `None` for malformed input (bad base64, odd UTF-16, lone surrogates).
pub fn decode(input: &str) -> Option<String> {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'+' {
            if !b.is_ascii() {
                return None;
            }
            out.push(b as char);
            i += 1;
            continue;
        }
        // `+-` is a literal plus.
        if bytes.get(i + 1) == Some(&b'-') {
            out.push('+');
            i += 2;
            continue;
        }
        let start = i + 1;
        let mut end = start;
        while end < bytes.len() && is_base64(bytes[end]) {
            end += 1;
        }
        let decoded = RUN.decode(&input[start..end]).ok()?;
        if decoded.len() % 2 != 0 {
            return None;
        }
        let units: Vec<u16> = decoded.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
        out.push_str(&String::from_utf16(&units).ok()?);
        // A `-` ends the run and is consumed; any other character ends it and is kept.
        i = if bytes.get(end) == Some(&b'-') { end + 1 } else { end };
    }
    Some(out)
}

/// RFC 2152 "direct characters" plus space: everything else is base64-encoded, as .NET does.
fn is_direct(c: char) -> bool {
    c.is_ascii_alphanumeric() || " '(),-./:?\t\r\n".contains(c)
}

pub fn encode(input: &str) -> String {
    let mut out = String::with_capacity(input.len() + 8);
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('+');
        out.push_str(&STANDARD_NO_PAD.encode(bytes));
        out.push('-');
        pending.clear();
    };
    for c in input.chars() {
        if c == '+' && pending.is_empty() {
            out.push_str("+-");
        } else if is_direct(c) {
            flush(&mut pending, &mut out);
            out.push(c);
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_vectors() {
        assert_eq!(decode("madeup+AF8-name.wopitestx").as_deref(), Some("madeup_name.wopitestx"));
        assert_eq!(decode("R+AOk-sum+AOk-.docx").as_deref(), Some("Résumé.docx"));
        assert_eq!(decode("R+AOk-sum+AOk.docx").as_deref(), Some("Résumé.docx"));
        assert_eq!(decode("a+-b.docx").as_deref(), Some("a+b.docx"));
        assert_eq!(decode("+ZeVnLIqe-.docx").as_deref(), Some("日本語.docx"));
        assert_eq!(decode("plain name.docx").as_deref(), Some("plain name.docx"));
        assert_eq!(decode("+2D3eAA-").as_deref(), Some("\u{1F600}"));
        assert_eq!(decode("+2D0-"), None, "lone surrogate");
        assert_eq!(decode("é"), None, "raw non-ASCII is not UTF-7");
    }

    #[test]
    fn round_trips() {
        for s in ["Résumé.docx", "日本語.docx", "a+b_c#d.docx", "plain.docx", "😀 x.pptx", "+++"] {
            assert_eq!(decode(&encode(s)).as_deref(), Some(s), "{s} -> {}", encode(s));
        }
        assert_eq!(encode("madeup_name.wopitestx"), "madeup+AF8-name.wopitestx");
    }
}

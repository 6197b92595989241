//! File names the WOPI client proposes (Save As, Rename): what is legal, and how to make a
//! legal, unused one.

/// Characters no file name may hold here (Windows' set, so names survive a download).
const ILLEGAL: &[char] = &['/', '\\', ':', '*', '?', '"', '<', '>', '|'];
/// Invisible formatting characters (Unicode's Cf category, the ones text shows nothing for):
/// a right-to-left override (U+202E) makes `invoice<U+202E>xcod.docx` read as `invoicecodx.docx`, and zero-width
/// characters make a name look like another one in the same folder.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

fn is_illegal(c: char) -> bool {
    ILLEGAL.contains(&c) || c.is_control() || is_invisible(c)
}

/// `FileNameMaxLength`: characters, without the extension.
pub const MAX_STEM_CHARS: usize = 250;

#[derive(Debug, PartialEq, Eq)]
pub enum NameError {
    Empty,
    Illegal(char),
    TooLong,
    Reserved,
}

impl std::fmt::Display for NameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NameError::Empty => write!(f, "the name is empty"),
            NameError::Illegal(c) if c.is_control() => write!(f, "the name contains a control character"),
            NameError::Illegal(c) if is_invisible(*c) => write!(f, "the name contains an invisible character (U+{:04X})", *c as u32),
            NameError::Illegal(c) => write!(f, "the name contains '{c}'"),
            NameError::TooLong => write!(f, "the name is longer than {MAX_STEM_CHARS} characters"),
            NameError::Reserved => write!(f, "the name is reserved ('.', '..' or starting with '.')"),
        }
    }
}

/// Checks a full file name (with extension).
pub fn check(name: &str) -> Result<(), NameError> {
    if name.trim().is_empty() {
        return Err(NameError::Empty);
    }
    if let Some(c) = name.chars().find(|c| is_illegal(*c)) {
        return Err(NameError::Illegal(c));
    }
    if name.starts_with('.') {
        return Err(NameError::Reserved);
    }
    if name.len() > 255 || split(name).0.chars().count() > MAX_STEM_CHARS {
        return Err(NameError::TooLong);
    }
    Ok(())
}

/// Stem and extension (with its dot, possibly empty).
pub fn split(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    }
}

/// The closest legal name: illegal characters become `_`, leading dots and surrounding spaces
/// go, the stem is shortened; `None` when nothing usable is left.
pub fn legalize(name: &str) -> Option<String> {
    let cleaned: String = name.chars().map(|c| if is_illegal(c) { '_' } else { c }).collect();
    let cleaned = cleaned.trim().trim_start_matches('.').trim().to_string();
    let (stem, ext) = split(&cleaned);
    let ext: String = ext.chars().take(16).collect();
    let max_stem = MAX_STEM_CHARS.min(255usize.saturating_sub(ext.len()));
    let mut stem: String = stem.chars().take(max_stem).collect();
    while stem.len() + ext.len() > 255 {
        stem.pop();
    }
    let stem = stem.trim();
    if stem.is_empty() || stem.chars().all(|c| c == '_') {
        return None;
    }
    let out = format!("{stem}{ext}");
    check(&out).ok().map(|_| out)
}

/// `name`, then `stem (1).ext`, `stem (2).ext`, …
pub fn candidates(name: &str) -> impl Iterator<Item = String> + '_ {
    let (stem, ext) = split(name);
    std::iter::once(name.to_string()).chain((1..1000).map(move |i| format!("{stem} ({i}){ext}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert!(check("Report.docx").is_ok());
        assert!(check("Résumé 日本.docx").is_ok());
        assert_eq!(check("a/b.docx"), Err(NameError::Illegal('/')));
        assert_eq!(check("a|b.docx"), Err(NameError::Illegal('|')));
        assert_eq!(check(".hidden"), Err(NameError::Reserved));
        // Invisible characters that disguise a name (right-to-left override, zero-width space,
        // byte order mark) are refused, and replaced when a name is made legal.
        assert_eq!(check("invoice\u{202E}xcod.docx"), Err(NameError::Illegal('\u{202E}')));
        assert_eq!(check("e\u{200B}.docx"), Err(NameError::Illegal('\u{200B}')));
        assert!(check("\u{FEFF}").is_err());
        assert!(NameError::Illegal('\u{202E}').to_string().contains("U+202E"));
        assert_eq!(legalize("invoice\u{202E}xcod.docx").as_deref(), Some("invoice_xcod.docx"));
        assert_eq!(check("  "), Err(NameError::Empty));
        assert_eq!(check(&format!("{}.docx", "a".repeat(251))), Err(NameError::TooLong));
        assert_eq!(legalize("a/b:c.docx").as_deref(), Some("a_b_c.docx"));
        assert_eq!(legalize(" ..x.docx").as_deref(), Some("x.docx"));
        assert_eq!(legalize("///"), None);
        assert_eq!(legalize(&format!("{}.docx", "a".repeat(600))).unwrap().len(), 255);
        let c: Vec<String> = candidates("a.docx").take(3).collect();
        assert_eq!(c, ["a.docx", "a (1).docx", "a (2).docx"]);
    }
}

//! The discovery XML model (MS-WOPI `wopi-discovery`), parsed with a real XML parser: `urlsrc`
//! templates arrive entity-escaped (`&lt;ui=UI_LLCC&amp;&gt;`) and regexes on raw bytes break.

use base64::Engine;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    pub zones: Vec<NetZone>,
    pub proof_key: Option<ProofKeys>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetZone {
    pub name: String,
    pub apps: Vec<App>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    /// `Word`, `writer`, or a MIME type (Collabora): never matched on, except as the MIME fallback.
    pub name: String,
    pub fav_icon_url: Option<String>,
    pub actions: Vec<DiscoveryAction>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryAction {
    pub name: String,
    /// Lower-case extension without the dot; empty for MIME-typed actions.
    pub ext: String,
    pub urlsrc: String,
    pub default: bool,
    pub requires: Vec<String>,
    /// `convert` actions: the extension the conversion produces (`targetext`, lower-case, no
    /// dot); empty otherwise.
    pub target_ext: String,
}

/// An RSA public key as discovery publishes it: big-endian modulus and exponent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsaPublicKey {
    pub modulus: Vec<u8>,
    pub exponent: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofKeys {
    pub current: RsaPublicKey,
    pub old: Option<RsaPublicKey>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("not well-formed XML: {0}")]
    Xml(String),
    #[error("root element is <{0}>, expected <wopi-discovery>")]
    Root(String),
    #[error("no <net-zone> with actions")]
    Empty,
    #[error("proof-key attribute '{0}' is not valid base64")]
    ProofKey(&'static str),
}

impl Discovery {
    pub fn parse(xml: &str) -> Result<Discovery, ParseError> {
        let doc = roxmltree::Document::parse(xml).map_err(|e| ParseError::Xml(e.to_string()))?;
        let root = doc.root_element();
        if root.tag_name().name() != "wopi-discovery" {
            return Err(ParseError::Root(root.tag_name().name().to_string()));
        }
        let mut zones = Vec::new();
        let mut proof_key = None;
        for child in root.children().filter(|n| n.is_element()) {
            match child.tag_name().name() {
                "net-zone" => zones.push(parse_zone(child)),
                "proof-key" => proof_key = parse_proof_key(child)?,
                _ => {}
            }
        }
        if zones.iter().all(|z| z.apps.iter().all(|a| a.actions.is_empty())) {
            return Err(ParseError::Empty);
        }
        Ok(Discovery { zones, proof_key })
    }

    /// The configured zone when the document has it, else the document's first zone.
    pub fn zone(&self, preferred: Option<&str>) -> Option<&NetZone> {
        preferred
            .and_then(|name| self.zones.iter().find(|z| z.name.eq_ignore_ascii_case(name)))
            .or_else(|| self.zones.first())
    }

    /// The first action named in `names` (in order of preference) for `ext`: matched on the
    /// action's extension, falling back to apps named by the extension's MIME type (Collabora).
    pub fn find_action(&self, zone: Option<&str>, ext: &str, names: &[&str]) -> Option<(&App, &DiscoveryAction)> {
        let zone = self.zone(zone)?;
        let mimes: Vec<String> = mime_guess::from_ext(ext).iter().map(|m| m.essence_str().to_string()).collect();
        for name in names {
            let by_ext = zone.apps.iter().find_map(|app| {
                app.actions
                    .iter()
                    .find(|a| a.name.eq_ignore_ascii_case(name) && a.ext.eq_ignore_ascii_case(ext))
                    .map(|a| (app, a))
            });
            if by_ext.is_some() {
                return by_ext;
            }
            let by_mime = zone.apps.iter().filter(|app| mimes.iter().any(|m| app.name.eq_ignore_ascii_case(m))).find_map(|app| {
                app.actions.iter().find(|a| a.name.eq_ignore_ascii_case(name) && a.ext.is_empty()).map(|a| (app, a))
            });
            if by_mime.is_some() {
                return by_mime;
            }
        }
        None
    }

    /// Extensions with at least one of `names`, sorted, without duplicates.
    pub fn extensions(&self, zone: Option<&str>, names: &[&str]) -> Vec<String> {
        let mut exts: Vec<String> = self
            .zone(zone)
            .into_iter()
            .flat_map(|z| z.apps.iter())
            .flat_map(|a| a.actions.iter())
            .filter(|a| !a.ext.is_empty() && names.iter().any(|n| a.name.eq_ignore_ascii_case(n)))
            .map(|a| a.ext.clone())
            .collect();
        exts.sort();
        exts.dedup();
        exts
    }

    /// Every action URL template of the zone.
    pub fn url_templates(&self, zone: Option<&str>) -> impl Iterator<Item = &str> {
        self.zone(zone).into_iter().flat_map(|z| z.apps.iter()).flat_map(|a| a.actions.iter()).map(|a| a.urlsrc.as_str())
    }

    pub fn fav_icon(&self, zone: Option<&str>) -> Option<&str> {
        self.zone(zone)?.apps.iter().find_map(|a| a.fav_icon_url.as_deref())
    }
}

fn parse_zone(node: roxmltree::Node) -> NetZone {
    let apps = node
        .children()
        .filter(|n| n.has_tag_name("app"))
        .map(|app| App {
            name: app.attribute("name").unwrap_or_default().to_string(),
            fav_icon_url: app.attribute("favIconUrl").filter(|s| !s.is_empty()).map(str::to_string),
            actions: app
                .children()
                .filter(|n| n.has_tag_name("action"))
                .filter_map(|a| {
                    Some(DiscoveryAction {
                        name: a.attribute("name")?.to_string(),
                        ext: bare_ext(a.attribute("ext")),
                        urlsrc: a.attribute("urlsrc").filter(|u| !u.is_empty())?.to_string(),
                        default: a.attribute("default").is_some_and(|d| d.eq_ignore_ascii_case("true")),
                        requires: a
                            .attribute("requires")
                            .map(|r| r.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
                            .unwrap_or_default(),
                        target_ext: bare_ext(a.attribute("targetext")),
                    })
                })
                .collect(),
        })
        .collect();
    NetZone { name: node.attribute("name").unwrap_or_default().to_string(), apps }
}

/// An extension attribute as we compare it: lower-case, without a leading dot.
fn bare_ext(value: Option<&str>) -> String {
    value.unwrap_or_default().trim().trim_start_matches('.').to_ascii_lowercase()
}

fn parse_proof_key(node: roxmltree::Node) -> Result<Option<ProofKeys>, ParseError> {
    let key = |m: &'static str, e: &'static str| -> Result<Option<RsaPublicKey>, ParseError> {
        match (node.attribute(m).filter(|s| !s.is_empty()), node.attribute(e).filter(|s| !s.is_empty())) {
            (Some(modulus), Some(exponent)) => Ok(Some(RsaPublicKey {
                modulus: b64(modulus).ok_or(ParseError::ProofKey(m))?,
                exponent: b64(exponent).ok_or(ParseError::ProofKey(e))?,
            })),
            _ => Ok(None),
        }
    };
    let Some(current) = key("modulus", "exponent")? else {
        return Ok(None);
    };
    Ok(Some(ProofKeys { current, old: key("oldmodulus", "oldexponent")? }))
}

fn b64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(s.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLLABORA: &str = include_str!("../../tests/fixtures/discovery/collabora.xml");
    const ONLYOFFICE: &str = include_str!("../../tests/fixtures/discovery/onlyoffice.xml");
    const OFFICE: &str = include_str!("../../tests/fixtures/discovery/office.xml");

    #[test]
    fn collabora_matches_by_ext_then_mime() {
        let doc = Discovery::parse(COLLABORA).unwrap();
        assert!(doc.proof_key.is_none());
        let (app, action) = doc.find_action(None, "docx", &["edit"]).unwrap();
        assert_eq!(app.name, "writer");
        assert_eq!(action.urlsrc, "http://cool.test:9980/browser/1a2b3c/cool.html?");
        // pptx is only listed under its MIME type, with ext="".
        let (app, _) = doc.find_action(None, "pptx", &["edit"]).unwrap();
        assert_eq!(app.name, "application/vnd.openxmlformats-officedocument.presentationml.presentation");
        assert!(doc.find_action(None, "docx", &["view"]).is_none());
        assert!(doc.find_action(None, "zip", &["view", "edit"]).is_none());
        // The Capabilities app (ext="") is not an extension.
        assert_eq!(doc.extensions(None, &["view", "view_comment", "edit"]), ["doc", "docx", "ods", "odt", "pdf", "sxw", "xlsx"]);
        assert_eq!(doc.find_action(None, "pdf", &["view", "view_comment"]).unwrap().1.name, "view_comment");
    }

    #[test]
    fn onlyoffice_templates_are_entity_decoded() {
        let doc = Discovery::parse(ONLYOFFICE).unwrap();
        let (app, view) = doc.find_action(None, "docx", &["view"]).unwrap();
        assert_eq!(app.name, "Word");
        assert!(view.default);
        assert!(view.urlsrc.starts_with("http://ds.test/hosting/wopi/word/view?<rs=DC_LLCC&><dchat=DISABLE_CHAT&>"));
        assert!(view.urlsrc.ends_with("<wopisrc=WOPI_SOURCE&>&"));
        let (_, edit) = doc.find_action(None, "DOCX", &["edit"]).unwrap();
        assert_eq!(edit.requires, ["locks", "update"]);
        assert_eq!(doc.fav_icon(None), Some("http://ds.test/web-apps/apps/documenteditor/main/resources/img/favicon.ico"));
        let (_, convert) = doc.find_action(None, "doc", &["convert"]).unwrap();
        assert!(convert.urlsrc.contains("convert-and-edit/doc/docx"));
        assert_eq!(convert.target_ext, "docx");
        assert_eq!(view.target_ext, "");
    }

    #[test]
    fn office_zones_and_proof_keys() {
        let doc = Discovery::parse(OFFICE).unwrap();
        assert_eq!(doc.zones.iter().map(|z| z.name.as_str()).collect::<Vec<_>>(), ["internal-http", "external-https"]);
        let (_, internal) = doc.find_action(None, "docx", &["view"]).unwrap();
        assert!(internal.urlsrc.starts_with("http://internal.office.test/"));
        let (_, external) = doc.find_action(Some("external-https"), "docx", &["view"]).unwrap();
        assert!(external.urlsrc.starts_with("https://word-view.office.test/"));
        // A configured zone the document lacks falls back to the first zone.
        let (_, fallback) = doc.find_action(Some("internal-https"), "docx", &["view"]).unwrap();
        assert_eq!(fallback, internal);
        assert!(doc.find_action(None, "docx", &["edit"]).is_none());
        let keys = doc.proof_key.unwrap();
        assert_eq!(keys.current.exponent, [1, 0, 1]);
        assert_eq!(keys.current.modulus.len(), 256);
        assert_eq!(keys.old.unwrap().modulus.len(), 256);
    }

    #[test]
    fn rejects_what_is_not_discovery() {
        assert!(matches!(Discovery::parse("<html><body/></html>"), Err(ParseError::Root(_))));
        assert!(matches!(Discovery::parse("<wopi-discovery><net-zone"), Err(ParseError::Xml(_))));
        assert_eq!(Discovery::parse("<wopi-discovery/>"), Err(ParseError::Empty));
        assert!(matches!(
            Discovery::parse(
                r#"<wopi-discovery><net-zone name="a"><app name="x"><action name="view" ext="a" urlsrc="http://x/"/></app></net-zone><proof-key modulus="!!" exponent="AQAB"/></wopi-discovery>"#
            ),
            Err(ParseError::ProofKey("modulus"))
        ));
    }
}
